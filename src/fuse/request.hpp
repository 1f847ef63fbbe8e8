#pragma once
// A FUSE request's bookkeeping: its metrics (op_timer) and, for the ops that may wait on S3
// (lookup, open, read, readdir), the race between their answer and an INTERRUPT.
//
// Interrupts: when a process waiting in a synchronous request gets a signal, the kernel sends
// FUSE_INTERRUPT (lookups, opens, directory reads, reads of --direct-io files; not buffered
// reads, which wait in the kernel for pages its read-ahead asked for in the background, and which
// only a fatal signal ends). libfuse calls on_interrupt on whichever reactor received the
// INTERRUPT, with the request's lock held: it only posts to the request's own reactor, where
// the request is answered EINTR at once unless its answer came first. The work goes on and
// fills the cache; its answer is then dropped (claim() returns null).
// Invariants: a request is answered exactly once, on its own reactor (so `answered_` needs no
// lock); whoever answers first deregisters the callback (which waits for one that is running)
// before replying, after which libfuse may free the request; the callback's pointer stays valid
// until then because the answering side holds a shared_ptr to it.
#include <cerrno>
#include <chrono>
#include <memory>

#include "core/asio.hpp"

struct fuse_req;
typedef struct fuse_req* fuse_req_t;  // (as fuse_lowlevel.h has it)

namespace valkyrie::fuse {

enum class op_id {
  lookup,
  forget,
  getattr,
  opendir,
  readdir,
  readdirplus,
  releasedir,
  open,
  read,
  release,
  statfs,
  access,
  getxattr,
  listxattr,
  write,
  flush,
  count
};

// Started when a request arrives; done() just before its reply (requests, errors, latency by op).
class op_timer {
 public:
  explicit op_timer(op_id op);
  op_timer(op_timer&& o) noexcept : op_(o.op_), start_(o.start_), open_(o.open_) {
    o.open_ = false;
  }
  op_timer(const op_timer&) = delete;
  ~op_timer() { done(EIO); }  // never happens on a path that replies; keeps the gauge honest
  void done(int err);
  op_id op() const { return op_; }

 private:
  op_id op_;
  std::chrono::steady_clock::time_point start_;
  bool open_ = true;
};

// Replies with an errno (0: success with no data) and counts it.
void reply_err(op_timer& t, fuse_req_t req, int err);

class pending_request : public std::enable_shared_from_this<pending_request> {
 public:
  // Registers `req` for INTERRUPT; `ex` is the reactor it arrived on (where it is answered).
  static std::shared_ptr<pending_request> start(fuse_req_t req, asio::any_io_executor ex,
                                                op_timer t);
  pending_request(fuse_req_t req, asio::any_io_executor ex, op_timer t)
      : req_(req), ex_(std::move(ex)), timer_(std::move(t)) {}
  pending_request(const pending_request&) = delete;
  pending_request& operator=(const pending_request&) = delete;

  // On the request's reactor: the request to answer (exactly once, with timer()), or null when
  // the caller was interrupted and has had EINTR: drop the answer.
  fuse_req_t claim();
  op_timer& timer() { return timer_; }

 private:
  static void on_interrupt(fuse_req_t req, void* data);
  void interrupted();

  fuse_req_t req_;
  asio::any_io_executor ex_;
  op_timer timer_;
  bool answered_ = false;
};

}  // namespace valkyrie::fuse
