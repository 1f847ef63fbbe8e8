#pragma once
// A training order read against the bucket's listing (a --manifest at mount, or a live hint
// written to /.valkyrie/order): which of its keys the listing has, the order's size in whole
// chunks for the disk tier, and its bytes (distinct, as read: what it reads again, and in a size
// range: what FUSE passthrough could take).
// Checking each line with a search of the listing's tree costs a few cache misses per level:
// 2.7 us a key at 1.28 M keys (ImageNet): 3.5 s for the order and as much again for its size.
// So the order's distinct keys are checked in one pass:
// the listing walked in its own order, each entry looked up in the order's hash map (0.5 us),
// or, for an order much smaller than the listing, a tree search per distinct key. Only when some
// key is missing are the lines searched one by one, to name them (docs/benchmarks.md).
// Pure functions: no I/O, no shared state. A live hint's check runs on the background thread,
// off the reactors (core/background.hpp): it still takes about a second at 1.28 M keys.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "prefetch/predictor.hpp"
#include "s3/types.hpp"

namespace valkyrie::fs {

// Every key under the prefix (relative to it), with its size and ETag.
using object_map = std::map<std::string, s3::object_info>;

struct listed_order {
  // The keys the listing has, in order, repeats kept (has_order() false when none is).
  std::shared_ptr<prefetch::predictor> predictor;
  std::vector<prefetch::manifest_problem> problems;  // the lines skipped, with their numbers
  // Its distinct objects' bytes, each rounded up to whole chunks of chunk_size (0: not asked).
  std::uint64_t chunk_bytes = 0;
  // Its distinct objects' bytes, and the bytes it reads (each object once per occurrence): more
  // than distinct_bytes when the order reads objects again (several epochs in one manifest).
  std::uint64_t distinct_bytes = 0, read_bytes = 0;
  // Its distinct objects' bytes whose size lies in the caller's range (0: none asked).
  std::uint64_t in_range_bytes = 0;
};

// Object sizes from `lo` to `hi`, both included (empty when hi is 0).
struct size_range {
  std::uint64_t lo = 0, hi = 0;
};

// Parses `text` (prefetch::parse_manifest's format) against `listing`. chunk_size 0: the size
// is not computed.
listed_order read_order(std::string_view text, const object_map& listing, std::uint64_t chunk_size,
                        size_range counted = {});

}  // namespace valkyrie::fs
