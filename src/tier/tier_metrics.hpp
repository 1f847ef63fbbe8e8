#pragma once
// The disk tier's metrics (docs/metrics.md), registered once; used only by src/tier.
#include "core/metrics.hpp"

namespace valkyrie::tier::detail {

struct tier_metrics {
  metrics::counter& hits;
  metrics::counter& misses;
  metrics::counter& bytes_read;
  metrics::counter& bytes_written;
  metrics::gauge& used_bytes;
  metrics::gauge& capacity_bytes;
  metrics::counter& writes_dropped;
  metrics::counter& writes_declined;
  metrics::counter& check_failures;
  metrics::counter& errors;
  metrics::counter& slow;
  metrics::counter& hung;

  static tier_metrics& get() {
    static tier_metrics m = make();
    return m;
  }
  static tier_metrics make() {
    auto& r = metrics::registry::global();
    return tier_metrics{
        r.get_counter("valkyrie_disk_hits_total",
                      "Chunks read from the disk tier (checked) instead of S3"),
        r.get_counter("valkyrie_disk_misses_total",
                      "Chunks the disk tier did not have (or could not serve: check failure, I/O "
                      "error, disabled)"),
        r.get_counter("valkyrie_disk_bytes_read_total",
                      "Data bytes read from the disk tier on hits"),
        r.get_counter("valkyrie_disk_bytes_written_total", "Data bytes written to the disk tier"),
        r.get_gauge("valkyrie_disk_used_bytes", "Data bytes of the chunks the disk tier holds"),
        r.get_gauge("valkyrie_disk_capacity_bytes",
                    "Bytes of the disk tier's data files (--disk-cache-size, in whole slots)"),
        r.get_counter("valkyrie_disk_writes_dropped_total",
                      "Chunks not written to the disk tier (write-back full, chunk evicted first, "
                      "no free slot, tier disabled)"),
        r.get_counter("valkyrie_disk_writes_declined_total",
                      "Chunks not written to the disk tier because the training order needs them "
                      "later than every chunk it holds (Belady placement)"),
        r.get_counter("valkyrie_disk_check_failures_total",
                      "Disk tier chunks whose header or CRC32C did not match when read (dropped, "
                      "fetched from S3)"),
        r.get_counter("valkyrie_disk_errors_total",
                      "I/O errors on the disk tier's files (the read went to S3)"),
        r.get_counter("valkyrie_disk_slow_total",
                      "Disk tier reads and writes slower than their limit (2 s per 8 MiB chunk): "
                      "served, but counted with the errors towards stepping aside"),
        r.get_counter(
            "valkyrie_disk_hung_total",
            "Times the disk tier stepped aside because a read or write had been in flight "
            "longer than its limit (4 s per 8 MiB chunk): a disk that stopped answering"),
    };
  }
};

}  // namespace valkyrie::tier::detail
