#define FUSE_USE_VERSION 34
#include "fuse/dir_stream.hpp"

#include <cstring>
#include <string>

namespace valkyrie::fuse {

struct stat stat_of(const mount_options& o, const fs::attributes& a) {
  struct stat st;
  std::memset(&st, 0, sizeof st);
  st.st_ino = a.ino;
  if (a.control)
    st.st_mode = a.directory ? (S_IFDIR | 0755) : (S_IFREG | 0644);  // the owner writes the order
  else
    st.st_mode = a.directory ? (S_IFDIR | o.dir_mode) : (S_IFREG | o.file_mode);
  st.st_nlink = a.directory ? 2 : 1;
  st.st_uid = o.uid;
  st.st_gid = o.gid;
  st.st_size = static_cast<off_t>(a.size);
  st.st_blksize = 1 << 20;
  st.st_blocks = static_cast<blkcnt_t>((a.size + 511) / 512);
  auto ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(a.mtime.time_since_epoch()).count();
  timespec t{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
  st.st_mtim = st.st_ctim = st.st_atim = t;
  return st;
}

fuse_entry_param entry_of(const mount_options& o, const fs::attributes& a) {
  fuse_entry_param e;
  std::memset(&e, 0, sizeof e);
  e.ino = a.ino;
  e.attr = stat_of(o, a);
  e.attr_timeout = o.attr_timeout;
  e.entry_timeout = o.attr_timeout;
  return e;
}

awaitable<result<std::vector<char>>> dir_stream::page(off_t off, std::size_t size, bool plus,
                                                      std::function<bool()> proceed) {
  // The directory's shared snapshot: paging through it copies nothing. A page after the first
  // resumes in the snapshot the first one came from, whatever the filesystem has listed since.
  std::shared_ptr<const fs::dir_listing> listing;
  if (off > 0) {
    std::lock_guard lock(mu_);
    listing = snapshot_;
  }
  if (!listing) {
    auto fresh = co_await fs_.listing(ino_);
    if (!fresh) co_return fresh.error();
    listing = *fresh;
    std::lock_guard lock(mu_);
    snapshot_ = listing;
  }
  if (proceed && !proceed()) co_return make_error_code(std::errc::operation_canceled);
  std::vector<char> buf(size);
  std::size_t used = 0;
  // (libfuse's fuse_add_direntry* only measure and format: they need no request.)
  auto add = [&](const char* name, const fs::attributes& a, off_t next, bool counted) -> bool {
    std::size_t n;
    if (plus) {
      auto e = entry_of(opts_, a);
      if (!counted) e.ino = 0, e.attr_timeout = e.entry_timeout = 0;  // no lookup for . and ..
      n = fuse_add_direntry_plus(nullptr, buf.data() + used, size - used, name, &e, next);
    } else {
      auto st = stat_of(opts_, a);
      n = fuse_add_direntry(nullptr, buf.data() + used, size - used, name, &st, next);
    }
    if (n > size - used) return false;
    used += n;
    return true;
  };
  std::string name;
  fs::attributes dir{ino_, true, 0, {}};
  if (off < 1 && !add(".", dir, 1, false)) goto done;
  if (off < 2 && !add("..", dir, 2, false)) goto done;
  for (std::size_t i = off > 2 ? static_cast<std::size_t>(off - 2) : 0; i < listing->size(); ++i) {
    name.assign(listing->name(i));
    fs::attributes a;
    if (plus) {
      // Measure first: only entries that fit are handed out, and only those count a lookup.
      auto& le = listing->at(i);
      auto probe = entry_of(opts_, fs::attributes{0, le.directory, le.size, le.mtime});
      if (fuse_add_direntry_plus(nullptr, nullptr, 0, name.c_str(), &probe, 0) > size - used) break;
      auto counted = fs_.remember_entry(ino_, *listing, i);
      if (!counted) continue;  // directory vanished meanwhile
      a = *counted;
    } else {
      a = fs_.entry_attr(ino_, *listing, i);
      if (a.ino == 0)
        a.ino = 0xffffffff;  // unknown until looked up; readdir's ino is informational
    }
    if (!add(name.c_str(), a, static_cast<off_t>(i + 3), true)) break;
  }
done:
  buf.resize(used);
  co_return buf;
}

}  // namespace valkyrie::fuse
