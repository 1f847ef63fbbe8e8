#pragma once
// fuse: the FUSE lowlevel session driven by the reactors, and the ops table.
//
// Owns: the fuse_session (mount, unmount, the mount's kernel read-ahead) and one receive loop
// per reactor.
// Threading: every reactor waits for the (O_NONBLOCK) /dev/fuse fd to be readable on its own
// dup of it, drains fuse_session_receive_buf until EAGAIN into its own buffer and hands each
// request to fuse_session_process_buf, which calls the ops on that reactor's thread.
// Transports: the ops (ops.hpp) are written against fuse::request (request.hpp), which carries
// the replies and the metrics; libfuse_transport.cpp wraps libfuse's fuse_req_t in one. An op
// starts a coroutine and returns at once; the coroutine replies when its data is there, so no
// thread ever blocks on S3. libfuse 3.14 keeps no pointer into what an op is given: names and
// file info are copied before the op returns.
// Invariants: every request gets exactly one reply; errors become errnos in one place
// (to_errno); write-type ops get EROFS, except writes of the order control file by the mount's
// owner (--uid) or root.
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include <boost/asio/posix/stream_descriptor.hpp>

#include "core/reactor_pool.hpp"
#include "fs/filesystem.hpp"
#include "fuse/drop_behind.hpp"
#include "fuse/handle_table.hpp"

struct fuse_session;

namespace valkyrie::fuse {

class uring_transport;
class passthrough_files;

struct mount_options {
  std::string mountpoint;
  std::string fsname = "valkyrie";
  bool allow_other = false;
  unsigned uid = 0, gid = 0;
  unsigned file_mode = 0444, dir_mode = 0555;
  double attr_timeout = 60;  // seconds the kernel may cache attributes and entries
  std::uint32_t max_read = 1 << 20;
  std::uint32_t max_readahead = 16 << 20;
  unsigned max_background = 64;
  // The kernel's read-ahead for buffered readers of this mount (its backing device's
  // read_ahead_kb), set after mounting; 0 leaves the kernel's 128 KiB. It is also the size of
  // the requests a sequential reader sends (up to max_read each).
  std::uint32_t kernel_read_ahead = 4 << 20;
  // Every file opened with FOPEN_DIRECT_IO: reads bypass the kernel page cache and arrive at
  // the reader's own size (up to max_read), answered from the chunk cache; a shared mmap only
  // where the kernel agreed to FUSE_DIRECT_IO_ALLOW_MMAP.
  bool direct_io = false;
  // Files larger than this that no backing file serves are opened with FOPEN_DIRECT_IO, where
  // the kernel agrees to map such files shared (FUSE_DIRECT_IO_ALLOW_MMAP, Linux >= 6.6; the
  // daemon's own decoder asks, libfuse 3.14 cannot). Why: a stream through such a file would
  // fill the page cache only for drop-behind to free it again, a copy and a page allocated and
  // freed per 4 KiB; direct, the kernel copies each reply straight into the reader's buffer.
  // Unset: never (a file is then direct only with direct_io).
  std::optional<std::uint64_t> direct_io_above;
  // Drop-behind (drop_behind.hpp): a file read in sequence keeps this many bytes behind its
  // reader in the kernel's page cache (at least twice kernel_read_ahead); 0 keeps all, as the
  // kernel decides. Nothing to do with direct_io.
  std::uint64_t drop_behind = 32 << 20;
  // The kernel's "ro" mount flag. Off when the control file /.valkyrie/order is served (the
  // kernel would refuse to open it for writing); every other write is refused by the ops with
  // EROFS either way.
  bool kernel_read_only = false;
  // How requests reach the daemon: libfuse on /dev/fuse, or the own decoder with FUSE over
  // io_uring (uring_transport.hpp; requests stay on /dev/fuse if the kernel does not agree).
  enum class transport_kind { dev_fuse, io_uring };
  transport_kind transport = transport_kind::dev_fuse;
  // io_uring only: how long a ring is watched after a reply before its reactor sleeps (0: not).
  std::chrono::microseconds uring_poll{30};
  // FUSE passthrough (passthrough.hpp): at most this many bytes of backing files (0: off), for
  // objects of at least passthrough_min bytes. On, the requests are read by the own decoder
  // (uring_transport.hpp) on /dev/fuse even with transport_kind::dev_fuse: libfuse 3.14 cannot
  // ask for passthrough in its INIT reply.
  std::uint64_t passthrough_pool = 0;
  std::uint64_t passthrough_min = 1 << 20;
  // The pool was sized by --passthrough-pool auto: a kernel that does not offer passthrough at
  // INIT is then worth an info line, not a warning.
  bool passthrough_auto = false;
  // The requests are read by the own decoder on /dev/fuse with no pool either: where
  // --passthrough-pool auto had sized one that the training order turned off, so that the order
  // does not also change the decoder (libfuse's loop read 10-30% fewer small objects a second).
  bool own_decoder = false;
};

int to_errno(std::error_code ec);

class session {
 public:
  session(fs::filesystem& filesystem, reactor_pool& pool, mount_options opts);
  ~session();
  session(const session&) = delete;
  session& operator=(const session&) = delete;

  // Mounts; returns a message on failure.
  std::string mount();
  // Starts one receive loop per reactor (the pool must be running or about to run).
  void start();
  // Unmounts (from a signal handler's reactor, or any thread); the loops then end. The
  // connection is aborted with the unmount: requests still waiting for a reply fail at once
  // (the reader sees ENOTCONN) rather than keep a detached mount, its readers and this daemon
  // alive.
  void unmount();
  // True once every receive loop has ended (the filesystem was unmounted).
  bool finished() const { return loops_running_ == 0 && started_; }
  void set_on_finished(std::function<void()> f) { on_finished_ = std::move(f); }

  fs::filesystem& filesystem() { return fs_; }
  const mount_options& options() const { return opts_; }
  reactor_pool& pool() { return pool_; }
  // The fh of every open file and directory (freed at the end for those never released).
  handle_table& handles() { return handles_; }
  // The page cache's drop-behind; null when off.
  fuse::drop_behind* page_dropper() { return drop_behind_.get(); }
  // The passthrough backing files; null unless asked for and granted by the kernel's INIT.
  passthrough_files* passthrough() { return passthrough_.load(std::memory_order_acquire); }
  // From the INIT reply's transport, before any other request: the kernel agreed to passthrough.
  void enable_passthrough();
  // Likewise: the kernel agreed to shared mmap of files opened with FOPEN_DIRECT_IO.
  void allow_direct_io_mmap() { direct_io_mmap_.store(true, std::memory_order_release); }
  // Whether an open of a file of `size` bytes that no backing file serves is direct.
  bool direct_io_for(std::uint64_t size) const {
    return opts_.direct_io || (opts_.direct_io_above && size > *opts_.direct_io_above &&
                               direct_io_mmap_.load(std::memory_order_acquire));
  }
  // True until the session is destroyed (held by requests that may outlive it).
  std::shared_ptr<const std::atomic<bool>> alive() const { return alive_; }

 private:
  static awaitable<void> receive_loop(session* self, unsigned reactor);
  void loop_ended();

  fs::filesystem& fs_;
  reactor_pool& pool_;
  mount_options opts_;
  ::fuse_session* se_ = nullptr;
  bool mounted_ = false, started_ = false;
  std::atomic<bool> unmounting_{false};
  std::atomic<unsigned> loops_running_{0};
  // Each receive loop's dup of the /dev/fuse fd (touched on its own reactor only).
  std::vector<asio::posix::stream_descriptor*> receivers_;
  std::function<void()> on_finished_;
  std::unique_ptr<uring_transport> uring_;  // transport_kind::io_uring
  std::unique_ptr<fuse::drop_behind> drop_behind_;
  std::unique_ptr<passthrough_files> passthrough_owner_;
  std::atomic<passthrough_files*> passthrough_{nullptr};
  std::atomic<bool> direct_io_mmap_{false};
  std::shared_ptr<std::atomic<bool>> alive_ = std::make_shared<std::atomic<bool>>(true);
  handle_table handles_;
};

}  // namespace valkyrie::fuse
