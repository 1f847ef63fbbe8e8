#include "s3/http_fetch.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/url/parse.hpp>

#include "core/errors.hpp"
#include "s3/uri.hpp"

namespace valkyrie::s3 {
namespace beast = boost::beast;
namespace http = beast::http;

awaitable<result<http_reply>> http_fetch(std::string method, std::string url, header_list headers,
                                         std::chrono::milliseconds timeout) {
  if (!plausible_url(url)) co_return make_error_code(errc::invalid_argument);
  auto parsed = boost::urls::parse_absolute_uri(url);
  if (!parsed || parsed->scheme() != "http") co_return make_error_code(errc::invalid_argument);
  std::string host(parsed->encoded_host());
  // An empty port ("http://host:/") is the default one (RFC 3986).
  std::string port = parsed->port().empty() ? "80" : std::string(parsed->port());
  std::string target(parsed->encoded_resource());
  if (target.empty()) target = "/";

  auto ex = co_await asio::this_coro::executor;
  asio::ip::tcp::resolver resolver(ex);
  auto [rec, results] = co_await resolver.async_resolve(host, port, use_tuple);
  if (rec) co_return make_error_code(errc::connect_failed);
  beast::tcp_stream stream(ex);
  stream.expires_after(timeout);
  auto [cec, ep] = co_await stream.async_connect(results, use_tuple);
  if (cec) co_return make_error_code(cec == beast::error::timeout ? errc::timeout : errc::connect_failed);
  stream.socket().set_option(asio::ip::tcp::no_delay(true));

  http::request<http::string_body> req{http::string_to_verb(method), target, 11};
  req.set(http::field::host, std::string(parsed->encoded_authority()));
  for (auto& [k, v] : headers) req.set(k, v);
  req.prepare_payload();
  auto [wec, wn] = co_await http::async_write(stream, req, use_tuple);
  if (wec) co_return make_error_code(wec == beast::error::timeout ? errc::timeout : errc::connection_reset);

  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(1 << 20);
  auto [rdec, rn] = co_await http::async_read(stream, buffer, parser, use_tuple);
  if (rdec) co_return make_error_code(rdec == beast::error::timeout ? errc::timeout : errc::protocol_error);
  beast::error_code ignored;
  stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  http_reply reply;
  reply.status = parser.get().result_int();
  reply.body = std::move(parser.get().body());
  co_return reply;
}
}  // namespace valkyrie::s3
