#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "cache/page_allocator.hpp"

using namespace valkyrie::cache;

namespace {
constexpr std::uint64_t page = page_allocator::page_size;

std::uint64_t pages_in(const std::vector<extent>& v) {
  std::uint64_t n = 0;
  for (const auto& e : v) n += e.count;
  return n;
}

// Uniform in [0, 1) from the raw engine: the same numbers with any standard library.
double unit(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * 0x1p-53;
}
std::uint64_t below(std::mt19937_64& rng, std::uint64_t n) {
  return static_cast<std::uint64_t>(unit(rng) * static_cast<double>(n));
}
template <class T>
void shuffle(std::vector<T>& v, std::mt19937_64& rng) {
  for (std::size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[below(rng, i)]);
}
}  // namespace

TEST_CASE("page rounding is exact: 1 byte and 4096 bytes take one page, 4097 two") {
  CHECK(page_allocator::page_size == 4096);
  CHECK(page_allocator::pages_for(0) == 0);
  CHECK(page_allocator::pages_for(1) == 1);
  CHECK(page_allocator::pages_for(4096) == 1);
  CHECK(page_allocator::pages_for(4097) == 2);
  CHECK(page_allocator::pages_for(110 * 1024) == 28);
  CHECK(page_allocator::pages_for(~std::uint64_t{0}) == (std::uint64_t{1} << 52));

  page_allocator a(0, 16);
  const std::vector<std::pair<std::uint64_t, std::uint32_t>> cases = {
      {1, 1}, {4096, 1}, {4097, 2}, {8192, 2}, {12287, 3}};
  for (auto [bytes, pages] : cases) {
    std::vector<extent> out;
    const auto before = a.free_pages();
    REQUIRE(a.allocate(bytes, 1, out));
    REQUIRE(out.size() == 1);
    CHECK(out[0].count == pages);
    CHECK(a.free_pages() == before - pages);
  }
  CHECK(a.free_pages() == 16 - 9);
  std::vector<extent> out;
  CHECK(a.allocate(0, 1, out));  // nothing to hold: nothing handed out
  CHECK(out.empty());
  CHECK(a.free_pages() == 7);
  CHECK(a.check_invariants() == "");
}

TEST_CASE("the cap: never more pages out than the range, and a full allocator refuses cleanly") {
  page_allocator a(100, 1000);
  CHECK(a.first_page() == 100);
  CHECK(a.page_count() == 1000);
  std::mt19937_64 rng(1);
  std::vector<std::vector<extent>> held;
  std::uint64_t out_pages = 0;
  for (;;) {
    std::vector<extent> out;
    const std::uint64_t bytes = 1 + below(rng, 40 * page);
    if (!a.allocate(bytes, 4, out)) {
      CHECK(out.empty());
      CHECK(page_allocator::pages_for(bytes) > a.free_pages());
      break;
    }
    CHECK(pages_in(out) == page_allocator::pages_for(bytes));
    for (const auto& e : out) {
      CHECK(e.first >= 100);
      CHECK(e.first + e.count <= 1100);
    }
    out_pages += pages_in(out);
    held.push_back(out);
    REQUIRE(out_pages <= 1000);
  }
  // Top up page by page: exactly the range, then clean refusals.
  for (std::vector<extent> out; a.allocate(1, 1, out); out.clear()) {
    out_pages += pages_in(out);
    held.push_back(out);
  }
  CHECK(out_pages == 1000);
  CHECK(a.free_pages() == 0);
  CHECK(a.largest_free_extent() == 0);
  std::vector<extent> sentinel = {{7, 3}};
  CHECK_FALSE(a.allocate(1, 8, sentinel));
  CHECK(sentinel == std::vector<extent>{{7, 3}});  // out untouched
  CHECK(a.check_invariants() == "");

  page_allocator fresh(0, 10);
  std::vector<extent> out;
  CHECK_FALSE(fresh.allocate(10 * page + 1, 100, out));
  CHECK(out.empty());
  CHECK(fresh.free_pages() == 10);
  CHECK_FALSE(fresh.allocate(page, 0, out));  // max_extents 0: nothing can be handed out
  CHECK(fresh.allocate(10 * page, 1, out));
  CHECK(out == std::vector<extent>{{0, 10}});
}

TEST_CASE("releasing everything in a random order coalesces back to one extent") {
  for (std::uint64_t seed : {2, 3, 4}) {
    page_allocator a(5, 4096);
    std::mt19937_64 rng(seed);
    std::vector<std::vector<extent>> held;
    for (;;) {
      std::vector<extent> out;
      if (!a.allocate(1 + below(rng, 16 * page), 1, out)) break;
      held.push_back(out);
    }
    for (std::vector<extent> out; a.allocate(1, 1, out); out.clear()) held.push_back(out);
    REQUIRE(a.free_pages() == 0);
    shuffle(held, rng);
    for (const auto& h : held) {
      a.release(h);
      REQUIRE(a.check_invariants() == "");
    }
    CHECK(a.free_pages() == 4096);
    CHECK(a.free_extent_count() == 1);
    CHECK(a.largest_free_extent() == 4096);
    std::vector<extent> all;
    CHECK(a.allocate(4096 * page, 1, all));
    CHECK(all == std::vector<extent>{{5, 4096}});
  }
}

TEST_CASE("a fresh allocator hands out single extents; a fragmented one pieces, largest first") {
  page_allocator a(0, 4096);
  std::uint32_t next = 0;
  for (std::uint64_t bytes : {1ull, 5000ull, 110ull * 1024, 8ull << 20, 3ull * page}) {
    std::vector<extent> out;
    REQUIRE(a.allocate(bytes, 1, out));
    REQUIRE(out.size() == 1);
    CHECK(out[0].first == next);  // carved in address order from the one free extent
    next += out[0].count;
  }
  CHECK(a.free_extent_count() == 1);

  // Free extents of 10, 3, 6 and 2 pages, each between held pages.
  page_allocator f(0, 40);
  std::vector<extent> all;
  REQUIRE(f.allocate(40 * page, 1, all));
  const std::vector<extent> holes = {{1, 10}, {12, 3}, {16, 6}, {23, 2}};
  f.release(holes);
  REQUIRE(f.check_invariants() == "");
  CHECK(f.largest_free_extent() == 10);
  CHECK(f.free_pages() == 21);

  std::vector<extent> out;
  REQUIRE(f.allocate(2 * page, 4, out));  // best fit: the 2-page hole, not the start of the 10
  CHECK(out == std::vector<extent>{{23, 2}});
  f.release(out);

  out.clear();
  CHECK_FALSE(f.allocate(17 * page, 2, out));  // 10 + 6 < 17: would take three pieces
  CHECK(out.empty());
  CHECK(f.free_pages() == 21);
  CHECK_FALSE(f.allocate(22 * page, 8, out));  // more than is free
  CHECK(out.empty());

  REQUIRE(f.allocate(13 * page, 3, out));  // the 10 whole, then the rest by best fit: the 3
  CHECK(out == std::vector<extent>{{1, 10}, {12, 3}});
  CHECK(f.free_pages() == 8);
  CHECK(f.check_invariants() == "");
  f.release(out);
  out.clear();
  REQUIRE(f.allocate(20 * page, 4, out));  // 10 + 6 + 3, then 1 page from the 2
  CHECK(out == std::vector<extent>{{1, 10}, {16, 6}, {12, 3}, {23, 1}});
  CHECK(pages_in(out) == 20);
  CHECK(f.free_pages() == 1);
  CHECK(f.check_invariants() == "");
}

TEST_CASE("releasing pages that are free or outside the range is a bug, caught") {
  page_allocator a(10, 20);
  std::vector<extent> out;
  REQUIRE(a.allocate(5 * page, 1, out));
  const std::vector<extent> outside = {{5, 2}};
  CHECK_THROWS_AS(a.release(outside), std::logic_error);
  const std::vector<extent> past_end = {{28, 3}};
  CHECK_THROWS_AS(a.release(past_end), std::logic_error);
  const std::vector<extent> still_free = {{14, 2}};  // page 14 is held, 15 is free
  CHECK_THROWS_AS(a.release(still_free), std::logic_error);
  CHECK(a.free_pages() == 15);
  a.release(out);
  CHECK_THROWS_AS(a.release(out), std::logic_error);  // twice
  CHECK(a.free_pages() == 20);
  CHECK(a.check_invariants() == "");
  CHECK_THROWS_AS(page_allocator(0xFFFF0000u, 0x10000u), std::invalid_argument);
}

TEST_CASE("randomized: invariants and a page-by-page model hold after every step") {
  constexpr std::uint32_t first = 7, count = 2000;
  page_allocator a(first, count);
  std::vector<int> owner(count, -1);  // the model: which allocation holds each page
  std::map<int, std::vector<extent>> live;
  std::mt19937_64 rng(5);
  int next_id = 0, refusals = 0, pieced = 0;
  for (int step = 0; step < 20000; ++step) {
    if (live.empty() || unit(rng) < 0.55) {
      const std::uint64_t bytes = 1 + below(rng, 64 * page);
      const unsigned max_extents = 1 + static_cast<unsigned>(below(rng, 6));
      // What the model says: pages free, and how many of its largest runs the request takes.
      std::vector<std::uint32_t> runs;
      for (std::uint32_t p = 0; p < count;) {
        if (owner[p] != -1) {
          ++p;
          continue;
        }
        std::uint32_t q = p;
        while (q < count && owner[q] == -1) ++q;
        runs.push_back(q - p);
        p = q;
      }
      std::sort(runs.rbegin(), runs.rend());
      const std::uint64_t n = page_allocator::pages_for(bytes);
      std::uint64_t sum = 0;
      unsigned needed = 0;
      while (sum < n && needed < runs.size()) sum += runs[needed++];
      const bool possible = sum >= n && needed <= max_extents;

      std::vector<extent> out;
      const bool ok = a.allocate(bytes, max_extents, out);
      REQUIRE(ok == possible);
      if (!ok) {
        REQUIRE(out.empty());
        ++refusals;
      } else {
        REQUIRE(pages_in(out) == n);
        REQUIRE(out.size() == needed);  // the fewest pieces
        if (out.size() > 1) ++pieced;
        for (const auto& e : out) {
          REQUIRE(e.count > 0);
          REQUIRE(e.first >= first);
          REQUIRE(e.first + e.count <= first + count);
          for (std::uint32_t p = e.first; p < e.first + e.count; ++p) {
            REQUIRE(owner[p - first] == -1);
            owner[p - first] = next_id;
          }
        }
        live[next_id++] = std::move(out);
      }
    } else {
      auto it = live.begin();
      std::advance(it, static_cast<long>(below(rng, live.size())));
      a.release(it->second);
      for (const auto& e : it->second)
        for (std::uint32_t p = e.first; p < e.first + e.count; ++p) owner[p - first] = -1;
      live.erase(it);
    }
    REQUIRE(a.check_invariants() == "");
    REQUIRE(a.free_pages() == std::count(owner.begin(), owner.end(), -1));
    std::uint32_t longest = 0, run = 0;
    for (int o : owner) longest = std::max(longest, run = (o == -1 ? run + 1 : 0));
    REQUIRE(a.largest_free_extent() == longest);
  }
  MESSAGE("randomized: " << refusals << " refusals, " << pieced << " allocations in pieces");
  CHECK(refusals > 0);  // the run reached the full and fragmented cases it is meant to test
  CHECK(pieced > 0);
}

namespace {
struct fill_result {
  double min_fill = 1, mean_fill = 0;  // bytes held / capacity at failure points after warm-up
  std::size_t min_objects = ~std::size_t{0};
  std::size_t failure_points = 0;
  std::uint64_t allocations = 0, ops = 0;
  double ns_per_op = 0;
};

// A cache of `pages` pages under LRU churn: objects of `size(rng)` bytes, a quarter of the
// steps touch a recent object (it moves to the back of the LRU); a failed allocation evicts the
// least recently used objects until it succeeds. The first time the cache fills, then one full
// turnover of what it held, is warm-up.
fill_result simulate_fill(std::uint32_t pages, unsigned max_extents, std::uint64_t steps,
                          std::uint64_t seed,
                          const std::function<std::uint64_t(std::mt19937_64&)>& size) {
  struct object {
    std::vector<extent> ext;
    std::uint64_t bytes;
  };
  page_allocator a(0, pages);
  std::map<std::uint64_t, object> lru;  // by last use, oldest first
  std::mt19937_64 rng(seed);
  std::uint64_t stamp = 0, held = 0, warm_at = 0;
  bool warm = false;
  fill_result r;
  const double capacity = static_cast<double>(pages) * page;
  std::chrono::nanoseconds in_allocator{0};
  auto timed = [&](auto&& f) {
    const auto t0 = std::chrono::steady_clock::now();
    auto ok = f();
    in_allocator += std::chrono::steady_clock::now() - t0;
    ++r.ops;
    return ok;
  };
  for (std::uint64_t i = 0; i < steps; ++i) {
    if (!lru.empty() && unit(rng) < 0.25) {  // a hit: a recent object becomes the newest
      auto it = lru.lower_bound(stamp - below(rng, std::min<std::uint64_t>(stamp, 2000)));
      if (it != lru.end()) {
        auto node = lru.extract(it);
        node.key() = ++stamp;
        lru.insert(std::move(node));
      }
      continue;
    }
    object o{{}, size(rng)};
    for (bool first_try = true;; first_try = false) {
      if (timed([&] { return a.allocate(o.bytes, max_extents, o.ext); })) break;
      REQUIRE(!lru.empty());  // every size fits an empty cache
      if (first_try) {
        if (!warm && warm_at == 0) warm_at = i + lru.size();
        if (warm) {
          const double fill = static_cast<double>(held) / capacity;
          r.min_fill = std::min(r.min_fill, fill);
          r.mean_fill += fill;
          r.min_objects = std::min(r.min_objects, lru.size());
          ++r.failure_points;
        }
      }
      auto oldest = lru.begin();
      timed([&] {
        a.release(oldest->second.ext);
        return true;
      });
      held -= oldest->second.bytes;
      lru.erase(oldest);
    }
    if (warm_at != 0 && i >= warm_at) warm = true;
    held += o.bytes;
    ++r.allocations;
    lru.emplace(++stamp, std::move(o));
  }
  REQUIRE(a.check_invariants() == "");
  if (r.failure_points) r.mean_fill /= static_cast<double>(r.failure_points);
  r.ns_per_op = static_cast<double>(in_allocator.count()) / static_cast<double>(r.ops);
  return r;
}

std::uint64_t log_uniform(std::mt19937_64& rng, double lo, double hi) {
  return static_cast<std::uint64_t>(
      std::exp(std::log(lo) + unit(rng) * (std::log(hi) - std::log(lo))));
}
}  // namespace

TEST_CASE("fill of a 2 GiB cache under LRU churn stays above 90% at every allocation failure") {
  constexpr std::uint32_t pages = 524288;  // 2 GiB
  constexpr unsigned max_extents = 16;

  SUBCASE("log-uniform sizes, 1 KiB to 8 MiB") {
    for (unsigned pieces : {1u, 4u, max_extents}) {
      auto r = simulate_fill(pages, pieces, 300000, 11,
                             [](std::mt19937_64& g) { return log_uniform(g, 1024, 8 << 20); });
      MESSAGE("log-uniform 1 KiB..8 MiB, max_extents "
              << pieces << ": " << r.allocations << " allocations, " << r.failure_points
              << " failure points after warm-up, fill min " << r.min_fill * 100 << "% mean "
              << r.mean_fill * 100 << "%, objects held min " << r.min_objects << ", " << r.ns_per_op
              << " ns per allocate/release");
      if (pieces == max_extents) {
        REQUIRE(r.failure_points > 1000);
        CHECK(r.min_fill >= 0.90);
      }
    }
  }
  SUBCASE("all objects 110 KiB") {
    auto r = simulate_fill(pages, max_extents, 300000, 12,
                           [](std::mt19937_64&) { return std::uint64_t{110} * 1024; });
    MESSAGE("110 KiB objects: " << r.allocations << " allocations, " << r.failure_points
                                << " failure points after warm-up, fill min " << r.min_fill * 100
                                << "% mean " << r.mean_fill * 100 << "%, objects held min "
                                << r.min_objects << ", " << r.ns_per_op
                                << " ns per allocate/release");
    REQUIRE(r.failure_points > 1000);
    CHECK(r.min_fill >= 0.90);
    CHECK(r.min_objects >= 18000);
  }
}
