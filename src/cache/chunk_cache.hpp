#pragma once
// The chunk cache: object data in fixed-size chunks, in one arena reserved up front.
//
// Owns: an mmap'd arena of `capacity` bytes (MAP_NORESERVE, touched lazily unless prefault()) cut into chunk
// slots; no allocation per chunk, so chunk memory can never exceed the cap. Slots are split
// among shards; a chunk lives in shard hash(key) % shards.
// Threading: get() may be called from any reactor. Each shard has its own mutex, held only for
// map and list updates, never across I/O: there is no global lock on the read path. A missing
// chunk is fetched once (by the first caller, on its reactor); later callers wait for it.
// Prefetches wait in one FIFO queue (its own mutex, never taken by readers) and at most
// prefetch_limit of them run at once, so readers' fetches always find a connection.
// Invariants: a slot is in at most one state (free, fetching, ready); a pinned chunk (a live
// chunk_ref) is never evicted or reused; a failed fetch leaves no entry behind.
// Zones: a prefetched chunk nobody has read yet is in the prefetch zone (FIFO, with the
// prefetches in flight, at most prefetch_share of the slots); its first read moves it to the
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
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <unordered_map>
#include <vector>

#include "core/asio.hpp"
#include "core/result.hpp"

namespace valkyrie::cache {

struct chunk_key {
  std::string object;  // identity of one version: key + '\0' + ETag
  std::uint64_t index = 0;
  bool operator==(const chunk_key&) const = default;
};

struct chunk_key_hash {
  std::size_t operator()(const chunk_key& k) const noexcept {
    return std::hash<std::string>{}(k.object) ^ (k.index * 0x9E3779B97F4A7C15ull);
  }
};

class chunk_cache;

// A cached chunk's bookkeeping (guarded by its shard's mutex).
struct chunk_entry {
  struct waiter {
    asio::any_io_executor ex;
    std::shared_ptr<asio::steady_timer> timer;
  };
  std::uint32_t slot = 0;
  enum class state { fetching, ready } st = state::fetching;
  std::size_t size = 0;
  unsigned pins = 0;
  bool prefetched = false;  // fetched ahead of any reader (prefetch zone until first read)
  bool read = false;        // read at least once (hot zone)
  bool queued = false;      // a prefetch waiting for its turn: no request sent yet
  std::chrono::steady_clock::time_point ready_at{};
  std::vector<waiter> waiters;
  std::list<chunk_key>::iterator lru;  // in the hot list, or the prefetched one if in_prefetch_list; valid when ready
  bool in_prefetch_list = false;
  std::function<bool()> wanted;  // a prefetch's "still worth keeping?" (empty: a guess, replaceable)
};

// A pinned, ready chunk: its bytes stay valid and in place until the ref is released.
class chunk_ref {
 public:
  chunk_ref() = default;
  chunk_ref(chunk_ref&& o) noexcept { *this = std::move(o); }
  chunk_ref& operator=(chunk_ref&& o) noexcept;
  ~chunk_ref() { release(); }
  std::span<const char> data() const { return {data_, size_}; }
  // Whether the chunk was ready when asked for (the reader did not wait).
  bool hit() const { return hit_; }
  void release();

 private:
  friend class chunk_cache;
  chunk_cache* cache_ = nullptr;
  unsigned shard_ = 0;
  chunk_entry* entry_ = nullptr;  // stays in its shard's map while pinned
  const char* data_ = nullptr;
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
  using fetch_fn = std::function<awaitable<result<std::size_t>>(std::span<char> dest)>;

  chunk_cache(std::uint64_t capacity, std::uint32_t chunk_size, unsigned shards = 0);
  ~chunk_cache();
  chunk_cache(const chunk_cache&) = delete;
  chunk_cache& operator=(const chunk_cache&) = delete;

  // The chunk, pinned; fetched with `fetch` on a miss (once, however many callers wait). Errors
  // are those of the fetch, or errc::cache_full when no slot of the shard came free for a minute.
  awaitable<result<chunk_ref>> get(chunk_key key, fetch_fn fetch);
  // Fetches the chunk ahead of any reader if it is neither cached nor being fetched; does not
  // wait. Its slot is taken now and its fetch queued behind other prefetches: at most
  // prefetch_limit run at once (nearest first: in the order asked), so a reader's own fetch
  // (get) never queues behind them, and a reader that asks for a queued chunk starts it at once.
  // `wanted`, if given, is asked when the prefetch's turn comes (with the shard locked: cheap,
  // no calls into the cache): false, with no reader waiting, drops it and frees the slot.
  // Returns false when nothing was queued (present, in flight, or no slot to be had).
  using wanted_fn = std::function<bool()>;
  bool prefetch(chunk_key key, fetch_fn fetch, asio::any_io_executor ex, wanted_fn wanted = {});
  // Most prefetch fetches in flight at once (default: no limit). Set before use.
  void set_prefetch_limit(unsigned n) { prefetch_limit_ = std::max(1u, n); }
  // Backs the whole arena with memory now, `threads` ranges at once, instead of a page fault on
  // each page's first write (on the reactors, inside the socket copy: about a quarter of the
  // daemon's CPU in a cold read measured here).
  // Start-up only: the error (ENOMEM) is the memory that is not there.
  std::error_code prefault(unsigned threads);
  // The prefetch zone's bound, a fraction of the slots (default 0.5; at least one slot). Set
  // before use.
  void set_prefetch_share(double share);
  std::uint32_t prefetch_zone_bound() const { return prefetch_bound_; }
  bool contains(const chunk_key& key) const;
  // Cached or being fetched (or queued).
  bool present(const chunk_key& key) const;
  // With a known future order: how far in the future a chunk will be read (larger: later).
  // Eviction then takes the unpinned chunk read furthest in the future (Belady) instead of the
  // least recently used one, and a prefetch is refused rather than evict a chunk needed sooner
  // than its own. May be set, replaced (a new training order) or cleared (nullptr: back to LRU)
  // at any time, from any thread; each eviction uses the ranker current when it starts. Called
  // with a shard's lock held, so it must be cheap and must not call into the cache.
  // not_in_order (the largest rank) means the order does not know the chunk's object: such
  // chunks go first, except that a prefetch of one that is still wanted (read-ahead of a reader
  // outside the order) is admitted like a reader's fetch instead of being refused.
  using rank_fn = std::function<std::uint64_t(const chunk_key&)>;
  static constexpr std::uint64_t not_in_order = ~std::uint64_t{0};
  void set_eviction_ranker(rank_fn ranker) {
    ranker_.store(ranker ? std::make_shared<const rank_fn>(std::move(ranker)) : nullptr);
  }

  std::uint32_t chunk_size() const { return chunk_size_; }
  std::uint64_t capacity() const { return std::uint64_t{slots_} * chunk_size_; }
  std::uint32_t slots() const { return slots_; }
  cache_stats stats() const;
  // For tests: "" when the bookkeeping is consistent (every slot free or held by exactly one
  // entry, ready entries in exactly their zone's list, the prefetch zone's count right), else
  // what is wrong. Locks every shard in turn: not for the read path.
  std::string check_invariants() const;

 private:
  friend class chunk_ref;
  using waiter = chunk_entry::waiter;
  using entry = chunk_entry;
  struct shard {
    mutable std::mutex mu;
    std::unordered_map<chunk_key, entry, chunk_key_hash> entries;
    std::list<chunk_key> lru;       // hot zone, front: least recently used
    std::list<chunk_key> prefetched;  // prefetch zone (ready, unread), front: oldest
    std::vector<std::uint32_t> free_slots;
    cache_stats stats;
  };

  unsigned shard_of(const chunk_key& k) const { return static_cast<unsigned>(chunk_key_hash{}(k) % shards_.size()); }
  char* slot_memory(std::uint32_t slot) const { return arena_ + std::uint64_t{slot} * chunk_size_; }
  // With the shard locked: a free slot, evicting an unpinned chunk if needed (least recently
  // used, or read furthest in the future with a ranker). `incoming` is the rank of a prefetched
  // chunk (nullopt for a reader's): it evicts only a chunk needed later than itself. False when
  // no slot can be had.
  // `for_prefetch`: the prefetch zone's bound applies.
  bool take_slot(shard& s, std::uint32_t& slot, const rank_fn* ranker, bool for_prefetch,
                 std::optional<std::uint64_t> incoming = std::nullopt);
  // With the shard locked: the entry leaves the prefetch zone (first read, eviction, failure).
  void leave_prefetch_zone(chunk_entry& e);
  void unpin(unsigned shard, chunk_entry* entry);
  awaitable<void> run_fetch(chunk_key key, fetch_fn fetch, unsigned shard_index, std::uint32_t slot,
                            std::shared_ptr<result<std::size_t>> out, bool prefetched);
  void finish_fetch(const chunk_key& key, unsigned shard_index, result<std::size_t> r);
  struct pending_prefetch {
    chunk_key key;
    fetch_fn fetch;
    asio::any_io_executor ex;
    unsigned shard = 0;
    std::uint32_t slot = 0;
  };
  // Starts queued prefetches while fewer than prefetch_limit_ run (any thread).
  void pump_prefetches();
  awaitable<void> run_prefetch(pending_prefetch job);

  char* arena_ = nullptr;
  std::uint64_t arena_bytes_ = 0;
  std::uint32_t chunk_size_;
  std::uint32_t slots_;
  std::vector<std::unique_ptr<shard>> shards_;
  std::atomic<std::shared_ptr<const rank_fn>> ranker_;  // null: LRU
  // Prefetches waiting for their turn, oldest (nearest) first. Only prefetch() and the end of a
  // prefetch take this lock; readers never do.
  std::mutex queue_mu_;
  std::deque<pending_prefetch> queue_;
  unsigned prefetching_ = 0;  // started and not finished (guarded by queue_mu_)
  unsigned prefetch_limit_ = ~0u;
  std::atomic<std::uint32_t> prefetch_held_{0};  // prefetched chunks not read yet, in flight or ready
  std::uint32_t prefetch_bound_ = 1;
};

}  // namespace valkyrie::cache
