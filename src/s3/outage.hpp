#pragma once
// outage_monitor: what the clients of every reactor know together about S3 failing, so that an
// outage is logged once, not per request or attempt, and its end too.
//
// An outage begins when some request has been failing for `threshold` (a lone 503 or reset is
// not one), counted from the later of its first failure and the end of the previous outage, and
// ends with the first request that succeeds after that. Its start is shared: a
// request that fails during it counts its retry budget from then (began()), so that reads
// started late in a long outage, and the kernel's second try of a page its read-ahead failed
// to get, do not wait a whole budget again. Three lines per outage at
// most: "S3 is failing" when it begins, "S3 still failing after the retry budget" when the first
// request gives up, "S3 answers again" (with its length and how many requests gave up) when it
// ends (a few a minute at most, if S3 flaps). Metrics: valkyrie_s3_outage (1 during one),
// valkyrie_s3_outages_total, valkyrie_s3_requests_gave_up_total. Threading: any thread. The common
// calls (a success, a failure during an outage) read one atomic; the transitions, rare, take a
// mutex.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string_view>
#include <system_error>

namespace valkyrie::s3 {

class outage_monitor {
 public:
  using clock = std::chrono::steady_clock;
  // (Registers the metrics, so that they read 0 from the start.)
  explicit outage_monitor(std::chrono::milliseconds threshold = std::chrono::seconds(1));

  // A request has been failing since `since` (its first failed attempt); its last error is `ec`
  // and it retries for up to `budget`.
  void failing(clock::time_point since, clock::time_point now, std::error_code ec,
               std::string_view operation, std::chrono::milliseconds budget);
  // A request spent its whole budget failing (its reader gets ETIMEDOUT).
  void gave_up(clock::time_point since, clock::time_point now, std::error_code last,
               std::string_view operation, std::string_view path);
  // A request succeeded (cheap when there is no outage: one relaxed load).
  void answered(clock::time_point now);

  bool in_outage() const { return outage_.load(std::memory_order_relaxed); }
  // When the outage in progress began (its first failure); nothing when there is none. A
  // request failing during an outage counts its budget from here, so once an outage has
  // outlasted the budget every request fails after one attempt, until S3 answers again.
  std::optional<clock::time_point> began() const;
  std::uint64_t outages() const;

 private:
  // With mu_ held: starts an outage that began at `since` unless one is on; true if it did.
  bool begin(clock::time_point since);

  const std::chrono::milliseconds threshold_;
  std::atomic<bool> outage_{false};  // written with mu_ held
  mutable std::mutex mu_;            // guards what follows
  clock::time_point started_{};      // the outage's first failure
  clock::time_point
      recovered_{};            // when the last outage ended (failures before it do not count again)
  std::uint64_t gave_up_ = 0;  // requests that gave up during this outage
  std::uint64_t outages_ = 0;
};

}  // namespace valkyrie::s3
