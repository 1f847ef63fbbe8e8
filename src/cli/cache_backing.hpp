#pragma once
// --cache-backing (docs/usage.md): when the chunk cache's memory gets its pages. Planned at
// start-up against the memory available: `start` backs all of it before the mount answers,
// `background` from a thread of its own once nothing can fail the start (main.cpp), `lazy` as
// chunks are first written. Start-up only, on the main thread.
#include <cstdint>
#include <string>

#include "cache/chunk_cache.hpp"

namespace valkyrie::cli {

struct cache_backing_plan {
  std::string mode;     // "background", "start" or "lazy"
  std::string skipped;  // why a background backing is not done ("" when it is, or not asked)
  double start_seconds = -1;  // `start`: how long backing it took, once done
  bool in_background() const { return mode == "background" && skipped.empty(); }
  // The `mounted` line's cache_backing field. (Said there, not in a line of its own: a line
  // logged before the mount is ready reaches a caller that captures our output.)
  std::string describe() const;
};

// The plan for `mode` and a cache of `bytes` (`size`: as the user wrote it). A `start` the memory
// available cannot hold sets `refusal` (the message for fatal()).
cache_backing_plan plan_cache_backing(std::string mode, std::uint64_t bytes,
                                      const std::string& size, std::string& refusal);

// `start`: backs all of `cache` now, asking systemd for the time it may take, and records the
// time in `plan`. "" or why not.
std::string back_cache_now(cache_backing_plan& plan, cache::chunk_cache& cache, std::uint64_t bytes,
                           const std::string& size);

}  // namespace valkyrie::cli
