#include "prefetch/link_estimator.hpp"

#include <algorithm>
#include <cmath>

#include "core/metrics.hpp"

namespace valkyrie::prefetch {
namespace {
constexpr double smoothing = 0.1;    // weight of a new sample in the moving averages
constexpr double peak_decay = 0.98;  // per window: a peak from a minute ago counts ~1/3

// The figures of the last estimate that closed a window, for /metrics (the process's mount).
std::atomic<double> published_first_byte{0}, published_connection_rate{0}, published_link_rate{0};

void publish(const link_estimator& link) {
  static const bool registered = [] {
    auto& r = metrics::registry::global();
    r.computed_gauge("valkyrie_link_first_byte_seconds",
                     "Measured S3 first-byte latency (moving average)",
                     [] { return published_first_byte.load(); });
    r.computed_gauge("valkyrie_link_connection_bytes_per_second",
                     "Measured transfer rate of one connection once data flows (moving average)",
                     [] { return published_connection_rate.load(); });
    r.computed_gauge(
        "valkyrie_link_bytes_per_second",
        "The link's rate that sizes the prefetch budget (recent peak, at least the first guess)",
        [] { return published_link_rate.load(); });
    return true;
  }();
  (void)registered;
  published_first_byte.store(link.first_byte_seconds());
  published_connection_rate.store(link.connection_rate());
  published_link_rate.store(link.link_rate());
}
}  // namespace

link_estimator::link_estimator(guess initial)
    : initial_(initial),
      first_byte_(initial.first_byte_s),
      connection_rate_(initial.connection_rate),
      link_rate_(initial.link_rate) {}

void link_estimator::observe(std::uint64_t bytes, clock::duration duration, clock::time_point now) {
  const double seconds = std::chrono::duration<double>(duration).count();
  if (seconds <= 0) return;
  bool updated = false;
  {
    std::lock_guard lock(mu_);
    double c = connection_rate_.load(std::memory_order_relaxed);
    double l = first_byte_.load(std::memory_order_relaxed);
    if (bytes <= small_request) {
      double sample = std::max(0.0, seconds - static_cast<double>(bytes) / c);
      first_byte_.store(l + smoothing * (sample - l), std::memory_order_relaxed);
    } else if (bytes >= large_request && seconds > l) {
      double sample = static_cast<double>(bytes) / (seconds - l);
      window_connection_peak_ = std::max(window_connection_peak_, sample);
      if (sample > c) connection_rate_.store(sample, std::memory_order_relaxed);
    }
    if (window_start_ == clock::time_point{}) window_start_ = now;
    window_bytes_ += bytes;
    if (now - window_start_ >= window) {
      double rate = static_cast<double>(window_bytes_) /
                    std::chrono::duration<double>(now - window_start_).count();
      peak_ = std::max(peak_ * peak_decay, rate);
      link_rate_.store(std::max(initial_.link_rate, peak_), std::memory_order_relaxed);
      if (window_connection_peak_ > 0)
        connection_rate_.store(
            std::max(connection_rate_.load(std::memory_order_relaxed) * peak_decay,
                     window_connection_peak_),
            std::memory_order_relaxed);
      window_connection_peak_ = 0;
      window_start_ = now;
      window_bytes_ = 0;
      updated = true;
    }
  }
  if (!updated) return;
  publish(*this);
  if (on_update_) on_update_(*this);
}

std::uint64_t link_estimator::bandwidth_delay(std::uint64_t request_bytes) const {
  double per_request =
      first_byte_seconds() + static_cast<double>(request_bytes) / connection_rate();
  return static_cast<std::uint64_t>(std::ceil(link_rate() * per_request));
}

std::uint64_t link_estimator::bytes_in_flight(std::uint64_t request_bytes) const {
  return static_cast<std::uint64_t>(
      std::ceil(1.25 * static_cast<double>(bandwidth_delay(request_bytes))));
}

unsigned link_estimator::requests_in_flight(std::uint64_t request_bytes) const {
  std::uint64_t r = bytes_in_flight(request_bytes) / std::max<std::uint64_t>(1, request_bytes);
  return static_cast<unsigned>(std::clamp<std::uint64_t>(r, 1, 1u << 20));
}

}  // namespace valkyrie::prefetch
