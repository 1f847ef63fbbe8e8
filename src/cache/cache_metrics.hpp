#pragma once
// The chunk cache's metrics (docs/metrics.md), registered once; used only by chunk_cache.cpp and
// arena_memory.cpp.
#include "cache/chunk_cache.hpp"
#include "core/metrics.hpp"

namespace valkyrie::cache::detail {

struct cache_metrics {
  metrics::counter& lookups;
  metrics::counter& hits;
  metrics::counter& misses;
  metrics::counter& reader_waits;
  metrics::gauge& filling;
  metrics::gauge& prefetch_zone;
  metrics::gauge& hot_zone;
  metrics::gauge& capacity;
  metrics::gauge& backed;
  metrics::counter& evicted_lru;
  metrics::counter& evicted_unread;
  metrics::counter& fetch_failures;
  metrics::histogram& fill_seconds;
  metrics::counter& prefetch_issued;
  metrics::counter& prefetch_used;
  metrics::counter& prefetch_late;
  metrics::counter& prefetch_wasted;
  metrics::histogram& prefetch_lead;
  metrics::gauge& prefetch_queued;
  metrics::counter& prefetch_cancelled;
  metrics::gauge& prefetch_in_flight;
  metrics::gauge& prefetch_limit_bytes;

  static cache_metrics& get() {
    static cache_metrics m = make();
    return m;
  }
  // The zone a ready chunk's bytes count in: prefetched and never read, or hot.
  metrics::gauge& zone(const chunk_entry& e) {
    return e.prefetched && !e.read ? prefetch_zone : hot_zone;
  }
  static cache_metrics make() {
    auto& r = metrics::registry::global();
    const char* zone_help =
        "Bytes held by the chunk cache, by zone (filling: being fetched; prefetch: fetched "
        "ahead and not read yet; hot: read at least once)";
    const char* evict_help =
        "Chunks evicted from the cache, by reason (lru: least recently used; "
        "unread_prefetch: prefetched and never read)";
    auto& lookups =
        r.get_counter("valkyrie_cache_lookups_total", "Chunk lookups by readers (hits + misses)");
    auto& hits =
        r.get_counter("valkyrie_cache_hits_total", "Chunk lookups answered from the cache at once");
    r.computed_gauge("valkyrie_cache_hit_ratio",
                     "Cache hits / lookups since start (0 before the first lookup)",
                     [&lookups, &hits] {
                       double l = static_cast<double>(lookups.value());
                       return l == 0 ? 0.0 : static_cast<double>(hits.value()) / l;
                     });
    return cache_metrics{
        lookups,
        hits,
        r.get_counter("valkyrie_cache_misses_total", "Chunk lookups that had to wait for S3"),
        r.get_counter("valkyrie_cache_reader_waits_total",
                      "Misses that found the chunk already being fetched (a late prefetch or "
                      "another reader)"),
        r.get_gauge("valkyrie_cache_bytes", zone_help, {{"zone", "filling"}}),
        r.get_gauge("valkyrie_cache_bytes", zone_help, {{"zone", "prefetch"}}),
        r.get_gauge("valkyrie_cache_bytes", zone_help, {{"zone", "hot"}}),
        r.get_gauge("valkyrie_cache_capacity_bytes",
                    "The cache's memory cap (--cache-size, whole chunks)"),
        r.get_gauge("valkyrie_cache_backed_bytes",
                    "Cache memory backed with pages ahead of use (--cache-backing background)"),
        r.get_counter("valkyrie_cache_evictions_total", evict_help, {{"reason", "lru"}}),
        r.get_counter("valkyrie_cache_evictions_total", evict_help,
                      {{"reason", "unread_prefetch"}}),
        r.get_counter("valkyrie_cache_fetch_failures_total",
                      "Chunk fetches that failed (nothing was cached)"),
        r.get_histogram("valkyrie_cache_fill_duration_seconds", "Time to fill one chunk from S3",
                        metrics::latency_buckets(), 1e-9),
        r.get_counter("valkyrie_prefetch_chunks_issued_total",
                      "Chunk fetches started ahead of any reader"),
        r.get_counter("valkyrie_prefetch_chunks_used_total", "Prefetched chunks later read"),
        r.get_counter("valkyrie_prefetch_chunks_late_total",
                      "Prefetched chunks whose reader arrived before the data did (and waited)"),
        r.get_counter("valkyrie_prefetch_chunks_wasted_total",
                      "Prefetched chunks evicted without being read"),
        r.get_histogram("valkyrie_prefetch_lead_seconds",
                        "How long a prefetched chunk was ready before its first read",
                        metrics::latency_buckets(), 1e-9),
        r.get_gauge("valkyrie_prefetch_chunks_queued",
                    "Prefetches waiting for their turn (at most the prefetch limit run at once)"),
        r.get_counter(
            "valkyrie_prefetch_chunks_cancelled_total",
            "Queued prefetches dropped before their request: no longer wanted (file closed, reader "
            "moved on, new training order)"),
        r.get_gauge("valkyrie_prefetch_bytes_in_flight",
                    "Bytes of prefetch requests sent and not finished"),
        r.get_gauge(
            "valkyrie_prefetch_bytes_limit",
            "Most prefetch bytes in flight at once (the measured link's bandwidth-delay product)"),
    };
  }
};

}  // namespace valkyrie::cache::detail
