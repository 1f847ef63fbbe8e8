#pragma once
// Retry policy: a bounded number of attempts with exponential backoff and full jitter (AWS's
// recommendation against synchronized retry storms). Retried: throttling, 5xx, resets,
// truncated bodies, timeouts, failed connects. Never retried: 403, 404, 412, 416 and other
// answers that would come back the same.
#include <chrono>
#include <cstdint>
#include <random>
#include <system_error>

namespace valkyrie::s3 {

struct retry_policy {
  unsigned max_attempts = 6;
  std::chrono::milliseconds base_delay{50};
  std::chrono::milliseconds max_delay{5000};
};

bool is_retryable(std::error_code ec);

// Full jitter: uniform in [0, min(max_delay, base_delay * 2^(attempt-1))].
std::chrono::milliseconds backoff_delay(const retry_policy& policy, unsigned attempt,
                                        std::mt19937_64& rng);

}  // namespace valkyrie::s3
