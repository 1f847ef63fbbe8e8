#pragma once
// metrics: counters, gauges and histograms, rendered in the Prometheus text format.
//
// Owns: the process-wide registry of metric families (name, help, type, labelled children).
// Threading: updating a metric costs no lock and no shared cache line: every metric keeps one
// cell per shard (cache-line aligned), a thread updates the cell of its own shard (threads are
// numbered on first use), and a scrape sums the cells. Registration takes the registry's mutex;
// do it once (at start-up or in a function-local static) and keep the reference.
// Invariants: a registered metric lives as long as the process, so references never dangle;
// counters never go down (the sum of monotonic cells is monotonic).
#include <array>
#include <chrono>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace valkyrie::metrics {

inline constexpr unsigned cell_count = 16;
// This thread's cell (threads are numbered round-robin on first use).
unsigned cell_index() noexcept;

using labels = std::vector<std::pair<std::string, std::string>>;

class counter {
 public:
  void add(std::uint64_t n = 1) noexcept { cells_[cell_index()].v.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t value() const noexcept;

 private:
  struct alignas(64) cell {
    std::atomic<std::uint64_t> v{0};
  };
  std::array<cell, cell_count> cells_;
};

// A value that goes up and down (in flight, open connections, bytes held). Increments and
// decrements may come from different threads; the sum is what counts.
class gauge {
 public:
  void add(std::int64_t n = 1) noexcept { cells_[cell_index()].v.fetch_add(n, std::memory_order_relaxed); }
  void sub(std::int64_t n = 1) noexcept { add(-n); }
  std::int64_t value() const noexcept;

 private:
  struct alignas(64) cell {
    std::atomic<std::int64_t> v{0};
  };
  std::array<cell, cell_count> cells_;
};

// Observations are integers in a base unit (nanoseconds, bytes); `scale` converts them to the
// exposed unit (1e-9 for seconds). Bucket bounds are given in the exposed unit.
class histogram {
 public:
  static constexpr std::size_t max_buckets = 24;
  histogram(std::vector<double> bounds, double scale);
  void observe(std::uint64_t raw) noexcept;
  void observe_seconds(double seconds) noexcept { observe(static_cast<std::uint64_t>(seconds / scale_)); }

  struct snapshot {
    std::vector<double> bounds;
    std::vector<std::uint64_t> cumulative;  // per bound, then +Inf
    double sum = 0;
    std::uint64_t count = 0;
  };
  snapshot read() const;

 private:
  struct alignas(64) cell {
    std::array<std::atomic<std::uint64_t>, max_buckets + 1> buckets{};
    std::atomic<std::uint64_t> sum{0};
  };
  std::vector<double> bounds_;
  std::vector<std::uint64_t> raw_bounds_;
  double scale_;
  std::unique_ptr<cell[]> cells_;
};

// Bucket layouts used across layers.
std::vector<double> latency_buckets();  // 100 us .. 60 s, seconds
std::vector<double> size_buckets();     // 4 KiB .. 256 MiB, bytes

// Records the time from construction to destruction (or to stop()) into a histogram.
class timer {
 public:
  explicit timer(histogram& h) : h_(&h), start_(std::chrono::steady_clock::now()) {}
  ~timer() { stop(); }
  timer(const timer&) = delete;
  timer& operator=(const timer&) = delete;
  // Returns the elapsed seconds (0 after the first stop).
  double stop() noexcept;

 private:
  histogram* h_;
  std::chrono::steady_clock::time_point start_;
};

class registry {
 public:
  static registry& global();

  // The metric called `name` with these labels, created on first use. Same name, different
  // type: a bug (throws std::logic_error).
  // A counter's value is exposed times `scale` (1e-9 for a "_seconds_total" counted in ns).
  counter& get_counter(const std::string& name, const std::string& help, const labels& l = {}, double scale = 1);
  gauge& get_gauge(const std::string& name, const std::string& help, const labels& l = {});
  histogram& get_histogram(const std::string& name, const std::string& help, std::vector<double> bounds,
                           double scale, const labels& l = {});
  // A gauge computed at scrape time (the function must stay valid for the process's life).
  void computed_gauge(const std::string& name, const std::string& help, std::function<double()> f);

  // The text exposition format, version 0.0.4.
  std::string render() const;

 private:
  enum class type { counter, gauge, histogram, computed };
  struct child {
    labels l;
    std::unique_ptr<counter> c;
    std::unique_ptr<gauge> g;
    std::unique_ptr<histogram> h;
    std::function<double()> f;
    double scale = 1;
  };
  struct family {
    std::string help;
    type t;
    std::vector<std::unique_ptr<child>> children;
  };
  child& find_or_add(const std::string& name, const std::string& help, type t, const labels& l, bool* added);

  mutable std::mutex mu_;
  std::map<std::string, family> families_;
};

}  // namespace valkyrie::metrics
