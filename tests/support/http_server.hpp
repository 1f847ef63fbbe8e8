#pragma once
// A tiny HTTP/1.1 server on 127.0.0.1 for tests that need an endpoint to answer (EC2 IMDS,
// ECS credentials). Runs on its own thread; the handler is called on that thread.
#include <atomic>
#include <functional>
#include <mutex>
#include <thread>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>

#include "core/asio.hpp"

namespace valkyrie::test {

class http_server {
 public:
  using request = boost::beast::http::request<boost::beast::http::string_body>;
  using handler = std::function<std::pair<unsigned, std::string>(const request&)>;

  explicit http_server(handler h) : handler_(std::move(h)) {
    using tcp = asio::ip::tcp;
    tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
    tcp::acceptor acceptor(ctx_);
    acceptor.open(ep.protocol());
    acceptor.bind(ep);
    acceptor.listen();
    port_ = acceptor.local_endpoint().port();
    // The accept loop owns the acceptor, so the pending accept is abandoned with it when ctx_
    // shuts down. (An acceptor destroyed before its io_context while an accept is pending
    // makes Boost 1.81's io_uring backend destroy that accept after the socket service is
    // freed: a use after free, found by the sanitizer build.)
    asio::co_spawn(ctx_, accept_loop(this, std::move(acceptor)), asio::detached);
    thread_ = std::thread([this] { ctx_.run(); });
  }
  ~http_server() {
    ctx_.stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  unsigned requests() const { return requests_; }

 private:
  static awaitable<void> accept_loop(http_server* self, asio::ip::tcp::acceptor acceptor) {
    for (;;) {
      auto [ec, socket] = co_await acceptor.async_accept(use_tuple);
      if (ec) co_return;
      asio::co_spawn(self->ctx_, session(self, std::move(socket)), asio::detached);
    }
  }
  static awaitable<void> session(http_server* self, asio::ip::tcp::socket socket) {
    namespace http = boost::beast::http;
    boost::beast::tcp_stream stream(std::move(socket));
    boost::beast::flat_buffer buffer;
    for (;;) {
      request req;
      stream.expires_after(std::chrono::seconds(10));
      auto [ec, n] = co_await http::async_read(stream, buffer, req, use_tuple);
      if (ec) co_return;
      ++self->requests_;
      auto [status, body] = self->handler_(req);
      http::response<http::string_body> res{static_cast<http::status>(status), 11};
      res.body() = body;
      res.keep_alive(req.keep_alive());
      res.prepare_payload();
      auto [wec, wn] = co_await http::async_write(stream, res, use_tuple);
      if (wec || !req.keep_alive()) co_return;
    }
  }

  handler handler_;
  asio::io_context ctx_;
  unsigned short port_ = 0;
  std::thread thread_;
  std::atomic<unsigned> requests_{0};
};

}  // namespace valkyrie::test
