#pragma once
// link_estimator: what the link to S3 is like, measured from the GETs that went over it, and the
// prefetch budget that follows from it.
//
// A GET of b bytes takes about L + b / c: L the first-byte latency, c one connection's transfer
// rate. Small GETs (<= small_request) measure L (a moving average); large ones (>= large_request)
// c, as the fastest rate seen lately: many requests sharing the link each see less, and sizing
// the budget from that would put still more in flight (a feedback loop measured at 0.66 x the
// link with 4 readers). The link's total rate R is the most bytes delivered per window (1 s)
// seen lately, never below the initial guess. Both peaks decay by 2% a window, so a slower link
// is learnt within a minute or so.
// To keep the link busy with requests of s bytes, R x (L + s / c) bytes must be in flight
// (Little's law); the budget adds a quarter for the jitter. For 8 MiB chunks at 30 ms, 64 MiB/s
// and 1 GiB/s that is ~24 chunks; for 110 KiB objects ~370 requests, so the request cap
// (--workers) binds instead.
// Threading: observe() from any reactor (a mutex, taken once per completed GET); the getters
// read atomics.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>

namespace valkyrie::prefetch {

class link_estimator {
 public:
  using clock = std::chrono::steady_clock;
  static constexpr std::uint64_t small_request = 256 * 1024;
  static constexpr std::uint64_t large_request = 1 << 20;
  static constexpr std::chrono::milliseconds window{1000};

  struct guess {
    double first_byte_s = 0.030;
    double connection_rate = 64.0 * (1 << 20);
    double link_rate = 1024.0 * (1 << 20);
  };
  link_estimator() : link_estimator(guess{}) {}
  explicit link_estimator(guess initial);

  // One GET of `bytes` that took `duration`, finished at `now`.
  void observe(std::uint64_t bytes, clock::duration duration, clock::time_point now = clock::now());
  // Called (outside the lock) after a window closed with new figures: at most every `window`.
  void on_update(std::function<void(const link_estimator&)> f) { on_update_ = std::move(f); }

  double first_byte_seconds() const { return first_byte_.load(std::memory_order_relaxed); }
  double connection_rate() const { return connection_rate_.load(std::memory_order_relaxed); }
  double link_rate() const { return link_rate_.load(std::memory_order_relaxed); }
  // The link's bandwidth-delay product for requests of `request_bytes`: R x (L + s / c).
  std::uint64_t bandwidth_delay(std::uint64_t request_bytes) const;
  // Bytes that must be in flight to keep the link busy with requests of `request_bytes`: the
  // bandwidth-delay product and a quarter more for jitter.
  std::uint64_t bytes_in_flight(std::uint64_t request_bytes) const;
  // The same in requests (at least 1).
  unsigned requests_in_flight(std::uint64_t request_bytes) const;

 private:
  const guess initial_;
  std::atomic<double> first_byte_, connection_rate_, link_rate_;
  std::mutex mu_;
  clock::time_point window_start_{};
  std::uint64_t window_bytes_ = 0;
  double peak_ = 0;
  double window_connection_peak_ = 0;  // the fastest large GET of the current window
  std::function<void(const link_estimator&)> on_update_;
};

}  // namespace valkyrie::prefetch
