#pragma once
// The io_uring transport: the daemon reads the kernel's requests itself (fuse/wire.*) instead of
// through libfuse, and once FUSE_INIT has agreed on FUSE over io_uring, takes them from
// io_uring rings, answering each with the submission that fetches the next
// (COMMIT_AND_FETCH).
//
// Start-up: libfuse still mounts. Every reactor reads its dup of /dev/fuse. The rings are made
// before the INIT reply (a kernel that agreed holds every request until all queues have
// entries, so a ring that cannot be made means no); the INIT reply
// (written here, as libfuse 3.14 cannot) asks for FUSE_OVER_IO_URING. If the kernel agreed, each
// reactor sets up one SQE128 ring and registers ring entries (a 288-byte header and a payload
// buffer each) for the kernel queues it serves: queue q (CPU q) on reactor q % reactors. The
// kernel switches to the rings once every possible CPU's queue has an entry; until then, and
// always for FORGET, INTERRUPT and notifications, requests come through /dev/fuse.
// Waking: a ring's completions signal its eventfd, which the reactor waits on (Asio); no thread
// blocks in io_uring_enter. Replies are copied into the entry's payload buffer and committed
// from the reactor that owns the ring (posted there if answered elsewhere); the submissions of
// one turn of the reactor go to the kernel in one io_uring_submit.
// Teardown: unmount closes the /dev/fuse dups and exits the rings (the kernel cancels the
// waiting entries); the receive loops then end. Ring memory lives until the transport is
// destroyed, so a late reply finds its entry (and is dropped).
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include <boost/asio/posix/stream_descriptor.hpp>

#include "fuse/wire.hpp"

namespace valkyrie::fuse {

class uring_transport {
 public:
  // `fd`: the mounted session's /dev/fuse fd; `want_rings`: ask for FUSE over io_uring (false:
  // the own decoder on /dev/fuse only). `loop_ended` is called once per ended /dev/fuse loop.
  uring_transport(session& s, int fd, bool want_rings, std::function<void()> loop_ended);
  ~uring_transport();

  void start();  // one /dev/fuse loop per reactor
  void stop();   // from unmount: close the dups, exit the rings

  // Whether the rings carry the requests (INIT agreed and every entry registered).
  bool rings_active() const { return rings_registered_.load() > 0; }

 private:
  struct ring;
  class dev_sink;
  awaitable<void> dev_loop(unsigned reactor);
  void on_init(const request_parts& r, reply_sink& sink);
  bool make_rings(std::size_t payload_size);
  void start_rings();

  session& session_;
  int fd_;
  bool want_rings_;
  std::function<void()> loop_ended_;
  std::unique_ptr<dev_sink> dev_sink_;
  dispatcher dispatcher_;
  std::vector<asio::posix::stream_descriptor*> receivers_;  // touched on their own reactor only
  std::vector<std::unique_ptr<ring>> rings_;                // one per reactor, once INIT agreed
  std::atomic<bool> stopping_{false};
  std::atomic<unsigned> rings_registered_{0};
  std::uint32_t payload_size_ = 0;
  unsigned queues_ = 0, per_queue_ = 0;
  std::mutex rings_mu_;  // rings_ is filled once (at INIT) while stop() may look at it
};

// Number of possible CPUs (the kernel's queue count), from /sys/devices/system/cpu/possible.
unsigned possible_cpus();
// Whether the fuse module lets FUSE over io_uring be used
// (/sys/module/fuse/parameters/enable_uring).
bool kernel_offers_io_uring();

}  // namespace valkyrie::fuse
