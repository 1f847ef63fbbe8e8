// When the disk store steps aside (disk_store's design comment, "Faults"): I/O errors and slow
// operations counted in a streak, completions watched so that a disk that stops
// answering is found before they complete, and the retry after retry_after. All under mu_.
#include <chrono>

#include "core/log.hpp"
#include "tier/disk_store.hpp"
#include "tier/tier_metrics.hpp"

namespace valkyrie::tier {

bool disk_store::usable_locked() {
  const auto now = std::chrono::steady_clock::now();
  if (hung_locked(now)) return false;
  if (disabled_until_ == std::chrono::steady_clock::time_point{}) return true;
  if (now < disabled_until_) return false;
  disabled_until_ = {};
  consecutive_errors_ = 0;
  stats_.disabled = false;
  log::event("tier", spdlog::level::info,
             "disk cache in use again after stepping aside (I/O errors, slow or hung operations)",
             {{"dir", opts_.dir}});
  return true;
}

std::uint64_t disk_store::begin_io_locked(std::uint64_t bytes) {
  // (an idle disk owes nothing: the wait for a completion starts with the first operation)
  if (in_flight_ops_++ == 0) last_progress_ = std::chrono::steady_clock::now();
  return in_flight_bytes_ += bytes;
}

void disk_store::end_io_locked(std::uint64_t bytes) {
  --in_flight_ops_;
  in_flight_bytes_ -= bytes;
  last_progress_ = std::chrono::steady_clock::now();
}

std::chrono::steady_clock::duration disk_store::slow_limit(std::uint64_t queued) const {
  // slow_after per 8 MiB of what the operation queued behind (itself included): a disk that
  // moves less than 8 MiB in slow_after, however deep its queue.
  return opts_.slow_after * std::max<std::uint64_t>(1, (queued + (8 << 20) - 1) >> 23);
}

std::chrono::steady_clock::duration disk_store::stalled_for() const {
  std::lock_guard lock(mu_);
  if (in_flight_ops_ == 0) return {};
  return std::chrono::steady_clock::now() - last_progress_;
}

bool disk_store::hung_locked(std::chrono::steady_clock::time_point now) {
  // Operations in flight and none completed for hung_limit_: the disk has stopped answering.
  // (A deep queue on a slow disk still completes operations; a single operation stuck while
  // others complete holds only its own reader.)
  if (in_flight_ops_ == 0 || now - last_progress_ <= hung_limit_) return false;
  if (disabled_until_ == std::chrono::steady_clock::time_point{}) {  // (a new episode)
    // Off for at least retry_after, and for as long as nothing completes.
    disabled_until_ = now + opts_.retry_after;
    stats_.disabled = true;
    ++stats_.hung;
    detail::tier_metrics::get().hung.add();
    log::event("tier", spdlog::level::warn,
               "disk cache stepped aside: an operation has not completed (the disk is not "
               "answering); reads go to S3",
               {{"dir", opts_.dir},
                {"in_flight", in_flight_ops_},
                {"seconds_without_completion",
                 std::chrono::duration<double>(now - last_progress_).count()},
                {"limit_seconds", std::chrono::duration<double>(hung_limit_).count()},
                {"retry_in_seconds", std::chrono::duration<double>(opts_.retry_after).count()}});
  }
  return true;
}

void disk_store::note_error_locked(std::error_code ec, const char* what) {
  auto& m = detail::tier_metrics::get();
  m.errors.add();
  log::limited("tier", spdlog::level::warn, "disk_io", "disk cache I/O error: reads go to S3",
               {{"dir", opts_.dir}, {"op", what}, {"error", ec.message()}}, 1,
               std::chrono::seconds(60));
  ++stats_.errors;
  count_fault_locked();
}

void disk_store::note_io_locked(std::error_code ec, std::chrono::steady_clock::duration took,
                                std::uint64_t queued, const char* what) {
  if (ec) return note_error_locked(ec, what);
  const auto limit = slow_limit(queued);
  if (took <= limit) {
    consecutive_errors_ = 0;
    return;
  }
  detail::tier_metrics::get().slow.add();
  ++stats_.slow;
  log::limited("tier", spdlog::level::warn, "disk_slow",
               "disk cache operation slower than its limit: the disk is slow",
               {{"dir", opts_.dir},
                {"op", what},
                {"seconds", std::chrono::duration<double>(took).count()},
                {"queued_bytes", queued},
                {"limit_seconds", std::chrono::duration<double>(limit).count()}},
               1, std::chrono::seconds(60));
  count_fault_locked();
}

void disk_store::count_fault_locked() {
  if (++consecutive_errors_ >= opts_.max_consecutive_errors &&
      disabled_until_ == std::chrono::steady_clock::time_point{}) {
    disabled_until_ = std::chrono::steady_clock::now() + opts_.retry_after;
    stats_.disabled = true;
    log::event("tier", spdlog::level::warn,
               "disk cache stepped aside after repeated I/O errors or slow operations",
               {{"dir", opts_.dir},
                {"in_a_row", consecutive_errors_},
                {"errors", stats_.errors},
                {"slow", stats_.slow},
                {"retry_in_seconds", std::chrono::duration<double>(opts_.retry_after).count()}});
  }
}

}  // namespace valkyrie::tier
