#include "cli/passthrough_pool.hpp"

#include "core/units.hpp"
#include "fuse/passthrough.hpp"
#include "fuse/session.hpp"

namespace valkyrie::cli {

fs::size_range passthrough_pool_plan::takes() const {
  if (bytes == 0) return {};
  return {fuse::mount_options{}.passthrough_min, bytes};
}

passthrough_pool_plan plan_passthrough_pool(const std::string& flag, bool direct_io,
                                            std::uint64_t cache_bytes, std::uint64_t chunk_bytes,
                                            const std::string& cache_size, std::string& refusal) {
  // The backing files are cached data too: their pool is part of --cache-size's hard cap.
  passthrough_pool_plan plan;
  plan.automatic = flag == "auto";
  auto parsed = parse_size(plan.automatic ? "0" : flag);
  if (!parsed || (*parsed != 0 && *parsed < (1u << 20))) {
    refusal = "bad --passthrough-pool '" + flag + "' (auto, 0, or at least 1MiB, e.g. 512MiB)";
    return plan;
  }
  plan.bytes = *parsed;
  if (plan.automatic) {
    plan.off = direct_io ? "--direct-io" : fuse::passthrough_unavailable();
    if (plan.off.empty()) plan.bytes = fuse::auto_passthrough_pool(cache_bytes, chunk_bytes);
    if (plan.off.empty() && plan.bytes == 0) plan.off = "--cache-size is too small";
  } else if (plan.bytes == 0) {
    plan.off = "--passthrough-pool 0";
  } else if (direct_io) {
    refusal =
        "--passthrough-pool and --direct-io exclude each other (a passed-through file is read by "
        "the kernel)";
  } else if (plan.bytes > cache_bytes / 2 || cache_bytes - plan.bytes < 2 * chunk_bytes) {
    refusal = "--passthrough-pool " + flag + " is part of --cache-size " + cache_size +
              ": at most half of it, leaving the chunk cache two chunks";
  }
  return plan;
}

void fit_pool_to_order(passthrough_pool_plan& plan, std::uint64_t cache_bytes,
                       std::uint64_t disk_bytes, const fs::listed_order& order) {
  if (!plan.automatic || plan.bytes == 0) return;
  plan.off =
      fuse::auto_pool_off_for_order(plan.bytes, plan.takes().lo, cache_bytes, disk_bytes,
                                    {order.distinct_bytes, order.read_bytes, order.in_range_bytes});
  if (plan.off.empty()) return;
  plan.bytes = 0;
  plan.own_decoder = true;
}

}  // namespace valkyrie::cli
