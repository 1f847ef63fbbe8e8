#pragma once
// fs: the namespace (inodes over S3 keys) and the read path (chunks through the cache).
//
// Owns: the inode table, each directory's cached listing, and the open-file handles.
// Threading: called from any reactor. The inode table has one mutex, taken for metadata
// operations only (never across I/O); reads touch only their handle (atomics) and the cache's
// shards, so the read path has no global lock. S3 requests use the object client of the calling
// reactor.
// Invariants: inode numbers are stable while referenced (lookup count > 0) and freed on forget;
// a handle pins the ETag seen at open, and every ranged GET carries it (If-Match), so a read never
// mixes two versions of an object; keys that cannot be names ("", ".", "..", over 255 bytes) are
// never exposed; when "a" and "a/..." both exist the directory wins.
// Control files: "/.valkyrie/order" (fixed inodes, never listed, shadowing any such key) holds
// the training order; writing it replaces the order while the mount runs (set_order). The order
// in force is one immutable order_state swapped atomically, so readers and the cache's eviction
// never lock for it.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>
#include <vector>

#include "cache/chunk_cache.hpp"
#include "fs/dir_listing.hpp"
#include "fs/inode_table.hpp"
#include "fs/training_order.hpp"
#include "prefetch/link_estimator.hpp"
#include "prefetch/predictor.hpp"
#include "prefetch/stream.hpp"
#include "s3/object_client.hpp"
#include "tier/disk_tier.hpp"
#include "tier/shared_tier.hpp"

namespace valkyrie::fs {

// ino_t, root_ino, control_dir_ino and order_file_ino: see inode_table.hpp.
inline constexpr const char* control_dir_name = ".valkyrie";
inline constexpr const char* order_file_name = "order";

struct attributes {
  ino_t ino = 0;
  bool directory = false;
  std::uint64_t size = 0;
  std::chrono::system_clock::time_point mtime{};
  bool control = false;  // a control directory or file (owner-writable)
};

struct dir_entry {
  std::string name;
  attributes attr;  // ino is 0 unless the entry was looked up
  std::string etag;
};

struct options {
  std::string bucket;  // part of every chunk's identity
  std::string prefix;  // key prefix the mount shows ("" or ending in '/')
  std::chrono::nanoseconds metadata_ttl = std::chrono::seconds(60);
  unsigned max_readahead_chunks = 32;  // a stream's largest read-ahead window (at most half the cache)
  // Whole files fetched ahead of a reader, at most (the prefetch budget decides below that):
  // with a training order as deep as the prefetch zone allows; without one, first_lookahead_files
  // after a file, doubling while the reader follows the listing. 0: none.
  unsigned lookahead_files = ~0u;
  unsigned first_lookahead_files = 2;
  // A random reader's miss fetches the aligned blocks of this size that it touches, not whole
  // chunks (at or above the chunk size: whole chunks).
  std::uint32_t random_block_size = 256 * 1024;
  std::shared_ptr<prefetch::predictor> order;  // the manifest's training order, if any
  std::uint64_t order_chunk_bytes = 0;  // its size for the disk tier (fs::read_order's chunk_bytes)
  bool control_files = true;  // serve /.valkyrie/order
  // Every key under the prefix (relative) with its size and ETag, from the listing that checked
  // the manifest at start-up: predictions and lookups then cost no request. Keys missing here
  // (added later) are still found by asking S3.
  std::shared_ptr<const std::map<std::string, s3::object_info>> known_objects;
  // A read of at most this many bytes whose chunk is neither cached nor being fetched gets its
  // own ranged GET of just those bytes while the chunk is filled beside it: the first bytes of a
  // cold file arrive after one small transfer, not a whole chunk's (0: off).
  std::size_t cold_read_direct_max = 256 * 1024;
  // ... but only from a chunk longer than this: a shorter one (a small object) arrives whole
  // about as soon, in one GET instead of two.
  std::uint64_t cold_read_direct_min_chunk = 1 << 20;
  // The disk tier under the cache (--disk-cache), if any: chunk fetches look there before S3
  // and are written back there after.
  std::shared_ptr<tier::disk_tier> disk;
  // The shared cache tier (--shared-cache), if any: between the disk tier and S3.
  std::shared_ptr<tier::shared_tier> shared;
  // Where a live order is checked against the listing (reactor_pool::background(): a second at
  // 1.28 M keys, which would hold the reactor that installs it). Empty: on the calling reactor.
  asio::any_io_executor background;
};

struct open_file {
  ino_t ino = 0;
  std::string key, etag;
  std::uint64_t size = 0;
  cache::version_ref object;  // (bucket, key, ETag, size): what its chunks are keyed by
  bool keep_cache = true;                  // same version as at the previous open
  std::shared_ptr<prefetch::stream> stream;  // its read pattern and read-ahead window
};

// The training order in force (immutable; replaced as a whole).
struct order_state {
  std::shared_ptr<prefetch::predictor> predictor;
  std::string source;  // "manifest" (--manifest) or "hint" (written to /.valkyrie/order)
  std::vector<prefetch::manifest_problem> problems;  // lines skipped
  std::chrono::system_clock::time_point since;
  // Its distinct objects' bytes in whole disk-tier chunks (0: no disk tier, or a size not
  // known): the disk holds the whole order when this fits it.
  std::uint64_t chunk_bytes = 0;
  // Prefetch of the order's next files: how far it has got (an index into the keys) and whether
  // a pass is running.
  mutable std::atomic<std::size_t> scheduled_to{0};
  mutable std::atomic<bool> pumping{false};
};

struct order_update {
  std::size_t keys = 0, skipped = 0;
  bool cleared = false;  // the text named no key at all: no order any more
};

// Every object under `prefix`, keyed relative to it (pages of 1,000 keys listed in parallel).
awaitable<result<object_map>> list_all(s3::object_client& client, std::string prefix);

// The bytes of one read: pinned chunks and the slices of them to reply with.
struct read_result {
  std::vector<cache::chunk_ref> chunks;
  std::vector<char> direct;  // bytes of a cold small read fetched on their own (see options)
  std::vector<std::span<const char>> slices;
  std::size_t bytes = 0;
};

class filesystem {
 public:
  // clients[i] is the object client of reactor i and executors[i] that reactor (empty: do
  // everything on the calling reactor, as unit tests do).
  filesystem(options opts, std::vector<std::shared_ptr<s3::object_client>> clients,
             std::shared_ptr<cache::chunk_cache> cache, std::vector<asio::any_io_executor> executors = {});

  awaitable<result<attributes>> lookup(ino_t parent, std::string name);
  result<attributes> getattr(ino_t ino);
  void forget(ino_t ino, std::uint64_t count);
  // The whole directory (cached for metadata_ttl), copied out entry by entry.
  awaitable<result<std::vector<dir_entry>>> readdir(ino_t ino);
  // The same listing without a copy: the shared, immutable snapshot (what the fuse layer
  // pages through).
  awaitable<result<std::shared_ptr<const dir_listing>>> listing(ino_t ino);
  // An entry of a snapshot as attributes; ino is 0 unless the entry has been looked up.
  attributes entry_attr(ino_t parent, const dir_listing& l, std::size_t i) const;
  // Counts a lookup of an entry handed out by readdirplus (only those that fit the reply).
  result<attributes> remember_entry(ino_t parent, const dir_entry& e);
  result<attributes> remember_entry(ino_t parent, const dir_listing& l, std::size_t i);
  // A handle pinned to the object's current ETag (a HEAD when the ETag is unknown or was found
  // stale).
  awaitable<result<std::shared_ptr<open_file>>> open(ino_t ino);
  awaitable<result<read_result>> read(std::shared_ptr<open_file> file, std::uint64_t offset, std::size_t size);
  // The whole file's chunks, taken through the cache as a reader's reads would take them (hits
  // counted, prefetched chunks moved to the hot zone, chunks being fetched waited for), if every
  // one of them is cached or on its way; nullopt if one is not, or a fetch failed: the caller
  // then reads the file the usual way. Schedules the files that come next, as a first read does.
  // For FUSE passthrough (fuse/passthrough.hpp): the kernel then reads a copy, never this handle.
  awaitable<std::optional<std::vector<cache::chunk_ref>>> take_whole(
      std::shared_ptr<open_file> file);
  // Called on the prefetching reactor for each object whose every chunk a prefetch has just
  // queued (the next files, the order, warm-ups): FUSE passthrough fills its backing file from
  // the chunks as they arrive (fuse/passthrough.hpp). Set before the mount serves.
  using whole_prefetch_fn = std::function<void(cache::version_ref, asio::any_io_executor)>;
  void set_on_whole_prefetch(whole_prefetch_fn f) { on_whole_prefetch_ = std::move(f); }
  // Chunk `index` of `object` once it is ready (waiting while it is queued or fetched), pinned;
  // nullopt if it is not cached or its fetch failed.
  awaitable<std::optional<cache::chunk_ref>> chunk_when_ready(cache::version_ref object,
                                                              std::uint64_t index);
  std::uint32_t chunk_size() const;
  // The kernel released the handle: read-ahead still queued for it is no longer wanted.
  void release(const std::shared_ptr<open_file>& file) { file->stream->close(); }

  // Fetches these files (keys relative to the mount's prefix) whole, in order, within the
  // prefetch budget.
  awaitable<void> warm_up(std::vector<std::string> relative_keys);
  // Fetches the start of the training order in force, as deep as the prefetch budget goes (at
  // mount time with a manifest, and when a live hint arrives).
  awaitable<void> warm_up_order();
  // Size and ETag of a key relative to the prefix: from known_objects, else a HEAD.
  awaitable<result<s3::object_info>> describe(std::string relative_key);

  // Replaces the training order with `text` (the manifest format: one key per line relative to
  // the prefix, '#' comments, repeats are epochs), as a data loader does through
  // /.valkyrie/order before each epoch. Keys are checked against a listing (taken again when
  // some key is unknown); unknown ones are skipped and reported. Prediction, eviction and a
  // warm-up of the first files follow the new order at once, from its first key. A text with
  // no key line clears the order (back to numbered names and listing order); one whose key
  // lines are all unusable is refused (invalid_argument) and the order in force stays.
  awaitable<result<order_update>> set_order(std::string text, std::string source);
  std::shared_ptr<const order_state> order() const { return order_.load(); }
  // What reading /.valkyrie/order shows: a '#' header (source, keys, position, skipped lines),
  // then the keys; the header alone when there is no order.
  std::string order_text() const;
  // Prewarm of the disk tier (warm.cpp): an order text whose first line is "#!warm".
  static bool is_warm_request(std::string_view text);

  std::size_t inode_count() const;
  const options& opts() const { return opts_; }

 private:
  // An inode: a 64-byte header and its name in one allocation (inode_table); the full key is
  // derived from the parents when a request needs it (key_of). A directory's listing lives in
  // its dir_state, shared with readers.
  using node = inode_table::node;
  // What one entry says about a child (from a listing, the start-up listing or a targeted one).
  struct entry_info {
    bool directory = false;
    std::uint64_t size = 0;
    std::chrono::system_clock::time_point mtime{};
    const compact_etag* etag = nullptr;
  };
  s3::object_client& client();
  // Whether the chunk is on the disk tier: its prefetch is local (no S3 turn; chunk_cache).
  bool on_disk(const cache::chunk_id& chunk) const;
  // The chunk's fetch from S3 alone (the disk tier's fetch wraps it).
  cache::chunk_cache::fetch_fn s3_fetcher(cache::chunk_id chunk, bool reader_waiting);
  // Prewarm (warm.cpp): fills the disk tier with the keys' chunks (all, in listing order, when
  // empty), up to its size; not_supported without one.
  struct warm_state {
    std::atomic<std::uint64_t> planned_chunks{0}, planned_bytes{0}, done_chunks{0}, done_bytes{0},
        written_chunks{0}, present_chunks{0}, failed_chunks{0};
    std::size_t files = 0;
    std::atomic<unsigned> active{0};
    std::atomic<bool> finished{false}, cancelled{false};
  };
  // (order: the request's keys, in order; none: every file of `known`)
  awaitable<result<order_update>> start_warm(std::shared_ptr<const prefetch::predictor> order,
                                             std::shared_ptr<const object_map> known);
  awaitable<void> warm_worker(std::shared_ptr<warm_state> st, std::shared_ptr<const std::vector<cache::chunk_id>> plan,
                              std::shared_ptr<std::atomic<std::size_t>> next);
  // The "# disk tier:" and "# warm:" header lines of the order file.
  std::string disk_text() const;
  // The listing of the directory with this key: parallel pages, compacted as they arrive.
  awaitable<result<std::shared_ptr<const dir_listing>>> list_directory(std::string prefix, bool root,
                                                                       std::chrono::system_clock::time_point dir_mtime);
  // With mu_ held: the object key of an inode (a directory's ends in '/').
  std::string key_of(ino_t ino) const;
  // With mu_ held: the directory inode, or not_found / invalid_argument (not a directory).
  result<node*> directory_node(ino_t ino);
  // With mu_ held: whether the directory's cached listing is still within metadata_ttl.
  bool listing_fresh(const node& n) const;
  // With mu_ held: the child inode for an entry (created if new), lookup count raised.
  attributes remember(ino_t parent, std::string_view name, const entry_info& e);
  static attributes attr_of(ino_t ino, const node& n);
  // The fixed control inodes' attributes (control_dir_ino, order_file_ino).
  attributes control_attr(ino_t ino) const;
  bool is_control(ino_t ino) const { return opts_.control_files && (ino == control_dir_ino || ino == order_file_ino); }
  // Makes `state` the order in force: prediction, and the cache's eviction ranker (LRU without one).
  void install_order(std::shared_ptr<const order_state> state);
  // The object changed under an open file: forget its ETag (the next open asks S3) and the
  // parent's listing.
  void mark_stale(ino_t ino);
  static bool valid_name(std::string_view name);
  // Logs a problem with a key the first time it is seen (listings repeat every metadata_ttl).
  void warn_once(const std::string& key, const char* what);
  // The files after `file` (manifest order, else numbered successor or listing order), fetched
  // whole, nearest first, within the cache's prefetch zone.
  awaitable<void> fetch_next_files(std::shared_ptr<open_file> file);
  // The order's files from index `from` on, whole, nearest first, until the prefetch zone is
  // full (or --lookahead files): as many objects in flight as the budget lets the link carry,
  // whatever their size.
  awaitable<void> prefetch_order(std::shared_ptr<const order_state> order, std::size_t from, asio::any_io_executor here);
  // How a reader goes through a directory without a training order (one directory at a time:
  // the one being read): whether it opens the files the listing predicts.
  struct dir_sequence {
    ino_t dir = 0;
    std::mutex mu;          // guards the rest
    unsigned streak = 0;    // files opened in a row as predicted
    std::string predicted;  // the file predicted to be opened next
    std::string frontier;   // the last file of the chain started ahead of the reader
    unsigned ahead = 0;     // files of that chain after the reader's last one, up to the frontier
  };
  std::shared_ptr<dir_sequence> directory_sequence(ino_t dir);
  // Reactor n (modulo their number): work ahead of readers is spread over every reactor's
  // connection pool (`here` when there are no reactors, as in unit tests).
  asio::any_io_executor executor_for(std::uint64_t n, asio::any_io_executor here) const;
  // The same for a chunk by its identity (its hash: chunk 0 of every small file would otherwise
  // go to one reactor's pool, which then held every next-file GET while the others idled).
  asio::any_io_executor executor_for(const cache::chunk_id& key, asio::any_io_executor here) const {
    return executor_for(key.hash(), std::move(here));
  }
  // Starts fetching the chunks of the object not yet cached (of a file larger than the link's
  // bandwidth-delay product, that much of its start).
  // `basis`: the training order that predicted the file (null: the directory rules); queued
  // chunks are dropped if another order replaces it before their turn.
  // Whether next files may be fetched ahead beyond what is already (a file of this size): the
  // unread prefetches stay within the link's bandwidth-delay product and the prefetch zone.
  bool room_ahead(std::uint64_t object_size) const;
  whole_prefetch_fn on_whole_prefetch_;
  enum class prefetch_outcome { present, started, refused };
  prefetch_outcome fetch_whole(const cache::version_ref& object, asio::any_io_executor here,
                               std::shared_ptr<const order_state> basis);
  static constexpr std::uintptr_t next_files_source = 1;  // the cache's fair share key for next files
  static constexpr unsigned max_directory_lookahead = 256;
  // How far behind the files started ahead an open may be and still follow the listing: readers
  // that take the next names in turn open them up to about their number out of order.
  static constexpr unsigned max_readers_behind = 32;
  static constexpr std::size_t max_order_lookahead = 4096;

  // reader_waiting: fetch in demand_part_size pieces at once rather than one GET.
  cache::chunk_cache::fetch_fn fetcher(cache::chunk_id chunk, bool reader_waiting);
  static constexpr std::size_t demand_part_size = 1 << 20;
  // A cold small read: its own GET into out.direct, the chunk filled in the background.
  // Out untouched when the GET failed: the caller goes through the cache instead, except after
  // errc::retries_exhausted (S3 failed for the whole budget), returned as the reader's answer
  // rather than waited out again through the cache.
  awaitable<std::error_code> read_cold_direct(std::shared_ptr<open_file> file, std::uint64_t offset,
                                              std::uint64_t end, read_result* out);
  awaitable<void> fill_chunk(std::shared_ptr<open_file> file, std::uint64_t chunk);

  options opts_;
  std::vector<std::shared_ptr<s3::object_client>> clients_;
  std::shared_ptr<cache::chunk_cache> cache_;
  std::vector<asio::any_io_executor> executors_;
  std::shared_ptr<prefetch::link_estimator> link_ = std::make_shared<prefetch::link_estimator>();
  std::atomic<std::shared_ptr<dir_sequence>> last_dir_;
  mutable std::mutex mu_;
  inode_table inodes_;  // with the (parent, name, kind) index
  std::atomic<std::shared_ptr<const order_state>> order_;
  std::atomic<std::shared_ptr<const object_map>> known_;  // the last full listing, if any
  std::atomic<std::shared_ptr<warm_state>> warm_;          // the last warm-up, if any
  const std::chrono::system_clock::time_point mounted_at_ = std::chrono::system_clock::now();

  std::mutex warned_mu_;
  std::unordered_set<std::string> warned_;
};

}  // namespace valkyrie::fs
