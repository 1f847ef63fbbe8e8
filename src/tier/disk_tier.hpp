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
// Threading: wrap() and the fetches run on any reactor; the write-back runs on the reactor that
// fetched the chunk.
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
  disk_store& store() const { return *store_; }
  // Bytes being written back now, and chunks waiting for their turn.
  std::uint64_t write_back_in_flight() const { return in_flight_.load(); }
  std::size_t write_back_queued();

 private:
  awaitable<result<std::size_t>> fetch(cache::chunk_id id, cache::chunk_cache::fetch_fn next,
                                       cache::chunk_buffers dest);
  awaitable<void> write_back(cache::chunk_id id);
  // Starts queued write-backs while there is room (any thread).
  void pump(asio::any_io_executor ex);

  static constexpr std::size_t max_queued = 4096;

  std::shared_ptr<disk_store> store_;
  std::shared_ptr<cache::chunk_cache> cache_;
  std::uint64_t limit_;
  std::mutex mu_;
  std::uint64_t in_flight_bytes_ = 0;  // guarded by mu_
  std::deque<cache::chunk_id> queue_;  // guarded by mu_
  std::atomic<std::uint64_t> in_flight_{0};
};

}  // namespace valkyrie::tier
