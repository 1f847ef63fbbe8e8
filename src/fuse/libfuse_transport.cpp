// The /dev/fuse transport: libfuse 3.14 reads and decodes the requests (session.cpp's receive
// loops) and calls this ops table, which wraps each fuse_req_t in a fuse::request and calls the
// transport-neutral ops (ops.hpp); the replies go back through fuse_reply_*.
#define FUSE_USE_VERSION 34
#include <fuse_lowlevel.h>

#include <cstring>

#include "fuse/ops.hpp"
#include "fuse/session.hpp"

namespace valkyrie::fuse {
namespace {

class libfuse_request final : public request {
 public:
  libfuse_request(fuse_req_t req, op_id op)
      : request(*static_cast<session*>(fuse_req_userdata(req)), op, fuse_req_ctx(req)->uid),
        req_(req) {}
  ~libfuse_request() override { abandon(); }

 protected:
  void hook_interrupt(std::function<void()> f) override {
    interrupt_ = std::move(f);
    fuse_req_interrupt_func(req_, &libfuse_request::interrupted, this);
  }
  // (Takes the request's lock: waits for a callback in progress. libfuse would only clear the
  // hook when the reply frees the request, not wait for it.)
  void unhook_interrupt() override { fuse_req_interrupt_func(req_, nullptr, nullptr); }
  int send_err(int err) override { return fuse_reply_err(req_, err); }
  void send_none() override { fuse_reply_none(req_); }
  int send_entry(const fuse_entry_param& e) override { return fuse_reply_entry(req_, &e); }
  int send_attr(const struct stat& st, double timeout) override {
    return fuse_reply_attr(req_, &st, timeout);
  }
  // (libfuse 3.14 cannot ask for passthrough in its INIT, so no session gives this transport
  // backing files: the id is never set here.)
  int send_open(const fuse_file_info& fi, int) override { return fuse_reply_open(req_, &fi); }
  int send_data(std::span<const iovec> pieces) override {
    if (pieces.empty()) return fuse_reply_buf(req_, nullptr, 0);
    return fuse_reply_iov(req_, pieces.data(), static_cast<int>(pieces.size()));
  }
  int send_write(std::size_t count) override { return fuse_reply_write(req_, count); }
  int send_statfs(const struct statvfs& st) override { return fuse_reply_statfs(req_, &st); }
  int send_xattr(std::size_t size) override { return fuse_reply_xattr(req_, size); }

 private:
  // Any reactor's thread, under libfuse's request lock.
  static void interrupted(fuse_req_t, void* self) {
    auto* r = static_cast<libfuse_request*>(self);
    if (r->interrupt_) r->interrupt_();
  }

  fuse_req_t req_;
  std::function<void()> interrupt_;
};

request_ptr wrap(fuse_req_t req, op_id op) {
  return std::make_unique<libfuse_request>(req, op);
}

void ll_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  op_lookup(wrap(req, op_id::lookup), parent, name);
}
void ll_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  op_forget(wrap(req, op_id::forget), ino, nlookup);
}
void ll_forget_multi(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  op_forget_multi(wrap(req, op_id::forget), count, forgets);
}
void ll_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  op_getattr(wrap(req, op_id::getattr), ino);
}
void ll_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info* fi) {
  op_setattr(wrap(req, op_id::write), ino, attr, to_set, fi);
}
void ll_opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  op_opendir(wrap(req, op_id::opendir), ino, fi);
}
void ll_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  op_readdir(wrap(req, op_id::readdir), ino, size, off, fi);
}
void ll_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  op_readdirplus(wrap(req, op_id::readdirplus), ino, size, off, fi);
}
void ll_releasedir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  op_releasedir(wrap(req, op_id::releasedir), ino, fi);
}
void ll_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  op_open(wrap(req, op_id::open), ino, fi);
}
void ll_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  op_read(wrap(req, op_id::read), ino, size, off, fi);
}
void ll_write(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off,
              fuse_file_info* fi) {
  op_write(wrap(req, op_id::write), ino, buf, size, off, fi);
}
void ll_release(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  op_release(wrap(req, op_id::release), ino, fi);
}
void ll_flush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  op_flush(wrap(req, op_id::flush), ino, fi);
}
void ll_statfs(fuse_req_t req, fuse_ino_t ino) {
  op_statfs(wrap(req, op_id::statfs), ino);
}
void ll_access(fuse_req_t req, fuse_ino_t ino, int mask) {
  op_access(wrap(req, op_id::access), ino, mask);
}
void ll_getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  op_getxattr(wrap(req, op_id::getxattr), ino, name, size);
}
void ll_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  op_listxattr(wrap(req, op_id::listxattr), ino, size);
}

void ll_refuse(fuse_req_t req) {
  refuse_write(wrap(req, op_id::write));
}
void ll_mknod(fuse_req_t req, fuse_ino_t, const char*, mode_t, dev_t) {
  ll_refuse(req);
}
void ll_mkdir(fuse_req_t req, fuse_ino_t, const char*, mode_t) {
  ll_refuse(req);
}
void ll_unlink(fuse_req_t req, fuse_ino_t, const char*) {
  ll_refuse(req);
}
void ll_rmdir(fuse_req_t req, fuse_ino_t, const char*) {
  ll_refuse(req);
}
void ll_symlink(fuse_req_t req, const char*, fuse_ino_t, const char*) {
  ll_refuse(req);
}
void ll_rename(fuse_req_t req, fuse_ino_t, const char*, fuse_ino_t, const char*, unsigned) {
  ll_refuse(req);
}
void ll_link(fuse_req_t req, fuse_ino_t, fuse_ino_t, const char*) {
  ll_refuse(req);
}
void ll_create(fuse_req_t req, fuse_ino_t, const char*, mode_t, fuse_file_info*) {
  ll_refuse(req);
}
void ll_setxattr(fuse_req_t req, fuse_ino_t, const char*, const char*, size_t, int) {
  ll_refuse(req);
}
void ll_removexattr(fuse_req_t req, fuse_ino_t, const char*) {
  ll_refuse(req);
}
void ll_fallocate(fuse_req_t req, fuse_ino_t, int, off_t, off_t, fuse_file_info*) {
  ll_refuse(req);
}

void ll_init(void* userdata, fuse_conn_info* conn) {
  auto* s = static_cast<session*>(userdata);
  const auto& o = s->options();
  if (conn->capable & FUSE_CAP_ASYNC_READ) conn->want |= FUSE_CAP_ASYNC_READ;
  if (conn->capable & FUSE_CAP_READDIRPLUS) conn->want |= FUSE_CAP_READDIRPLUS;
  // O_TRUNC arrives with open (refused for data files, restarts the order file's text).
  if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
  conn->want &= ~(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
  conn->max_read = o.max_read;            // must equal the max_read mount option
  conn->max_readahead = o.max_readahead;  // the kernel caps it to what it supports
  conn->max_background = o.max_background;
  conn->congestion_threshold = o.max_background * 3 / 4;
  conn->time_gran = 1;
}

fuse_lowlevel_ops make_ops() {
  fuse_lowlevel_ops ops;
  std::memset(&ops, 0, sizeof ops);
  ops.init = ll_init;
  ops.lookup = ll_lookup;
  ops.forget = ll_forget;
  ops.forget_multi = ll_forget_multi;
  ops.getattr = ll_getattr;
  ops.setattr = ll_setattr;
  ops.mknod = ll_mknod;
  ops.mkdir = ll_mkdir;
  ops.unlink = ll_unlink;
  ops.rmdir = ll_rmdir;
  ops.symlink = ll_symlink;
  ops.rename = ll_rename;
  ops.link = ll_link;
  ops.open = ll_open;
  ops.read = ll_read;
  ops.write = ll_write;
  ops.release = ll_release;
  ops.flush = ll_flush;
  ops.opendir = ll_opendir;
  ops.readdir = ll_readdir;
  ops.readdirplus = ll_readdirplus;
  ops.releasedir = ll_releasedir;
  ops.statfs = ll_statfs;
  ops.access = ll_access;
  ops.getxattr = ll_getxattr;
  ops.listxattr = ll_listxattr;
  ops.setxattr = ll_setxattr;
  ops.removexattr = ll_removexattr;
  ops.create = ll_create;
  ops.fallocate = ll_fallocate;
  return ops;
}
}  // namespace

const fuse_lowlevel_ops& operations() {
  static const fuse_lowlevel_ops ops = make_ops();
  return ops;
}

}  // namespace valkyrie::fuse
