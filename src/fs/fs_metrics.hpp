#pragma once
// The fs layer's metrics (registered once, shared by the namespace, the order and the read path).
#include "core/metrics.hpp"

namespace valkyrie::fs {
struct fs_metrics {
  metrics::counter& reads;
  metrics::counter& read_bytes;
  metrics::counter& stalled_reads;
  metrics::counter& stall_ns;
  metrics::histogram& stall;
  metrics::counter& files_prefetched;
  metrics::counter& stale_objects;
  metrics::counter& orders_set;
  metrics::counter& orders_rejected;
  metrics::counter& orders_cleared;

  static fs_metrics& get() {
    auto& r = metrics::registry::global();
    auto order_updates = [&r](const char* result) -> metrics::counter& {
      return r.get_counter("valkyrie_order_updates_total", "Training orders received (set, refused, cleared)",
                           {{"result", result}});
    };
    static fs_metrics m{
        r.get_counter("valkyrie_reads_total", "Reads served by the filesystem"),
        r.get_counter("valkyrie_read_bytes_total", "Bytes returned to readers"),
        r.get_counter("valkyrie_read_stalls_total", "Reads that waited for S3 (some chunk was not cached)"),
        r.get_counter("valkyrie_read_stall_seconds_total", "Time readers spent waiting for S3", {}, 1e-9),
        r.get_histogram("valkyrie_read_stall_seconds", "Time one stalled read waited for S3",
                        metrics::latency_buckets(), 1e-9),
        r.get_counter("valkyrie_prefetch_files_total", "Whole files scheduled for prefetch (next files, warm-up)"),
        r.get_counter("valkyrie_stale_objects_total", "Reads that found the object changed since open (ESTALE)"),
        order_updates("set"),
        order_updates("refused"),
        order_updates("cleared"),
    };
    return m;
  }
};

}  // namespace valkyrie::fs
