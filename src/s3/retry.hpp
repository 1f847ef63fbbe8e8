#pragma once
// Retry policy: a request that fails transiently (throttling, 5xx, resets, truncated bodies,
// timeouts, refused connections) is sent again after an exponential backoff with full jitter
// (AWS's recommendation against synchronized retry storms), capped at max_delay so that a server
// that comes back is noticed within a few seconds. It keeps trying until it has been failing
// for its budget (--retry-timeout for GETs, --metadata-retry-timeout for HEAD and LIST), counted
// from its first failure (or the start of the outage it fails in, if earlier: outage.hpp), and
// then fails with errc::retries_exhausted (ETIMEDOUT for a reader).
// Never retried: 403, 404, 412, 416 and other answers that would come back the same.
// An optional attempt bound (max_attempts) is for callers that must fail fast whatever the
// budget, such as the mount-time probe: it returns the last error seen.
#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <system_error>

namespace valkyrie::s3 {

struct retry_policy {
  unsigned max_attempts = 0;  // 0: no bound, the budget decides
  std::chrono::milliseconds base_delay{50};
  std::chrono::milliseconds max_delay{2000};
  std::chrono::milliseconds budget{std::chrono::minutes(5)};           // GET (and PUT)
  std::chrono::milliseconds metadata_budget{std::chrono::minutes(5)};  // HEAD, LIST
};

bool is_retryable(std::error_code ec);

// Full jitter: uniform in [0, min(max_delay, base_delay * 2^(attempt-1))].
std::chrono::milliseconds backoff_delay(const retry_policy& policy, unsigned attempt,
                                        std::mt19937_64& rng);

// One request's retries: when it started failing, and what to do after each failed attempt.
class retry_budget {
 public:
  using clock = std::chrono::steady_clock;
  enum class verdict { retry, out_of_attempts, out_of_time };
  struct decision {
    verdict what = verdict::retry;
    clock::duration delay{};  // before the next attempt (never past the budget's end)
  };

  retry_budget(const retry_policy& policy, std::chrono::milliseconds budget)
      : policy_(policy), budget_(budget) {}

  // After failed attempt `attempt` (1-based) with a retryable error, at `now`.
  decision after_failure(unsigned attempt, clock::time_point now, std::mt19937_64& rng);
  // When the first failure happened (nothing before it).
  std::optional<clock::time_point> failing_since() const { return since_; }
  // Counts the budget from `t` if that is earlier (the start of an outage in progress).
  void count_from(clock::time_point t) {
    if (!since_ || t < *since_) since_ = t;
  }
  // What is left of the budget at `now` (clock::duration::max() before any failure): an
  // attempt's connect and first-byte timeouts are cut to it, so a server that stops answering
  // without refusing does not stretch the wait past the budget.
  clock::duration remaining(clock::time_point now) const;

 private:
  retry_policy policy_;
  std::chrono::milliseconds budget_;
  std::optional<clock::time_point> since_;
};

}  // namespace valkyrie::s3
