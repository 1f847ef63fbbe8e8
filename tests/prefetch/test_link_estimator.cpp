#include <doctest/doctest.h>

#include <chrono>

#include "prefetch/link_estimator.hpp"

using namespace valkyrie::prefetch;
using namespace std::chrono;

namespace {
constexpr double MiB = 1 << 20;

// Feeds GETs as a link of latency `l` seconds, `c` bytes/s per connection and `n` in flight
// would complete them, for `seconds` of simulated time.
void drive(link_estimator& link, double l, double c, unsigned n, std::uint64_t bytes, double seconds,
           steady_clock::time_point& now) {
  const double per_request = l + static_cast<double>(bytes) / c;
  const auto step = duration_cast<steady_clock::duration>(duration<double>(per_request / n));
  for (double t = 0; t < seconds; t += per_request / n) {
    now += step;
    link.observe(bytes, duration_cast<steady_clock::duration>(duration<double>(per_request)), now);
  }
}
}  // namespace

TEST_CASE("link estimator: latency from small GETs, connection rate from large ones, the link's peak rate") {
  link_estimator::guess g;
  g.link_rate = 100 * MiB;  // low first guesses: the measured figures must take over
  g.connection_rate = 16 * MiB;
  link_estimator link(g);
  auto now = steady_clock::now();
  drive(link, 0.050, 32 * MiB, 64, 64 * 1024, 3, now);      // small objects: 50 ms each
  drive(link, 0.050, 32 * MiB, 16, 8 << 20, 3, now);        // 8 MiB chunks at 32 MiB/s each
  drive(link, 0.050, 32 * MiB, 64, 64 * 1024, 3, now);
  CHECK(link.first_byte_seconds() == doctest::Approx(0.050).epsilon(0.1));
  CHECK(link.connection_rate() == doctest::Approx(32 * MiB).epsilon(0.1));
  // 16 x 8 MiB every 0.3 s: ~427 MiB/s delivered at the peak.
  CHECK(link.link_rate() > 300 * MiB);
  CHECK(link.link_rate() < 600 * MiB);
}

TEST_CASE("link estimator: the budget is rate x (latency + transfer), in bytes and in requests") {
  link_estimator link;  // 30 ms, 64 MiB/s, 1 GiB/s: the simulator's link model
  // 8 MiB chunks: 1.25 x 1 GiB/s x (0.030 + 0.125) s ~ 198 MiB, ~24 chunks.
  CHECK(link.bytes_in_flight(8 << 20) == doctest::Approx(1.25 * 1024 * MiB * (0.030 + 0.125)).epsilon(0.01));
  CHECK(link.requests_in_flight(8 << 20) == 24);
  // 110 KiB objects: the latency dominates, hundreds of requests.
  CHECK(link.requests_in_flight(110 * 1024) > 300);
  CHECK(link.requests_in_flight(1) >= 1);
}

TEST_CASE("link estimator: requests sharing the link do not lower the connection rate the budget uses") {
  link_estimator link;
  auto now = steady_clock::now();
  drive(link, 0.030, 64 * MiB, 8, 8 << 20, 3, now);   // few in flight: each at the full 64 MiB/s
  drive(link, 0.030, 16 * MiB, 64, 8 << 20, 5, now);  // 64 sharing the link: 16 MiB/s each
  CHECK(link.connection_rate() > 50 * MiB);
  // So the budget stays near the uncontended ~24 chunks, not 4 x that.
  CHECK(link.requests_in_flight(8 << 20) < 40);
}

TEST_CASE("link estimator: a slower link is learnt as its peak decays, never below the first guess") {
  link_estimator::guess g;
  g.link_rate = 50 * MiB;
  link_estimator link(g);
  auto now = steady_clock::now();
  drive(link, 0.030, 64 * MiB, 32, 8 << 20, 2, now);  // fast: ~1.6 GiB/s
  const double fast = link.link_rate();
  CHECK(fast > 1000 * MiB);
  drive(link, 0.030, 64 * MiB, 2, 8 << 20, 120, now);  // then slow: ~100 MiB/s for two minutes
  CHECK(link.link_rate() < fast / 4);
  CHECK(link.link_rate() >= 50 * MiB);
}

TEST_CASE("link estimator: updates are reported once per window") {
  link_estimator link;
  int updates = 0;
  link.on_update([&updates](const link_estimator&) { ++updates; });
  auto now = steady_clock::now();
  for (int i = 0; i < 300; ++i) {
    now += milliseconds(10);
    link.observe(1 << 20, milliseconds(40), now);
  }
  CHECK(updates >= 2);  // 3 s of samples, 1 s windows
  CHECK(updates <= 3);
}
