#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <random>
#include <cstring>
#include <future>

#include "cache/chunk_cache.hpp"
#include "chunk_keys.hpp"
#include "core/errors.hpp"
#include "core/metrics.hpp"
#include "core/reactor_pool.hpp"
#include "helpers.hpp"
#include "wait.hpp"

using namespace valkyrie;
using namespace valkyrie::cache;

namespace test_chunk_cache {
using test_keys::K;

// A fetch that fills the chunk with `byte`, after a short delay, counting its calls. (The delay
// is the scenario, a fetch that takes time: other readers arrive while it is in flight.)
chunk_cache::fetch_fn filler(std::atomic<int>* calls, char byte, std::size_t size = 100) {
  return [calls, byte, size](chunk_buffers pieces) -> awaitable<result<std::size_t>> {
    std::span<char> dest = pieces.front();
    ++*calls;
    asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(20));
    co_await t.async_wait(use_tuple);
    std::memset(dest.data(), byte, size);
    co_return size;
  };
}

TEST_CASE("a missing chunk is fetched once however many readers wait, on any reactor") {
  chunk_cache cache(1 << 20, 64 * 1024);
  reactor_pool pool({2, false});
  pool.start();
  std::atomic<int> calls{0};
  std::vector<std::future<std::string>> readers;
  for (int i = 0; i < 20; ++i) {
    readers.push_back(asio::co_spawn(pool.executor(i % 2), [](chunk_cache* c, std::atomic<int>* calls) -> awaitable<std::string> {
      chunk_id key = K("obj", 3, 65536);  // named: GCC 12 mishandles temporaries in co_await
      auto ref = co_await c->get(key, filler(calls, 'x'));
      if (!ref) co_return "error";
      co_return std::string(ref->data().begin(), ref->data().end());
    }(&cache, &calls), asio::use_future));
  }
  for (auto& r : readers) CHECK(r.get() == std::string(100, 'x'));
  CHECK(calls == 1);
  auto st = cache.stats();
  CHECK(st.misses == 1);
  CHECK(st.hits + st.waits >= 19);
  pool.stop();
}

TEST_CASE("memory is capped: LRU eviction reuses slots") {
  chunk_cache cache(4 * 64 * 1024, 64 * 1024, 1);
  CHECK(cache.slots() == 4);
  std::atomic<int> calls{0};
  for (int i = 0; i < 10; ++i) {
    auto ref = test::run(cache.get(K("obj", static_cast<std::uint64_t>(i), 65536), filler(&calls, static_cast<char>('a' + i))));
    REQUIRE(ref);
    CHECK(ref->data()[0] == 'a' + i);
  }
  CHECK(calls == 10);
  CHECK(cache.stats().evictions == 6);
  // The 4 most recent are still there; the oldest are gone.
  CHECK(cache.contains(K("obj", 9, 65536)));
  CHECK(cache.contains(K("obj", 6, 65536)));
  CHECK_FALSE(cache.contains(K("obj", 5, 65536)));
  // A hit refreshes recency: touch 6, add one more, 7 goes instead.
  test::run(cache.get(K("obj", 6, 65536), filler(&calls, 'z')));
  test::run(cache.get(K("obj", 10, 65536), filler(&calls, 'k')));
  CHECK(cache.contains(K("obj", 6, 65536)));
  CHECK_FALSE(cache.contains(K("obj", 7, 65536)));
}

TEST_CASE("a pinned chunk is never evicted; a reader waits for a slot instead") {
  chunk_cache cache(2 * 64 * 1024, 64 * 1024, 1);
  std::atomic<int> calls{0};
  asio::io_context ctx(1);
  bool third_done = false;
  asio::co_spawn(ctx, [](chunk_cache* c, std::atomic<int>* calls, bool* done) -> awaitable<void> {
    chunk_id k0 = K("o", 0, 65536), k1 = K("o", 1, 65536);
    auto a = co_await c->get(k0, filler(calls, 'a'));
    auto b = co_await c->get(k1, filler(calls, 'b'));
    REQUIRE(a);
    REQUIRE(b);
    // Both slots pinned: a third chunk must wait, not take a pinned slot.
    auto& misses = metrics::registry::global().get_counter("valkyrie_cache_misses_total", "");
    const auto before = misses.value();
    auto ex = co_await asio::this_coro::executor;
    asio::co_spawn(ex, [](chunk_cache* c, std::atomic<int>* calls, bool* done) -> awaitable<void> {
      chunk_id k2 = K("o", 2, 65536);
      auto r = co_await c->get(k2, filler(calls, 'c'));
      CHECK(r);
      CHECK(r->data()[0] == 'c');
      *done = true;
    }(c, calls, done), asio::detached);
    // Until the third reader has asked and found no slot (its miss is counted on the first try).
    asio::steady_timer t(ex);
    for (auto give_up = std::chrono::steady_clock::now() + test::default_deadline; misses.value() == before;) {
      REQUIRE(std::chrono::steady_clock::now() < give_up);
      t.expires_after(std::chrono::milliseconds(1));
      co_await t.async_wait(use_tuple);
    }
    CHECK_FALSE(*done);
    CHECK(*calls == 2);          // it did not take a pinned slot to fetch into
    CHECK(a->data()[0] == 'a');  // still intact
    CHECK(b->data()[0] == 'b');
    a->release();
    // Once a slot is unpinned the third reader gets it, and the chunk still pinned survives.
    for (auto give_up = std::chrono::steady_clock::now() + test::default_deadline; !*done;) {
      REQUIRE(std::chrono::steady_clock::now() < give_up);
      t.expires_after(std::chrono::milliseconds(1));
      co_await t.async_wait(use_tuple);
    }
    CHECK(b->data()[0] == 'b');
  }(&cache, &calls, &third_done), asio::detached);
  test::run_until_idle(ctx, "the readers finish");
  CHECK(third_done);
  CHECK(calls == 3);
}

TEST_CASE("a failed fetch leaves nothing behind; the next reader fetches again") {
  chunk_cache cache(4 * 64 * 1024, 64 * 1024);
  int calls = 0;
  auto failing = [&calls](chunk_buffers) -> awaitable<result<std::size_t>> {
    ++calls;
    co_return make_error_code(errc::server_error);
  };
  CHECK(test::run(cache.get(K("o", 0, 65536), failing)).error() == errc::server_error);
  CHECK_FALSE(cache.contains(K("o", 0, 65536)));
  std::atomic<int> ok_calls{0};
  CHECK(test::run(cache.get(K("o", 0, 65536), filler(&ok_calls, 'q'))));
  CHECK(calls == 1);
  CHECK(ok_calls == 1);
  CHECK(cache.stats().fetch_failures == 1);
}

TEST_CASE("prefetch starts a fetch without waiting; a later get is a hit") {
  chunk_cache cache(4 * 64 * 1024, 64 * 1024);
  std::atomic<int> calls{0};
  asio::io_context ctx(1);
  CHECK(cache.prefetch(K("o", 5, 65536), filler(&calls, 'p'), ctx.get_executor()));
  CHECK_FALSE(cache.prefetch(K("o", 5, 65536), filler(&calls, 'p'), ctx.get_executor()));  // already in flight
  ctx.run();
  CHECK(cache.contains(K("o", 5, 65536)));
  auto ref = test::run(cache.get(K("o", 5, 65536), filler(&calls, 'x')));
  REQUIRE(ref);
  CHECK(ref->data()[0] == 'p');
  CHECK(calls == 1);
}

TEST_CASE("a cache must hold at least two chunks") {
  CHECK_THROWS_AS(chunk_cache(64 * 1024, 64 * 1024), std::invalid_argument);
}

// A fetch with no delay (for long deterministic traces).
chunk_cache::fetch_fn instant_fill() {
  return [](chunk_buffers pieces) -> awaitable<result<std::size_t>> {
    std::span<char> dest = pieces.front();
    std::memset(dest.data(), 'z', 16);
    co_return std::size_t{16};
  };
}

// Hits of the optimal policy (Belady: on a miss with a full cache, evict the entry whose next
// use is furthest away), by brute force.
int belady_hits(const std::vector<int>& trace, std::size_t slots) {
  std::vector<int> cached;
  int hits = 0;
  for (std::size_t i = 0; i < trace.size(); ++i) {
    if (std::find(cached.begin(), cached.end(), trace[i]) != cached.end()) {
      ++hits;
      continue;
    }
    if (cached.size() == slots) {
      std::size_t worst = 0, worst_next = 0;
      for (std::size_t c = 0; c < cached.size(); ++c) {
        std::size_t next = i + 1;
        while (next < trace.size() && trace[next] != cached[c]) ++next;
        if (next > worst_next) worst_next = next, worst = c;
      }
      cached.erase(cached.begin() + static_cast<long>(worst));
    }
    cached.push_back(trace[i]);
  }
  return hits;
}

TEST_CASE("with a ranker, eviction is Belady's: the same hits as the brute-force optimum on random traces") {
  std::mt19937 rng(42);
  for (int round = 0; round < 20; ++round) {
    const std::size_t slots = 2 + rng() % 6, keys = slots + 1 + rng() % 8;
    std::vector<int> trace(300);
    for (auto& t : trace) t = static_cast<int>(rng() % keys);
    chunk_cache cache(slots * 4096, 4096, 1);
    std::size_t now = 0;
    // Rank: how many steps until the chunk is asked for again (never: the end of the trace).
    cache.set_eviction_ranker([&trace, &now](const chunk_id& k) -> std::uint64_t {
      std::size_t next = now + 1;
      while (next < trace.size() && trace[next] != static_cast<int>(k.index)) ++next;
      return next - now;
    });
    auto before = cache.stats().hits;
    for (now = 0; now < trace.size(); ++now) {
      chunk_id key = K("o", static_cast<std::uint64_t>(trace[now]), 4096);
      auto ref = test::run(cache.get(key, instant_fill()));
      REQUIRE(ref);
    }
    CHECK(static_cast<int>(cache.stats().hits - before) == belady_hits(trace, slots));
  }
}

TEST_CASE("with a ranker, a prefetch never evicts a chunk needed sooner than itself") {
  chunk_cache cache(2 * 4096, 4096, 1);
  cache.set_eviction_ranker([](const chunk_id& k) -> std::uint64_t { return k.index; });  // index = next use
  asio::io_context ctx(1);
  REQUIRE(test::run(cache.get(K("o", 1, 4096), instant_fill())));
  REQUIRE(test::run(cache.get(K("o", 5, 4096), instant_fill())));
  CHECK_FALSE(cache.prefetch(K("o", 9, 4096), instant_fill(), ctx.get_executor()));  // later than both
  CHECK(cache.prefetch(K("o", 3, 4096), instant_fill(), ctx.get_executor()));        // evicts 5
  ctx.run();
  CHECK(cache.contains(K("o", 1, 4096)));
  CHECK(cache.contains(K("o", 3, 4096)));
  CHECK_FALSE(cache.contains(K("o", 5, 4096)));
  // A reader's chunk always gets a slot, evicting the furthest.
  REQUIRE(test::run(cache.get(K("o", 0, 4096), instant_fill())));
  CHECK_FALSE(cache.contains(K("o", 3, 4096)));
  CHECK(cache.contains(K("o", 1, 4096)));
}

TEST_CASE("the ranker can be replaced and cleared while the cache holds chunks") {
  chunk_cache cache(2 * 4096, 4096, 1);
  REQUIRE(test::run(cache.get(K("o", 1, 4096), instant_fill())));
  REQUIRE(test::run(cache.get(K("o", 2, 4096), instant_fill())));
  // Next use = index: chunk 2 is needed last, so it goes.
  cache.set_eviction_ranker([](const chunk_id& k) -> std::uint64_t { return k.index; });
  REQUIRE(test::run(cache.get(K("o", 3, 4096), instant_fill())));
  CHECK(cache.contains(K("o", 1, 4096)));
  CHECK_FALSE(cache.contains(K("o", 2, 4096)));
  // A new order reverses it: chunk 1 is now needed last.
  cache.set_eviction_ranker([](const chunk_id& k) -> std::uint64_t { return 100 - k.index; });
  REQUIRE(test::run(cache.get(K("o", 4, 4096), instant_fill())));
  CHECK_FALSE(cache.contains(K("o", 1, 4096)));
  CHECK(cache.contains(K("o", 3, 4096)));
  // No order: least recently used again (3 was used before 4).
  cache.set_eviction_ranker(nullptr);
  REQUIRE(test::run(cache.get(K("o", 5, 4096), instant_fill())));
  CHECK_FALSE(cache.contains(K("o", 3, 4096)));
  CHECK(cache.contains(K("o", 4, 4096)));
}

TEST_CASE("random prefetches, reads, failures and cancellations keep the bookkeeping consistent") {
  std::mt19937 rng(7);
  for (int round = 0; round < 30; ++round) {
    const std::uint32_t slots = 3 + rng() % 10;
    chunk_cache cache(slots * 4096, 4096, 1 + rng() % 3);
    cache.set_prefetch_limit(1 + rng() % 4);
    cache.set_prefetch_share((1 + rng() % 10) / 10.0);
    if (round % 3 == 0) cache.set_eviction_ranker([](const chunk_id& k) -> std::uint64_t { return k.index % 7; });
    asio::io_context ctx(1);
    auto ex = ctx.get_executor();
    auto wanted = std::make_shared<std::vector<bool>>(32, true);
    // Fetches that take 0-2 ms and fail one time in eight.
    auto fetch = [&rng](bool fails) -> chunk_cache::fetch_fn {
      auto delay = std::chrono::microseconds(rng() % 2000);
      return [delay, fails](chunk_buffers pieces) -> awaitable<result<std::size_t>> {
    std::span<char> dest = pieces.front();
        asio::steady_timer t(co_await asio::this_coro::executor, delay);
        co_await t.async_wait(use_tuple);
        if (fails) co_return make_error_code(errc::server_error);
        dest[0] = 'x';
        co_return std::size_t{1};
      };
    };
    int reads = 0;
    for (int step = 0; step < 300; ++step) {
      std::uint64_t c = rng() % 32;
      switch (rng() % 4) {
        case 0:
        case 1: {
          auto w = wanted;
          cache.prefetch(K("o", c, 4096), fetch(rng() % 8 == 0), ex, [w, c] { return (*w)[c]; });
          break;
        }
        case 2:
          asio::co_spawn(ex, [](chunk_cache* cc, std::uint64_t c, chunk_cache::fetch_fn f, int* n) -> awaitable<void> {
            chunk_id key = K("o", c, 4096);
            auto ref = co_await cc->get(key, std::move(f));
            ++*n;
          }(&cache, c, fetch(rng() % 8 == 0), &reads), asio::detached);
          break;
        default:
          (*wanted)[c] = !(*wanted)[c];
      }
      // Lets some fetches (0-2 ms each) end between steps: the interleaving is the scenario.
      if (step % 10 == 0) ctx.restart(), ctx.run_for(std::chrono::milliseconds(1));
      if (step % 50 == 0) REQUIRE(cache.check_invariants() == "");
    }
    test::run_until_idle(ctx, "every fetch and reader ends");
    CAPTURE(round);
    REQUIRE(cache.check_invariants() == "");
    CHECK(reads > 0);
  }
}

TEST_CASE("memory is allocated by size: a 2 GiB cache holds 18,000 objects of 110 KiB, and the cap holds") {
  const std::uint64_t capacity = std::uint64_t{2} << 30;
  chunk_cache cache(capacity, 8 << 20);  // the default layout; each object is one short chunk
  const std::uint64_t object = 110 * 1024;
  auto id = [&cache](int i) {
    return cache.chunk(make_version("b", "img_" + std::to_string(i), "\"e\"", 110 * 1024), 0);
  };
  // Reads objects [from, to) in one coroutine (one io_context: an io_uring each would dominate).
  auto read_all = [&](int from, int to) {
    return test::run([](chunk_cache* c, decltype(id)* make, int from, int to) -> awaitable<bool> {
      for (int i = from; i < to; ++i) {
        chunk_id key = (*make)(i);
        if (key.length() != 110 * 1024) co_return false;
        auto ref = co_await c->get(key, instant_fill());
        if (!ref) co_return false;
      }
      co_return true;
    }(&cache, &id, from, to));
  };
  REQUIRE(read_all(0, 18000));
  int held = 0;
  for (int i = 0; i < 18000; ++i) held += cache.contains(id(i));
  CHECK(held == 18000);
  CHECK(cache.check_invariants() == "");
  // Past the cap, the least recently used objects go: never more than the arena.
  REQUIRE(read_all(18000, 20000));
  held = 0;
  for (int i = 0; i < 20000; ++i) held += cache.contains(id(i));
  CHECK(static_cast<std::uint64_t>(held) * ((object + 4095) / 4096 * 4096) <= capacity);
  CHECK(held > 18000);
  CHECK_FALSE(cache.contains(id(0)));
  CHECK(cache.check_invariants() == "");
}

TEST_CASE("a chunk in a fragmented shard is served in pieces, byte-exact") {
  chunk_cache cache(16 * 4096, 4 * 4096, 1);  // one shard of 16 pages
  auto obj = [](const std::string& name, std::uint64_t size) { return make_version("b", name, "\"e\"", size); };
  auto fill = [](char byte) {
    return [byte](chunk_buffers pieces) -> awaitable<result<std::size_t>> {
      std::size_t n = 0;
      for (auto& p : pieces) {
        for (std::size_t i = 0; i < p.size(); ++i) p[i] = static_cast<char>(byte + (n + i) % 7);
        n += p.size();
      }
      co_return n;
    };
  };
  // 16 one-page objects fill the shard; every other one stays pinned.
  std::vector<chunk_ref> pinned;
  for (int i = 0; i < 16; ++i) {
    auto r = test::run(cache.get(cache.chunk(obj("p" + std::to_string(i), 4096), 0), fill('a')));
    REQUIRE(r);
    if (i % 2 == 0) pinned.push_back(std::move(*r));
  }
  // A 4-page chunk: only one-page holes are left once the unpinned ones are evicted.
  auto big = test::run(cache.get(cache.chunk(obj("big", 4 * 4096), 0), fill('k')));
  REQUIRE(big);
  CHECK(big->pieces().size() == 4);
  std::vector<std::span<const char>> slices;
  big->slice(4000, 9000, slices);
  std::string got;
  for (auto& s : slices) got.append(s.data(), s.size());
  REQUIRE(got.size() == 5000);
  for (std::size_t i = 0; i < got.size(); ++i) REQUIRE(got[i] == static_cast<char>('k' + (4000 + i) % 7));
  CHECK(cache.check_invariants() == "");
}
}  // namespace test_chunk_cache
