#pragma once
// The shared cache tier's metrics (docs/metrics.md), registered once; used only by src/tier.
#include "core/metrics.hpp"

namespace valkyrie::tier::detail {

struct shared_metrics {
  metrics::counter& hits;
  metrics::counter& misses;
  metrics::counter& bytes_read;
  metrics::counter& bytes_written;
  metrics::counter& puts;
  metrics::counter& puts_deduplicated;
  metrics::counter& writes_dropped;
  metrics::counter& check_failures;
  metrics::counter& errors;
  metrics::gauge& write_back_pending;

  static shared_metrics& get() {
    static shared_metrics m = make();
    return m;
  }
  static shared_metrics make() {
    auto& r = metrics::registry::global();
    return shared_metrics{
        r.get_counter("valkyrie_shared_hits_total",
                      "Chunks read from the shared cache bucket (checked) instead of S3"),
        r.get_counter("valkyrie_shared_misses_total",
                      "Chunks the shared cache tier did not serve (absent, check failure, error, "
                      "backing off)"),
        r.get_counter("valkyrie_shared_bytes_read_total",
                      "Data bytes read from the shared cache bucket on hits"),
        r.get_counter("valkyrie_shared_bytes_written_total",
                      "Data bytes stored in the shared cache bucket"),
        r.get_counter("valkyrie_shared_puts_total",
                      "Chunk objects stored in the shared cache bucket"),
        r.get_counter(
            "valkyrie_shared_puts_deduplicated_total",
            "Chunk PUTs refused with 412 (If-None-Match: another node stored the chunk first)"),
        r.get_counter("valkyrie_shared_writes_dropped_total",
                      "Chunks not stored in the shared cache bucket (queue full, chunk evicted "
                      "first, tier backing off)"),
        r.get_counter("valkyrie_shared_check_failures_total",
                      "Shared chunk objects rejected when read (header, identity, length, CRC32C "
                      "or HMAC mismatch)"),
        r.get_counter("valkyrie_shared_errors_total",
                      "Failed requests to the shared cache bucket (5xx, resets, timeouts, 403, "
                      "...; the read went to S3)"),
        r.get_gauge("valkyrie_shared_write_back_pending",
                    "Chunks queued or being stored in the shared cache bucket"),
    };
  }
};

}  // namespace valkyrie::tier::detail
