#include "core/metrics_server.hpp"

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>

#include "core/errors.hpp"
#include "core/log.hpp"

namespace valkyrie::metrics {
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

bool parse_listen_address(const std::string& text, std::string& host, unsigned short& port) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos) return false;
  host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host.empty()) host = "0.0.0.0";
  std::string p = text.substr(colon + 1);
  if (p.empty() || p.size() > 5 || p.find_first_not_of("0123456789") != std::string::npos) return false;
  unsigned long v = std::stoul(p);
  if (v > 65535) return false;
  port = static_cast<unsigned short>(v);
  boost::system::error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

server::server(asio::any_io_executor ex, std::function<std::string()> render)
    : ex_(ex), render_(std::move(render)) {}

result<std::unique_ptr<server>> server::bind(asio::any_io_executor ex, const std::string& host,
                                             unsigned short port, std::function<std::string()> render) {
  std::unique_ptr<server> s(new server(ex, std::move(render)));
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec) return make_error_code(errc::invalid_argument);
  auto acceptor = std::make_shared<tcp::acceptor>(ex);
  tcp::endpoint ep(addr, port);
  acceptor->open(ep.protocol(), ec);
  if (!ec) acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor->bind(ep, ec);
  if (!ec) acceptor->listen(64, ec);
  if (ec) return std::error_code(ec.value(), std::generic_category());
  s->port_ = acceptor->local_endpoint().port();
  s->acceptor_ = std::move(acceptor);
  return s;
}

void server::start() { asio::co_spawn(ex_, accept_loop(acceptor_, render_), asio::detached); }

void server::stop() {
  asio::post(ex_, [a = acceptor_] {
    boost::system::error_code ignored;
    a->close(ignored);
  });
}

awaitable<void> server::accept_loop(std::shared_ptr<tcp::acceptor> acceptor, std::function<std::string()> render) {
  while (acceptor->is_open()) {
    auto [ec, socket] = co_await acceptor->async_accept(use_tuple);
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor->is_open()) co_return;
      // Out of file descriptors and the like: pause rather than spin.
      asio::steady_timer t(acceptor->get_executor(), std::chrono::milliseconds(100));
      co_await t.async_wait(use_tuple);
      continue;
    }
    asio::co_spawn(acceptor->get_executor(), serve(std::move(socket), render), asio::detached);
  }
}

awaitable<void> server::serve(tcp::socket socket, std::function<std::string()> render) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  for (;;) {
    stream.expires_after(std::chrono::seconds(30));
    http::request_parser<http::empty_body> parser;
    parser.header_limit(16 * 1024);
    auto [rec, rn] = co_await http::async_read(stream, buffer, parser, use_tuple);
    if (rec) break;
    auto& req = parser.get();
    http::response<http::string_body> res;
    res.version(req.version());
    res.keep_alive(req.keep_alive());
    res.set(http::field::server, "valkyrie-fs");
    std::string target(req.target().substr(0, req.target().find('?')));
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
      res.result(http::status::method_not_allowed);
      res.set(http::field::allow, "GET, HEAD");
    } else if (target == "/metrics") {
      res.result(http::status::ok);
      res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
      res.body() = render();
    } else if (target == "/") {
      res.result(http::status::ok);
      res.set(http::field::content_type, "text/html; charset=utf-8");
      res.body() = "<html><body><a href=\"/metrics\">/metrics</a></body></html>\n";
    } else {
      res.result(http::status::not_found);
      res.set(http::field::content_type, "text/plain");
      res.body() = "not found; try /metrics\n";
    }
    res.prepare_payload();
    if (req.method() == http::verb::head) res.body().clear();
    stream.expires_after(std::chrono::seconds(30));
    bool keep = res.keep_alive();
    auto [wec, wn] = co_await http::async_write(stream, res, use_tuple);
    if (wec || !keep) break;
  }
  boost::system::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
}

}  // namespace valkyrie::metrics
