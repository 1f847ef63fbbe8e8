#pragma once
// The tiered fetch: a chunk the memory cache misses is looked up on the disk tier before S3.
//
// wrap(id, s3_fetch) is the cache's fetch_fn for the chunk: it reads the chunk from the disk
// store straight into the cache's memory (checked); on a miss it calls the S3 fetch, then
// queues a write-back of the filled chunk and returns at once (the reader never waits for the
// disk). A write-back pins the cache entry (chunk_cache::pin_ready: no copy, no change to its
// zone or recency) and writes from that memory. At most write_back_bytes are being written at
// once; beyond that the chunk's identity waits in a queue (no memory held: at most
// max_queued, the oldest dropped first, counted), and is pinned when its turn comes; a chunk
// the cache evicted before its turn is not written (counted).
// When to write: without a training order, at fetch (as above: the disk is inclusive of memory,
// a CLOCK cache of everything fetched). With one (the store has a ranker), at eviction instead
// (start_spill: the cache's spill hook): memory keeps the chunks needed soonest and gives the
// disk the ones it drops, which the disk keeps or declines by next use, so memory and disk
// together hold what one cache of both sizes would (Belady across both) rather than the disk
// duplicating memory's chunks. A spill pins the chunk (it is not dropped until written) and
// waits in the spill queue for its turn among the same write_back_bytes; when the write is
// done the chunk leaves memory (mark_stored), so memory and disk do not both keep it. Its
// memory is not free before that, and an eviction cannot wait (a write-back never holds up a
// reader or its read-ahead: making read-ahead wait for the disk halved both epochs' speed in
// bench-disk's part b), so the eviction takes the next farthest instead, and while an eighth
// of the cache is pinned at eviction (evict_hold_), drops it unwritten (counted). When the disk
// holds the whole order (set_order_bytes), nothing written there displaces anything and each
// chunk dropped is one the next epoch fetches from S3 again: then spills at eviction may pin up
// to pin_limit_ (half the cache), and both kinds together three quarters of it. A file's
// read-ahead asks for a whole file's room at once, so the cache also offers its next victims
// ahead of eviction (an eighth of memory), which the tier writes while the disk has free room
// beyond a cache's worth (never displacing a chunk for one memory may keep until its use); such
// a chunk stays in memory, marked stored, and is evicted first, losing nothing. Spills pinned ahead
// hold at most spill_hold_bytes (write_back_bytes or a quarter of the cache, whichever is
// more); both kinds together at most half the cache. A chunk outside the order is dropped
// unwritten; one already on the disk is not offered. Read-ahead of a chunk on the disk evicts
// only chunks the disk also holds (or that are written, or outside the order): reading it early
// hides a few milliseconds and would otherwise cost a chunk only memory holds (on_disk in the
// hook; bench-disk part b: 0.590-0.592 of epoch 2's bytes without S3 before, 0.607-0.621 after).
// The queue of identities is bounded by bytes (the cache's capacity: a chunk queued longer than
// that is likely evicted before its turn), not by count, so small chunks queue as deep.
// Threading: wrap() and the fetches run on any reactor; the write-back runs on the reactor that
// fetched the chunk; spills on the executor given to start_spill.
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>

#include "cache/chunk_cache.hpp"
#include "tier/disk_store.hpp"

namespace valkyrie::tier {

class disk_tier : public std::enable_shared_from_this<disk_tier> {
 public:
  disk_tier(std::shared_ptr<disk_store> store, std::shared_ptr<cache::chunk_cache> cache,
            std::uint64_t write_back_bytes);
  cache::chunk_cache::fetch_fn wrap(cache::chunk_id id, cache::chunk_cache::fetch_fn next);
  // Installs the cache's spill hook (write-back at eviction with an order), spills run on `ex`.
  void start_spill(asio::any_io_executor ex);
  disk_store& store() const { return *store_; }
  // Bytes being written back now, and chunks waiting for their turn (identities and spills).
  std::uint64_t write_back_in_flight() const { return in_flight_.load(); }
  std::size_t write_back_queued();
  // The most memory pinned by spills offered ahead of eviction (being written or waiting):
  // max(write_back_bytes, a quarter of the cache); spills ahead and at eviction together pin at
  // most max(write_back_bytes, half the cache).
  std::uint64_t spill_hold_bytes() const { return hold_limit_; }
  // The most pinned at eviction: min(write_back_bytes, max(an eighth of the cache, a chunk)).
  std::uint64_t evict_hold_bytes() const { return evict_hold_; }
  // Both kinds together: max(write_back_bytes, half the cache), passed by at most one chunk (a
  // kind holding nothing may always take one); when the disk holds the whole order, spills at
  // eviction may also take this much, and both kinds together this plus spill_hold_bytes().
  std::uint64_t pin_limit_bytes() const { return pin_limit_; }
  // High-water marks of the memory spills have pinned (for tests: the bounds above hold).
  struct pin_peaks {
    std::uint64_t ahead = 0, evicted = 0, total = 0;
  };
  pin_peaks spill_pin_peaks();
  // The training order's size: its distinct objects' bytes, each rounded up to whole chunks (0:
  // no order, or sizes not known). The disk holds the whole order when that fits its slots'
  // data bytes; spills at eviction may then pin up to pin_limit_bytes() (see above).
  void set_order_bytes(std::uint64_t bytes);

 private:
  awaitable<result<std::size_t>> fetch(cache::chunk_id id, cache::chunk_cache::fetch_fn next,
                                       cache::chunk_buffers dest);
  awaitable<void> write_back(cache::chunk_id id);
  struct pending_spill {
    cache::chunk_id id;
    std::shared_ptr<cache::chunk_ref> ref;  // (pinned until written)
    bool ahead = false;                     // offered ahead of eviction
  };
  awaitable<void> spill(pending_spill p);
  cache::chunk_cache::spill_answer spill_wanted(const cache::chunk_id& id, std::uint64_t rank,
                                                bool ahead);
  void spill_taken(pending_spill p);
  // A write of `len` bytes is over; `held`: the spill's pinned-bytes count (null: a write-back).
  void done_writing(std::uint64_t len, std::uint64_t* held);
  // Starts queued write-backs while there is room (any thread).
  void pump(asio::any_io_executor ex);

  std::shared_ptr<disk_store> store_;
  std::shared_ptr<cache::chunk_cache> cache_;
  std::uint64_t limit_;
  std::mutex mu_;
  std::uint64_t in_flight_bytes_ = 0;  // guarded by mu_
  std::deque<cache::chunk_id> queue_;  // guarded by mu_
  std::uint64_t queued_bytes_ = 0;     // their bytes (guarded by mu_)
  std::uint64_t queue_limit_;
  std::deque<pending_spill> spills_;  // waiting for a write (guarded by mu_)
  // Spills pinned (waiting or being written), offered ahead of eviction and at it (mu_).
  std::uint64_t held_ahead_bytes_ = 0;
  std::uint64_t held_evicted_bytes_ = 0;
  std::uint64_t hold_limit_;
  std::uint64_t pin_limit_;  // both together: max(write_back_bytes, half the cache)
  // Pinned at eviction: an eighth of the cache at most. Each pin pushes a chunk needed sooner
  // out of memory, and a victim written into free room commits that room to a far chunk that a
  // nearer one must displace later (measured, bench-disk part b: 0.576 of epoch 2's bytes
  // without S3 with write_back_bytes (half the cache) pinned here, 0.592-0.602 with an eighth).
  std::uint64_t evict_hold_;
  bool order_fits_ = false;  // (mu_) the disk holds the whole order: pin_limit_ at eviction too
  pin_peaks peaks_;          // (mu_)
  asio::any_io_executor spill_ex_;
  std::atomic<std::uint64_t> in_flight_{0};
};

}  // namespace valkyrie::tier
