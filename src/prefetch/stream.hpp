#pragma once
// stream: one open file's read pattern, and the read-ahead it earns.
//
// Sequential reads (near where the reader has got to, once the run is min_run long) grow a
// window of chunks fetched ahead, doubling up to max_window; anything else collapses it to
// nothing, so a random reader fetches only what it touches (and, below the chunk size, only the
// blocks it touches: the fs layer asks readahead::sequential). The run matters because the
// kernel splits one read into several requests (128 KiB each without read-ahead): the second
// half of one random 256 KiB read is "near" the first, and must not start read-ahead. "Near" is a
// chunk either way: the kernel sends several reads of one stream at once and two reactors answer
// them, so a read may arrive just behind one sent after it; taken as random, it would collapse the
// window and drop the read-ahead queued meanwhile. A read from the start of a file most likely
// starts a whole-file read (a window of 4), unless it is a small peek (a header): one chunk,
// growing if the reader goes on. Threading: reads of one handle may be answered on several reactors
// at once: the state is atomics, and a late read never moves the stream back.
#include <atomic>
#include <cstdint>

namespace valkyrie::prefetch {

// What one read earns: chunks [from, to) to fetch ahead (empty when from >= to).
struct readahead {
  bool sequential = false;
  unsigned window = 0;
  std::uint64_t from = 0, to = 0;
};

class stream {
 public:
  static constexpr std::uint64_t small_first_read = 64 * 1024;  // below: a peek at the file's start
  static constexpr std::uint64_t min_run =
      512 * 1024;  // bytes read in sequence before a read counts

  stream(std::uint64_t size, std::uint32_t chunk_size, unsigned max_window)
      : size_(size), chunk_size_(chunk_size), max_window_(max_window) {}

  // A read of [offset, offset + bytes): updates the pattern and says what to fetch ahead (each
  // chunk once over the stream's life: [from, to) starts after what earlier reads asked for).
  readahead on_read(std::uint64_t offset, std::uint64_t bytes);
  // Whether chunk `chunk`, queued ahead earlier, is still worth its request: the file is open,
  // its reader still sequential and not yet past the chunk.
  bool wants(std::uint64_t chunk) const {
    return !closed_.load() && window_.load() > 0 && next_offset_.load() / chunk_size_ <= chunk;
  }
  // The cache refused read-ahead of `chunk` (no room yet): a later read asks for it again.
  void refused(std::uint64_t chunk) {
    std::uint64_t prev = prefetched_to_.load();
    while (chunk < prev && !prefetched_to_.compare_exchange_weak(prev, chunk)) {
    }
  }
  // True once: the first time the reader is streaming through the file (its next files are
  // due): a read from the file's start (`offset` is the read's), or a run of min_run (the whole
  // file when it is smaller). A random read that happens to fall elsewhere in the first chunk is
  // sequential for read-ahead but does not start the next files.
  bool claim_next_files(std::uint64_t offset) {
    if (offset != 0 && run_.load() < std::min(size_, min_run)) return false;
    return !next_files_claimed_.exchange(true);
  }
  void close() { closed_.store(true); }
  unsigned window() const { return window_.load(); }
  std::uint64_t position() const { return next_offset_.load(); }

 private:
  const std::uint64_t size_;
  const std::uint32_t chunk_size_;
  const unsigned max_window_;
  std::atomic<std::uint64_t> next_offset_{0};    // where a sequential reader reads next
  std::atomic<std::uint64_t> run_{0};            // bytes read in sequence up to next_offset_
  std::atomic<bool> started_{false};             // a first read happened
  std::atomic<unsigned> window_{0};              // read-ahead window in chunks
  std::atomic<std::uint64_t> prefetched_to_{0};  // chunks below this were already asked for
  std::atomic<bool> next_files_claimed_{false};
  std::atomic<bool> closed_{false};
};

}  // namespace valkyrie::prefetch
