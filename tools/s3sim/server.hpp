#pragma once
// valkyrie-s3sim's HTTP server: S3's REST API (GET with ranges, HEAD, ListObjectsV2, PUT, bucket
// HEAD/PUT, CreateSession for S3 Express directory buckets) on the project's reactors, with
// SigV4 verification (auth.hpp), a link model (first-byte latency, per-connection and total
// bandwidth) and fault injection; /_sim/ holds the admin API (request counters, faults at run
// time).
//
// Threading: the acceptor runs on reactor 0 and hands each connection to the next reactor;
// a connection stays on its reactor. Shared state (store, counters, pacer, faults) is
// thread-safe.
#include <atomic>
#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>

#include "core/reactor_pool.hpp"
#include "s3/sigv4.hpp"
#include "store.hpp"

namespace valkyrie::sim {

// corrupt: one byte of the body flipped, the answer otherwise normal (silent corruption, which a
// reader can only catch by comparing bytes).
enum class fault_kind { none, slowdown, error500, reset, truncate, stall, corrupt };
inline constexpr const char* fault_names[] = {"none", "slowdown", "error500", "reset", "truncate", "stall", "corrupt"};
inline constexpr int fault_kinds = 7;
std::optional<fault_kind> parse_fault_kind(std::string_view name);

struct server_options {
  std::string region = "us-east-1";
  std::optional<s3::credentials> credentials;  // unset: requests are not authenticated
  std::chrono::nanoseconds session_lifetime = std::chrono::minutes(5);  // S3 Express sessions
  std::chrono::nanoseconds first_byte_latency{0};
  double conn_bandwidth = 0;   // bytes per second per connection; 0: unlimited
  double total_bandwidth = 0;  // bytes per second, all connections; 0: unlimited
  double fault_probability[fault_kinds] = {};  // indexed by fault_kind
  std::uint64_t fault_seed = 42;
  std::chrono::nanoseconds stall_time = std::chrono::seconds(60);
  std::chrono::nanoseconds keepalive_timeout = std::chrono::seconds(60);
  std::shared_ptr<boost::asio::ssl::context> tls;  // set: serve https
};

struct server_counters {
  std::atomic<std::uint64_t> get{0}, head{0}, list{0}, put{0}, other{0}, admin{0};
  std::atomic<std::uint64_t> create_session{0};  // S3 Express CreateSession answered
  std::atomic<std::uint64_t> auth_failures{0}, precondition_failures{0}, bytes_sent{0},
      connections{0};
  std::atomic<std::uint64_t> expired_sessions{0};  // refused: the S3 Express session expired
  std::atomic<std::uint64_t> put_conflicts{0};  // PUTs with If-None-Match: * refused (412)
  std::atomic<std::uint64_t> faults[fault_kinds] = {};
  void reset();
  std::string to_json() const;
};

class server {
 public:
  server(reactor_pool& pool, store& objects, server_options opts);
  // Binds, listens and starts accepting; returns the bound endpoint (port 0 picks one).
  boost::asio::ip::tcp::endpoint listen(const std::string& host, const std::string& port);

  server_counters& counters() { return counters_; }

  struct state;

 private:
  reactor_pool& pool_;
  std::shared_ptr<state> state_;
  server_counters counters_;
};

}  // namespace valkyrie::sim
