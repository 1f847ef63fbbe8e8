#include "fs/training_order.hpp"

namespace valkyrie::fs {
namespace {

struct listed_keys {
  std::size_t found = 0;                    // distinct keys of the order in the listing
  std::uint64_t chunk_bytes = 0;            // their sizes in whole chunks (chunk_size > 0)
  std::uint64_t bytes = 0, read_bytes = 0;  // their sizes, once and once per occurrence
  std::uint64_t in_range_bytes = 0;         // their sizes within `counted`
};

listed_keys find_listed(const prefetch::predictor& order, const object_map& listing,
                        std::uint64_t chunk_size, size_range counted) {
  listed_keys r;
  auto add = [&](const s3::object_info& o, std::size_t occurrences) {
    ++r.found;
    if (chunk_size > 0) r.chunk_bytes += (o.size + chunk_size - 1) / chunk_size * chunk_size;
    r.bytes += o.size;
    r.read_bytes += o.size * occurrences;
    if (o.size >= counted.lo && o.size <= counted.hi) r.in_range_bytes += o.size;
  };
  // A tree search costs about 5 steps of the walk (2.7 us against 0.5 at 1.28 M keys): an
  // order under a fifth of the listing is searched key by key, a bigger one walks the listing.
  if (order.distinct_keys() * 5 < listing.size()) {
    order.for_each_distinct_key([&](const std::string& key, std::size_t occurrences) {
      if (auto it = listing.find(key); it != listing.end()) add(it->second, occurrences);
    });
  } else {
    for (const auto& [key, info] : listing)
      if (auto n = order.occurrences(key)) add(info, n);
  }
  return r;
}

}  // namespace

listed_order read_order(std::string_view text, const object_map& listing, std::uint64_t chunk_size,
                        size_range counted) {
  // Syntax first (every key taken), then the distinct keys against the listing at once.
  auto m = prefetch::parse_manifest(text, [](const std::string&) { return true; });
  listed_order r;
  r.problems = std::move(m.problems);
  r.predictor = std::make_shared<prefetch::predictor>(std::move(m.order));
  auto listed = find_listed(*r.predictor, listing, chunk_size, counted);
  if (listed.found < r.predictor->distinct_keys()) {
    // Keys the listing lacks (written since it was made, or mistyped): each line searched, so
    // that the problems name them with their lines.
    m = prefetch::parse_manifest(text,
                                 [&listing](const std::string& k) { return listing.count(k) > 0; });
    r.problems = std::move(m.problems);
    r.predictor = std::make_shared<prefetch::predictor>(std::move(m.order));
    listed = find_listed(*r.predictor, listing, chunk_size, counted);
  }
  r.chunk_bytes = listed.chunk_bytes;
  r.distinct_bytes = listed.bytes;
  r.read_bytes = listed.read_bytes;
  r.in_range_bytes = listed.in_range_bytes;
  return r;
}

}  // namespace valkyrie::fs
