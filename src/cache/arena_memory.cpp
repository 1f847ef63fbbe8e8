// The arena's memory (a huge_region, core/huge_region.hpp): huge pages, prefault at start, and
// backing in the background.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <thread>
#include <vector>

#include "cache/cache_metrics.hpp"
#include "cache/chunk_cache.hpp"

namespace valkyrie::cache {

constexpr std::uint64_t huge_page = huge_region::huge_page;

bool chunk_cache::use_huge_pages() {
  return arena_memory_.advise_huge();
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

void chunk_cache::back_in_background(int nice) {
  if (backer_) return;
  std::vector<std::span<char>> ranges;
  for (auto& s : shards_)
    ranges.emplace_back(arena_ + std::uint64_t{s->memory.first_page()} * page_allocator::page_size,
                        std::uint64_t{s->memory.page_count()} * page_allocator::page_size);
  backer_ = std::make_unique<memory_backer>(std::move(ranges), huge_page, nice,
                                            &detail::cache_metrics::get().backed);
}

}  // namespace valkyrie::cache
