// The retry budget's arithmetic and the outage monitor, on a made-up clock: what is retried,
// for how long, how long each wait is, and when an outage begins and ends.
#include <doctest/doctest.h>

#include "core/errors.hpp"
#include "s3/outage.hpp"
#include "s3/retry.hpp"

using namespace valkyrie;
using namespace valkyrie::s3;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

TEST_CASE("retryable: outages and throttling; never answers that would come back the same") {
  for (auto e : {errc::slow_down, errc::server_error, errc::connect_failed, errc::timeout,
                 errc::connection_reset, errc::truncated_body, errc::protocol_error})
    CHECK(is_retryable(make_error_code(e)));
  for (auto e :
       {errc::not_found, errc::no_such_bucket, errc::access_denied, errc::signature_mismatch,
        errc::precondition_failed, errc::invalid_range, errc::bad_request, errc::wrong_region,
        errc::tls_error, errc::retries_exhausted, errc::cancelled})
    CHECK_FALSE(is_retryable(make_error_code(e)));
  CHECK_FALSE(is_retryable(std::make_error_code(std::errc::io_error)));
}

TEST_CASE("the budget runs from the first failure; waits never pass its end") {
  retry_policy p;  // the daemon's defaults: no attempt bound, 50 ms doubling to 2 s
  CHECK(p.max_attempts == 0);
  CHECK(p.budget == 5min);
  CHECK(p.metadata_budget == 5min);
  retry_budget b(p, 10s);
  std::mt19937_64 rng(3);
  const auto t0 = clock_type::time_point(1000h);
  CHECK(b.remaining(t0) == clock_type::duration::max());  // not failing yet: no cut
  CHECK_FALSE(b.failing_since());
  auto d = b.after_failure(1, t0, rng);
  CHECK(d.what == retry_budget::verdict::retry);
  CHECK(d.delay <= 50ms);
  REQUIRE(b.failing_since());
  CHECK(*b.failing_since() == t0);
  CHECK(b.remaining(t0 + 4s) == 6s);
  // Many attempts later the backoff is capped at max_delay, and always within what is left.
  clock_type::duration longest{};
  for (unsigned a = 2; a < 200; ++a) {
    auto now = t0 + std::chrono::milliseconds(a * 45);  // up to 8.955 s
    d = b.after_failure(a, now, rng);
    REQUIRE(d.what == retry_budget::verdict::retry);
    CHECK(d.delay <= p.max_delay);
    CHECK(now + d.delay <= t0 + 10s);
    longest = std::max(longest, d.delay);
  }
  CHECK(longest > 1s);  // the cap is reached, not stuck at the base
  d = b.after_failure(200, t0 + 9999ms, rng);
  CHECK(d.what == retry_budget::verdict::retry);
  CHECK(d.delay <= 1ms);  // one last attempt at the end, not a full backoff past it
  CHECK(b.after_failure(201, t0 + 10s, rng).what == retry_budget::verdict::out_of_time);
  CHECK(b.remaining(t0 + 11s) == clock_type::duration::zero());
}

TEST_CASE("a request failing during an outage counts its budget from the outage's start") {
  retry_budget b(retry_policy{}, 10s);
  std::mt19937_64 rng(1);
  const auto t0 = clock_type::time_point(1h);
  b.count_from(t0);
  CHECK(b.after_failure(1, t0 + 12s, rng).what ==
        retry_budget::verdict::out_of_time);  // one attempt, then no more
  retry_budget c(retry_policy{}, 10s);
  CHECK(c.after_failure(1, t0 + 5s, rng).what == retry_budget::verdict::retry);
  c.count_from(t0 + 8s);  // later than its own first failure: changes nothing
  CHECK(*c.failing_since() == t0 + 5s);
}

TEST_CASE("an attempt bound fails fast whatever the budget (the mount-time probe)") {
  retry_policy p;
  p.max_attempts = 2;
  retry_budget b(p, 5min);
  std::mt19937_64 rng(1);
  const auto t0 = clock_type::time_point(1h);
  CHECK(b.after_failure(1, t0, rng).what == retry_budget::verdict::retry);
  CHECK(b.after_failure(2, t0 + 10ms, rng).what == retry_budget::verdict::out_of_attempts);
}

TEST_CASE("a zero budget: the first failure is final") {
  retry_budget b(retry_policy{}, 0ms);
  std::mt19937_64 rng(1);
  CHECK(b.after_failure(1, clock_type::time_point(1h), rng).what ==
        retry_budget::verdict::out_of_time);
}

TEST_CASE(
    "an outage begins after a second of failing, once for all requests, and ends at the first "
    "answer") {
  outage_monitor m(1s);
  const auto t0 = clock_type::time_point(2000h);
  const auto err = make_error_code(errc::connect_failed);
  m.failing(t0, t0 + 100ms, err, "GetObject", 5min);  // a blip: no outage
  CHECK_FALSE(m.in_outage());
  m.answered(t0 + 200ms);
  CHECK(m.outages() == 0);
  for (int request = 0; request < 50; ++request)  // many requests, many attempts: one outage
    m.failing(t0 + 1s, t0 + 2s + std::chrono::milliseconds(request), err, "GetObject", 5min);
  CHECK(m.in_outage());
  CHECK(m.outages() == 1);
  REQUIRE(m.began());
  CHECK(*m.began() == t0 + 1s);
  m.gave_up(t0 + 1s, t0 + 6min, err, "GetObject", "/b/k");
  m.gave_up(t0 + 1s, t0 + 6min, err, "GetObject", "/b/k");
  CHECK(m.outages() == 1);
  m.answered(t0 + 7min);
  CHECK_FALSE(m.in_outage());
  CHECK_FALSE(m.began());
  // A request that has been failing since before the recovery must fail a second past it to
  // start another outage.
  m.failing(t0 + 1s, t0 + 7min + 500ms, err, "GetObject", 5min);
  CHECK_FALSE(m.in_outage());
  m.failing(t0 + 1s, t0 + 7min + 1s, err, "GetObject", 5min);
  CHECK(m.in_outage());
  CHECK(m.outages() == 2);
  CHECK(*m.began() ==
        t0 + 7min);  // from the recovery, not the old failure: no budget already spent
  m.answered(t0 + 8min);
  // A budget shorter than the threshold: giving up starts (and counts) the outage.
  m.gave_up(t0 + 9min, t0 + 9min + 100ms, err, "HeadObject", "/b/k");
  CHECK(m.in_outage());
  CHECK(m.outages() == 3);
  CHECK(*m.began() == t0 + 9min);
  m.answered(t0 + 10min);
  // A request in flight since before that recovery gives up after it: the new outage starts at
  // the recovery.
  m.gave_up(t0 + 9min, t0 + 10min + 5s, err, "GetObject", "/b/k");
  CHECK(*m.began() == t0 + 10min);
}
