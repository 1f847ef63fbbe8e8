#pragma once
// S3 Express One Zone session authentication, for directory buckets (names ending "--x-s3").
//
// The zonal API (GetObject, HeadObject, PutObject, ListObjectsV2) takes session credentials:
// CreateSession (GET /?session on the bucket, SigV4 with the long-term credentials, signing
// service "s3express", header x-amz-create-session-mode) answers a CreateSessionResult with
// Credentials {SessionToken, SecretAccessKey, AccessKeyId, Expiration}; object requests are then
// signed with the session's keys (service "s3express") and carry the token in
// x-amz-s3session-token (never x-amz-security-token). Sessions last about 5 minutes.
//
// express_session holds one bucket's current session for all the clients of that bucket (one
// per reactor). A session is used until 90% of its lifetime (at most 10 s before it expires);
// from 80% a request that asks for it starts a CreateSession in the background and keeps the
// current one, so readers normally never wait. Only without a usable session (the first use,
// after a 403, a refresh that failed) do requests wait, all for the one CreateSession in flight
// (at most one at a time for all reactors); they are woken when it ends (no polling), bounded by
// wait_timeout. A failed CreateSession is not repeated for failure_holdoff: meanwhile requests
// fail at once with its error (a shared cache steps aside; the origin's retry loop waits).
// A request refused with 403 (or ExpiredToken) is retried once after invalidate(): see
// beast_client::execute.
//
// Threading: get() and invalidate() may be called from any reactor, concurrently; the
// CreateSession runs on the reactor of the request that needed it. Keys and tokens are never
// logged.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "core/asio.hpp"
#include "core/result.hpp"
#include "s3/sigv4.hpp"

namespace valkyrie::s3 {

struct client_options;

struct session_timing {
  double refresh_at = 0.8;                          // of the lifetime: background refresh
  double stop_using_at = 0.9;                       // of the lifetime: wait for a new one
  std::chrono::seconds max_margin{10};              // stop using at least this long before
  std::chrono::milliseconds wait_timeout{15000};    // longest wait for a CreateSession
  std::chrono::milliseconds failure_holdoff{1000};  // no new CreateSession after a failure
  std::chrono::seconds skewed_lifetime{60};         // assumed when Expiration is past
};

class express_session : public std::enable_shared_from_this<express_session> {
 public:
  using clock = std::chrono::system_clock;
  using create_fn = std::function<awaitable<result<credentials>>()>;

  // bucket: for log lines only.
  express_session(create_fn create, std::string bucket, session_timing timing = {},
                  std::function<clock::time_point()> now = &clock::now);

  // The current session's credentials (session_token set), creating or refreshing it as needed.
  awaitable<result<credentials>> get();
  // The server refused a request signed with the session whose token is `session_token`: the
  // next get() creates a new one (unless that already happened).
  void invalidate(std::string_view session_token);

  unsigned create_count() const;  // CreateSession calls started
  unsigned wait_count() const;    // get() calls that had to wait for one
  unsigned max_concurrent_creates() const;

 private:
  struct waiter {
    std::uint64_t id;
    asio::any_io_executor ex;
    std::shared_ptr<asio::steady_timer> timer;
  };
  static awaitable<void> run_create(std::shared_ptr<express_session> self);
  void remove_waiter(std::uint64_t id);

  create_fn create_;
  std::string bucket_;
  session_timing timing_;
  std::function<clock::time_point()> now_;

  mutable std::mutex mu_;
  std::optional<credentials> current_;
  clock::time_point refresh_at_{}, stop_at_{};
  bool in_flight_ = false;
  std::error_code last_error_;
  clock::time_point holdoff_until_{};
  std::vector<waiter> waiters_;
  std::uint64_t next_waiter_ = 0;
  unsigned creates_ = 0, waits_ = 0, concurrent_ = 0, max_concurrent_ = 0;
  bool warned_skew_ = false;
};

// Parses a CreateSessionResult document.
result<credentials> parse_create_session(std::string_view xml);

// The session for one bucket's clients: CreateSession is sent through a one-connection client on
// the calling reactor, with `base`'s endpoint, TLS, timeouts and long-term credentials (at most
// 2 attempts). Without `timing`, the defaults with wait_timeout = connect + first-byte + stall
// timeouts.
std::shared_ptr<express_session> make_express_session(
    const client_options& base, std::optional<session_timing> timing = std::nullopt);

}  // namespace valkyrie::s3
