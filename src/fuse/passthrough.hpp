#pragma once
// FUSE passthrough (Linux >= 6.9): an open file whose reads the kernel serves from a backing file
// itself, with no READ request and no copy into the FUSE file's page cache (a 64 MiB object then
// reads in 1.04-1.12 x its tmpfs time, against 2.5 x through FUSE's page cache:
// docs/benchmarks.md).
//
// Owns: the backing files (memfds), at most `pool_bytes` of them, each holding one object
// version: prepared (filled ahead of its open from the chunks a prefetch of the whole object
// brings), an inode's (in use: open files read it; idle: kept for the next open of the same
// version) or free (kept for its pages). An OPEN of an object of at least `min_bytes` takes its
// prepared file, or else, if its chunks are all cached, a free file (or a new one, or an idle
// one evicted) into which it copies them; registers the file on /dev/fuse
// (FUSE_DEV_IOC_BACKING_OPEN) and answers with FOPEN_PASSTHROUGH and the id. The last release
// leaves the file idle: a later open of the same version answers with it at once (under a new
// inode number too, once the kernel forgot the old one). A file given back keeps its pages, so
// after the first few the copies go into memory already backed.
// The kernel's rules, per inode: an open through passthrough fails (EIO in the opener) while the
// inode is open through the page cache, and the reverse; passthrough opens at the same time must
// share one backing file. So an open of an inode with passthrough opens joins their file (even
// one that found a newer version: the files already open read the older bytes, and the kernel
// allows nothing else), an inode open through the page cache is not passed through, a file
// filled while the inode was opened another way is given back unused, and an open that filled
// nothing joins the passthrough opens that came meanwhile. Per inode, at most one of the two
// counts is non-zero; the daemon's counts rise before the kernel's (at the answer) and fall after
// them (the kernel ends an open's mode before it sends the RELEASE), so they never undercount.
// Threading: any reactor; one mutex over the files and the inode map, held for bookkeeping and
// the quick ioctls, never across the copy (which runs on the opener's reactor, after its fresh
// pages are backed on the pool's background thread).
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "cache/chunk_id.hpp"

namespace valkyrie::fuse {

// Why this process cannot use FUSE passthrough, or "" if it may: Linux >= 6.9 (the INIT
// request still says whether the kernel was built with it) and CAP_SYS_ADMIN, which
// FUSE_DEV_IOC_BACKING_OPEN requires (in a user namespace the kernel may still refuse: the
// first refusal turns passthrough off, see attach_locked).
std::string passthrough_unavailable();
// The part of a --cache-size of `cache_bytes` that --passthrough-pool auto gives backing files:
// an eighth, in whole MiB; 0 when that is under 1 MiB or would leave the chunk cache fewer than
// two chunks.
std::uint64_t auto_passthrough_pool(std::uint64_t cache_bytes, std::uint64_t chunk_bytes);
// A known training order's bytes (a --manifest's): its objects once each, as it reads them, and
// those of a size a backing file takes (min_bytes to the pool's size).
struct order_bytes {
  std::uint64_t distinct = 0, read = 0, passable = 0;
};
// Why --passthrough-pool auto turns a pool of `pool_bytes` off for this order, or "" to keep it.
// The pool is part of --cache-size, so its room is the chunk cache's loss, and it pays only for
// objects it can take: with none in the order (small objects, all under min_bytes), it goes.
// And the file being read sits whole in it (the kernel reads it with no request: the daemon
// never learns how far it got, so gives back nothing as it goes). So when an order reads its
// objects again and they outgrow what stays local (the chunk cache beside the pool, plus the
// disk tier's `disk_bytes`), the pool costs one file kept per pass: every pass then fetches that
// much more from S3 (epochs over twice the cache: 0.38 of the bytes without S3 against 0.50 with
// no pool, docs/benchmarks.md). It goes then when the order reads again at least the pool's
// size, so that a stray repeated line does not turn it off.
std::string auto_pool_off_for_order(std::uint64_t pool_bytes, std::uint64_t min_bytes,
                                    std::uint64_t cache_bytes, std::uint64_t disk_bytes,
                                    order_bytes order);

// How backing files are registered with the kernel: /dev/fuse's ioctls (dev_fuse_backing), or a
// unit test's stand-in.
struct backing_registry {
  std::function<int(int fd)> open;    // FUSE_DEV_IOC_BACKING_OPEN: the id, or -1 with errno set
  std::function<void(int id)> close;  // FUSE_DEV_IOC_BACKING_CLOSE
};
// The ioctls on the session's /dev/fuse fd.
backing_registry dev_fuse_backing(int dev_fd);

class passthrough_files {
 public:
  passthrough_files(backing_registry registry, std::uint64_t pool_bytes, std::uint64_t min_bytes);
  ~passthrough_files();
  passthrough_files(const passthrough_files&) = delete;
  passthrough_files& operator=(const passthrough_files&) = delete;

  // What an open of `ino` (the object version `version`) gets:
  //  - passthrough: the inode's backing file (`backing_id`), live or idle with this version;
  //  - page_cache: through the page cache (counted until release_page_cache);
  //  - candidate: nothing to share; the caller may fill a file (begin_fill, finish_fill), and
  //    must call open_unfilled if it does not.
  enum class verdict { passthrough, page_cache, candidate };
  struct decision {
    verdict v = verdict::page_cache;
    int backing_id = -1;
  };
  decision on_open(std::uint64_t ino, const cache::version_ref& version);
  // An open after a candidate verdict that filled no file: the inode's backing file if
  // passthrough opens came meanwhile (the kernel would fail a page-cache open with EIO then),
  // else -1: through the page cache, counted until release_page_cache.
  int open_unfilled(std::uint64_t ino);

  // A file of `size` bytes mapped for writing, or nullopt (every byte of the pool is in files
  // in use). Its mapping's bytes from `fresh_from` on are not mapped to pages yet (back_pages,
  // off the reactor). Each file keeps one mapping for its life: page faults cost ~10 us here,
  // so a copy into a fresh mapping of 64 MiB took 200 ms even into pages the file had.
  struct fill {
    int fd = -1;
    char* data = nullptr;
    std::uint64_t size = 0;
    std::uint64_t fresh_from = 0;
  };
  // `ahead`: for a prepare (evicts only idle files, never prepared ones).
  std::optional<fill> begin_fill(std::uint64_t size, bool ahead = false);
  // Backs and maps bytes [from, to) of a fill's mapping (MADV_POPULATE_WRITE): slow where the
  // host backs fresh memory lazily and faults are dear (~0.3 GB/s here).
  static void back_pages(char* data, std::uint64_t from, std::uint64_t to);
  // The filled file becomes the inode's backing file: its id, or nullopt (the inode was opened
  // another way meanwhile, or registration failed: the open then goes through the page cache,
  // counted as such). An open that found passthrough opens meanwhile joins them.
  std::optional<int> finish_fill(std::uint64_t ino, cache::version_ref version, fill f);
  // A fill not finished (the copy came short): the file goes back.
  void abandon_fill(fill f);

  // Filling ahead: true if `version` should be prepared now (no file of it, prepared, being
  // prepared or waiting); end_prepare then hands over the filled file, or nullopt when it could
  // not be. Such fills take only room that free or idle files give. One that found none waits
  // (defer_prepare) until a release leaves a file idle: with an order the next files are
  // queued before the file being read is closed, so a pool of two files' room would otherwise
  // prepare only every other one.
  bool begin_prepare(const cache::version_ref& version);
  void end_prepare(const cache::version_ref& version, std::optional<fill> f);
  void defer_prepare(const cache::version_ref& version);
  std::uint64_t min_bytes() const { return min_bytes_; }
  std::uint64_t pool_bytes() const { return pool_bytes_; }

  // Releases of the two kinds of open. The last passthrough release leaves its file idle: the
  // waiting prepare it now has room for, if any, to be resumed by the caller (prepare_backing).
  std::optional<cache::version_ref> release_passthrough(std::uint64_t ino);
  void release_page_cache(std::uint64_t ino);

 private:
  struct file {
    int fd = -1;
    std::uint64_t size = 0;  // its length (its pages stay while it is free)
    char* data = nullptr;    // its one mapping, of `size` bytes
  };
  static void close_file(const file& f);
  static file file_of(const fill& f);
  // Whether an object of `size` bytes may have a backing file (min_bytes to pool_bytes).
  bool fits(std::uint64_t size) const;
  struct inode_state {
    unsigned page_cache_opens = 0;
    unsigned passthrough_opens = 0;
    int backing_id = -1;         // >= 0: a backing file (in use, or idle with no opens)
    cache::version_ref version;  // of the backing file's bytes
    file backing;
  };
  void drop_backing_locked(inode_state& st);  // closes the id, frees the file
  void count_page_cache_locked(inode_state& st);
  int join_locked(inode_state& st);  // one more open of its backing file: the id
  // Registers `f` on /dev/fuse as the inode's backing file, its first passthrough open; nullopt
  // (logged) when the kernel refuses. A refusal for want of privilege (EPERM) turns passthrough
  // off for the session: every later open goes through the page cache without asking again.
  std::optional<int> attach_locked(inode_state& st, const file& f, cache::version_ref version);
  void forget_if_unused_locked(std::uint64_t ino);
  // Moves an idle backing file of `version` kept under another inode number to `ino`'s state
  // (which has no opens and no backing file); nullptr if there is none. The kernel forgets an inode
  // nobody holds (dropped caches, memory pressure) and a later lookup of the key gets a new number,
  // while its backing file (its id belongs to the connection, not to an inode) still holds the
  // bytes.
  inode_state* adopt_idle_locked(std::uint64_t ino, const cache::version_ref& version);
  bool evict_idle_locked();      // one idle backing file to the free files; false: none
  bool evict_prepared_locked();  // the oldest prepared file to the free files; false: none
  struct version_hash {
    std::size_t operator()(const cache::version_ref& v) const { return v->hash; }
  };
  struct version_equal {
    bool operator()(const cache::version_ref& a, const cache::version_ref& b) const {
      return *a == *b;
    }
  };
  struct prepared_file {
    bool ready = false;    // false: being filled, or waiting for room
    bool waiting = false;  // in waiting_
    file f;
    std::uint64_t seq = 0;  // when it was prepared (the oldest goes first)
  };

  const backing_registry registry_;
  const std::uint64_t pool_bytes_, min_bytes_;
  std::mutex mu_;
  std::vector<file> free_;
  std::uint64_t held_bytes_ = 0;  // every file's size: free, idle or in use
  std::unordered_map<std::uint64_t, inode_state> inodes_;
  std::unordered_map<cache::version_ref, prepared_file, version_hash, version_equal> prepared_;
  std::uint64_t prepared_seq_ = 0;
  // Prepares that found no room, oldest first (the order's nearest files); at most
  // max_waiting, the oldest dropped beyond.
  std::deque<cache::version_ref> waiting_;
  static constexpr std::size_t max_waiting = 8;
  bool refused_ = false;  // the kernel refused a backing file with EPERM
};

}  // namespace valkyrie::fuse
