#include "fuse/passthrough.hpp"

#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <utility>

#include "core/log.hpp"
#include "core/metrics.hpp"
#include "core/units.hpp"
#include "fuse/passthrough_abi.hpp"

namespace valkyrie::fuse {
namespace {
// Opens of regular files while passthrough is on, by how they were answered.
metrics::counter& opens(const char* how) {
  return metrics::registry::global().get_counter(
      "valkyrie_fuse_passthrough_opens_total",
      "opens of files while FUSE passthrough is on, by answer (prepared: a backing file filled "
      "ahead; filled: one made from the cached chunks at the open; shared: the inode's backing "
      "file, in use or kept from an earlier open; "
      "page_cache: through the daemon)",
      {{"answer", how}});
}
metrics::counter& opens_filled = opens("filled");
metrics::counter& opens_prepared = opens("prepared");
metrics::counter& opens_shared = opens("shared");
metrics::counter& opens_page_cache = opens("page_cache");
// Backing files filled ahead of their opens, by outcome.
metrics::counter& prepares(const char* outcome) {
  return metrics::registry::global().get_counter(
      "valkyrie_fuse_passthrough_prepares_total",
      "backing files filled ahead of their opens, by outcome (ready: filled; waited: no room, "
      "waiting for a release; dropped: a chunk was not cached or failed, or too many waited)",
      {{"outcome", outcome}});
}
metrics::counter& prepares_ready = prepares("ready");
metrics::counter& prepares_waited = prepares("waited");
metrics::counter& prepares_dropped = prepares("dropped");
metrics::gauge& pool_held = metrics::registry::global().get_gauge(
    "valkyrie_fuse_passthrough_pool_bytes",
    "bytes of FUSE passthrough backing files (free, kept or in use)");
}  // namespace

std::string passthrough_unavailable() {
  utsname u{};
  unsigned major = 0, minor = 0;
  if (::uname(&u) != 0 || std::sscanf(u.release, "%u.%u", &major, &minor) != 2)
    return "the kernel's release is unknown";
  if (major < 6 || (major == 6 && minor < 9))
    return std::string("Linux ") + u.release + " predates FUSE passthrough (6.9)";
  std::ifstream status("/proc/self/status");
  std::string line;
  constexpr int cap_sys_admin = 21;
  while (std::getline(status, line))
    if (line.rfind("CapEff:", 0) == 0) {
      std::uint64_t caps = std::strtoull(line.c_str() + 7, nullptr, 16);
      if ((caps >> cap_sys_admin) & 1) return {};
      break;
    }
  return "the daemon lacks CAP_SYS_ADMIN, which backing files need";
}

std::uint64_t auto_passthrough_pool(std::uint64_t cache_bytes, std::uint64_t chunk_bytes) {
  const std::uint64_t mib = 1 << 20, pool = cache_bytes / 8 / mib * mib;
  if (pool < mib || cache_bytes - pool < 2 * chunk_bytes) return 0;
  return pool;
}

std::string auto_pool_off_for_order(std::uint64_t pool_bytes, std::uint64_t min_bytes,
                                    std::uint64_t cache_bytes, std::uint64_t disk_bytes,
                                    order_bytes order) {
  if (pool_bytes == 0 || pool_bytes >= cache_bytes) return "";
  if (order.passable == 0)
    return "no object of the training order is of a size a backing file takes (" +
           format_size(min_bytes) + " to the pool's " + format_size(pool_bytes) +
           "): the chunk cache keeps its room";
  const std::uint64_t again = order.read > order.distinct ? order.read - order.distinct : 0;
  const std::uint64_t local = cache_bytes - pool_bytes + disk_bytes;
  if (again < pool_bytes || order.distinct <= local) return "";
  return "the training order reads " + format_size(again) + " again of " +
         format_size(order.distinct) + " of objects, more than stays local beside a pool (" +
         format_size(local) + "): its room keeps more of them (--passthrough-pool SIZE keeps one)";
}

backing_registry dev_fuse_backing(int dev_fd) {
  return {[dev_fd](int fd) {
            passthrough_abi::backing_map map{};
            map.fd = fd;
            return ::ioctl(dev_fd, passthrough_abi::ioc_backing_open, &map);
          },
          [dev_fd](int id) {
            auto unsigned_id = static_cast<std::uint32_t>(id);
            if (::ioctl(dev_fd, passthrough_abi::ioc_backing_close, &unsigned_id) != 0)
              log::get("fuse")->debug("passthrough: FUSE_DEV_IOC_BACKING_CLOSE: {}",
                                      std::strerror(errno));
          }};
}

passthrough_files::passthrough_files(backing_registry registry, std::uint64_t pool_bytes,
                                     std::uint64_t min_bytes)
    : registry_(std::move(registry)), pool_bytes_(pool_bytes), min_bytes_(min_bytes) {}

passthrough_files::~passthrough_files() {
  pool_held.sub(static_cast<std::int64_t>(held_bytes_));
  for (auto& f : free_) close_file(f);
  for (auto& [ino, st] : inodes_)
    if (st.backing.fd >= 0)
      close_file(st.backing);  // (the kernel drops its ids with the connection)
  for (auto& [v, p] : prepared_)
    if (p.ready) close_file(p.f);
}

bool passthrough_files::fits(std::uint64_t size) const {
  return size >= min_bytes_ && size <= pool_bytes_;
}

passthrough_files::file passthrough_files::file_of(const fill& f) {
  return {f.fd, f.size, f.data};
}

void passthrough_files::count_page_cache_locked(inode_state& st) {
  ++st.page_cache_opens;
  opens_page_cache.add();
}

int passthrough_files::join_locked(inode_state& st) {
  ++st.passthrough_opens;
  opens_shared.add();
  return st.backing_id;
}

std::optional<int> passthrough_files::attach_locked(inode_state& st, const file& f,
                                                    cache::version_ref version) {
  // (Under the lock: a quick ioctl, and no other open of the inode may come in between.)
  const int id = registry_.open(f.fd);
  if (id < 0) {
    const int err = errno;
    if (err == EPERM) {
      if (!refused_)
        log::event("fuse", spdlog::level::warn,
                   "FUSE passthrough off: the kernel refuses this daemon backing files (EPERM: "
                   "CAP_SYS_ADMIN in the initial user namespace is needed); reads go through the "
                   "page cache",
                   {});
      refused_ = true;
    } else {
      log::get("fuse")->warn("passthrough: FUSE_DEV_IOC_BACKING_OPEN failed: {}",
                             std::strerror(err));
    }
    return std::nullopt;
  }
  st.backing_id = id;
  st.version = std::move(version);
  st.backing = f;
  st.passthrough_opens = 1;
  return id;
}

void passthrough_files::close_file(const file& f) {
  if (f.data) ::munmap(f.data, f.size);
  if (f.fd >= 0) ::close(f.fd);
}

passthrough_files::decision passthrough_files::on_open(std::uint64_t ino,
                                                       const cache::version_ref& version) {
  std::lock_guard lock(mu_);
  auto it = inodes_.find(ino);
  if (it != inodes_.end()) {
    auto& st = it->second;
    if (st.passthrough_opens > 0 ||
        (st.backing_id >= 0 && st.page_cache_opens == 0 && *st.version == *version)) {
      if (st.passthrough_opens > 0 && !(*st.version == *version))
        log::get("fuse")->debug(
            "passthrough: an open of a newer version shares the open files' backing file");
      return {verdict::passthrough, join_locked(st)};
    }
    if (st.page_cache_opens > 0) {
      count_page_cache_locked(st);
      return {verdict::page_cache, -1};
    }
    if (st.backing_id >= 0) drop_backing_locked(st);  // idle, of an older version
  }
  if (auto* adopted = adopt_idle_locked(ino, version))
    return {verdict::passthrough, join_locked(*adopted)};
  if (refused_ || !fits(version->size)) {
    count_page_cache_locked(inodes_[ino]);
    return {verdict::page_cache, -1};
  }
  if (auto p = prepared_.find(version); p != prepared_.end() && p->second.waiting) {
    prepared_.erase(p);  // (its entry in waiting_ is skipped when reached)
  } else if (p != prepared_.end() && p->second.ready) {
    if (auto id = attach_locked(inodes_[ino], p->second.f, version)) {
      prepared_.erase(p);
      opens_prepared.add();
      return {verdict::passthrough, *id};
    }
  }
  return {verdict::candidate, -1};
}

bool passthrough_files::begin_prepare(const cache::version_ref& version) {
  if (!fits(version->size)) return false;
  std::lock_guard lock(mu_);
  if (refused_) return false;
  for (auto& [ino, st] : inodes_)
    if (st.backing_id >= 0 && *st.version == *version) return false;
  return prepared_.try_emplace(version).second;
}

void passthrough_files::defer_prepare(const cache::version_ref& version) {
  std::lock_guard lock(mu_);
  auto p = prepared_.find(version);
  if (p == prepared_.end() || p->second.ready || p->second.waiting) return;
  p->second.waiting = true;
  waiting_.push_back(version);
  prepares_waited.add();
  while (waiting_.size() > max_waiting) {
    auto old = prepared_.find(waiting_.front());
    if (old != prepared_.end() && old->second.waiting) {
      prepared_.erase(old);
      prepares_dropped.add();
    }
    waiting_.pop_front();
  }
}

void passthrough_files::end_prepare(const cache::version_ref& version, std::optional<fill> f) {
  std::lock_guard lock(mu_);
  auto p = prepared_.find(version);
  if (!f) {
    if (p != prepared_.end() && !p->second.ready) prepared_.erase(p);
    prepares_dropped.add();
    return;
  }
  if (p == prepared_.end() || p->second.ready) {  // (not ours: cannot happen; keep the file)
    free_.push_back(file_of(*f));
    return;
  }
  p->second.ready = true;
  prepares_ready.add();
  p->second.f = file_of(*f);
  p->second.seq = ++prepared_seq_;
}

int passthrough_files::open_unfilled(std::uint64_t ino) {
  std::lock_guard lock(mu_);
  auto& st = inodes_[ino];
  if (st.passthrough_opens > 0) return join_locked(st);  // another open filled one meanwhile
  count_page_cache_locked(st);
  return -1;
}

std::optional<passthrough_files::fill> passthrough_files::begin_fill(std::uint64_t size,
                                                                     bool ahead) {
  file f;
  std::vector<file> closing;  // free files dropped to make room (closed outside the lock)
  bool room = false;
  {
    std::lock_guard lock(mu_);
    // Room first: idle backing files go (any order), then, for an open, prepared ones (the
    // oldest: with an order, prepared files are opened in turn, so an open that finds none of
    // its own is off the order, and the oldest is the likeliest to be stale), while what free
    // files hold would not make room.
    while (held_bytes_ + size > pool_bytes_ && held_bytes_ > 0) {
      std::uint64_t free_bytes = 0;
      for (auto& x : free_) free_bytes += x.size;
      if (held_bytes_ - free_bytes + size <= pool_bytes_) break;
      if (!evict_idle_locked() && (ahead || !evict_prepared_locked())) break;
    }
    // The smallest free file that holds `size` keeps the most pages of the others; else the
    // largest, grown. Other free files are dropped while the pool would hold more than its size.
    std::size_t best = free_.size();
    for (std::size_t i = 0; i < free_.size(); ++i) {
      if (best == free_.size()) {
        best = i;
        continue;
      }
      const bool fits = free_[i].size >= size, best_fits = free_[best].size >= size;
      if (fits != best_fits
              ? fits
              : (fits ? free_[i].size < free_[best].size : free_[i].size > free_[best].size))
        best = i;
    }
    if (best < free_.size()) {
      f = free_[best];
      free_.erase(free_.begin() + static_cast<std::ptrdiff_t>(best));
    }
    auto over = [&] { return held_bytes_ - f.size + size > pool_bytes_; };
    while (over() && !free_.empty()) {
      held_bytes_ -= free_.back().size;
      pool_held.sub(static_cast<std::int64_t>(free_.back().size));
      closing.push_back(free_.back());
      free_.pop_back();
    }
    room = !over();
    if (!room) {
      if (f.fd >= 0) free_.push_back(f);
    } else {
      held_bytes_ = held_bytes_ - f.size + size;
      pool_held.add(static_cast<std::int64_t>(size) - static_cast<std::int64_t>(f.size));
    }
  }
  for (auto& c : closing) close_file(c);
  if (!room) return std::nullopt;

  // A file of another size is resized and mapped again (its new mapping starts unfaulted).
  std::uint64_t fresh_from = size;
  if (f.fd < 0) f.fd = ::memfd_create("valkyrie-passthrough", MFD_CLOEXEC);
  if (f.fd >= 0 && f.size != size) {
    if (f.data) ::munmap(f.data, f.size);
    f.data = nullptr;
    if (::ftruncate(f.fd, static_cast<off_t>(size)) == 0) {
      void* map = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, f.fd, 0);
      if (map != MAP_FAILED) f.data = static_cast<char*>(map);
    }
    fresh_from = 0;
  }
  if (f.fd < 0 || !f.data) {
    log::get("fuse")->warn("passthrough: no backing file of {} bytes: {}", size,
                           std::strerror(errno));
    if (f.fd >= 0) ::close(f.fd);
    std::lock_guard lock(mu_);
    held_bytes_ -= size;
    pool_held.sub(static_cast<std::int64_t>(size));
    return std::nullopt;
  }
  return fill{f.fd, f.data, size, fresh_from};
}

void passthrough_files::back_pages(char* data, std::uint64_t from, std::uint64_t to) {
  from &= ~std::uint64_t{4095};
  if (from < to)
    ::madvise(data + from, to - from, MADV_POPULATE_WRITE);  // (else the copy faults them)
}

void passthrough_files::abandon_fill(fill f) {
  std::lock_guard lock(mu_);
  free_.push_back(file_of(f));
}

std::optional<int> passthrough_files::finish_fill(std::uint64_t ino, cache::version_ref version,
                                                  fill f) {
  std::lock_guard lock(mu_);
  auto& st = inodes_[ino];
  if (st.page_cache_opens > 0 || st.passthrough_opens > 0) {
    free_.push_back(file_of(f));
    if (st.passthrough_opens > 0) return join_locked(st);
    count_page_cache_locked(st);
    return std::nullopt;
  }
  if (st.backing_id >= 0) drop_backing_locked(st);  // idle, of an older version
  auto id = attach_locked(st, file_of(f), std::move(version));
  if (!id) {
    free_.push_back(file_of(f));
    count_page_cache_locked(st);
    return std::nullopt;
  }
  opens_filled.add();
  return id;
}

std::optional<cache::version_ref> passthrough_files::release_passthrough(std::uint64_t ino) {
  std::lock_guard lock(mu_);
  auto it = inodes_.find(ino);
  if (it == inodes_.end() || it->second.passthrough_opens == 0) return std::nullopt;
  // The last one leaves the backing file idle, for the next open of the same version, unless a
  // prepare waits for its room. (The kernel ends the inode's passthrough before it sends the
  // RELEASE.)
  if (--it->second.passthrough_opens > 0) return std::nullopt;
  while (!waiting_.empty()) {
    auto version = std::move(waiting_.front());
    waiting_.pop_front();
    auto p = prepared_.find(version);
    if (p == prepared_.end() || !p->second.waiting) continue;  // opened meanwhile
    p->second.waiting = false;
    return version;
  }
  return std::nullopt;
}

void passthrough_files::release_page_cache(std::uint64_t ino) {
  std::lock_guard lock(mu_);
  auto it = inodes_.find(ino);
  if (it == inodes_.end() || it->second.page_cache_opens == 0) return;
  --it->second.page_cache_opens;
  forget_if_unused_locked(ino);
}

void passthrough_files::drop_backing_locked(inode_state& st) {
  registry_.close(st.backing_id);
  free_.push_back(st.backing);
  st.backing = {};
  st.backing_id = -1;
  st.version.reset();
}

void passthrough_files::forget_if_unused_locked(std::uint64_t ino) {
  auto it = inodes_.find(ino);
  if (it != inodes_.end() && it->second.page_cache_opens == 0 &&
      it->second.passthrough_opens == 0 && it->second.backing_id < 0)
    inodes_.erase(it);
}

passthrough_files::inode_state* passthrough_files::adopt_idle_locked(
    std::uint64_t ino, const cache::version_ref& version) {
  auto from = std::find_if(inodes_.begin(), inodes_.end(), [&](const auto& kv) {
    const inode_state& o = kv.second;
    return kv.first != ino && o.backing_id >= 0 && o.passthrough_opens == 0 &&
           *o.version == *version;
  });
  if (from == inodes_.end()) return nullptr;
  const int id = std::exchange(from->second.backing_id, -1);
  auto kept_version = std::move(from->second.version);
  const file kept = std::exchange(from->second.backing, file{});
  forget_if_unused_locked(from->first);
  inode_state& st = inodes_[ino];  // (no opens, no backing file: see on_open)
  st.backing_id = id;
  st.version = std::move(kept_version);
  st.backing = kept;
  return &st;
}

bool passthrough_files::evict_prepared_locked() {
  auto oldest = prepared_.end();
  for (auto it = prepared_.begin(); it != prepared_.end(); ++it)
    if (it->second.ready && (oldest == prepared_.end() || it->second.seq < oldest->second.seq))
      oldest = it;
  if (oldest == prepared_.end()) return false;
  free_.push_back(oldest->second.f);
  prepared_.erase(oldest);
  return true;
}

bool passthrough_files::evict_idle_locked() {
  for (auto it = inodes_.begin(); it != inodes_.end(); ++it) {
    auto& st = it->second;
    if (st.backing_id < 0 || st.passthrough_opens > 0) continue;
    drop_backing_locked(st);
    if (st.page_cache_opens == 0) inodes_.erase(it);
    return true;
  }
  return false;
}

}  // namespace valkyrie::fuse
