#pragma once
// memory_backer: backs reserved memory (a huge_region's ranges) with pages from a thread of its
// own, so that the reactors' first writes into it (socket receives into the chunk cache) find
// pages already there instead of taking a page fault each.
//
// Why: a profile of 8 readers of 110 KiB objects put ~57% of the daemon's CPU in the kernel
// zeroing fresh huge pages under those faults, on the reactor threads, on the read path. The
// pages are the same ones either way; backing them ahead moves the work off the reactors and
// into the time before data flows (a training job starts its loaders long after the mount).
// Owns: one std::thread, until done or destroyed. Threading: the thread only faults pages in,
// never changing a byte, so the owner may write the ranges meanwhile; the destructor stops the
// thread after its current step and joins it.
// How: an atomic add of 0 to one byte of each page. Not MADV_POPULATE_WRITE: that holds the
// address space's lock for reading while it zeroes a huge page, so a thread of low priority,
// preempted there, held up every mmap of the process (malloc's), and the reactors behind them:
// 8 small-object readers fell to ~2,000 files/s, from ~2,850-4,150 backing nothing. A plain page
// fault takes only the lock of the mapping it touches (per-VMA locks, Linux >= 6.4).
// Order: the ranges are taken in turn, one step of each, so that a cache whose shards each fill
// from their own start finds the first pages of every shard backed first.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <thread>
#include <vector>

#include "core/metrics.hpp"

namespace valkyrie {

class memory_backer {
 public:
  // Starts backing `ranges` (page-aligned, inside one mapping that outlives this object),
  // `step` bytes of a range at a time, at scheduling niceness `nice` (0..19). `progress` (may be
  // null) counts the bytes backed, and loses them again when this object goes.
  memory_backer(std::vector<std::span<char>> ranges, std::size_t step, int nice,
                metrics::gauge* progress = nullptr);
  ~memory_backer();
  memory_backer(const memory_backer&) = delete;
  memory_backer& operator=(const memory_backer&) = delete;

  // Bytes backed so far, of total_bytes().
  std::uint64_t backed_bytes() const { return backed_.load(std::memory_order_relaxed); }
  std::uint64_t total_bytes() const { return total_; }
  // True once the thread has ended: everything backed, or stopped.
  bool finished() const { return finished_.load(std::memory_order_acquire); }

 private:
  void run();

  std::vector<std::span<char>> ranges_;
  std::size_t step_;
  int nice_;
  metrics::gauge* progress_;
  std::uint64_t total_ = 0;
  std::atomic<std::uint64_t> backed_{0};
  std::atomic<bool> stop_{false};
  std::atomic<bool> finished_{false};
  std::thread thread_;  // last: started once the fields above are set
};

}  // namespace valkyrie
