#pragma once
// --passthrough-pool (docs/usage.md): how much of --cache-size FUSE passthrough's backing files
// may take, and why it is 0. `auto` sizes it from the kernel's release, the daemon's
// capabilities and the cache, then, once a --manifest is read, from the order: the pool's room
// is the chunk cache's loss (fuse::auto_pool_off_for_order says when that does not pay).
// Start-up only, on the main thread.
#include <cstdint>
#include <string>

#include "fs/training_order.hpp"

namespace valkyrie::cli {

struct passthrough_pool_plan {
  bool automatic = false;  // --passthrough-pool auto
  std::uint64_t bytes = 0;
  std::string off;  // why there is no pool ("" when there is one)
  // auto had a pool that the order turned off: the requests still go to the own decoder
  // (fuse::mount_options::own_decoder).
  bool own_decoder = false;
  // What an order's sizes are counted against (read_order): the objects a backing file takes.
  fs::size_range takes() const;
};

// The pool for --passthrough-pool `flag` (beside --cache-size `cache_size` of `cache_bytes` and
// chunks of `chunk_bytes`); a bad value or one that conflicts with `direct_io`: `refusal` set
// (the message for a usage error).
passthrough_pool_plan plan_passthrough_pool(const std::string& flag, bool direct_io,
                                            std::uint64_t cache_bytes, std::uint64_t chunk_bytes,
                                            const std::string& cache_size, std::string& refusal);

// auto, with the order a --manifest gave (read_order with `plan.takes()`): the pool goes where it
// would cost the order more than it gives (`disk_bytes`: the disk tier's, or 0).
void fit_pool_to_order(passthrough_pool_plan& plan, std::uint64_t cache_bytes,
                       std::uint64_t disk_bytes, const fs::listed_order& order);

}  // namespace valkyrie::cli
