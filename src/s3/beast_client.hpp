#pragma once
// beast_client: the object client that speaks HTTP/1.1 to S3 over Beast.
//
// Owns: one reactor's keep-alive connection pool to one bucket's endpoint (plain TCP or TLS),
// bounded by max_connections; requests beyond that wait for a connection to come back.
// Threading: an instance lives on one reactor and is only used from that reactor's thread (make
// one per reactor, sharing the credentials provider, the TLS context and the stats).
// Invariants: every network operation runs under a timeout (connect, first byte, stalled body);
// a GET body is read straight into the caller's memory; a connection goes back to the pool only
// after its response was read completely; a stale pooled connection (closed by the server while
// idle) is retried once on a fresh connection without counting as an attempt. A request that
// fails transiently is retried for its budget (retry.hpp), from its first failure: backoff
// waits are timers on the reactor, so other requests and cached reads go on meanwhile; once
// failing, an attempt's connect and first-byte timeouts are cut to what is left of the budget.
// Outages are logged once for all reactors (outage_monitor).
// With an express_session (S3 Express directory buckets), requests are signed with the session's
// keys and carry x-amz-s3session-token; a request refused with 403 or ExpiredToken is sent once
// more with a new session (express_session.hpp).
#include <atomic>
#include <deque>
#include <memory>
#include <random>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>

#include "s3/credentials.hpp"
#include "s3/endpoint.hpp"
#include "s3/express_session.hpp"
#include "s3/object_client.hpp"
#include "s3/outage.hpp"
#include "s3/retry.hpp"

namespace valkyrie::s3 {

struct client_timeouts {
  std::chrono::milliseconds connect{5000};
  std::chrono::milliseconds first_byte{10000};  // request sent -> response header read
  std::chrono::milliseconds stall{5000};        // no body bytes for this long
};

// Counters shared by the clients of all reactors (relaxed atomics; read by tests and metrics).
struct client_stats {
  std::atomic<std::uint64_t> requests{0};        // attempts sent, retries included
  std::atomic<std::uint64_t> retries{0};
  std::atomic<std::uint64_t> stale_retries{0};   // stale pooled connections replaced
  std::atomic<std::uint64_t> session_retries{0};  // sent again with a new S3 Express session
  std::atomic<std::uint64_t> connections_opened{0};
  std::atomic<std::uint64_t> bytes_received{0};  // object bytes into caller memory
  std::atomic<std::uint64_t> retries_slow_down{0}, retries_server_error{0}, retries_reset{0},
      retries_truncated{0}, retries_timeout{0}, retries_connect{0}, retries_other{0};
};

// TLS settings: certificates are verified by default; ca_bundle (or AWS_CA_BUNDLE) replaces
// the system store.
result<std::shared_ptr<asio::ssl::context>> make_tls_context(std::string ca_bundle, bool verify);

struct client_options {
  endpoint ep;
  std::shared_ptr<credentials_provider> credentials;  // long-term (or STS) credentials
  // Set: S3 Express session authentication; shared by the clients of all reactors.
  std::shared_ptr<express_session> session;
  std::shared_ptr<asio::ssl::context> tls;  // required when ep.tls
  std::shared_ptr<client_stats> stats;      // optional
  std::shared_ptr<outage_monitor>
      outage;  // shared by every reactor's client (optional: one of its own)
  unsigned max_connections = 64;
  client_timeouts timeouts;
  retry_policy retry;
  std::chrono::milliseconds pool_idle_timeout{4000};  // drop idle pooled connections older than this
};

class beast_client final : public object_client {
 public:
  beast_client(asio::any_io_executor ex, client_options opts);
  ~beast_client() override;

  awaitable<result<object_info>> head(std::string key) override;
  awaitable<result<std::size_t>> get(std::string key, std::uint64_t offset, std::span<char> dest,
                                     std::string if_match) override;
  awaitable<result<list_page>> list(list_request request) override;
  // PutObject, for test and benchmark set-up (the filesystem itself never writes). Returns the ETag.
  awaitable<result<std::string>> put(std::string key, std::string body);
  // PutObject, optionally with If-None-Match: * (a 412 is errc::precondition_failed, never
  // retried).
  awaitable<result<std::string>> put_object(std::string key, std::string body, bool if_none_match) override;
  // CreateSession (S3 Express): signed with the long-term credentials; mode "ReadWrite" or
  // "ReadOnly". Used by express_session (a client without a session of its own).
  awaitable<result<credentials>> create_session(std::string mode);

  const client_options& options() const { return opts_; }
  unsigned open_connections() const { return open_; }

  struct connection;
  struct request;
  struct response;

 private:
  awaitable<result<response>> execute(request req, std::span<char> dest, std::size_t* progress);
  awaitable<result<response>> attempt(const request* req, std::span<char> dest, std::size_t* got,
                                      bool* stale, client_timeouts timeouts,
                                      std::string* session_token);
  awaitable<result<std::unique_ptr<connection>>> acquire(bool* reused,
                                                         std::chrono::milliseconds connect_timeout);
  awaitable<std::error_code> connect(connection* c, std::chrono::milliseconds timeout);
  void release(std::unique_ptr<connection> c, bool reusable);

  asio::any_io_executor ex_;
  client_options opts_;
  std::shared_ptr<client_stats> stats_;
  std::vector<std::unique_ptr<connection>> idle_;
  unsigned open_ = 0;
  // Requests waiting for a connection, first come first served: a released connection (or the
  // slot of one that closed) goes to the front one, never to a request that came later.
  struct waiter;
  std::deque<std::shared_ptr<waiter>> waiters_;
  std::mt19937_64 rng_;
  asio::ip::tcp::resolver resolver_;
  asio::ip::tcp::resolver::results_type resolved_;
  std::chrono::steady_clock::time_point resolved_at_{};
};

}  // namespace valkyrie::s3
