// The FUSE ops, against fuse::request (see ops.hpp). Each op copies what it needs out of its
// arguments, starts a coroutine on the request's reactor when it must wait, and returns; the
// coroutine replies. Ops that may wait on S3 (lookup, open, read, readdir) answer through a
// pending_request (request.hpp): an interrupted caller gets EINTR at once while the work goes on
// for the cache.
#include "fuse/ops.hpp"

#include <fcntl.h>
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
#include "fuse/passthrough.hpp"
#include "fuse/passthrough_fill.hpp"
#include "fuse/session.hpp"

namespace valkyrie::fuse {
namespace {

session* self(const request_ptr& req) {
  return &req->owner();
}

// Runs `a` on `ex` (the request's reactor). Take the executor before moving the request into
// the coroutine: argument evaluation order is unspecified.
template <class Awaitable>
void spawn(asio::any_io_executor ex, Awaitable a) {
  asio::co_spawn(std::move(ex), std::move(a), asio::detached);
}

struct stat stat_of(session* s, const fs::attributes& a) {
  return valkyrie::fuse::stat_of(s->options(), a);
}
fuse_entry_param entry_of(session* s, const fs::attributes& a) {
  return valkyrie::fuse::entry_of(s->options(), a);
}

using file_holder = std::shared_ptr<fs::open_file>;
// An open file's fh: the file, its stream for the page cache's drop-behind (not for a direct
// one: it has no pages), and how the passthrough files (when on) counted its open.
struct file_handle {
  file_holder file;
  drop_behind::stream pages;
  enum class counted { no, page_cache, passthrough } open_kind = counted::no;
  bool direct = false;  // opened with FOPEN_DIRECT_IO
};

metrics::counter& direct_io_opens() {
  static auto& c = metrics::registry::global().get_counter(
      "valkyrie_fuse_direct_io_opens_total",
      "Opens answered with FOPEN_DIRECT_IO (--direct-io, or a file above --direct-io-above): "
      "their reads skip the kernel's page cache");
  return c;
}

void uncount_open(session* s, fuse_ino_t ino, file_handle::counted kind) {
  auto* pt = s->passthrough();
  if (!pt || kind == file_handle::counted::no) return;
  if (kind == file_handle::counted::passthrough) {
    if (auto waiting = pt->release_passthrough(ino)) {
      auto ex = s->pool().executor(static_cast<unsigned>((*waiting)->hash % s->pool().size()));
      asio::co_spawn(ex, fill_prepared(s, pt, std::move(*waiting)), asio::detached);
    }
  } else
    pt->release_page_cache(ino);
}

// ---- namespace ----
awaitable<void> do_lookup(session* s, pending_ptr p, fuse_ino_t parent, std::string name) {
  auto r = co_await s->filesystem().lookup(parent, std::move(name));
  request* req = p->claim();
  if (!req) {
    if (r) s->filesystem().forget(r->ino, 1);  // the kernel never got the entry it would count
    co_return;
  }
  if (!r) {
    req->reply_err(to_errno(r.error()));
    co_return;
  }
  req->reply_entry(entry_of(s, *r));
}

// An open directory: fh holds its dir_stream (shared with the pages being answered).
using dir_holder = std::shared_ptr<dir_stream>;

awaitable<void> do_readdir(pending_ptr p, dir_holder stream, size_t size, off_t off, bool plus) {
  // The request is claimed once the listing is at hand, before any readdirplus lookup is
  // counted: an interrupted reader (already answered EINTR) gets nothing and counts nothing.
  request* req = nullptr;
  bool asked = false;
  auto page = co_await stream->page(off, size, plus, [&] {
    asked = true;
    req = p->claim();
    return req != nullptr;
  });
  if (!asked) req = p->claim();  // the listing failed before the page began
  if (!req) co_return;
  if (!page) {
    req->reply_err(to_errno(page.error()));
    co_return;
  }
  req->reply_buf(page->data(), page->size());
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
order_handle* order_of(fuse_file_info* fi) {
  return handle_table::get<order_handle>(fi->fh);
}

bool may_write_order(session* s, const request_ptr& req) {
  return req->uid() == 0 || req->uid() == s->options().uid;
}

void open_order(session* s, request_ptr req, fuse_file_info* fi) {
  bool writer = (fi->flags & O_ACCMODE) != O_RDONLY;
  if (writer && !may_write_order(s, req)) return req->reply_err(EACCES);
  auto* h = new order_handle;
  h->writer = writer;
  h->truncated = writer && (fi->flags & O_TRUNC);  // ": > order" clears the order (at release)
  if ((fi->flags & O_ACCMODE) != O_WRONLY) h->snapshot = s->filesystem().order_text();
  fi->fh = s->handles().adopt(h);
  fi->direct_io = 1;  // stat says 0 bytes; reads return the whole text regardless
  fi->keep_cache = 0;
  if (!req->reply_open(*fi)) s->handles().release<order_handle>(fi->fh);  // interrupted
}

// `req`: the flush to answer; none when applied at release (nobody to tell).
awaitable<void> do_set_order(session* s, request_ptr req, std::string text) {
  auto r = co_await s->filesystem().set_order(std::move(text), "hint");
  if (req) req->reply_err(r ? 0 : to_errno(r.error()));
}

void write_order(request_ptr req, const char* buf, size_t size, off_t off, fuse_file_info* fi) {
  auto* h = order_of(fi);
  std::lock_guard lock(h->mu);
  if (off < 0 || static_cast<std::size_t>(off) + size > max_order_bytes)
    return req->reply_err(EFBIG);
  auto end = static_cast<std::size_t>(off) + size;
  if (h->written.size() < end) h->written.resize(end);
  std::memcpy(h->written.data() + off, buf, size);
  h->written_since_flush = true;
  req->reply_write(size);
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
awaitable<void> do_open(session* s, pending_ptr p, fuse_ino_t ino, fuse_file_info fi) {
  auto r = co_await s->filesystem().open(ino);
  auto* pt = r && !s->options().direct_io ? s->passthrough() : nullptr;
  int backing_id = -1;
  if (pt) {
    auto chosen = passthrough_open(s, pt, ino, *r);  // (named: see core/background.hpp)
    backing_id = co_await std::move(chosen);
  }
  const auto kind = !pt               ? file_handle::counted::no
                    : backing_id >= 0 ? file_handle::counted::passthrough
                                      : file_handle::counted::page_cache;
  request* req = p->claim();
  if (!req) {  // interrupted: no handle was handed out
    uncount_open(s, ino, kind);
    co_return;
  }
  if (!r) {
    req->reply_err(r.error() == errc::invalid_argument ? EISDIR : to_errno(r.error()));
    co_return;
  }
  fi.keep_cache = (*r)->keep_cache ? 1 : 0;
  // (A file open through passthrough is read by the kernel from its backing file: never direct.
  // A direct open still counts as a page-cache one there: a shared mapping of it is cached.)
  const bool direct = backing_id < 0 && s->direct_io_for((*r)->size);
  fi.direct_io = direct ? 1 : 0;
  fi.noflush = 1;  // read-only data: nothing to flush, so close() sends no FLUSH request
  fi.fh = s->handles().adopt(new file_handle{*r, {}, kind, direct});
  const bool taken =
      backing_id >= 0 ? req->reply_open_passthrough(fi, backing_id) : req->reply_open(fi);
  if (!taken) {  // interrupted
    uncount_open(s, ino, kind);
    s->handles().release<file_handle>(fi.fh);
  } else if (direct)
    direct_io_opens().add();
}

awaitable<void> do_read(session* s, pending_ptr p, file_holder file, size_t size, off_t off,
                        trace::span span) {
  auto r = co_await s->filesystem().read(file, static_cast<std::uint64_t>(off), size);
  request* req = p->claim();
  if (!req) {  // interrupted: the reader has EINTR; the chunks stay cached for the next read
    if (span.active()) span.add({"errno", EINTR});
    co_return;
  }
  if (!r) {
    int err = to_errno(r.error());
    if (span.active()) span.add({"errno", err});
    req->reply_err(err);
    co_return;
  }
  // Reply straight from the pinned cache chunks; the kernel copies them during this call.
  std::vector<iovec> iov;
  iov.reserve(r->slices.size());
  for (auto& sl : r->slices) iov.push_back({const_cast<char*>(sl.data()), sl.size()});
  if (span.active()) span.add({"bytes", std::uint64_t{r->bytes}});
  req->reply_data(iov);
}

}  // namespace

void op_lookup(request_ptr req, fuse_ino_t parent, const char* name) {
  auto* s = self(req);
  auto ex = req->executor();
  spawn(ex, do_lookup(s, pending_request::start(std::move(req)), parent, std::string(name)));
}

void op_forget(request_ptr req, fuse_ino_t ino, uint64_t nlookup) {
  self(req)->filesystem().forget(ino, nlookup);
  req->reply_none();
}

void op_forget_multi(request_ptr req, size_t count, const fuse_forget_data* forgets) {
  for (size_t i = 0; i < count; ++i)
    self(req)->filesystem().forget(forgets[i].ino, forgets[i].nlookup);
  req->reply_none();
}

void op_getattr(request_ptr req, fuse_ino_t ino) {
  auto* s = self(req);
  auto r = s->filesystem().getattr(ino);
  if (!r) return req->reply_err(to_errno(r.error()));
  req->reply_attr(stat_of(s, *r), s->options().attr_timeout);
}

void op_opendir(request_ptr req, fuse_ino_t ino, fuse_file_info* fi) {
  auto* s = self(req);
  auto r = s->filesystem().getattr(ino);
  if (!r) return req->reply_err(to_errno(r.error()));
  if (!r->directory) return req->reply_err(ENOTDIR);
  fi->fh = s->handles().adopt(
      new dir_holder(std::make_shared<dir_stream>(s->filesystem(), s->options(), ino)));
  fi->cache_readdir = 0;
  if (!req->reply_open(*fi)) s->handles().release<dir_holder>(fi->fh);  // interrupted
}

void op_readdir(request_ptr req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  auto stream = *handle_table::get<dir_holder>(fi->fh);
  auto ex = req->executor();
  spawn(ex,
        do_readdir(pending_request::start(std::move(req)), std::move(stream), size, off, false));
}
void op_readdirplus(request_ptr req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  auto stream = *handle_table::get<dir_holder>(fi->fh);
  auto ex = req->executor();
  spawn(ex, do_readdir(pending_request::start(std::move(req)), std::move(stream), size, off, true));
}
void op_releasedir(request_ptr req, fuse_ino_t, fuse_file_info* fi) {
  self(req)->handles().release<dir_holder>(fi->fh);
  req->reply_err(0);
}

void op_open(request_ptr req, fuse_ino_t ino, fuse_file_info* fi) {
  auto* s = self(req);
  if (is_order_file(s, ino)) return open_order(s, std::move(req), fi);
  if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) return req->reply_err(EROFS);
  auto ex = req->executor();
  // fuse_file_info copied: the transport reuses it
  spawn(ex, do_open(s, pending_request::start(std::move(req)), ino, *fi));
}

void op_read(request_ptr req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  auto* s = self(req);
  if (is_order_file(s, ino)) {
    auto* h = order_of(fi);
    std::lock_guard lock(h->mu);
    auto from = std::min(h->snapshot.size(), static_cast<std::size_t>(std::max<off_t>(off, 0)));
    return req->reply_buf(h->snapshot.data() + from, std::min(size, h->snapshot.size() - from));
  }
  trace::span span("fuse.read", "fuse");
  auto* h = handle_table::get<file_handle>(fi->fh);
  if (auto* d = s->page_dropper(); d && !h->direct)
    d->on_read(h->pages, ino, static_cast<std::uint64_t>(off), size);
  auto file = h->file;
  if (span.active())
    span.add({"ino", std::uint64_t{ino}})
        .add({"key", file->key})
        .add({"offset", static_cast<std::int64_t>(off)})
        .add({"size", std::uint64_t{size}});
  auto ex = req->executor();
  spawn(ex, do_read(s, pending_request::start(std::move(req)), std::move(file), size, off,
                    std::move(span)));
}

void op_release(request_ptr req, fuse_ino_t ino, fuse_file_info* fi) {
  auto* s = self(req);
  if (is_order_file(s, ino)) {
    // Left unapplied (no flush after the last write, or a bare truncation): applied now, with no
    // one to tell the result.
    if (auto text = take_pending(order_of(fi), true))
      spawn(req->executor(), do_set_order(s, nullptr, std::move(*text)));
    s->handles().release<order_handle>(fi->fh);
    return req->reply_err(0);
  }
  auto* h = handle_table::get<file_handle>(fi->fh);
  s->filesystem().release(h->file);
  uncount_open(s, ino, h->open_kind);
  s->handles().release<file_handle>(fi->fh);
  req->reply_err(0);
}

void op_flush(request_ptr req, fuse_ino_t ino, fuse_file_info* fi) {
  auto* s = self(req);
  if (is_order_file(s, ino)) {
    if (auto text = take_pending(order_of(fi), false)) {
      auto ex = req->executor();
      return spawn(ex, do_set_order(s, std::move(req), std::move(*text)));
    }
  }
  req->reply_err(0);
}

void op_statfs(request_ptr req, fuse_ino_t) {
  struct statvfs st;
  std::memset(&st, 0, sizeof st);
  st.f_bsize = 1 << 20;
  st.f_frsize = 1 << 20;
  st.f_blocks = 1ull << 30;  // "a lot": S3 has no size
  st.f_files = 1ull << 30;
  st.f_namemax = 255;
  st.f_flag = ST_RDONLY;
  req->reply_statfs(st);
}

void op_access(request_ptr req, fuse_ino_t ino, int mask) {
  auto* s = self(req);
  if ((mask & W_OK) && is_order_file(s, ino))
    return req->reply_err(may_write_order(s, req) ? 0 : EACCES);
  if (mask & W_OK) return req->reply_err(EROFS);
  auto r = s->filesystem().getattr(ino);
  req->reply_err(r ? 0 : to_errno(r.error()));
}

void op_getxattr(request_ptr req, fuse_ino_t, const char*, size_t) {
  req->reply_err(ENODATA);
}
void op_listxattr(request_ptr req, fuse_ino_t, size_t size) {
  if (size == 0)
    req->reply_xattr(0);
  else
    req->reply_buf(nullptr, 0);
}
void refuse_write(request_ptr req) {
  req->reply_err(EROFS);
}

// ---- everything that writes: read-only filesystem ----
// Truncating an open order file (O_TRUNC without atomic truncation, ftruncate) restarts the text.
void op_setattr(request_ptr req, fuse_ino_t ino, const struct stat* attr, int to_set,
                fuse_file_info* fi) {
  constexpr int times = FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW |
                        FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_CTIME;
  auto* s = self(req);
  if (!is_order_file(s, ino) || !(to_set & FUSE_SET_ATTR_SIZE) ||
      (to_set & ~(FUSE_SET_ATTR_SIZE | times)))
    return refuse_write(std::move(req));
  if (!fi || !fi->fh) return req->reply_err(EINVAL);  // a path truncate: no writer to restart
  auto* h = order_of(fi);
  {
    std::lock_guard lock(h->mu);
    if (!h->writer) return req->reply_err(EBADF);
    if (static_cast<std::size_t>(attr->st_size) > max_order_bytes) return req->reply_err(EFBIG);
    h->written.resize(static_cast<std::size_t>(attr->st_size));
    h->truncated = h->written.empty();
    h->written_since_flush = !h->truncated;
  }
  req->reply_attr(stat_of(s, *s->filesystem().getattr(ino)), 0);
}

void op_write(request_ptr req, fuse_ino_t ino, const char* buf, size_t size, off_t off,
              fuse_file_info* fi) {
  if (is_order_file(self(req), ino)) return write_order(std::move(req), buf, size, off, fi);
  refuse_write(std::move(req));
}

}  // namespace valkyrie::fuse
