#pragma once
// The files the disk tier stores data in, behind an interface so that tests can inject faults
// (EIO, ENOSPC, short reads, a slow disk) the way s3/fault_client does for S3.
//
// direct_file: a preallocated file opened with O_DIRECT (no page cache, no copy: reads and
// writes go straight between the caller's page-aligned memory and the disk). With the
// io_uring build it reads and writes through Asio's random_access_file on the calling
// reactor's io_uring (one handle per reactor, made on first use, each on a dup of the fd);
// without it, pread/pwrite. A filesystem without O_DIRECT (tmpfs) gets a buffered file and a
// warning. Buffers, offsets and lengths must be multiples of 4 KiB (block_align).
// Threading: read_at/write_at may be called from any reactor at once.
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include "core/asio.hpp"

namespace valkyrie::tier {

inline constexpr std::size_t block_align = 4096;

class block_file {
 public:
  virtual ~block_file() = default;
  // The whole buffer or an error (a short read or write is an error: errc io_error).
  virtual awaitable<std::error_code> read_at(std::uint64_t offset, std::span<char> buf) = 0;
  virtual awaitable<std::error_code> write_at(std::uint64_t offset, std::span<const char> buf) = 0;
  // The pieces one after another from `offset`, in one request where the file can (writev: a
  // slot's header and its data together); a short write finishes piece by piece.
  virtual awaitable<std::error_code> writev_at(std::uint64_t offset,
                                               std::vector<std::span<const char>> bufs);
  // The same for reading (readv: a slot's header and its data in one request).
  virtual awaitable<std::error_code> readv_at(std::uint64_t offset,
                                              std::vector<std::span<char>> bufs);
  virtual bool direct() const = 0;
};

// Opens (creating if needed) `path` and preallocates `size` bytes (fallocate: ENOSPC now, not
// on a later write). Start-up only: throws std::system_error with the path on failure.
using file_opener =
    std::function<std::shared_ptr<block_file>(const std::string& path, std::uint64_t size)>;
std::shared_ptr<block_file> open_direct_file(const std::string& path, std::uint64_t size);

// Faults to inject into every file opened through fault_opener (set from the test; atomics).
struct fault_plan {
  std::atomic<int> read_errno{0};        // nonzero: every read fails with it
  std::atomic<int> write_errno{0};       // nonzero: every write fails with it (ENOSPC, EIO)
  std::atomic<bool> short_reads{false};  // reads return half the bytes
  std::atomic<unsigned> delay_ms{0};     // nonzero: every read and write waits this long first (a
                                         // timer on the calling reactor: a slow disk)
  // With delay_ms: operations served one after another, each delay_ms (a disk with a queue:
  // the n-th of n submitted at once completes after n x delay_ms).
  std::atomic<bool> serial{false};
  std::atomic<std::int64_t> busy_until_ns{0};  // (serial: when the last one queued completes)
  std::atomic<bool> hang{false};  // set: every read and write waits until it is cleared (a disk
                                  // that stops answering; checked every 5 ms on a timer)
  std::atomic<unsigned> reads{0}, writes{0};  // calls seen
};
file_opener fault_opener(std::shared_ptr<fault_plan> plan, file_opener inner = open_direct_file);

}  // namespace valkyrie::tier
