#include "s3/retry.hpp"

#include <algorithm>

#include "core/errors.hpp"

namespace valkyrie::s3 {

bool is_retryable(std::error_code ec) {
  if (ec.category() != valkyrie_category()) return false;
  switch (static_cast<errc>(ec.value())) {
    case errc::slow_down:
    case errc::server_error:
    case errc::connect_failed:
    case errc::timeout:
    case errc::connection_reset:
    case errc::truncated_body:
    case errc::protocol_error:
      return true;
    default:
      return false;
  }
}

std::chrono::milliseconds backoff_delay(const retry_policy& policy, unsigned attempt,
                                        std::mt19937_64& rng) {
  unsigned shift = std::min(attempt == 0 ? 0u : attempt - 1, 20u);
  std::int64_t cap = std::min<std::int64_t>(policy.max_delay.count(),
                                            policy.base_delay.count() * (std::int64_t{1} << shift));
  std::uniform_int_distribution<std::int64_t> dist(0, std::max<std::int64_t>(cap, 0));
  return std::chrono::milliseconds(dist(rng));
}

retry_budget::decision retry_budget::after_failure(unsigned attempt, clock::time_point now,
                                                   std::mt19937_64& rng) {
  if (!since_) since_ = now;
  if (policy_.max_attempts != 0 && attempt >= policy_.max_attempts)
    return {verdict::out_of_attempts, {}};
  const clock::time_point end = *since_ + budget_;
  if (now >= end) return {verdict::out_of_time, {}};
  clock::duration delay = backoff_delay(policy_, attempt, rng);
  return {verdict::retry, std::min(delay, end - now)};
}

retry_budget::clock::duration retry_budget::remaining(clock::time_point now) const {
  if (!since_) return clock::duration::max();
  const clock::time_point end = *since_ + budget_;
  return now >= end ? clock::duration::zero() : end - now;
}

}  // namespace valkyrie::s3
