#include "s3/outage.hpp"

#include <algorithm>
#include <string>

#include "core/log.hpp"
#include "s3/s3_metrics.hpp"

namespace valkyrie::s3 {
namespace {
// S3 flapping (throttled in bursts, say) would start and end outages every few seconds: their
// lines are limited to a few a minute (the metrics count them all).
constexpr unsigned log_burst = 3;
constexpr std::chrono::seconds log_period{60};

double seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}
}  // namespace

outage_monitor::outage_monitor(std::chrono::milliseconds threshold) : threshold_(threshold) {
  s3_metrics::get();
}

bool outage_monitor::begin(clock::time_point since) {
  if (outage_.load(std::memory_order_relaxed)) return false;
  outage_.store(true, std::memory_order_relaxed);
  started_ = std::max(since, recovered_);  // (a request failing since before the last recovery)
  gave_up_ = 0;
  ++outages_;
  auto& m = s3_metrics::get();
  m.outage->add();
  m.outages->add();
  return true;
}

std::optional<outage_monitor::clock::time_point> outage_monitor::began() const {
  if (!outage_.load(std::memory_order_relaxed)) return std::nullopt;
  std::lock_guard lock(mu_);
  if (!outage_.load(std::memory_order_relaxed)) return std::nullopt;
  return started_;
}

std::uint64_t outage_monitor::outages() const {
  std::lock_guard lock(mu_);
  return outages_;
}

void outage_monitor::failing(clock::time_point since, clock::time_point now, std::error_code ec,
                             std::string_view operation, std::chrono::milliseconds budget) {
  if (outage_.load(std::memory_order_relaxed) || now - since < threshold_) return;
  {
    std::lock_guard lock(mu_);
    // Failures from before the last outage ended belong to that one.
    if (now - std::max(since, recovered_) < threshold_ || !begin(since)) return;
  }
  log::limited(
      "s3", spdlog::level::warn, "outage-begins",
      "S3 is failing: requests are retried until it answers or their retry budget is spent",
      {{"operation", operation},
       {"error", ec.message()},
       {"failing_for_seconds", seconds(now - since)},
       {"retry_budget_seconds", seconds(budget)}},
      log_burst, log_period);
}

void outage_monitor::gave_up(clock::time_point since, clock::time_point now, std::error_code last,
                             std::string_view operation, std::string_view path) {
  s3_metrics::get().requests_gave_up->add();
  {
    std::lock_guard lock(mu_);
    begin(since);  // (a budget shorter than the threshold: the outage starts here)
    if (gave_up_++ != 0) return;
  }
  log::limited("s3", spdlog::level::warn, "outage-gave-up",
               "S3 still failing after the retry budget: reads and lookups that need it fail with "
               "ETIMEDOUT until it answers",
               {{"operation", operation},
                {"path", path},
                {"last_error", last.message()},
                {"failing_for_seconds", seconds(now - since)}},
               log_burst, log_period);
}

void outage_monitor::answered(clock::time_point now) {
  if (!outage_.load(std::memory_order_relaxed)) return;
  clock::time_point began;
  std::uint64_t gave_up = 0;
  {
    std::lock_guard lock(mu_);
    if (!outage_.load(std::memory_order_relaxed)) return;
    outage_.store(false, std::memory_order_relaxed);
    recovered_ = now;
    began = started_;
    gave_up = gave_up_;
  }
  s3_metrics::get().outage->sub();
  log::limited("s3", spdlog::level::info, "outage-ends", "S3 answers again",
               {{"outage_seconds", seconds(now - began)}, {"requests_gave_up", gave_up}}, log_burst,
               log_period);
}

}  // namespace valkyrie::s3
