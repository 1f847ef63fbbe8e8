#pragma once
// Drop-behind: the kernel's page cache of a file read in sequence keeps only the last stretch
// behind its reader.
//
// Why: a buffered reader's pages stay in the page cache after it has read them, and the kernel
// frees them only under memory pressure. For a stream through a big file that is a second copy
// of what the chunk cache already holds (and keeps by the training order), and every page the
// stream reads is fresh memory. Filling fresh memory is what a sequential read through the page
// cache costs most where first touches are slow (this VM: 0.54-0.61 x the link for 4 streams,
// 0.93-0.94 x with the pages behind the readers dropped; docs/benchmarks.md). Dropped pages are
// reused by the next read-ahead at once.
// What: each open file follows its stream (reads that continue one another, allowing for the
// kernel's read-ahead requests arriving out of order). Once the stream's front is `keep` +
// `step` past what was dropped, the pages more than `keep` behind the front are dropped with a
// FUSE_NOTIFY_INVAL_INODE of that range. Random reads, and files read less than `keep` + `step`
// in one stream, never drop anything.
// Threading: stream::advance runs on any reactor (one handle's reads come on several) under the
// stream's own mutex. The notifications are written by this class's one thread: the kernel
// drops the range inside that write and waits there for pages still being read, whose replies
// the reactors send, so a reactor must never write one.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

namespace valkyrie::fuse {

class drop_behind {
 public:
  struct params {
    std::uint64_t keep = 32 << 20;  // bytes left cached behind a stream's front
    std::uint64_t step = 8 << 20;   // bytes dropped at a time (one notification)
    // how far past the front a read may start and still continue it
    std::uint64_t slack = 16 << 20;
    // A stream shorter than this never drops anything.
    std::uint64_t reach() const { return keep + step; }
    // For --drop-behind `keep_bytes` (> 0) on a mount with this read-ahead and max_read.
    static params for_mount(std::uint64_t keep_bytes, std::uint32_t kernel_read_ahead,
                            std::uint32_t max_read);
    bool operator==(const params&) const = default;
  };
  struct range {
    std::uint64_t offset = 0, length = 0;
    bool operator==(const range&) const = default;
  };

  // One open file's stream.
  class stream {
   public:
    // A read of [offset, offset + size): the range to drop now, if any.
    std::optional<range> advance(std::uint64_t offset, std::uint64_t size, const params& p);

   private:
    std::mutex mu_;
    bool started_ = false;
    std::uint64_t front_ = 0;    // the end of its furthest read
    std::uint64_t dropped_ = 0;  // dropped from where the stream began up to here
  };

  // `dev_fuse_fd` is the session's /dev/fuse fd (dup'ed: the thread writes to its own copy and
  // closes it when it ends).
  drop_behind(int dev_fuse_fd, params p);
  // Joins the thread, or leaves it to end on its own if it still waits in the kernel after 2 s:
  // pages being read when the connection was cut are released only once every fd of the
  // connection, the thread's included, is closed (at the latest when the process exits).
  ~drop_behind();
  drop_behind(const drop_behind&) = delete;
  drop_behind& operator=(const drop_behind&) = delete;

  // A read of `ino`'s open file (any reactor; never waits on the kernel).
  void on_read(stream& s, std::uint64_t ino, std::uint64_t offset, std::uint64_t size);
  // Ends the thread, which closes its fd (the connection ends only with its last fd).
  void stop();

 private:
  struct drop {
    std::uint64_t ino;
    range pages;
  };
  // Shared with the thread, which may outlive this object (see the destructor).
  struct queue {
    int fd;
    std::mutex mu;
    std::condition_variable wake;
    std::deque<drop> drops;
    bool stopping = false;
    bool finished = false;  // the thread has closed its fd (under mu)
  };
  static void run(std::shared_ptr<queue> q);

  params params_;
  std::shared_ptr<queue> queue_;
  std::thread thread_;
};

}  // namespace valkyrie::fuse
