// chunk_cache's prefetch queue (split from chunk_cache.cpp, one job per file): the prefetch
// limits (requests, bytes in flight, local disk reads), the per-source queues served in turn,
// and the prefetch fetch's completion. Same threading and invariants as chunk_cache.cpp: each
// queue is guarded by the cache's prefetch mutex; fetches run on the executor they were given.
#include <boost/asio/post.hpp>

#include "cache/cache_metrics.hpp"
#include "cache/chunk_cache.hpp"
#include "core/errors.hpp"
#include "core/trace.hpp"

namespace valkyrie::cache {
namespace {
using detail::cache_metrics;
}  // namespace

void chunk_cache::set_prefetch_limit(unsigned n) {
  {
    std::lock_guard lock(queue_mu_);
    prefetch_limit_ = std::max(1u, n);
  }
  pump_prefetches();
}

void chunk_cache::set_prefetch_bytes_limit(std::uint64_t bytes) {
  {
    std::lock_guard lock(queue_mu_);
    bytes = std::max<std::uint64_t>(1, bytes);
    cache_metrics::get().prefetch_limit_bytes.add(static_cast<std::int64_t>(bytes) -
                                                  static_cast<std::int64_t>(bytes_limit_published_));
    bytes_limit_published_ = bytes;
    prefetch_bytes_limit_ = bytes;
  }
  pump_prefetches();
}

void chunk_cache::set_local_limit(unsigned n) {
  {
    std::lock_guard lock(queue_mu_);
    local_limit_ = std::max(1u, n);
  }
  pump_prefetches();
}

bool chunk_cache::prefetch(chunk_id key, fetch_fn fetch, asio::any_io_executor ex, wanted_fn wanted,
                           std::uintptr_t source, bool local) {
  unsigned si = shard_of(key);
  shard& s = *shards_[si];
  const std::uint64_t bytes = key.length();
  if (bytes == 0) return false;
  {
    std::lock_guard lock(s.mu);
    if (s.entries.count(key)) return false;
    auto ranker = ranker_.load();
    std::optional<std::uint64_t> rank;
    if (ranker) rank = (*ranker)(key);
    if (rank == not_in_order && wanted && wanted()) rank.reset();  // needed now, though the order cannot say
    entry e;
    if (!take_memory(s, bytes, e.extents, ranker.get(), true, rank, local)) return false;
    e.reserved = bytes;
    e.prefetched = true;
    e.queued = true;
    e.wanted = std::move(wanted);
    s.entries.emplace(key, std::move(e));
    prefetch_held_.fetch_add(bytes);
  }
  auto& m = cache_metrics::get();
  m.filling.add(static_cast<std::int64_t>(bytes));
  m.prefetch_issued.add();
  {
    std::lock_guard lock(queue_mu_);
    if (local)
      local_queue_.push_back({std::move(key), std::move(fetch), std::move(ex), si, true});
    else
      queues_[source].push_back({std::move(key), std::move(fetch), std::move(ex), si});
  }
  m.prefetch_queued.add();
  pump_prefetches();
  return true;
}

void chunk_cache::end_turn(const pending_prefetch& job) {
  std::lock_guard lock(queue_mu_);
  if (job.local) {
    --local_running_;
    return;
  }
  --prefetching_;
  prefetching_bytes_ -= job.key.length();
}

void chunk_cache::pump_prefetches() {
  auto& m = cache_metrics::get();
  for (;;) {
    pending_prefetch job;
    {
      std::lock_guard lock(queue_mu_);
      if (!local_queue_.empty() && local_running_ < local_limit_) {
        job = std::move(local_queue_.front());
        local_queue_.pop_front();
        ++local_running_;
      }
    }
    if (!job.local) {
      std::lock_guard lock(queue_mu_);
      if (queues_.empty() || prefetching_ >= prefetch_limit_) return;
      // The next source after the one served last, in turn.
      auto q = queues_.upper_bound(last_served_);
      if (q == queues_.end()) q = queues_.begin();
      const std::uint64_t bytes = q->second.front().key.length();
      if (prefetching_ > 0 && prefetching_bytes_ + bytes > prefetch_bytes_limit_) return;
      job = std::move(q->second.front());
      q->second.pop_front();
      last_served_ = q->first;
      if (q->second.empty()) queues_.erase(q);
      ++prefetching_;
      prefetching_bytes_ += bytes;
    }
    m.prefetch_in_flight.add(static_cast<std::int64_t>(job.key.length()));
    m.prefetch_queued.sub();
    enum { start, skip, cancel } what = skip;
    chunk_buffers dest;
    std::uint64_t cancelled_bytes = 0;
    {
      shard& s = *shards_[job.shard];
      std::lock_guard lock(s.mu);
      auto it = s.entries.find(job.key);
      // Gone, or started by a reader meanwhile (no longer queued): nothing to do.
      if (it != s.entries.end() && it->second.queued) {
        if (it->second.wanted && it->second.waiters.empty() && !it->second.wanted()) {
          leave_prefetch_zone(it->second);
          s.memory.release(it->second.extents);
          cancelled_bytes = it->second.reserved;
          s.entries.erase(it);
          what = cancel;
        } else {
          it->second.queued = false;
          dest = buffers_of(it->second);
          what = start;
        }
      }
    }
    if (what != start) {
      end_turn(job);
      m.prefetch_in_flight.sub(static_cast<std::int64_t>(job.key.length()));
      if (what == cancel) {
        m.filling.sub(static_cast<std::int64_t>(cancelled_bytes));
        m.prefetch_cancelled.add();
      }
      continue;
    }
    auto ex = job.ex;
    asio::co_spawn(ex, run_prefetch(std::move(job), std::move(dest)), asio::detached);
  }
}

awaitable<void> chunk_cache::run_prefetch(pending_prefetch job, chunk_buffers dest) {
  co_await run_fetch(job.key, std::move(job.fetch), job.shard, std::move(dest), nullptr, true);
  end_turn(job);
  cache_metrics::get().prefetch_in_flight.sub(static_cast<std::int64_t>(job.key.length()));
  pump_prefetches();
}

}  // namespace valkyrie::cache
