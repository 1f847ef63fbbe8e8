// Fuzz target: HTTP responses as the S3 client and the credential fetcher read them
// (src/s3/beast_client.cpp's exchange: the header under its limit, Content-Length into the
// caller's buffer, error bodies, listings and dates; src/s3/http_fetch.cpp for IMDS/ECS). A
// loopback server answers every connection with the input (after the first byte, which picks the
// operation) and closes, so each run is one real exchange over TCP and nothing waits for a
// timeout. Invariants: a GET never reports more bytes than its buffer holds; HEAD sizes come
// from Content-Length.
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/asio.hpp"
#include "core/log.hpp"
#include "fuzz.hpp"
#include "s3/beast_client.hpp"
#include "s3/http_fetch.hpp"

namespace {
using namespace valkyrie;
using namespace valkyrie::s3;
using tcp = asio::ip::tcp;

struct loopback {
  asio::io_context ctx{1};
  tcp::acceptor acceptor{ctx, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)};
  std::string port = std::to_string(acceptor.local_endpoint().port());
};
loopback* lo = nullptr;

// Until *stop, answers each connection with `reply`: reads the request head, writes, closes its
// side, then drains until the client closes (so the client sees the whole reply, not a reset).
awaitable<void> serve(const std::string* reply, const bool* stop) {
  while (!*stop) {
    auto [aec, sock] = co_await lo->acceptor.async_accept(use_tuple);
    if (aec) co_return;
    asio::streambuf head;
    // (Errors do not matter: the client sees whatever arrives, or nothing.)
    [[maybe_unused]] auto [rec, n] =
        co_await asio::async_read_until(sock, head, "\r\n\r\n", use_tuple);
    [[maybe_unused]] auto [wec, w] =
        co_await asio::async_write(sock, asio::buffer(*reply), use_tuple);
    boost::system::error_code ignored;
    sock.shutdown(tcp::socket::shutdown_send, ignored);
    char sink[4096];
    for (;;) {
      auto [dec, d] = co_await sock.async_read_some(asio::buffer(sink), use_tuple);
      if (dec) break;
    }
  }
}

awaitable<void> client_op(unsigned op, std::string port) {
  endpoint ep;
  ep.tls = false;
  ep.host = "127.0.0.1";
  ep.port = port;
  ep.host_header = "127.0.0.1:" + port;
  ep.base_path = "/bucket";
  ep.region = "us-east-1";
  ep.bucket = "bucket";
  ep.path_style = true;
  client_options o;
  o.ep = ep;
  credentials creds;
  creds.access_key_id = "AKIDEXAMPLE";
  creds.secret_access_key = "secret";
  o.credentials = std::make_shared<static_credentials_provider>(creds, "fuzz");
  o.max_connections = 1;
  o.retry.max_attempts =
      1;  // no backoff sleeps: one exchange per run (plus the stale/expired-token retries)
  o.timeouts.connect = o.timeouts.first_byte = o.timeouts.stall = std::chrono::milliseconds(2000);
  auto ex = co_await asio::this_coro::executor;
  beast_client c(ex, o);
  switch (op % 5) {
    case 0: {
      auto r = co_await c.head("some/key");
      (void)r;
      break;
    }
    case 1:
    case 2: {
      std::vector<char> buf(op % 5 == 1 ? 16 : 4096);
      auto r = co_await c.get("some/key", 100, std::span<char>(buf.data(), buf.size()),
                              op & 8 ? "\"etag\"" : "");
      if (r) FUZZ_CHECK(*r <= buf.size(), "get");
      break;
    }
    case 3: {
      list_request lr;
      lr.prefix = "p/";
      lr.delimiter = "/";
      auto r = co_await c.list(lr);
      if (r) FUZZ_CHECK(!r->truncated || !r->next_continuation_token.empty(), "list");
      break;
    }
    case 4: {
      auto r = co_await http_fetch("GET", "http://127.0.0.1:" + port + "/latest/meta-data/", {},
                                   std::chrono::milliseconds(2000));
      (void)r;
      break;
    }
  }
}
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  valkyrie::log::set_level("off");
  lo = new loopback;
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (!lo) LLVMFuzzerInitialize(nullptr, nullptr);
  if (size == 0) return 0;
  unsigned op = data[0];
  std::string reply(reinterpret_cast<const char*>(data) + 1, size - 1);
  lo->ctx.restart();
  bool stop = false;
  asio::co_spawn(lo->ctx, serve(&reply, &stop), asio::detached);
  asio::co_spawn(lo->ctx, client_op(op, lo->port), [&stop](std::exception_ptr e) {
    stop = true;
    lo->acceptor.cancel();  // a server waiting in accept stops now, one draining stops after

    if (e) std::rethrow_exception(e);
  });
  lo->ctx.run();
  return 0;
}
