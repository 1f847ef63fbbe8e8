#pragma once
// The chunk cache: object data in chunks (chunk_id: an object version's byte range), in one
// arena reserved up front.
//
// Owns: an mmap'd arena of `capacity` bytes (a huge_region: MAP_NORESERVE, touched lazily unless
// prefault(); aligned to 2 MiB so that use_huge_pages() can back all of it with transparent huge
// pages; arena_memory.cpp)
// cut into 4 KiB pages; each shard owns an equal range of them (page_allocator) and a chunk takes
// the pages its bytes need (a 110 KiB object 28 pages, not a whole chunk slot), in as few
// extents as the free space allows (usually one). No allocation per chunk for data, so chunk
// memory can never exceed the cap. A chunk lives in shard hash(id) % shards.
// Threading: get() may be called from any reactor. Each shard has its own mutex, held only for
// map and list updates, never across I/O: there is no global lock on the read path. A missing
// chunk is fetched once (by the first caller, on its reactor); later callers wait for it.
// Prefetches wait in queues by source (a reader's read-ahead, the next files), each FIFO, served
// in turn so that concurrent streams share the link fairly (their own mutex, never taken by
// readers). At most prefetch_limit requests and prefetch_bytes bytes run at once, so readers'
// fetches always find a connection and the link is not flooded with more than it can carry.
// Invariants: a page is free or held by exactly one entry (fetching or ready); a pinned chunk (a
// live chunk_ref) is never evicted or reused; a failed fetch leaves no entry behind.
// Zones: a prefetched chunk nobody has read yet is in the prefetch zone (FIFO, with the
// prefetches in flight, at most prefetch_share of the bytes); its first read moves it to the
// hot zone (LRU). A prefetch that finds the zone full replaces the oldest unread prefetch that
// is no longer wanted, or is refused: it never evicts a chunk a reader's read-ahead still
// wants, and streaming prefetch never flushes the hot zone. Below the bound, and for a reader's
// own fetch, the hot zone's least recently used chunk goes first.
// Eviction with a known future order (a manifest or a live hint): the unpinned chunk of either
// zone read furthest in the future (Belady); the order then decides what to keep.
// Metrics (docs/metrics.md) count lookups, hits, misses, bytes by zone (filling, prefetch:
// fetched ahead and unread, hot: read), evictions by reason, the prefetch queue and its
// cancellations, and how far ahead of its reader a prefetched chunk was ready.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <unordered_map>
#include <vector>

#include "cache/chunk_id.hpp"
#include "cache/page_allocator.hpp"
#include "core/asio.hpp"
#include "core/huge_region.hpp"
#include "core/memory_backer.hpp"
#include "core/result.hpp"

namespace valkyrie::cache {

// A chunk's memory: its extents' bytes in order (one piece unless the shard was fragmented).
using chunk_buffers = std::vector<std::span<char>>;

class chunk_cache;
struct chunk_entry;
// A cached chunk as its shard's map holds it; the zone lists point at these (stable addresses).
using cache_node = std::pair<const chunk_id, chunk_entry>;

// A cached chunk's bookkeeping (guarded by its shard's mutex).
struct chunk_entry {
  struct waiter {
    asio::any_io_executor ex;
    std::shared_ptr<asio::steady_timer> timer;
    // Set (before the wake-up) when the fetch failed with an error the waiter must not try to
    // beat by fetching again (errc::retries_exhausted: S3 was failing for the whole budget).
    std::shared_ptr<std::error_code> failed;
  };
  std::vector<extent> extents;  // the pages holding the chunk, in byte order
  std::uint64_t reserved = 0;   // bytes of those pages the chunk may fill (its length)
  enum class state { fetching, ready } st = state::fetching;
  std::size_t size = 0;
  unsigned pins = 0;
  bool prefetched = false;  // fetched ahead of any reader (prefetch zone until first read)
  bool read = false;        // read at least once (hot zone)
  bool queued = false;      // a prefetch waiting for its turn: no request sent yet
  std::chrono::steady_clock::time_point ready_at{};
  std::vector<waiter> waiters;
  // In the hot list, or the prefetched one if in_prefetch_list; valid when ready.
  std::list<cache_node*>::iterator lru;
  bool in_prefetch_list = false;
  bool spilled = false;  // offered to the spill hook once (set_spill)
  bool stored = false;   // the spill wrote it to the disk (mark_stored)
  // A prefetch's "still worth keeping?" (empty: a guess, replaceable).
  std::function<bool()> wanted;
};

// A pinned, ready chunk: its bytes stay valid and in place until the ref is released.
class chunk_ref {
 public:
  chunk_ref() = default;
  chunk_ref(chunk_ref&& o) noexcept { *this = std::move(o); }
  chunk_ref& operator=(chunk_ref&& o) noexcept;
  ~chunk_ref() { release(); }
  // The bytes, when they lie in one piece (a chunk allocated in one extent: always on a fresh
  // or unfragmented shard); pieces() in general.
  std::span<const char> data() const {
    return pieces_.empty() ? std::span<const char>() : pieces_.front();
  }
  const std::vector<std::span<const char>>& pieces() const { return pieces_; }
  std::size_t size() const { return size_; }
  // Appends the spans holding bytes [from, to) of the chunk to `out`.
  void slice(std::size_t from, std::size_t to, std::vector<std::span<const char>>& out) const;
  // Whether the chunk was ready when asked for (the reader did not wait).
  bool hit() const { return hit_; }
  void release();

 private:
  friend class chunk_cache;
  chunk_cache* cache_ = nullptr;
  unsigned shard_ = 0;
  chunk_entry* entry_ = nullptr;  // stays in its shard's map while pinned
  std::vector<std::span<const char>> pieces_;
  std::size_t size_ = 0;
  bool hit_ = false;
};

struct cache_stats {
  std::uint64_t hits = 0, misses = 0, waits = 0, evictions = 0, fetch_failures = 0;
  std::uint64_t prefetch_zone = 0, hot_zone = 0;  // ready chunks in each zone now
};

class chunk_cache {
 public:
  // Fills `dest` with the chunk's bytes; returns how many (fewer at the end of an object).
  // dest holds exactly the chunk's length (chunk_id::length()), in one or more pieces.
  using fetch_fn = std::function<awaitable<result<std::size_t>>(chunk_buffers dest)>;

  chunk_cache(std::uint64_t capacity, std::uint32_t chunk_size, unsigned shards = 0);
  ~chunk_cache();
  chunk_cache(const chunk_cache&) = delete;
  chunk_cache& operator=(const chunk_cache&) = delete;

  // The chunk, pinned; fetched with `fetch` on a miss (once, however many callers wait). Errors
  // are those of the fetch, or errc::cache_full when the shard's memory did not come free for a
  // minute. A caller that waited for another's fetch which failed fetches again itself, except
  // after errc::retries_exhausted, which it shares: an outage that outlasted the retry budget is
  // not waited out a second time.
  awaitable<result<chunk_ref>> get(chunk_id key, fetch_fn fetch);
  // Fetches the chunk ahead of any reader if it is neither cached nor being fetched; does not
  // wait. Its slot is taken now and its fetch queued behind other prefetches: at most
  // prefetch_limit run at once (nearest first: in the order asked), so a reader's own fetch
  // (get) never queues behind them, and a reader that asks for a queued chunk starts it at once.
  // A local prefetch (a disk tier read) has its own queue and limit and takes no S3 turn.
  // `wanted`, if given, is asked when the prefetch's turn comes (with the shard locked: cheap,
  // no calls into the cache): false, with no reader waiting, drops it and frees the slot.
  // Returns false when nothing was queued (present, in flight, or no slot to be had).
  // `source` names the stream it is for (queues are served in turn, FIFO within each).
  using wanted_fn = std::function<bool()>;
  // `local`: the fetch does not use the link (the chunk is on the disk tier): it takes no turn
  // of the prefetch limits (requests, bytes) and waits only behind other local fetches, at most
  // local_limit at once (set_local_limit), so a disk read never holds an S3 slot.
  bool prefetch(chunk_id key, fetch_fn fetch, asio::any_io_executor ex, wanted_fn wanted = {},
                std::uintptr_t source = 0, bool local = false);
  // Most local prefetches (disk reads) in flight at once (default 16).
  void set_local_limit(unsigned n);
  // Most prefetch requests in flight at once (default: no limit).
  void set_prefetch_limit(unsigned n);
  // Most prefetch bytes in flight at once (default: no limit); one request always may run. May
  // change at any time (the link estimate).
  void set_prefetch_bytes_limit(std::uint64_t bytes);
  // Backs the whole arena with memory now, `threads` ranges at once, instead of a page fault on
  // each page's first write (on the reactors, inside the socket copy: about a quarter of the
  // daemon's CPU in a cold read measured here).
  // Start-up only: the error (ENOMEM) is the memory that is not there.
  std::error_code prefault(unsigned threads);
  // Backs the arena from a thread of its own at niceness `nice`, while the cache is in use
  // (core/memory_backer.hpp): the shards' first pages first, as they are handed out. Once per
  // cache, after use_huge_pages(); valkyrie_cache_backed_bytes says how far it is.
  void back_in_background(int nice);
  // Asks the kernel to back the arena with transparent huge pages (MADV_HUGEPAGE; before
  // prefault()). The kernel copies every chunk's bytes in and out of this memory (socket
  // receive, FUSE reply), and with 4 KiB pages each page it touches costs a TLB miss and, in a
  // VM, a walk of the host's tables: measured here (tools/bench-cpu.sh) a cold read took 0.47-0.50
  // CPU-s per GiB with huge pages and prefault against 2.85-2.87 without huge pages, small files
  // half the CPU. False (errno set) where the kernel refuses (THP disabled at build).
  bool use_huge_pages();
  // The prefetch zone's bound, a fraction of the capacity (default 0.5; at least one chunk).
  // Set before use.
  void set_prefetch_share(double share);
  std::uint64_t prefetch_zone_bound() const { return prefetch_bound_; }
  // Bytes held by prefetched chunks nobody has read yet (in flight or ready).
  std::uint64_t prefetch_zone_bytes() const {
    return prefetch_held_.load(std::memory_order_relaxed);
  }
  bool contains(const chunk_id& key) const;
  // The chunk pinned if it is ready, without counting a lookup or touching its zone or recency
  // (for copying it elsewhere: the disk tier's write-back); nullopt if it is absent or filling.
  std::optional<chunk_ref> pin_ready(const chunk_id& key);
  // The same once the chunk is ready: waits while it is being fetched (no polling); nullopt if
  // it is absent, only queued (unless `wait_queued`: a queued prefetch with a waiter is never
  // cancelled, so it starts in its turn), or its fetch failed.
  awaitable<std::optional<chunk_ref>> pin_when_ready(chunk_id key, bool wait_queued = false);
  // Cached or being fetched (or queued).
  bool present(const chunk_id& key) const;
  // The id of chunk `index` of `object` in this cache's default layout (chunk_size()).
  chunk_id chunk(version_ref object, std::uint64_t index) const {
    return {std::move(object), chunk_size_, index};
  }
  // With a known future order: how far in the future a chunk will be read (larger: later).
  // Eviction then takes the unpinned chunk read furthest in the future (Belady) instead of the
  // least recently used one, and a prefetch is refused rather than evict a chunk needed sooner
  // than its own. May be set, replaced (a new training order) or cleared (nullptr: back to LRU)
  // at any time, from any thread; each eviction uses the ranker current when it starts. Called
  // with a shard's lock held, so it must be cheap and must not call into the cache.
  // not_in_order (the largest rank) means the order does not know the chunk's object: such
  // chunks go first, except that a prefetch of one that is still wanted (read-ahead of a reader
  // outside the order) is admitted like a reader's fetch instead of being refused.
  using rank_fn = std::function<std::uint64_t(const chunk_id&)>;
  static constexpr std::uint64_t not_in_order = ~std::uint64_t{0};
  void set_eviction_ranker(rank_fn ranker) {
    ranker_.store(ranker ? std::make_shared<const rank_fn>(std::move(ranker)) : nullptr);
  }

  // Spill (the disk tier's write-back with a known order): before a ranked eviction drops a
  // ready chunk, `wants(id, rank, false)` is asked (once per chunk); on `write` the chunk is
  // pinned and handed to `take` instead of being dropped, and leaves memory when written
  // (mark_stored). So the disk holds what memory gives up rather than copies of what it keeps.
  // Until then its memory is not free, and the eviction takes the next farthest. On `busy` (the
  // disk is behind, and counts it) the chunk is dropped unwritten: a write-back never holds up
  // a reader or its read-ahead.
  // Ahead of eviction: an eviction must free memory at once, and a chunk whose write has not
  // finished is lost instead (a burst of them: the next file's read-ahead takes a whole file's
  // room at once). So each shard keeps its next victims, the farthest chunks worth
  // `ahead_bytes` (the cache's total, shared by the shards), already written: when allocating,
  // every so often and before evicting, it offers those not offered yet with `wants(id, rank,
  // true)`, and evicting them later loses nothing. Both are called with a shard locked: cheap, no
  // calls into the cache, and `take` must keep the ref (releasing it there would deadlock): it
  // releases it later, on another turn. Set before use.
  enum class spill_answer {
    write,    // pinned and handed to take
    on_disk,  // already there: evicting it loses nothing
    no,       // not wanted (outside the order, not stored there; ahead: no free room)
    busy,     // the disk is behind: no more now
  };
  // `on_disk` (no side effects, same rules) says whether the disk holds the chunk: a prefetch
  // of a chunk that is on the disk (local) may evict only a chunk whose loss costs nothing
  // (written, outside the order, or on the disk too). Reading a disk chunk into memory early
  // only hides the disk's latency; evicting a chunk only memory holds for it loses that chunk
  // from memory and disk together (its spill displaces the disk's farthest), so a full memory
  // leaves the read to the reader (bench-disk part b: the next files' read-ahead of epoch 2's
  // first chunks from the disk at the end of epoch 1 cost 16-24 of the 319 chunks memory and
  // disk could hold).
  struct spill_hook {
    std::function<spill_answer(const chunk_id&, std::uint64_t rank, bool ahead)> wants;
    std::function<bool(const chunk_id&)> on_disk;
    std::function<void(const chunk_id&, chunk_ref, bool ahead)> take;
    std::uint64_t ahead_bytes = 0;
  };
  void set_spill(spill_hook hook) { spill_ = std::move(hook); }
  // The spill wrote this chunk (pinned by `ref`, released here) to the disk: evicting it loses
  // nothing, so a ranked eviction takes such chunks first (the farthest of them), and memory
  // does not keep what the disk holds (a chunk written ahead that newer, farther chunks
  // overtook). `evict`: the chunk was a victim when it was spilled (an eviction passed it by
  // only because its write had not finished), so it leaves memory now unless someone pinned it
  // since: memory and disk together then hold one copy of it, not two.
  void mark_stored(chunk_ref ref, bool evict);

  std::uint32_t chunk_size() const { return chunk_size_; }
  std::uint64_t capacity() const { return arena_bytes_; }
  // The capacity in chunks of the default size.
  std::uint32_t slots() const { return static_cast<std::uint32_t>(arena_bytes_ / chunk_size_); }
  cache_stats stats() const;
  // For tests: "" when the bookkeeping is consistent (every page free or held by exactly one
  // entry, ready entries in exactly their zone's list, the prefetch zone's count right), else
  // what is wrong. Locks every shard in turn: not for the read path.
  std::string check_invariants() const;

 private:
  friend class chunk_ref;
  using waiter = chunk_entry::waiter;
  using entry = chunk_entry;
  struct shard {
    mutable std::mutex mu;
    explicit shard(std::uint32_t first_page, std::uint32_t pages) : memory(first_page, pages) {}
    std::unordered_map<chunk_id, entry, chunk_id_hash> entries;
    std::list<cache_node*> lru;         // hot zone, front: least recently used
    std::list<cache_node*> prefetched;  // prefetch zone (ready, unread), front: oldest
    page_allocator memory;
    cache_stats stats;
    std::uint64_t allocated_since_ahead = 0;  // bytes allocated since the last spill_ahead
  };

  unsigned shard_of(const chunk_id& k) const {
    return static_cast<unsigned>(k.hash() % shards_.size());
  }
  chunk_buffers buffers_of(const chunk_entry& e) const;
  // With the shard locked: a ready entry pinned.
  chunk_ref pin_locked(unsigned shard_index, chunk_entry& e);
  // With the shard locked: pages for `bytes`, evicting unpinned chunks while needed (least
  // recently used, or read furthest in the future with a ranker). `incoming` is the rank of a
  // prefetched chunk (nullopt for a reader's): it evicts only chunks needed later than itself.
  // False (nothing taken) when the memory cannot be had.
  // `for_prefetch`: the prefetch zone's bound applies. `local`: a prefetch of a chunk on the
  // disk tier, which with a spill hook evicts only what loses nothing (see evict_one).
  bool take_memory(shard& s, std::uint64_t bytes, std::vector<extent>& out, const rank_fn* ranker,
                   bool for_prefetch, std::optional<std::uint64_t> incoming = std::nullopt,
                   bool local = false);
  // With the shard locked: evicts one unpinned chunk by the policy above; false if none may go.
  bool evict_one(shard& s, const rank_fn* ranker, bool for_prefetch, bool zone_full,
                 std::optional<std::uint64_t> incoming, bool local);
  // With the shard locked, a ranker and a spill hook: offers the shard's next victims to the
  // spill ahead of their eviction (spill_hook above).
  void spill_ahead(shard& s, const rank_fn& ranker);
  // With the shard locked: removes an unpinned, ready chunk (in `from`, its zone's list) and
  // frees its memory.
  void drop_locked(shard& s, std::list<cache_node*>& from, std::list<cache_node*>::iterator victim);
  // With the shard locked: the entry leaves the prefetch zone (first read, eviction, failure).
  void leave_prefetch_zone(chunk_entry& e);
  void unpin(unsigned shard, chunk_entry* entry);
  awaitable<void> run_fetch(chunk_id key, fetch_fn fetch, unsigned shard_index, chunk_buffers dest,
                            std::shared_ptr<result<std::size_t>> out, bool prefetched);
  void finish_fetch(const chunk_id& key, unsigned shard_index, result<std::size_t> r);
  struct pending_prefetch {
    chunk_id key;
    fetch_fn fetch;
    asio::any_io_executor ex;
    unsigned shard = 0;
    bool local = false;
  };
  // Starts queued prefetches while fewer than prefetch_limit_ run (any thread).
  void pump_prefetches();
  awaitable<void> run_prefetch(pending_prefetch job, chunk_buffers dest);
  // A started prefetch is over: its turn goes back to its class (local or S3).
  void end_turn(const pending_prefetch& job);

  huge_region arena_memory_;  // owns the mapping; arena_ is its start
  std::unique_ptr<memory_backer> backer_;  // (after arena_memory_: stopped before it is unmapped)
  char* arena_ = nullptr;
  std::uint64_t arena_bytes_ = 0;
  std::uint32_t chunk_size_;
  std::vector<std::unique_ptr<shard>> shards_;
  std::atomic<std::shared_ptr<const rank_fn>> ranker_;  // null: LRU
  spill_hook spill_;
  // Prefetches waiting for their turn, by source, oldest (nearest) first in each. Only
  // prefetch() and the end of a prefetch take this lock; readers never do.
  std::mutex queue_mu_;
  std::map<std::uintptr_t, std::deque<pending_prefetch>> queues_;
  std::uintptr_t last_served_ = 0;  // the source served last: the next one in turn goes first
  std::deque<pending_prefetch> local_queue_;  // local prefetches waiting (guarded by queue_mu_)
  unsigned local_running_ = 0;                // started and not finished (guarded by queue_mu_)
  unsigned local_limit_ = 16;
  unsigned prefetching_ = 0;             // started and not finished (guarded by queue_mu_)
  std::uint64_t prefetching_bytes_ = 0;  // their bytes (guarded by queue_mu_)
  unsigned prefetch_limit_ = ~0u;
  std::uint64_t prefetch_bytes_limit_ = ~std::uint64_t{0};
  std::uint64_t bytes_limit_published_ = 0;  // what the limit gauge holds from this cache
  std::atomic<std::uint64_t> prefetch_held_{
      0};  // bytes of prefetched chunks not read yet, in flight or ready
  std::uint64_t prefetch_bound_ = 1;
};

}  // namespace valkyrie::cache
