#pragma once
// One FUSE request as the ops see it, whatever transport carried it (/dev/fuse through libfuse,
// or a ring entry of FUSE over io_uring), and the race between its answer and an INTERRUPT.
//
// A request knows its session, the reactor it arrived on (the ops' coroutines run there), the
// caller's uid and its op (for the metrics). The reply methods end it: each counts the request
// (by op, errors, latency from arrival) and hands the reply to the transport. A request that is
// dropped without a reply (a bug) is answered EIO by its destructor, so the kernel never waits
// (unless the session is gone: at exit, coroutines are destroyed with the reactors).
// Ownership: ops get a request_ptr and move it into the coroutine that replies.
//
// Interrupts: when a process waiting in a synchronous request gets a signal, the kernel sends
// FUSE_INTERRUPT (lookups, opens, directory reads, reads of --direct-io files; not buffered
// reads, which wait in the kernel for pages its read-ahead asked for in the background, and which
// only a fatal signal ends). The ops that may wait on S3 (lookup, open, read, readdir) answer
// through a pending_request: its interrupt hook (request::on_interrupt; libfuse calls it through
// fuse_req_interrupt_func, the io_uring transport when an INTERRUPT with the request's unique id
// comes through /dev/fuse) runs on any thread and only posts to the request's own reactor, where
// the request is answered EINTR at once unless its answer came first. The work goes on and fills
// the cache; its answer is then dropped (claim() returns null).
// Threading: a request is touched by one thread at a time (its reactor's), but for the hook.
// Invariants: a request is answered exactly once, on its own reactor; every reply first takes
// the hook back from the transport (which waits for a hook that is running), after which the
// transport may free the request; the hook holds only a weak pointer to the pending_request.
#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 34
#endif
#include <fuse_lowlevel.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <span>

#include "core/asio.hpp"

namespace valkyrie::fuse {

class session;

// Requests by op in the metrics (write: every write-type op).
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

class request {
 public:
  request(session& s, op_id op, unsigned uid);
  virtual ~request();
  request(const request&) = delete;
  request& operator=(const request&) = delete;

  session& owner() const { return session_; }
  unsigned uid() const { return uid_; }
  unsigned reactor() const { return reactor_; }
  asio::any_io_executor executor() const;
  bool replied() const { return replied_; }

  // The replies; exactly one per request. reply_open returns false when the kernel no longer
  // wants the answer (interrupted): the caller then frees what fi.fh holds.
  void reply_err(int err);  // 0: success with no data
  void reply_none();        // FORGET: no reply at all
  void reply_entry(const fuse_entry_param& e);
  void reply_attr(const struct stat& st, double timeout);
  bool reply_open(const fuse_file_info& fi);
  // The same, the file's reads passed through to the backing file registered as `backing_id`
  // (fuse/passthrough.hpp; only on a transport whose INIT asked for passthrough).
  bool reply_open_passthrough(const fuse_file_info& fi, int backing_id);
  void reply_buf(const void* data, std::size_t size);
  void reply_data(std::span<const iovec> pieces);  // read data, gathered from the pieces
  void reply_write(std::size_t count);
  void reply_statfs(const struct statvfs& st);
  void reply_xattr(std::size_t size);
  // EINTR, counted in valkyrie_fuse_interrupted_total: the caller was interrupted.
  void reply_interrupted();

  // Calls `f` (once, on any thread, with the transport's lock held: it should only post) if the
  // kernel interrupts this request; at once if it already has. Set before the reply only; the
  // replies take it back first.
  void on_interrupt(std::function<void()> f);

 protected:
  // A transport's destructor calls this first: a request never answered gets EIO.
  void abandon();
  bool session_alive() const { return session_alive_->load(); }
  // The transport's part: register the interrupt hook, and take it back (waiting for a call in
  // progress; it is not called after that).
  virtual void hook_interrupt(std::function<void()> f) = 0;
  virtual void unhook_interrupt() = 0;
  // The transport's part: send the reply. Return 0 or a negative errno (the reply was not taken).
  virtual int send_err(int err) = 0;
  virtual void send_none() = 0;
  virtual int send_entry(const fuse_entry_param& e) = 0;
  virtual int send_attr(const struct stat& st, double timeout) = 0;
  virtual int send_open(const fuse_file_info& fi, int backing_id) = 0;  // -1: no passthrough
  virtual int send_data(std::span<const iovec> pieces) = 0;
  virtual int send_write(std::size_t count) = 0;
  virtual int send_statfs(const struct statvfs& st) = 0;
  virtual int send_xattr(std::size_t size) = 0;

 private:
  void done(int err);
  void unhook();

  session& session_;
  op_id op_;
  unsigned uid_;
  unsigned reactor_;
  bool replied_ = false;
  bool hooked_ = false;
  std::chrono::steady_clock::time_point start_;
  // False once the session is gone: a request dropped after that (its coroutine destroyed with
  // the reactors at exit) is not answered, as its transport is gone too.
  std::shared_ptr<const std::atomic<bool>> session_alive_;
};

using request_ptr = std::unique_ptr<request>;

// A request that may be interrupted while its op waits (see the top of this file).
class pending_request : public std::enable_shared_from_this<pending_request> {
 public:
  // Hooks `req` for INTERRUPT; it is answered on its reactor (req->executor()).
  static std::shared_ptr<pending_request> start(request_ptr req);
  explicit pending_request(request_ptr req) : req_(std::move(req)) {}
  pending_request(const pending_request&) = delete;
  pending_request& operator=(const pending_request&) = delete;

  // On the request's reactor: the request to answer (exactly once), or null when the caller
  // was interrupted and has had EINTR: drop the answer.
  request* claim();
  session& owner() const { return req_->owner(); }

 private:
  void interrupted();

  request_ptr req_;
  bool answered_ = false;
};
using pending_ptr = std::shared_ptr<pending_request>;

}  // namespace valkyrie::fuse
