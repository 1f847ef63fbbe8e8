#pragma once
// The shared cache tier: chunks in an S3-compatible bucket that many nodes read and fill
// (--shared-cache), between the disk tier and the origin: memory -> disk -> shared -> S3.
//
// wrap(id, origin_fetch, part) is the fetch_fn for a chunk: it GETs the chunk object
// (shared_format.hpp) straight into the cache's memory (the header beside it; a chunk of more
// than `part` bytes in parallel ranged GETs of `part`; a small chunk in one GET with its
// header), checks header, identity, length, CRC32C and, with a key, the HMAC; anything else
// is a miss and the origin fetch runs. After an origin fetch the chunk is stored in the
// background: its identity queued (at most max_queued, the oldest dropped, counted), pinned in
// the cache when its turn comes (chunk_cache::pin_ready), at most write_back_bytes being sent
// at once, PUT with If-None-Match: * (a 412 means another node stored it: deduplicated).
// A reader never waits for a store.
// Failures never fail a read: an error (5xx, reset, timeout, 403, no bucket) is a miss and the
// origin serves; after errors_before_backoff errors in a row the tier steps aside (no GETs, no
// PUTs) for `backoff`, doubling up to max_backoff while errors go on; one success resets it.
// The clients should have short timeouts and no retries (the origin is the retry).
// Threading: wrap() and the fetches run on any reactor, with that reactor's client
// (clients[reactor_pool::current()], else clients[0]); a store runs on the reactor that
// fetched the chunk.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cache/chunk_cache.hpp"
#include "s3/object_client.hpp"

namespace valkyrie::tier {

struct shared_options {
  std::string prefix;   // key prefix in the cache bucket ("" or ending in '/')
  std::string origin;   // the origin's endpoint URL (part of every chunk's identity)
  std::string mac_key;  // --shared-cache-key-file's bytes; empty: no HMAC
  std::uint64_t write_back_bytes = 64 << 20;
  std::size_t max_queued = 1024;
  std::size_t small_chunk = 256 * 1024;  // at most this: one GET of header and data
  unsigned errors_before_backoff = 3;
  std::chrono::milliseconds backoff{2000};
  std::chrono::milliseconds max_backoff{60000};
};

// This tier's counts (the metrics are process-wide; these are per instance, for tests).
struct shared_counts {
  std::atomic<std::uint64_t> hits{0}, misses{0}, bytes_read{0}, bytes_written{0}, puts{0},
      puts_deduplicated{0}, writes_dropped{0}, check_failures{0}, errors{0};
};

class shared_tier : public std::enable_shared_from_this<shared_tier> {
 public:
  shared_tier(shared_options opts, std::vector<std::shared_ptr<s3::object_client>> clients,
              std::shared_ptr<cache::chunk_cache> cache);
  cache::chunk_cache::fetch_fn wrap(cache::chunk_id id, cache::chunk_cache::fetch_fn next,
                                    std::size_t part);

  const shared_counts& counts() const { return counts_; }
  // Chunks queued or being stored.
  std::size_t write_back_pending();
  // Whether the tier is stepping aside after errors.
  bool backing_off() const;
  std::string object_key(const cache::chunk_id& id) const;

 private:
  awaitable<result<std::size_t>> fetch(cache::chunk_id id, cache::chunk_cache::fetch_fn next,
                                       std::size_t part, cache::chunk_buffers dest);
  // The chunk object's data into dest; true when it was there and passed every check.
  awaitable<bool> read(cache::chunk_id id, std::size_t part, cache::chunk_buffers dest);
  awaitable<void> store(cache::chunk_id id);
  void queue_store(cache::chunk_id id, asio::any_io_executor ex);
  void pump(asio::any_io_executor ex);
  s3::object_client& client();
  void failed(std::error_code ec, const char* what, const std::string& key);
  void succeeded();

  shared_options opts_;
  std::vector<std::shared_ptr<s3::object_client>> clients_;
  std::shared_ptr<cache::chunk_cache> cache_;
  shared_counts counts_;
  mutable std::mutex mu_;
  std::deque<cache::chunk_id> queue_;                    // guarded by mu_
  std::uint64_t in_flight_bytes_ = 0;                    // guarded by mu_
  std::size_t in_flight_ = 0;                            // guarded by mu_
  unsigned error_streak_ = 0;                            // guarded by mu_
  std::chrono::milliseconds next_backoff_;               // guarded by mu_
  std::chrono::steady_clock::time_point aside_until_{};  // guarded by mu_
};

}  // namespace valkyrie::tier
