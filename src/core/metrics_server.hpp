#pragma once
// metrics_server: serves GET /metrics (Prometheus text format) over HTTP/1.1 with Beast.
//
// Threading: the accept loop and every connection run on one reactor; rendering sums the
// per-thread metric cells there, so scrapes never touch another reactor's hot path.
// Invariants: every socket operation has a timeout; a connection serves requests in turn
// (keep-alive) and is closed after 30 s idle; only GET and HEAD of /metrics (and /) are answered.
#include <functional>
#include <memory>
#include <string>

#include <boost/asio/ip/tcp.hpp>

#include "core/asio.hpp"
#include "core/result.hpp"

namespace valkyrie::metrics {

class server {
 public:
  // Binds host:port now (port 0: any free one), so that a bad address is a start-up error.
  static result<std::unique_ptr<server>> bind(asio::any_io_executor ex, const std::string& host, unsigned short port,
                                              std::function<std::string()> render);
  // Starts accepting (on the executor given to bind).
  void start();
  // Stops accepting; open connections end at their next timeout or request.
  void stop();
  unsigned short port() const { return port_; }

 private:
  server(asio::any_io_executor ex, std::function<std::string()> render);
  static awaitable<void> accept_loop(std::shared_ptr<asio::ip::tcp::acceptor> acceptor,
                                     std::function<std::string()> render);
  static awaitable<void> serve(asio::ip::tcp::socket socket, std::function<std::string()> render);

  asio::any_io_executor ex_;
  std::shared_ptr<asio::ip::tcp::acceptor> acceptor_;
  std::function<std::string()> render_;
  unsigned short port_ = 0;
};

// "127.0.0.1:9090", "[::1]:9090", ":9090" (all interfaces) -> host and port; false if malformed.
bool parse_listen_address(const std::string& text, std::string& host, unsigned short& port);

}  // namespace valkyrie::metrics
