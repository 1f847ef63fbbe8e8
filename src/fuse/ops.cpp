// The FUSE lowlevel ops table. Each op copies what it needs out of libfuse's arguments, starts a
// coroutine on the calling reactor and returns; the coroutine replies.
#define FUSE_USE_VERSION 34
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <cstring>

#include "core/errors.hpp"
#include "core/log.hpp"
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

struct stat stat_of(session* s, const fs::attributes& a) {
  struct stat st;
  std::memset(&st, 0, sizeof st);
  const auto& o = s->options();
  st.st_ino = a.ino;
  st.st_mode = a.directory ? (S_IFDIR | o.dir_mode) : (S_IFREG | o.file_mode);
  st.st_nlink = a.directory ? 2 : 1;
  st.st_uid = o.uid;
  st.st_gid = o.gid;
  st.st_size = static_cast<off_t>(a.size);
  st.st_blksize = 1 << 20;
  st.st_blocks = static_cast<blkcnt_t>((a.size + 511) / 512);
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(a.mtime.time_since_epoch()).count();
  timespec t{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
  st.st_mtim = st.st_ctim = st.st_atim = t;
  return st;
}

fuse_entry_param entry_of(session* s, const fs::attributes& a) {
  fuse_entry_param e;
  std::memset(&e, 0, sizeof e);
  e.ino = a.ino;
  e.attr = stat_of(s, a);
  e.attr_timeout = s->options().attr_timeout;
  e.entry_timeout = s->options().attr_timeout;
  return e;
}

using file_holder = std::shared_ptr<fs::open_file>;

// ---- namespace ----
awaitable<void> do_lookup(session* s, fuse_req_t req, fuse_ino_t parent, std::string name) {
  auto r = co_await s->filesystem().lookup(parent, std::move(name));
  if (!r) {
    fuse_reply_err(req, to_errno(r.error()));
    co_return;
  }
  auto e = entry_of(s, *r);
  fuse_reply_entry(req, &e);
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  spawn(self(req), do_lookup(self(req), req, parent, std::string(name)));
}

void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  self(req)->filesystem().forget(ino, nlookup);
  fuse_reply_none(req);
}

void op_forget_multi(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  for (size_t i = 0; i < count; ++i) self(req)->filesystem().forget(forgets[i].ino, forgets[i].nlookup);
  fuse_reply_none(req);
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  auto* s = self(req);
  auto r = s->filesystem().getattr(ino);
  if (!r) {
    fuse_reply_err(req, to_errno(r.error()));
    return;
  }
  auto st = stat_of(s, *r);
  fuse_reply_attr(req, &st, s->options().attr_timeout);
}

void op_opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  auto r = self(req)->filesystem().getattr(ino);
  if (!r) return (void)fuse_reply_err(req, to_errno(r.error()));
  if (!r->directory) return (void)fuse_reply_err(req, ENOTDIR);
  fi->fh = 0;
  fi->cache_readdir = 0;
  fuse_reply_open(req, fi);
}

// Offsets: 1 and 2 are "." and "..", entry i of the listing is at offset i + 3.
awaitable<void> do_readdir(session* s, fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus) {
  auto listing = co_await s->filesystem().readdir(ino);
  if (!listing) {
    fuse_reply_err(req, to_errno(listing.error()));
    co_return;
  }
  std::vector<char> buf(size);
  size_t used = 0;
  auto add = [&](const char* name, const fs::attributes& a, off_t next, bool counted) -> bool {
    size_t n;
    if (plus) {
      auto e = entry_of(s, a);
      if (!counted) e.ino = 0, e.attr_timeout = e.entry_timeout = 0;  // no lookup for . and ..
      n = fuse_add_direntry_plus(req, buf.data() + used, size - used, name, &e, next);
    } else {
      auto st = stat_of(s, a);
      n = fuse_add_direntry(req, buf.data() + used, size - used, name, &st, next);
    }
    if (n > size - used) return false;
    used += n;
    return true;
  };
  fs::attributes dir{ino, true, 0, {}};
  if (off < 1 && !add(".", dir, 1, false)) goto reply;
  if (off < 2 && !add("..", dir, 2, false)) goto reply;
  for (size_t i = off > 2 ? static_cast<size_t>(off - 2) : 0; i < listing->size(); ++i) {
    auto& e = (*listing)[i];
    fs::attributes a = e.attr;
    if (plus) {
      // Measure first: only entries that fit are handed out, and only those count a lookup.
      auto probe = entry_of(s, a);
      if (fuse_add_direntry_plus(req, nullptr, 0, e.name.c_str(), &probe, 0) > size - used) break;
      auto counted = s->filesystem().remember_entry(ino, e);
      if (!counted) continue;  // directory vanished meanwhile
      a = *counted;
    } else if (a.ino == 0) {
      a.ino = 0xffffffff;  // unknown until looked up; readdir's ino is informational
    }
    if (!add(e.name.c_str(), a, static_cast<off_t>(i + 3), true)) break;
  }
reply:
  fuse_reply_buf(req, buf.data(), used);
}

void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  spawn(self(req), do_readdir(self(req), req, ino, size, off, false));
}
void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  spawn(self(req), do_readdir(self(req), req, ino, size, off, true));
}
void op_releasedir(fuse_req_t req, fuse_ino_t, fuse_file_info*) { fuse_reply_err(req, 0); }

// ---- files ----
awaitable<void> do_open(session* s, fuse_req_t req, fuse_ino_t ino, fuse_file_info fi) {
  auto r = co_await s->filesystem().open(ino);
  if (!r) {
    fuse_reply_err(req, r.error() == errc::invalid_argument ? EISDIR : to_errno(r.error()));
    co_return;
  }
  fi.keep_cache = (*r)->keep_cache ? 1 : 0;
  fi.fh = reinterpret_cast<uint64_t>(new file_holder(*r));
  if (fuse_reply_open(req, &fi) != 0) delete reinterpret_cast<file_holder*>(fi.fh);  // interrupted
}

void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) return (void)fuse_reply_err(req, EROFS);
  spawn(self(req), do_open(self(req), req, ino, *fi));  // fuse_file_info copied: libfuse reuses it
}

awaitable<void> do_read(session* s, fuse_req_t req, file_holder file, size_t size, off_t off) {
  auto r = co_await s->filesystem().read(file, static_cast<std::uint64_t>(off), size);
  if (!r) {
    fuse_reply_err(req, to_errno(r.error()));
    co_return;
  }
  // Reply straight from the pinned cache chunks; the kernel copies them during this call.
  std::vector<iovec> iov;
  iov.reserve(r->slices.size());
  for (auto& sl : r->slices) iov.push_back({const_cast<char*>(sl.data()), sl.size()});
  fuse_reply_iov(req, iov.data(), static_cast<int>(iov.size()));
}

void op_read(fuse_req_t req, fuse_ino_t, size_t size, off_t off, fuse_file_info* fi) {
  auto file = *reinterpret_cast<file_holder*>(fi->fh);
  spawn(self(req), do_read(self(req), req, std::move(file), size, off));
}

void op_release(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  delete reinterpret_cast<file_holder*>(fi->fh);
  fuse_reply_err(req, 0);
}

void op_statfs(fuse_req_t req, fuse_ino_t) {
  struct statvfs st;
  std::memset(&st, 0, sizeof st);
  st.f_bsize = 1 << 20;
  st.f_frsize = 1 << 20;
  st.f_blocks = 1ull << 30;  // "a lot": S3 has no size
  st.f_files = 1ull << 30;
  st.f_namemax = 255;
  st.f_flag = ST_RDONLY;
  fuse_reply_statfs(req, &st);
}

void op_access(fuse_req_t req, fuse_ino_t ino, int mask) {
  if (mask & W_OK) return (void)fuse_reply_err(req, EROFS);
  auto r = self(req)->filesystem().getattr(ino);
  fuse_reply_err(req, r ? 0 : to_errno(r.error()));
}

void op_getxattr(fuse_req_t req, fuse_ino_t, const char*, size_t) { fuse_reply_err(req, ENODATA); }
void op_listxattr(fuse_req_t req, fuse_ino_t, size_t size) {
  if (size == 0) fuse_reply_xattr(req, 0);
  else fuse_reply_buf(req, nullptr, 0);
}

// ---- everything that writes: read-only filesystem ----
void op_setattr(fuse_req_t req, fuse_ino_t, struct stat*, int, fuse_file_info*) { fuse_reply_err(req, EROFS); }
void op_mknod(fuse_req_t req, fuse_ino_t, const char*, mode_t, dev_t) { fuse_reply_err(req, EROFS); }
void op_mkdir(fuse_req_t req, fuse_ino_t, const char*, mode_t) { fuse_reply_err(req, EROFS); }
void op_unlink(fuse_req_t req, fuse_ino_t, const char*) { fuse_reply_err(req, EROFS); }
void op_rmdir(fuse_req_t req, fuse_ino_t, const char*) { fuse_reply_err(req, EROFS); }
void op_symlink(fuse_req_t req, const char*, fuse_ino_t, const char*) { fuse_reply_err(req, EROFS); }
void op_rename(fuse_req_t req, fuse_ino_t, const char*, fuse_ino_t, const char*, unsigned) { fuse_reply_err(req, EROFS); }
void op_link(fuse_req_t req, fuse_ino_t, fuse_ino_t, const char*) { fuse_reply_err(req, EROFS); }
void op_write(fuse_req_t req, fuse_ino_t, const char*, size_t, off_t, fuse_file_info*) { fuse_reply_err(req, EROFS); }
void op_create(fuse_req_t req, fuse_ino_t, const char*, mode_t, fuse_file_info*) { fuse_reply_err(req, EROFS); }
void op_setxattr(fuse_req_t req, fuse_ino_t, const char*, const char*, size_t, int) { fuse_reply_err(req, EROFS); }
void op_removexattr(fuse_req_t req, fuse_ino_t, const char*) { fuse_reply_err(req, EROFS); }
void op_fallocate(fuse_req_t req, fuse_ino_t, int, off_t, off_t, fuse_file_info*) { fuse_reply_err(req, EROFS); }

void op_init(void* userdata, fuse_conn_info* conn) {
  auto* s = static_cast<session*>(userdata);
  const auto& o = s->options();
  if (conn->capable & FUSE_CAP_ASYNC_READ) conn->want |= FUSE_CAP_ASYNC_READ;
  if (conn->capable & FUSE_CAP_READDIRPLUS) conn->want |= FUSE_CAP_READDIRPLUS;
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
