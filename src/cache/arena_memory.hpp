#pragma once
// The chunk cache's arena as memory: reserved without committing it, aligned to a transparent
// huge page, released at the end. (chunk_cache::use_huge_pages and prefault, which work on it,
// are defined beside these, in arena_memory.cpp.) Start-up and shutdown only.
#include <cstdint>

namespace valkyrie::cache::detail {

// The arena's alignment: an x86-64 / arm64 (4 KiB granule) transparent huge page.
inline constexpr std::uint64_t huge_page = 2 << 20;

// `bytes` of address space (MAP_NORESERVE: backed only as pages are first written), starting on
// a huge_page boundary. Throws std::runtime_error when it cannot be reserved.
char* reserve_arena(std::uint64_t bytes);
void release_arena(char* arena, std::uint64_t bytes);

}  // namespace valkyrie::cache::detail
