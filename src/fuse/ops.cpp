// The FUSE lowlevel ops table. Each op copies what it needs out of libfuse's arguments, starts a
// coroutine on the calling reactor and returns; the coroutine replies. Ops that may wait on S3
// (lookup, open, read, readdir) answer through a pending_request (request.hpp): an interrupted
// caller gets EINTR at once while the work goes on for the cache.
#define FUSE_USE_VERSION 34
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <cstring>
#include <mutex>
#include <optional>

#include "core/errors.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"
#include "core/trace.hpp"
#include "fuse/dir_stream.hpp"
#include "fuse/request.hpp"
#include "fuse/session.hpp"

namespace valkyrie::fuse {
namespace {

session* self(fuse_req_t req) { return static_cast<session*>(fuse_req_userdata(req)); }

asio::any_io_executor here(session* s) {
  int r = reactor_pool::current();
  return s->pool().executor(r >= 0 ? static_cast<unsigned>(r) : 0);
}

template <class Awaitable>
void spawn(session* s, Awaitable a) {
  asio::co_spawn(here(s), std::move(a), asio::detached);
}

struct stat stat_of(session* s, const fs::attributes& a) { return valkyrie::fuse::stat_of(s->options(), a); }
fuse_entry_param entry_of(session* s, const fs::attributes& a) { return valkyrie::fuse::entry_of(s->options(), a); }

using file_holder = std::shared_ptr<fs::open_file>;

// ---- namespace ----
awaitable<void> do_lookup(session* s, std::shared_ptr<pending_request> p, fuse_ino_t parent,
                          std::string name) {
  auto r = co_await s->filesystem().lookup(parent, std::move(name));
  fuse_req_t req = p->claim();
  if (!req) {
    if (r) s->filesystem().forget(r->ino, 1);  // the kernel never got the entry it would count
    co_return;
  }
  if (!r) {
    reply_err(p->timer(), req, to_errno(r.error()));
    co_return;
  }
  auto e = entry_of(s, *r);
  p->timer().done(0);
  fuse_reply_entry(req, &e);
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  auto p = pending_request::start(req, here(self(req)), op_timer(op_id::lookup));
  spawn(self(req), do_lookup(self(req), std::move(p), parent, std::string(name)));
}

void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  op_timer t(op_id::forget);
  self(req)->filesystem().forget(ino, nlookup);
  t.done(0);
  fuse_reply_none(req);
}

void op_forget_multi(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  op_timer t(op_id::forget);
  for (size_t i = 0; i < count; ++i) self(req)->filesystem().forget(forgets[i].ino, forgets[i].nlookup);
  t.done(0);
  fuse_reply_none(req);
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  op_timer t(op_id::getattr);
  auto* s = self(req);
  auto r = s->filesystem().getattr(ino);
  if (!r) return reply_err(t, req, to_errno(r.error()));
  auto st = stat_of(s, *r);
  t.done(0);
  fuse_reply_attr(req, &st, s->options().attr_timeout);
}

// An open directory: fh holds its dir_stream (shared with the pages being answered).
using dir_holder = std::shared_ptr<dir_stream>;

void op_opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  op_timer t(op_id::opendir);
  auto* s = self(req);
  auto r = s->filesystem().getattr(ino);
  if (!r) return reply_err(t, req, to_errno(r.error()));
  if (!r->directory) return reply_err(t, req, ENOTDIR);
  fi->fh = reinterpret_cast<uint64_t>(new dir_holder(std::make_shared<dir_stream>(s->filesystem(), s->options(), ino)));
  fi->cache_readdir = 0;
  t.done(0);
  if (fuse_reply_open(req, fi) != 0) delete reinterpret_cast<dir_holder*>(fi->fh);  // interrupted
}

awaitable<void> do_readdir(std::shared_ptr<pending_request> p, dir_holder stream, size_t size, off_t off,
                           bool plus) {
  // The request is claimed once the listing is at hand, before any readdirplus lookup is
  // counted: an interrupted reader (already answered EINTR) gets nothing and counts nothing.
  fuse_req_t req = nullptr;
  bool asked = false;
  auto page = co_await stream->page(off, size, plus, [&] {
    asked = true;
    req = p->claim();
    return req != nullptr;
  });
  if (!asked) req = p->claim();  // the listing failed before the page began
  if (!req) co_return;
  if (!page) {
    reply_err(p->timer(), req, to_errno(page.error()));
    co_return;
  }
  p->timer().done(0);
  fuse_reply_buf(req, page->data(), page->size());
}

void op_readdir(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  auto stream = *reinterpret_cast<dir_holder*>(fi->fh);
  auto p = pending_request::start(req, here(self(req)), op_timer(op_id::readdir));
  spawn(self(req), do_readdir(std::move(p), std::move(stream), size, off, false));
}
void op_readdirplus(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  auto stream = *reinterpret_cast<dir_holder*>(fi->fh);
  auto p = pending_request::start(req, here(self(req)), op_timer(op_id::readdirplus));
  spawn(self(req), do_readdir(std::move(p), std::move(stream), size, off, true));
}
void op_releasedir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  op_timer t(op_id::releasedir);
  delete reinterpret_cast<dir_holder*>(fi->fh);
  reply_err(t, req, 0);
}

// ---- the order control file, /.valkyrie/order ----
// A reader sees the order in force when it opened the file. A writer's bytes are collected in
// its handle and become the training order when it closes the file (flush), whose result the
// close returns: EINVAL when no line names an object. Only the mount's owner (--uid) or root
// may write.
struct order_handle {
  std::mutex mu;
  std::string snapshot;  // what reads return
  std::string written;   // what the writer wrote so far
  bool writer = false;
  bool written_since_flush = false;
  bool truncated = false;  // opened with O_TRUNC (or truncated) and nothing applied since
};
constexpr std::size_t max_order_bytes = 64u << 20;

bool is_order_file(session* s, fuse_ino_t ino) {
  return ino == fs::order_file_ino && s->filesystem().opts().control_files;
}
order_handle* order_of(fuse_file_info* fi) { return reinterpret_cast<order_handle*>(fi->fh); }

bool may_write_order(session* s, fuse_req_t req) {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  return ctx->uid == 0 || ctx->uid == s->options().uid;
}

void open_order(session* s, fuse_req_t req, fuse_file_info* fi, op_timer& t) {
  bool writer = (fi->flags & O_ACCMODE) != O_RDONLY;
  if (writer && !may_write_order(s, req)) return reply_err(t, req, EACCES);
  auto* h = new order_handle;
  h->writer = writer;
  h->truncated = writer && (fi->flags & O_TRUNC);  // ": > order" clears the order (at release)
  if ((fi->flags & O_ACCMODE) != O_WRONLY) h->snapshot = s->filesystem().order_text();
  fi->fh = reinterpret_cast<uint64_t>(h);
  fi->direct_io = 1;  // stat says 0 bytes; reads return the whole text regardless
  fi->keep_cache = 0;
  t.done(0);
  if (fuse_reply_open(req, fi) != 0) delete h;  // interrupted
}

// `t` and `req`: the flush to answer; none when applied at release (nobody to tell).
awaitable<void> do_set_order(session* s, fuse_req_t req, std::string text, std::optional<op_timer> t) {
  auto r = co_await s->filesystem().set_order(std::move(text), "hint");
  if (t) reply_err(*t, req, r ? 0 : to_errno(r.error()));
}

void write_order(fuse_req_t req, const char* buf, size_t size, off_t off, fuse_file_info* fi) {
  op_timer t(op_id::write);
  auto* h = order_of(fi);
  std::lock_guard lock(h->mu);
  if (off < 0 || static_cast<std::size_t>(off) + size > max_order_bytes) return reply_err(t, req, EFBIG);
  auto end = static_cast<std::size_t>(off) + size;
  if (h->written.size() < end) h->written.resize(end);
  std::memcpy(h->written.data() + off, buf, size);
  h->written_since_flush = true;
  t.done(0);
  fuse_reply_write(req, size);
}

// The text to apply: at a flush (every close of a descriptor, dups included) what was written
// since the previous flush; at release (the last close) also an empty text the writer truncated
// and never wrote, which clears the order. A shell's "> order" closes a dup before writing: that
// flush sees nothing written and changes nothing.
std::optional<std::string> take_pending(order_handle* h, bool last_close) {
  std::lock_guard lock(h->mu);
  if (!h->writer || !(h->written_since_flush || (last_close && h->truncated))) return std::nullopt;
  h->written_since_flush = h->truncated = false;
  return h->written;
}

// ---- files ----
awaitable<void> do_open(session* s, std::shared_ptr<pending_request> p, fuse_ino_t ino,
                        fuse_file_info fi) {
  auto r = co_await s->filesystem().open(ino);
  fuse_req_t req = p->claim();
  if (!req) co_return;  // interrupted: no handle was handed out
  if (!r) {
    reply_err(p->timer(), req, r.error() == errc::invalid_argument ? EISDIR : to_errno(r.error()));
    co_return;
  }
  fi.keep_cache = (*r)->keep_cache ? 1 : 0;
  fi.direct_io = s->options().direct_io ? 1 : 0;
  fi.noflush = 1;  // read-only data: nothing to flush, so close() sends no FLUSH request
  fi.fh = reinterpret_cast<uint64_t>(new file_holder(*r));
  p->timer().done(0);
  if (fuse_reply_open(req, &fi) != 0) delete reinterpret_cast<file_holder*>(fi.fh);  // interrupted
}

void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  op_timer t(op_id::open);
  if (is_order_file(self(req), ino)) return open_order(self(req), req, fi, t);
  if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) return reply_err(t, req, EROFS);
  auto p = pending_request::start(req, here(self(req)), std::move(t));
  spawn(self(req),
        do_open(self(req), std::move(p), ino, *fi));  // fuse_file_info copied: libfuse reuses it
}

awaitable<void> do_read(session* s, std::shared_ptr<pending_request> p, file_holder file,
                        size_t size, off_t off, trace::span span) {
  auto r = co_await s->filesystem().read(file, static_cast<std::uint64_t>(off), size);
  fuse_req_t req = p->claim();
  if (!req) {  // interrupted: the reader has EINTR; the chunks stay cached for the next read
    if (span.active()) span.add({"errno", EINTR});
    co_return;
  }
  if (!r) {
    int err = to_errno(r.error());
    if (span.active()) span.add({"errno", err});
    reply_err(p->timer(), req, err);
    co_return;
  }
  // Reply straight from the pinned cache chunks; the kernel copies them during this call.
  std::vector<iovec> iov;
  iov.reserve(r->slices.size());
  for (auto& sl : r->slices) iov.push_back({const_cast<char*>(sl.data()), sl.size()});
  if (span.active()) span.add({"bytes", std::uint64_t{r->bytes}});
  p->timer().done(0);
  fuse_reply_iov(req, iov.data(), static_cast<int>(iov.size()));
}

void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  op_timer t(op_id::read);
  if (is_order_file(self(req), ino)) {
    auto* h = order_of(fi);
    std::lock_guard lock(h->mu);
    auto from = std::min(h->snapshot.size(), static_cast<std::size_t>(std::max<off_t>(off, 0)));
    t.done(0);
    fuse_reply_buf(req, h->snapshot.data() + from, std::min(size, h->snapshot.size() - from));
    return;
  }
  trace::span span("fuse.read", "fuse");
  auto file = *reinterpret_cast<file_holder*>(fi->fh);
  if (span.active())
    span.add({"ino", std::uint64_t{ino}}).add({"key", file->key}).add({"offset", static_cast<std::int64_t>(off)}).add(
        {"size", std::uint64_t{size}});
  auto p = pending_request::start(req, here(self(req)), std::move(t));
  spawn(self(req), do_read(self(req), std::move(p), std::move(file), size, off, std::move(span)));
}

void op_release(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  op_timer t(op_id::release);
  if (is_order_file(self(req), ino)) {
    std::unique_ptr<order_handle> h(order_of(fi));
    // Left unapplied (no flush after the last write, or a bare truncation): applied now, with no
    // one to tell the result.
    if (auto text = take_pending(h.get(), true))
      spawn(self(req), do_set_order(self(req), nullptr, std::move(*text), std::nullopt));
    return reply_err(t, req, 0);
  }
  auto* holder = reinterpret_cast<file_holder*>(fi->fh);
  self(req)->filesystem().release(*holder);
  delete holder;
  reply_err(t, req, 0);
}

void op_flush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  op_timer t(op_id::flush);
  if (is_order_file(self(req), ino)) {
    if (auto text = take_pending(order_of(fi), false))
      return spawn(self(req), do_set_order(self(req), req, std::move(*text), std::move(t)));
  }
  reply_err(t, req, 0);
}

void op_statfs(fuse_req_t req, fuse_ino_t) {
  op_timer t(op_id::statfs);
  struct statvfs st;
  std::memset(&st, 0, sizeof st);
  st.f_bsize = 1 << 20;
  st.f_frsize = 1 << 20;
  st.f_blocks = 1ull << 30;  // "a lot": S3 has no size
  st.f_files = 1ull << 30;
  st.f_namemax = 255;
  st.f_flag = ST_RDONLY;
  t.done(0);
  fuse_reply_statfs(req, &st);
}

void op_access(fuse_req_t req, fuse_ino_t ino, int mask) {
  op_timer t(op_id::access);
  if ((mask & W_OK) && is_order_file(self(req), ino))
    return reply_err(t, req, may_write_order(self(req), req) ? 0 : EACCES);
  if (mask & W_OK) return reply_err(t, req, EROFS);
  auto r = self(req)->filesystem().getattr(ino);
  reply_err(t, req, r ? 0 : to_errno(r.error()));
}

void op_getxattr(fuse_req_t req, fuse_ino_t, const char*, size_t) {
  op_timer t(op_id::getxattr);
  reply_err(t, req, ENODATA);
}
void op_listxattr(fuse_req_t req, fuse_ino_t, size_t size) {
  op_timer t(op_id::listxattr);
  t.done(0);
  if (size == 0) fuse_reply_xattr(req, 0);
  else fuse_reply_buf(req, nullptr, 0);
}
void refuse_write(fuse_req_t req) {
  op_timer t(op_id::write);
  reply_err(t, req, EROFS);
}

// ---- everything that writes: read-only filesystem ----
// Truncating an open order file (O_TRUNC without atomic truncation, ftruncate) restarts the text.
void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info* fi) {
  constexpr int times = FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW |
                        FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_CTIME;
  auto* s = self(req);
  if (!is_order_file(s, ino) || !(to_set & FUSE_SET_ATTR_SIZE) || (to_set & ~(FUSE_SET_ATTR_SIZE | times)))
    return refuse_write(req);
  op_timer t(op_id::write);
  if (!fi || !fi->fh) return reply_err(t, req, EINVAL);  // a path truncate: no writer to restart
  auto* h = order_of(fi);
  {
    std::lock_guard lock(h->mu);
    if (!h->writer) return reply_err(t, req, EBADF);
    if (static_cast<std::size_t>(attr->st_size) > max_order_bytes) return reply_err(t, req, EFBIG);
    h->written.resize(static_cast<std::size_t>(attr->st_size));
    h->truncated = h->written.empty();
    h->written_since_flush = !h->truncated;
  }
  auto st = stat_of(s, *s->filesystem().getattr(ino));
  t.done(0);
  fuse_reply_attr(req, &st, 0);
}
void op_mknod(fuse_req_t req, fuse_ino_t, const char*, mode_t, dev_t) { refuse_write(req); }
void op_mkdir(fuse_req_t req, fuse_ino_t, const char*, mode_t) { refuse_write(req); }
void op_unlink(fuse_req_t req, fuse_ino_t, const char*) { refuse_write(req); }
void op_rmdir(fuse_req_t req, fuse_ino_t, const char*) { refuse_write(req); }
void op_symlink(fuse_req_t req, const char*, fuse_ino_t, const char*) { refuse_write(req); }
void op_rename(fuse_req_t req, fuse_ino_t, const char*, fuse_ino_t, const char*, unsigned) { refuse_write(req); }
void op_link(fuse_req_t req, fuse_ino_t, fuse_ino_t, const char*) { refuse_write(req); }
void op_write(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off, fuse_file_info* fi) {
  if (is_order_file(self(req), ino)) return write_order(req, buf, size, off, fi);
  refuse_write(req);
}
void op_create(fuse_req_t req, fuse_ino_t, const char*, mode_t, fuse_file_info*) { refuse_write(req); }
void op_setxattr(fuse_req_t req, fuse_ino_t, const char*, const char*, size_t, int) { refuse_write(req); }
void op_removexattr(fuse_req_t req, fuse_ino_t, const char*) { refuse_write(req); }
void op_fallocate(fuse_req_t req, fuse_ino_t, int, off_t, off_t, fuse_file_info*) { refuse_write(req); }

void op_init(void* userdata, fuse_conn_info* conn) {
  auto* s = static_cast<session*>(userdata);
  const auto& o = s->options();
  if (conn->capable & FUSE_CAP_ASYNC_READ) conn->want |= FUSE_CAP_ASYNC_READ;
  if (conn->capable & FUSE_CAP_READDIRPLUS) conn->want |= FUSE_CAP_READDIRPLUS;
  // O_TRUNC arrives with open (refused for data files, restarts the order file's text).
  if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
  conn->want &= ~(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
  conn->max_read = o.max_read;  // must equal the max_read mount option
  conn->max_readahead = o.max_readahead;  // the kernel caps it to what it supports
  conn->max_background = o.max_background;
  conn->congestion_threshold = o.max_background * 3 / 4;
  conn->time_gran = 1;
}

fuse_lowlevel_ops make_ops() {
  fuse_lowlevel_ops ops;
  std::memset(&ops, 0, sizeof ops);
  ops.init = op_init;
  ops.lookup = op_lookup;
  ops.forget = op_forget;
  ops.forget_multi = op_forget_multi;
  ops.getattr = op_getattr;
  ops.setattr = op_setattr;
  ops.mknod = op_mknod;
  ops.mkdir = op_mkdir;
  ops.unlink = op_unlink;
  ops.rmdir = op_rmdir;
  ops.symlink = op_symlink;
  ops.rename = op_rename;
  ops.link = op_link;
  ops.open = op_open;
  ops.read = op_read;
  ops.write = op_write;
  ops.release = op_release;
  ops.flush = op_flush;
  ops.opendir = op_opendir;
  ops.readdir = op_readdir;
  ops.readdirplus = op_readdirplus;
  ops.releasedir = op_releasedir;
  ops.statfs = op_statfs;
  ops.access = op_access;
  ops.getxattr = op_getxattr;
  ops.listxattr = op_listxattr;
  ops.setxattr = op_setxattr;
  ops.removexattr = op_removexattr;
  ops.create = op_create;
  ops.fallocate = op_fallocate;
  return ops;
}
}  // namespace

const fuse_lowlevel_ops& operations() {
  static const fuse_lowlevel_ops ops = make_ops();
  return ops;
}

}  // namespace valkyrie::fuse
