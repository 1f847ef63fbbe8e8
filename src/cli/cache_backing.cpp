#include "cli/cache_backing.hpp"

#include <systemd/sd-daemon.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

#include "core/memory_room.hpp"
#include "core/units.hpp"

namespace valkyrie::cli {

cache_backing_plan plan_cache_backing(std::string mode, std::uint64_t bytes,
                                      const std::string& size, std::string& refusal) {
  cache_backing_plan plan{std::move(mode), {}};
  if (plan.mode == "lazy") return plan;
  // A cache backed up front must fit in the memory there is: refused here, with the figure,
  // rather than left to the OOM killer (which might pick the training job). In the background
  // it is backed only where it takes at most half of that room: a cache near the size of the
  // node's memory, backed before any data needs it, would push out the page cache and the job's
  // own memory; it is backed as it fills instead.
  auto room = available_memory();
  if (!room) return plan;
  const std::string available =
      "the memory available (" + room->bound_by + ": " + format_size(room->bytes) + ")";
  if (plan.mode == "start" && bytes > room->bytes)
    refusal = "--cache-backing start: --cache-size " + size + " is more than " + available;
  else if (bytes > room->bytes / 2)
    plan.skipped = "--cache-size " + size + " is more than half " + available;
  return plan;
}

std::string cache_backing_plan::describe() const {
  if (mode == "background" && !skipped.empty()) return "lazy: " + skipped;
  if (mode == "start" && start_seconds >= 0) {
    char took[32];
    std::snprintf(took, sizeof took, "%.1f", start_seconds);
    return "start: backed in " + std::string(took) + " s";
  }
  return mode;
}

std::string back_cache_now(cache_backing_plan& plan, cache::chunk_cache& cache, std::uint64_t bytes,
                           const std::string& size) {
  // Under systemd (Type=notify) a big cache may take longer to back than the unit's start
  // timeout allows: ask for a second per GiB (several times what it takes here) and 30 s.
  sd_notifyf(0, "STATUS=backing --cache-size %s with memory\nEXTEND_TIMEOUT_USEC=%llu",
             size.c_str(), static_cast<unsigned long long>((bytes >> 30) + 30) * 1000000ull);
  auto started = std::chrono::steady_clock::now();
  if (auto ec = cache.prefault(std::max(1u, std::thread::hardware_concurrency())))
    return "cannot back --cache-size " + size +
           " with memory (--cache-backing start): " + ec.message();
  plan.start_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return {};
}

}  // namespace valkyrie::cli
