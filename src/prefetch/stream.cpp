#include "prefetch/stream.hpp"

#include <algorithm>

namespace valkyrie::prefetch {

readahead stream::on_read(std::uint64_t offset, std::uint64_t bytes) {
  readahead out;
  if (bytes == 0 || offset >= size_) return out;
  const std::uint64_t cs = chunk_size_;
  const std::uint64_t end = std::min(size_, offset + bytes);
  std::uint64_t expected = next_offset_.load();
  const bool first = !started_.exchange(true);
  const bool near = offset <= expected + cs && offset + cs >= expected;
  // A run continues (near), or a new one starts here. Reads in the file's first chunk begin a
  // whole-file read at once, in whatever order the kernel's first requests arrive (its 4 MiB
  // read-ahead sends four at once: taking the one at 3 MiB, answered first, as random cost a
  // training loop a quarter of its compute time); elsewhere the run must reach min_run first.
  const std::uint64_t run_before = near && !first ? run_.load() : 0;
  run_.store(run_before + (end - offset));
  out.sequential = offset < cs || (near && (run_before >= min_run || window_.load() > 0));
  const unsigned first_window = offset != 0 ? 2u : bytes >= small_first_read ? 4u : 1u;
  out.window =
      out.sequential ? std::min(max_window_, std::max(first_window, window_.load() * 2)) : 0;
  window_.store(out.window);
  if (out.sequential) {  // (a late read of the stream does not move it back)
    while (end > expected && !next_offset_.compare_exchange_weak(expected, end)) {
    }
  } else {
    next_offset_.store(end);
  }
  if (out.window == 0) return out;
  const std::uint64_t total = (size_ + cs - 1) / cs, last = (end - 1) / cs;
  out.to = std::min<std::uint64_t>(total, last + 1 + out.window);
  out.from = std::max<std::uint64_t>(last + 1, prefetched_to_.load());
  std::uint64_t prev = prefetched_to_.load();
  while (out.to > prev && !prefetched_to_.compare_exchange_weak(prev, out.to)) {
  }
  return out;
}

}  // namespace valkyrie::prefetch
