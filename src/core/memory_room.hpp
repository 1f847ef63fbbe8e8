#pragma once
// How much memory this process could still take without pushing others out: the kernel's
// MemAvailable, or less where a memory cgroup (v2 or v1) limits the process. A cgroup's page
// cache counts as room, as the kernel reclaims it before failing a charge.
// Used at start-up (--cache-backing start) to refuse a cache the machine cannot back, with a
// clear message, rather than let the OOM killer choose a victim; and to back in the background
// only a cache that leaves the node most of its memory.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace valkyrie {

struct memory_room {
  std::uint64_t bytes = 0;
  std::string bound_by;  // "MemAvailable" or "the memory cgroup's limit"
};

// nullopt when /proc/meminfo cannot be read.
std::optional<memory_room> available_memory();

// The parts, for tests: MemAvailable of a /proc/meminfo text; the room under a cgroup limit
// from its limit ("max" or bytes), usage and memory.stat texts (nullopt: no limit).
std::optional<std::uint64_t> meminfo_available(std::string_view meminfo);
std::optional<std::uint64_t> cgroup_room(std::string_view limit, std::string_view usage, std::string_view stat);

}  // namespace valkyrie
