// The tiered fetch through a real chunk cache: a miss goes to "S3" and is written back from the
// cache's memory; a fresh cache over the same store then gets it from disk, bytes exact.
#include <doctest/doctest.h>

#include <atomic>
#include <thread>

#include "cache/chunk_cache.hpp"
#include "tier/disk_tier.hpp"
#include "tier_fixture.hpp"

using namespace valkyrie;
using namespace valkyrie::tier;
using test::chunk_of;
using test::idle;
using test::read_through;
using test::s3_fetch;

namespace test_disk_tier {

constexpr std::uint32_t cs = 64 * 1024;

TEST_CASE("tier: S3 misses are written back from cache memory; a new cache reads them from disk") {
  test::temp_dir dir;
  test::io_loop io;
  auto store = disk_store::open(test::store_options_for(dir, 64, cs));
  auto calls = std::make_shared<std::atomic<int>>(0);
  std::vector<cache::chunk_id> ids;
  for (int f = 0; f < 4; ++f)
    for (std::uint64_t c = 0; c < 3; ++c)
      ids.push_back(chunk_of("f" + std::to_string(f), c, cs, 2 * cs + 5000));
  {
    auto c = std::make_shared<cache::chunk_cache>(32 * cs, cs, 1);
    auto tier = std::make_shared<disk_tier>(store, c, 4 * cs);
    for (auto& id : ids) CHECK(io.run(read_through(*c, *tier, id, calls)));
    io.run(idle());  // (the write-backs started by the last fetches)
    CHECK(tier->write_back_in_flight() == 0);
    CHECK(calls->load() == static_cast<int>(ids.size()));
    CHECK(c->check_invariants() == "");
  }
  CHECK(store->stats().writes == ids.size());
  for (auto& id : ids) CHECK(store->contains(id));
  // A chunk of another layout (a random reader's block) bypasses the tier.
  CHECK(!store->admits(chunk_of("f0", 0, cs / 4, 2 * cs + 5000)));

  auto c2 = std::make_shared<cache::chunk_cache>(32 * cs, cs, 1);
  auto tier2 = std::make_shared<disk_tier>(store, c2, 4 * cs);
  for (auto& id : ids) CHECK(io.run(read_through(*c2, *tier2, id, calls)));
  CHECK(calls->load() == static_cast<int>(ids.size()));  // no S3 fetch the second time
  CHECK(store->stats().hits == ids.size());
}

TEST_CASE(
    "tier: a busy write-back queues chunks without delaying the reader; one evicted first is "
    "dropped") {
  test::temp_dir dir;
  test::io_loop io;
  auto store = disk_store::open(test::store_options_for(dir, 64, cs));
  auto calls = std::make_shared<std::atomic<int>>(0);
  // Eight fetches in a row, none of which waits for the disk: one write-back runs at a time
  // (the limit is one chunk), the others wait in the queue as identities.
  auto many = [&](cache::chunk_cache& c, disk_tier& tier,
                  std::string prefix) -> awaitable<std::size_t> {
    std::size_t queued_max = 0;
    for (int i = 0; i < 8; ++i) {
      auto id = chunk_of(prefix + std::to_string(i), 0, cs, cs);
      auto r = co_await c.get(id, tier.wrap(id, s3_fetch(id, calls)));
      if (!r) co_return 0;
      queued_max = std::max(queued_max, tier.write_back_queued());
    }
    co_return queued_max;
  };
  {
    auto c = std::make_shared<cache::chunk_cache>(32 * cs, cs, 1);
    auto tier = std::make_shared<disk_tier>(store, c, cs);
    CHECK(io.run(many(*c, *tier, "x")) >= 6);
    io.run(idle());
    CHECK(tier->write_back_queued() == 0);
    CHECK(store->stats().writes == 8);  // all written in turn: the cache kept them
    CHECK(store->stats().writes_dropped == 0);
  }
  {
    // A cache of two chunks: the queued chunks are evicted before their turn.
    auto c = std::make_shared<cache::chunk_cache>(2 * cs, cs, 1);
    auto tier = std::make_shared<disk_tier>(store, c, cs);
    io.run(many(*c, *tier, "y"));
    io.run(idle());
    auto st = store->stats();
    CHECK(st.writes - 8 + st.writes_dropped == 8);
    CHECK(st.writes_dropped >= 1);
    CHECK(c->check_invariants() == "");
  }
}
}  // namespace test_disk_tier
