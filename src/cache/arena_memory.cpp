// The arena's memory: its reservation (aligned for huge pages), huge pages, prefault.
#include "cache/arena_memory.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <stdexcept>
#include <thread>
#include <vector>

#include "cache/chunk_cache.hpp"

namespace valkyrie::cache {

namespace detail {

char* reserve_arena(std::uint64_t bytes) {
  // Reserved one huge page longer, the ends trimmed, so that huge pages cover all of it.
  const std::uint64_t reserve = bytes + huge_page;
  void* p = ::mmap(nullptr, reserve, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) throw std::runtime_error("cannot reserve the cache arena");
  const auto base = reinterpret_cast<std::uintptr_t>(p);
  const auto aligned = (base + huge_page - 1) / huge_page * huge_page;
  if (aligned > base) ::munmap(p, aligned - base);
  if (const auto end = aligned + bytes; end < base + reserve)
    ::munmap(reinterpret_cast<void*>(end), base + reserve - end);
  return reinterpret_cast<char*>(aligned);
}

void release_arena(char* arena, std::uint64_t bytes) {
  ::munmap(arena, bytes);
}

}  // namespace detail

using detail::huge_page;

bool chunk_cache::use_huge_pages() {
  return ::madvise(arena_, arena_bytes_, MADV_HUGEPAGE) == 0;
}

std::error_code chunk_cache::prefault(unsigned threads) {
  const std::uint64_t page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  threads = std::clamp(threads, 1u, 64u);
  // (ranges in whole huge pages: none split between two threads)
  const std::uint64_t per = (arena_bytes_ / threads + huge_page - 1) / huge_page * huge_page;
  std::atomic<int> failure{0};
  std::vector<std::thread> workers;
  for (std::uint64_t from = 0; from < arena_bytes_; from += per) {
    workers.emplace_back([this, from, n = std::min(per, arena_bytes_ - from), page, &failure] {
      // One call per range: the kernel backs every page without a fault each (Linux 5.14).
      if (::madvise(arena_ + from, n, MADV_POPULATE_WRITE) == 0) return;
      if (errno != EINVAL) {
        failure = errno;
        return;
      }
      // Older kernels: the first write to each page backs it.
      for (std::uint64_t at = 0; at < n; at += page)
        static_cast<volatile char*>(arena_ + from)[at] = 0;
    });
  }
  for (auto& w : workers) w.join();
  return std::error_code(failure.load(), std::generic_category());
}

}  // namespace valkyrie::cache
