// Memory and disk together with a known order: the disk is written when memory evicts (the
// spill hook), so the two hold what one cache of both sizes would. Epoch 2's reads served
// without "S3" are compared with the offline optimum (Belady with bypass) for memory + disk
// slots; writing back at fetch instead (the disk duplicating memory) falls well short of it.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <random>

#include "cache/chunk_cache.hpp"
#include "tier/disk_tier.hpp"
#include "tier_fixture.hpp"

using namespace valkyrie;
using namespace valkyrie::tier;
using test::chunk_of;
using test::read_through;

namespace test_disk_spill {

constexpr std::uint32_t cs = 64 * 1024;
constexpr std::uint64_t never = cache::chunk_cache::not_in_order;

cache::chunk_id id_of(int x) {
  return chunk_of("f" + std::to_string(x), 0, cs, cs);
}

int number_of(const cache::chunk_id& id) {
  return std::stoi(id.object->key.substr(1));
}

std::vector<int> two_epochs(int chunks, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<int> order(chunks), seq;
  for (int i = 0; i < chunks; ++i) order[i] = i;
  for (int e = 0; e < 2; ++e) {
    std::shuffle(order.begin(), order.end(), rng);
    seq.insert(seq.end(), order.begin(), order.end());
  }
  return seq;
}

// Chunks 0..n-1 read in order, then again in a shuffled order: a chunk's rank is the position
// of its next read in both passes together, as of `now`.
struct two_passes {
  int chunks;
  std::vector<int> second;
  std::vector<std::uint64_t> second_at;  // chunk -> its position in the second pass
  std::size_t now = 0;
  two_passes(int n, unsigned seed) : chunks(n), second(n), second_at(n) {
    for (int i = 0; i < n; ++i) second[i] = i;
    std::shuffle(second.begin(), second.end(), std::mt19937(seed));
    for (int i = 0; i < n; ++i) second_at[second[i]] = n + i;
  }
  // Ranks memory and disk by these passes (the object must outlive both).
  void rank(cache::chunk_cache& c, disk_store& store) {
    auto fn = [this](const cache::chunk_id& id) -> std::uint64_t {
      const int x = number_of(id);
      return static_cast<std::size_t>(x) >= now ? x : second_at[x];
    };
    c.set_eviction_ranker(fn);
    store.set_ranker(fn);
  }
};

// The offline optimum with bypass over `seq` for `capacity` chunks: epoch 2's hits.
std::size_t optimum(const std::vector<int>& seq, std::size_t capacity) {
  const std::size_t half = seq.size() / 2;
  auto next = [&](int x, std::size_t i) {
    for (std::size_t j = i + 1; j < seq.size(); ++j)
      if (seq[j] == x) return j;
    return seq.size() + 1;
  };
  std::map<int, std::size_t> held;  // chunk -> next use
  std::size_t hits = 0;
  for (std::size_t i = 0; i < seq.size(); ++i) {
    const int x = seq[i];
    if (held.count(x)) {
      hits += i >= half;
      held[x] = next(x, i);
      continue;
    }
    if (held.size() < capacity) {
      held[x] = next(x, i);
      continue;
    }
    auto far = std::max_element(held.begin(), held.end(),
                                [](auto& a, auto& b) { return a.second < b.second; });
    if (next(x, i) < far->second) {
      held.erase(far);
      held[x] = next(x, i);
    }
  }
  return hits;
}

struct outcome {
  std::size_t served = 0;  // epoch 2's reads not sent to S3
  std::uint64_t disk_writes = 0;
};

// Runs `seq` through a cache of `mem` chunks over a disk of `disk` slots, both ranked by the
// order; spill: the tier writes at eviction (else at fetch, the disk inclusive of memory).
outcome run(const std::vector<int>& seq, std::size_t mem, std::size_t disk, bool spill) {
  test::temp_dir dir;
  test::io_loop io;
  auto store = disk_store::open(test::store_options_for(dir, disk, cs));
  auto c = std::make_shared<cache::chunk_cache>(mem * cs, cs, 1);
  auto tier = std::make_shared<disk_tier>(store, c, 4 * cs);
  if (spill) tier->start_spill(io.ctx.get_executor());
  std::size_t now = 0;
  auto rank = [&seq, &now](const cache::chunk_id& id) -> std::uint64_t {
    const int x = number_of(id);
    for (std::size_t j = now; j < seq.size(); ++j)
      if (seq[j] == x) return j;
    return never;
  };
  c->set_eviction_ranker(rank);
  store->set_ranker(rank);
  auto calls = std::make_shared<std::atomic<int>>(0);
  const std::size_t half = seq.size() / 2;
  int before = 0;
  for (now = 0; now < seq.size(); ++now) {
    if (now == half) before = calls->load();
    REQUIRE(io.run(read_through(*c, *tier, id_of(seq[now]), calls)));
  }
  CHECK(c->check_invariants() == "");
  CHECK(tier->write_back_in_flight() == 0);
  CHECK(store->stats().used_slots <= disk);
  return {half - static_cast<std::size_t>(calls->load() - before), store->stats().writes};
}

TEST_CASE("spill: memory + disk with an order come within 5% of the offline optimum for both") {
  // 128 chunks read in two shuffled epochs; memory 16 chunks, disk 48: the optimum keeps 64.
  for (unsigned seed : {1u, 2u, 3u}) {
    auto seq = two_epochs(128, seed);
    const std::size_t best = optimum(seq, 16 + 48);
    auto with = run(seq, 16, 48, true);
    auto without = run(seq, 16, 48, false);
    MESSAGE("seed " << seed << ": optimum " << best << ", spill " << with.served
                    << ", write at fetch " << without.served);
    CHECK(with.served <= best);
    CHECK(static_cast<double>(with.served) >= 0.95 * static_cast<double>(best));
    // Writing at fetch, the disk duplicates memory's chunks: short by about memory's share.
    CHECK(static_cast<double>(without.served) < 0.9 * static_cast<double>(best));
  }
}

TEST_CASE("spill: without an order the tier writes back at fetch, as before") {
  test::temp_dir dir;
  test::io_loop io;
  auto store = disk_store::open(test::store_options_for(dir, 16, cs));
  auto c = std::make_shared<cache::chunk_cache>(4 * cs, cs, 1);
  auto tier = std::make_shared<disk_tier>(store, c, 4 * cs);
  tier->start_spill(io.ctx.get_executor());
  auto calls = std::make_shared<std::atomic<int>>(0);
  for (int x = 0; x < 3; ++x) CHECK(io.run(read_through(*c, *tier, id_of(x), calls)));
  // (nothing evicted yet: written at fetch all the same)
  CHECK(store->stats().writes == 3);
  for (int x = 0; x < 3; ++x) CHECK(store->contains(id_of(x)));
}

TEST_CASE("spill: a burst of evictions finds its victims already on the disk") {
  // Memory of 32 chunks; 96 read in bursts of 4 at once (a file's chunks read ahead together),
  // then again in another order, each disk write taking 5 ms. An eviction cannot wait for a
  // write, so the next victims are written ahead of it (an eighth of memory): no chunk is
  // dropped, and the second pass never goes to "S3".
  test::temp_dir dir;
  test::io_loop io;
  auto plan = std::make_shared<fault_plan>();
  plan->delay_ms = 5;
  auto store = disk_store::open(test::store_options_for(dir, 128, cs, 1, plan));
  auto c = std::make_shared<cache::chunk_cache>(32 * cs, cs, 1);
  auto tier = std::make_shared<disk_tier>(store, c, 2 * cs);
  CHECK(tier->spill_hold_bytes() == 8 * cs);
  tier->start_spill(io.ctx.get_executor());
  constexpr int chunks = 96;
  two_passes passes(chunks, 7);
  passes.rank(*c, *store);
  auto calls = std::make_shared<std::atomic<int>>(0);
  auto burst = [&](int first) -> awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    std::vector<std::future<bool>> reads;
    for (int x = first; x < first + 4; ++x)
      reads.push_back(
          asio::co_spawn(ex, read_through(*c, *tier, id_of(x), calls), asio::use_future));
    co_return;
  };
  for (int first = 0; first < chunks; first += 4) {
    passes.now = first;
    io.run(burst(first));  // (returns when the reads and the writes they started are done)
  }
  CHECK(calls->load() == chunks);
  CHECK(store->stats().writes_dropped == 0);
  for (int i = 0; i < chunks; ++i) {
    passes.now = chunks + i;
    CHECK(io.run(read_through(*c, *tier, id_of(passes.second[i]), calls)));
  }
  CHECK(calls->load() == chunks);  // (the second pass: all from memory or the disk)
  CHECK(tier->write_back_in_flight() == 0);
  CHECK(tier->write_back_queued() == 0);
  CHECK(c->check_invariants() == "");
}

// Memory of 32 chunks over a disk of `disk_slots` that takes 20 ms per write, write-back room
// for 20 chunks; 96 chunks read 8 at once (a file read ahead), then again in another order.
// order_bytes: what the tier is told of the order's size (0: nothing).
struct slow_run {
  disk_tier::pin_peaks peaks;
  std::uint64_t evict_hold = 0, pin_limit = 0, hold = 0;
  std::uint64_t dropped = 0;
  int second_pass_s3 = 0;  // the second pass's reads sent to "S3"
};
slow_run run_slow(std::uint64_t disk_slots, std::uint64_t order_bytes) {
  test::temp_dir dir;
  test::io_loop io;
  auto plan = std::make_shared<fault_plan>();
  plan->delay_ms = 20;
  auto store = disk_store::open(test::store_options_for(dir, disk_slots, cs, 1, plan));
  auto c = std::make_shared<cache::chunk_cache>(32 * cs, cs, 1);
  auto tier = std::make_shared<disk_tier>(store, c, 20 * cs);
  tier->set_order_bytes(order_bytes);
  tier->start_spill(io.ctx.get_executor());
  constexpr int chunks = 96;
  two_passes passes(chunks, 11);
  passes.rank(*c, *store);
  auto calls = std::make_shared<std::atomic<int>>(0);
  auto good = std::make_shared<std::atomic<int>>(0);
  auto burst = [&](std::vector<int> xs) -> awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    for (int x : xs)
      asio::co_spawn(ex, read_through(*c, *tier, id_of(x), calls),
                     [good](std::exception_ptr e, bool ok) { *good += !e && ok; });
    co_return;
  };
  for (int first = 0; first < chunks; first += 8) {
    passes.now = first;
    std::vector<int> xs;
    for (int x = first; x < first + 8; ++x) xs.push_back(x);
    io.run(burst(xs));  // (returns when the reads and the writes they started are done)
  }
  const int first_pass_s3 = calls->load();
  for (int i = 0; i < chunks; i += 8) {
    passes.now = chunks + i;
    io.run(burst(std::vector<int>(passes.second.begin() + i, passes.second.begin() + i + 8)));
  }
  CHECK(good->load() == 2 * chunks);  // (every byte of every read right)
  CHECK(tier->write_back_in_flight() == 0);
  CHECK(tier->write_back_queued() == 0);
  CHECK(c->check_invariants() == "");
  slow_run r{tier->spill_pin_peaks(), tier->evict_hold_bytes(), tier->pin_limit_bytes(),
             tier->spill_hold_bytes(), store->stats().writes_dropped, calls->load() - first_pass_s3};
  MESSAGE("disk " << disk_slots << " slots, order of " << order_bytes / cs << " chunks told: pinned at most ahead "
                  << r.peaks.ahead / cs << " chunks, at eviction " << r.peaks.evicted / cs << ", together "
                  << r.peaks.total / cs << "; dropped " << r.dropped << ", second pass from S3 "
                  << r.second_pass_s3);
  return r;
}

TEST_CASE("spill: on a slow disk the memory pinned by spills stays within its bounds") {
  // A disk of 48 slots: ahead of eviction only while it has room beyond memory's 32 chunks.
  // Spills ahead may pin up to 20 chunks (the write-back room), spills at eviction up to 4 (an
  // eighth of memory), both together 20 (the larger of the write-back room and half of memory),
  // passed by at most one chunk. Evictions outrun the disk, so some spills are dropped (counted,
  // not waited for).
  auto r = run_slow(48, 0);
  CHECK(r.hold == 20 * cs);
  CHECK(r.evict_hold == 4 * cs);
  CHECK(r.pin_limit == 20 * cs);
  CHECK(r.peaks.ahead <= r.hold);
  CHECK(r.peaks.evicted <= r.evict_hold);
  CHECK(r.peaks.total <= r.pin_limit + cs);
  // (the run reaches the eviction bound, and pins more than that ahead: else it checks little)
  CHECK(r.peaks.evicted == r.evict_hold);
  CHECK(r.peaks.ahead > r.evict_hold);
  CHECK(r.dropped > 0);
}

TEST_CASE("spill: a disk that holds the whole order takes more of what memory evicts") {
  // 96 slots for 96 chunks: told the order's size, spills at eviction may pin up to the joint
  // limit (and with spills ahead, that plus the write-back room), so fewer are dropped and the
  // second pass goes to "S3" less; told nothing (or an order bigger than the disk), the eighth
  // of memory holds.
  auto told = run_slow(96, 96 * cs);
  auto untold = run_slow(96, 0);
  auto too_big = run_slow(96, 97 * cs);
  CHECK(untold.peaks.evicted <= untold.evict_hold);
  CHECK(too_big.peaks.evicted <= too_big.evict_hold);
  CHECK(told.peaks.evicted > told.evict_hold);
  CHECK(told.peaks.evicted <= told.pin_limit);
  CHECK(told.peaks.total <= told.pin_limit + told.hold + cs);
  CHECK(told.dropped < untold.dropped);
  CHECK(told.second_pass_s3 < untold.second_pass_s3);
}
}  // namespace test_disk_spill
