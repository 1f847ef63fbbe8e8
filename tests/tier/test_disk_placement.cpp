// disk_store placement by the training order: with a next-use rank the retained set is the
// offline optimum's (Belady with bypass) at every step; a chunk needed later than all the store
// holds is declined; without a rank, CLOCK (and fewer hits on the same accesses).
#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <set>

#include "tier_fixture.hpp"

using namespace valkyrie;
using namespace valkyrie::tier;
using test::aligned_buffer;
using test::chunk_of;

namespace test_disk_placement {

constexpr std::uint32_t cs = 64 * 1024;
constexpr std::uint64_t stride = disk_store::header_bytes + cs;
constexpr std::uint64_t never = cache::chunk_cache::not_in_order;

struct accesses {
  std::vector<int> seq;  // chunk numbers, in the order they are read
  // The position of chunk x's next read after position i (never: none).
  std::uint64_t next(int x, std::size_t i) const {
    for (std::size_t j = i + 1; j < seq.size(); ++j)
      if (seq[j] == x) return j;
    return never;
  }
};

cache::chunk_id id_of(int x) {
  return chunk_of("f" + std::to_string(x), 0, cs, cs);
}

int number_of(const cache::chunk_id& id) {
  return std::stoi(id.object->key.substr(1));
}

// The offline optimum with bypass: on a miss with the cache full, the resident read farthest in
// the future goes if the incoming chunk is read sooner; else the incoming one is not kept.
std::vector<std::set<int>> belady(const accesses& a, std::size_t capacity,
                                  std::vector<bool>& hits) {
  std::set<int> s;
  std::vector<std::set<int>> after;
  for (std::size_t i = 0; i < a.seq.size(); ++i) {
    int x = a.seq[i];
    hits.push_back(s.count(x) != 0);
    if (!hits.back()) {
      if (s.size() < capacity) {
        s.insert(x);
      } else {
        int far = *std::max_element(s.begin(), s.end(),
                                    [&](int p, int q) { return a.next(p, i) < a.next(q, i); });
        if (a.next(x, i) < a.next(far, i)) {
          s.erase(far);
          s.insert(x);
        }
      }
    }
    after.push_back(s);
  }
  return after;
}

// The chunks of `s` that are read again after position i (those the optimum's ties leave
// unambiguous: which never-read-again chunk stays does not matter).
std::set<int> needed(const std::set<int>& s, const accesses& a, std::size_t i) {
  std::set<int> out;
  for (int x : s)
    if (a.next(x, i) != never) out.insert(x);
  return out;
}

// Runs the accesses through a store of `capacity` slots (a hit is a read; a miss a write, as
// the tier writes back a fetched chunk); ranked by the accesses if `ranked`. The hit pattern.
std::vector<bool> run(const accesses& a, std::size_t capacity, bool ranked,
                      const std::vector<std::set<int>>* expect = nullptr) {
  test::temp_dir dir;
  test::io_loop io;
  store_options o;
  o.dir = dir.path().string();
  o.size = capacity * stride;
  o.chunk_size = cs;
  auto s = disk_store::open(o);
  REQUIRE(s->slots() == capacity);
  std::size_t now = 0;
  if (ranked) s->set_ranker([&](const cache::chunk_id& id) { return a.next(number_of(id), now); });
  std::vector<bool> hits;
  for (now = 0; now < a.seq.size(); ++now) {
    auto id = id_of(a.seq[now]);
    aligned_buffer b(cs);
    auto r = io.run(s->read(id, b.pieces()));
    hits.push_back(r.has_value());
    if (r) {
      CHECK(test::matches(b.span(), id.object->key, id.index));
    } else {
      test::fill(b.span(), id.object->key, id.index);
      (void)io.run(s->write(id, b.cpieces()));
    }
    if (expect) {
      std::set<int> held;
      for (int x = 0; x < 64; ++x)
        if (s->contains(id_of(x))) held.insert(x);
      REQUIRE(held.size() <= capacity);
      INFO("after access " << now);
      CHECK(needed(held, a, now) == needed((*expect)[now], a, now));
    }
  }
  CHECK(s->stats().used_slots <= capacity);
  return hits;
}

accesses epochs(int chunks, int n, unsigned seed) {
  accesses a;
  std::mt19937 rng(seed);
  std::vector<int> order(chunks);
  for (int i = 0; i < chunks; ++i) order[i] = i;
  for (int e = 0; e < n; ++e) {
    std::shuffle(order.begin(), order.end(), rng);
    a.seq.insert(a.seq.end(), order.begin(), order.end());
  }
  return a;
}

std::size_t count(const std::vector<bool>& v) {
  return std::count(v.begin(), v.end(), true);
}

TEST_CASE("placement: with an order the store keeps the offline optimum's chunks at every step") {
  // Shuffled epochs (the training shape) and uniform random reads; several capacities.
  for (unsigned seed : {1u, 2u, 3u}) {
    for (std::size_t capacity : {3u, 5u, 8u}) {
      accesses a = epochs(12, 5, seed);
      accesses r;
      std::mt19937 rng(seed + 100);
      for (int i = 0; i < 120; ++i) r.seq.push_back(static_cast<int>(rng() % 14));
      for (const accesses* x : {&a, &r}) {
        std::vector<bool> best_hits;
        auto best = belady(*x, capacity, best_hits);
        auto hits = run(*x, capacity, true, &best);
        CHECK(hits == best_hits);
        // CLOCK on the same accesses does no better (and worse on shuffled epochs).
        auto clock_hits = run(*x, capacity, false);
        CHECK(count(clock_hits) <= count(best_hits));
        if (x == &a) CHECK(count(clock_hits) < count(best_hits));
      }
    }
  }
}

TEST_CASE("placement: a chunk needed later than all the store holds is declined, counted") {
  test::temp_dir dir;
  test::io_loop io;
  store_options o;
  o.dir = dir.path().string();
  o.size = 3 * stride;
  o.chunk_size = cs;
  auto s = disk_store::open(o);
  // Ranks: chunk x is needed at 10 * x; chunks not named rank last (not in the order).
  s->set_ranker([](const cache::chunk_id& id) {
    int x = number_of(id);
    return x < 100 ? std::uint64_t(10 * x) : never;
  });
  auto put = [&](int x) {
    aligned_buffer b(cs);
    test::fill(b.span(), id_of(x).object->key, 0);
    return io.run(s->write(id_of(x), b.cpieces()));
  };
  CHECK(put(5));
  CHECK(put(200));  // (a free slot: kept, first to go)
  CHECK(put(7));
  CHECK(!put(300));  // not in the order: declined, nothing evicted
  CHECK(s->stats().writes_declined == 1);
  CHECK(put(9));  // the chunk not in the order goes first
  CHECK(!s->contains(id_of(200)));
  CHECK(put(8));  // needed before 9: 9 goes
  CHECK(!s->contains(id_of(9)));
  CHECK(!put(20));  // needed after 5, 7 and 8: declined
  CHECK(s->stats().writes_declined == 2);
  for (int x : {5, 7, 8}) CHECK(s->contains(id_of(x)));
  // No order any more: CLOCK takes a slot again.
  s->set_ranker(nullptr);
  CHECK(put(20));
  CHECK(s->stats().used_slots == 3);
}
}  // namespace test_disk_placement
