// valkyrie-order-bench: what checking a training order against the listing costs on the
// reactor that installs it (fs::read_order), against one tree search of the listing per line
// and per distinct key (how it was done before). A synthetic ImageNet-shaped listing (1,000
// directories of 1,281 keys by default), the order a shuffle of all of it, both ways alternating.
//   valkyrie-order-bench [KEYS_PER_DIR] [ROUNDS]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>

#include "fs/training_order.hpp"

using namespace valkyrie;
using clk = std::chrono::steady_clock;

namespace {
double since(clk::time_point t) {
  return std::chrono::duration<double>(clk::now() - t).count();
}
}  // namespace

int main(int argc, char** argv) {
  const int per_dir = argc > 1 ? std::atoi(argv[1]) : 1281;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 3;
  if (per_dir <= 0 || rounds <= 0) {
    std::fprintf(stderr, "usage: valkyrie-order-bench [KEYS_PER_DIR > 0] [ROUNDS > 0]\n");
    return 2;
  }
  fs::object_map listing;
  std::vector<std::string> keys;
  for (int d = 0; d < 1000; ++d)
    for (int i = 0; i < per_dir; ++i) {
      char b[96];
      std::snprintf(b, sizeof b, "train/n%08d/n%08d_%d.JPEG", 1440764 + d * 37, 1440764 + d * 37,
                    10000 + i * 7);
      keys.push_back(b);
      listing.emplace(b,
                      s3::object_info{b, 110000u + i, "\"0123456789abcdef0123456789abcdef\"", {}});
    }
  std::shuffle(keys.begin(), keys.end(), std::mt19937(1));
  std::string text;
  for (auto& k : keys) text += k + '\n';
  const std::uint64_t chunk = 8 << 20;
  std::printf("%zu keys in the listing and the order\n", keys.size());
  for (int r = 0; r < rounds; ++r) {
    auto t = clk::now();
    auto m = prefetch::parse_manifest(
        text, [&listing](const std::string& k) { return listing.count(k) > 0; });
    prefetch::predictor order(std::move(m.order));
    std::uint64_t tree_bytes = 0;
    order.for_each_distinct_key([&](const std::string& k, std::size_t) {
      if (auto it = listing.find(k); it != listing.end())
        tree_bytes += (it->second.size + chunk - 1) / chunk * chunk;
    });
    const double tree_s = since(t);
    t = clk::now();
    auto checked = fs::read_order(text, listing, chunk);
    const double read_s = since(t);
    if (checked.chunk_bytes != tree_bytes || checked.predictor->keys().size() != keys.size()) {
      std::fprintf(stderr, "the two ways disagree\n");
      return 1;
    }
    std::printf("round %d: a tree search per line and key %.2f s, read_order %.2f s (%.1f x)\n",
                r + 1, tree_s, read_s, tree_s / read_s);
  }
  return 0;
}
