#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <random>
#include <cstring>
#include <future>

#include "cache/chunk_cache.hpp"
#include "core/errors.hpp"
#include "core/reactor_pool.hpp"
#include "core/metrics.hpp"
#include "helpers.hpp"
#include "wait.hpp"

using namespace valkyrie;
using namespace valkyrie::cache;

namespace test_chunk_cache {
// Chunk `index` of a test object (large enough that every chunk is whole) in `chunk_size` layout.
chunk_id K(const std::string& name, std::uint64_t index, std::uint32_t chunk_size) {
  return chunk_id{make_version("test-bucket", name, "\"etag\"", std::uint64_t{1} << 40), chunk_size, index};
}

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

// Fetches that wait until the test opens the gate, recording the order they started in.
struct gate {
  explicit gate(asio::io_context& ctx) : timer(std::make_shared<asio::steady_timer>(ctx, asio::steady_timer::time_point::max())) {}
  chunk_cache::fetch_fn fetch(std::string name) {
    return [this, name](chunk_buffers pieces) -> awaitable<result<std::size_t>> {
    std::span<char> dest = pieces.front();
      started.push_back(name);
      auto t = timer;
      while (!open) co_await t->async_wait(use_tuple);
      dest[0] = 'p';
      co_return std::size_t{1};
    };
  }
  void release() {
    open = true;
    timer->cancel();
  }
  std::shared_ptr<asio::steady_timer> timer;
  bool open = false;
  std::vector<std::string> started;
};
chunk_cache::fetch_fn instant(char byte, std::vector<std::string>* log = nullptr, std::string name = {}) {
  return [byte, log, name](chunk_buffers pieces) -> awaitable<result<std::size_t>> {
    std::span<char> dest = pieces.front();
    if (log) log->push_back(name);
    dest[0] = byte;
    co_return std::size_t{1};
  };
}

TEST_CASE("prefetch queues are served in turn by source: a stream that queued first does not starve the others") {
  chunk_cache cache(64 * 4096, 4096, 1);
  cache.set_prefetch_limit(1);  // one at a time: the order they start in is the policy
  asio::io_context ctx(1);
  gate g(ctx);
  // Stream A queues 4 chunks, then B and C 2 each.
  for (int c = 0; c < 4; ++c)
    CHECK(cache.prefetch(K("a", static_cast<std::uint64_t>(c), 4096), g.fetch("a" + std::to_string(c)), ctx.get_executor(), {}, 10));
  for (int c = 0; c < 2; ++c) {
    CHECK(cache.prefetch(K("b", static_cast<std::uint64_t>(c), 4096), g.fetch("b" + std::to_string(c)), ctx.get_executor(), {}, 20));
    CHECK(cache.prefetch(K("c", static_cast<std::uint64_t>(c), 4096), g.fetch("c" + std::to_string(c)), ctx.get_executor(), {}, 30));
  }
  test::wait_for(ctx, [&] { return g.started.size() == 1; }, "the first prefetch starts");
  g.release();
  test::run_until_idle(ctx, "every queued prefetch runs");
  // a0 was started at once; then each source in turn, each FIFO within.
  CHECK(g.started == std::vector<std::string>{"a0", "b0", "c0", "a1", "b1", "c1", "a2", "a3"});
  CHECK(cache.check_invariants() == "");
}

TEST_CASE("prefetch bytes in flight stay within the bytes limit (one request always may run)") {
  chunk_cache cache(64 * 4096, 4096, 1);
  cache.set_prefetch_bytes_limit(3 * 4096);
  asio::io_context ctx(1);
  gate g(ctx);
  for (int c = 0; c < 6; ++c)
    CHECK(cache.prefetch(K("p", static_cast<std::uint64_t>(c), 4096), g.fetch("p" + std::to_string(c)), ctx.get_executor()));
  test::wait_for(ctx, [&] { return g.started.size() == 3; }, "three prefetches start");
  test::poll_ready(ctx);  // (a fourth would have started by now)
  CHECK(g.started.size() == 3);
  // A lower limit (a slower link measured) lets none start until enough finished; a single
  // request larger than the limit still runs when nothing else does.
  cache.set_prefetch_bytes_limit(1);
  g.release();
  test::run_until_idle(ctx, "every queued prefetch runs");
  CHECK(g.started.size() == 6);
  CHECK(cache.check_invariants() == "");
}

TEST_CASE("prefetches run at most the limit at once, nearest first; a reader's fetch never queues behind them") {
  chunk_cache cache(16 * 4096, 4096, 1);
  cache.set_prefetch_limit(2);
  asio::io_context ctx(1);
  gate g(ctx);
  for (int c = 0; c < 6; ++c)
    CHECK(cache.prefetch(K("p", static_cast<std::uint64_t>(c), 4096), g.fetch("p" + std::to_string(c)), ctx.get_executor()));
  test::wait_for(ctx, [&] { return g.started.size() == 2; }, "two prefetches start");
  test::poll_ready(ctx);  // (a third would have started by now)
  CHECK(g.started == std::vector<std::string>{"p0", "p1"});
  // A reader of another chunk is served while every prefetch slot is busy.
  std::optional<char> got;
  asio::co_spawn(ctx, [](chunk_cache* c, std::optional<char>* out) -> awaitable<void> {
    chunk_id key = K("d", 0, 4096);
    auto ref = co_await c->get(key, instant('d'));
    if (ref) *out = ref->data()[0];
  }(&cache, &got), asio::detached);
  test::wait_for(ctx, [&] { return got.has_value(); }, "the reader is served while both prefetch turns are busy");
  CHECK(got == 'd');
  CHECK(g.started.size() == 2);
  g.release();
  test::run_until_idle(ctx, "every queued prefetch runs");
  CHECK(g.started == std::vector<std::string>{"p0", "p1", "p2", "p3", "p4", "p5"});
  for (int c = 0; c < 6; ++c) CHECK(cache.contains(K("p", static_cast<std::uint64_t>(c), 4096)));
}

TEST_CASE("local prefetches (disk reads) take no S3 turn and have their own limit") {
  chunk_cache cache(32 * 4096, 4096, 1);
  cache.set_prefetch_limit(1);
  cache.set_prefetch_bytes_limit(4096);
  cache.set_local_limit(2);
  asio::io_context ctx(1);
  gate s3(ctx), disk(ctx);
  // The one S3 turn is taken and more S3 prefetches wait behind it.
  CHECK(cache.prefetch(K("s", 0, 4096), s3.fetch("s0"), ctx.get_executor()));
  CHECK(cache.prefetch(K("s", 1, 4096), s3.fetch("s1"), ctx.get_executor()));
  // Disk reads start at once all the same, two at a time.
  for (int c = 0; c < 3; ++c)
    CHECK(cache.prefetch(K("d", static_cast<std::uint64_t>(c), 4096), disk.fetch("d" + std::to_string(c)),
                         ctx.get_executor(), {}, 0, true));
  test::wait_for(ctx, [&] { return disk.started.size() == 2; }, "two disk reads start");
  test::poll_ready(ctx);  // (a third, or a second S3 one, would have started by now)
  CHECK(s3.started == std::vector<std::string>{"s0"});
  CHECK(disk.started == std::vector<std::string>{"d0", "d1"});
  // Disk reads finishing start the next disk read, not an S3 one.
  disk.release();
  test::wait_for(ctx, [&] { return disk.started.size() == 3; }, "the third disk read starts");
  test::poll_ready(ctx);
  CHECK(disk.started == std::vector<std::string>{"d0", "d1", "d2"});
  CHECK(s3.started == std::vector<std::string>{"s0"});
  s3.release();
  test::run_until_idle(ctx, "the queued S3 prefetch runs");
  CHECK(s3.started == std::vector<std::string>{"s0", "s1"});
  for (int c = 0; c < 3; ++c) CHECK(cache.contains(K("d", static_cast<std::uint64_t>(c), 4096)));
  CHECK(cache.check_invariants() == "");
}

TEST_CASE("a reader of a queued prefetch sends it at once instead of waiting for its turn") {
  chunk_cache cache(16 * 4096, 4096, 1);
  cache.set_prefetch_limit(1);
  asio::io_context ctx(1);
  gate g(ctx);
  CHECK(cache.prefetch(K("p", 0, 4096), g.fetch("prefetch 0"), ctx.get_executor()));
  CHECK(cache.prefetch(K("p", 1, 4096), g.fetch("prefetch 1"), ctx.get_executor()));
  std::vector<std::string> reader_log;
  std::optional<char> got;
  asio::co_spawn(ctx, [](chunk_cache* c, std::optional<char>* out, std::vector<std::string>* log) -> awaitable<void> {
    chunk_id key = K("p", 1, 4096);
    auto ref = co_await c->get(key, instant('r', log, "reader 1"));
    if (ref) *out = ref->data()[0];
  }(&cache, &got, &reader_log), asio::detached);
  test::wait_for(ctx, [&] { return got.has_value(); }, "the reader is served ahead of the queue");
  CHECK(got == 'r');  // served while "prefetch 0" still holds the only prefetch turn
  CHECK(reader_log == std::vector<std::string>{"reader 1"});
  g.release();
  test::run_until_idle(ctx, "the prefetch in flight ends; nothing else is left to run");
  CHECK(g.started == std::vector<std::string>{"prefetch 0"});  // chunk 1's queued prefetch never ran
  CHECK(cache.contains(K("p", 0, 4096)));
}

TEST_CASE("a queued prefetch no longer wanted when its turn comes is dropped, and its slot freed") {
  chunk_cache cache(3 * 4096, 4096, 1);
  cache.set_prefetch_limit(1);
  cache.set_prefetch_share(1.0);  // this test is about the queue, not the zone's bound
  asio::io_context ctx(1);
  gate g(ctx);
  bool still_wanted = true;
  CHECK(cache.prefetch(K("p", 0, 4096), g.fetch("p0"), ctx.get_executor()));
  CHECK(cache.prefetch(K("p", 1, 4096), g.fetch("p1"), ctx.get_executor(), [&still_wanted] { return still_wanted; }));
  CHECK(cache.prefetch(K("p", 2, 4096), g.fetch("p2"), ctx.get_executor(), [] { return true; }));
  CHECK_FALSE(cache.prefetch(K("p", 3, 4096), g.fetch("p3"), ctx.get_executor()));  // every slot taken
  still_wanted = false;  // e.g. the reader closed the file or moved away
  g.release();
  test::run_until_idle(ctx, "the queue is served");
  CHECK(g.started == std::vector<std::string>{"p0", "p2"});
  CHECK_FALSE(cache.contains(K("p", 1, 4096)));
  CHECK(cache.prefetch(K("p", 3, 4096), g.fetch("p3"), ctx.get_executor()));  // the dropped one's slot
  test::run_until_idle(ctx, "the new prefetch runs");
  CHECK(cache.contains(K("p", 3, 4096)));
}

TEST_CASE("two zones: unread prefetches are bounded and FIFO, a first read makes a chunk hot, and streaming "
          "prefetch never flushes the hot zone") {
  chunk_cache cache(8 * 4096, 4096, 1);
  cache.set_prefetch_share(0.5);
  REQUIRE(cache.prefetch_zone_bound() == 4 * 4096);
  asio::io_context ctx(1);
  auto ex = ctx.get_executor();
  for (std::uint64_t c = 0; c < 4; ++c) REQUIRE(test::run(cache.get(K("hot", c, 4096), instant('h'))));
  CHECK(cache.stats().hot_zone == 4);
  // Four guesses fill the prefetch zone; a fifth replaces the oldest; the hot zone is untouched.
  for (std::uint64_t c = 0; c < 4; ++c) CHECK(cache.prefetch(K("guess", c, 4096), instant('g'), ex));
  test::run_until_idle(ctx, "the prefetches land");
  CHECK(cache.stats().prefetch_zone == 4);
  for (std::uint64_t c = 4; c < 20; ++c) {
    CHECK(cache.prefetch(K("guess", c, 4096), instant('g'), ex));
    test::run_until_idle(ctx, "the prefetch lands");
  }
  CHECK_FALSE(cache.contains(K("guess", 15, 4096)));
  for (std::uint64_t c = 16; c < 20; ++c) CHECK(cache.contains(K("guess", c, 4096)));
  for (std::uint64_t c = 0; c < 4; ++c) CHECK(cache.contains(K("hot", c, 4096)));
  auto st = cache.stats();
  CHECK(st.prefetch_zone == 4);
  CHECK(st.hot_zone == 4);
  // A first read moves a chunk to the hot zone, which frees room in the prefetch zone.
  REQUIRE(test::run(cache.get(K("guess", 16, 4096), instant('x'))));
  st = cache.stats();
  CHECK(st.prefetch_zone == 3);
  CHECK(st.hot_zone == 5);  // a hit: the chunk moved, nothing was evicted
}

TEST_CASE("a prefetch never replaces one that is still wanted; a reader's fetch takes the hot zone's LRU first") {
  chunk_cache cache(4 * 4096, 4096, 1);
  cache.set_prefetch_share(0.5);
  asio::io_context ctx(1);
  auto ex = ctx.get_executor();
  bool wanted = true;
  REQUIRE(test::run(cache.get(K("hot", 0, 4096), instant('h'))));
  REQUIRE(test::run(cache.get(K("hot", 1, 4096), instant('h'))));
  CHECK(cache.prefetch(K("ahead", 0, 4096), instant('a'), ex, [&wanted] { return wanted; }));
  CHECK(cache.prefetch(K("ahead", 1, 4096), instant('a'), ex, [&wanted] { return wanted; }));
  test::run_until_idle(ctx, "the prefetches land");
  CHECK_FALSE(cache.prefetch(K("ahead", 2, 4096), instant('a'), ex));  // zone full, both still wanted: refused
  // A reader's own fetch evicts the least recently used hot chunk, not a wanted read-ahead.
  REQUIRE(test::run(cache.get(K("hot", 0, 4096), instant('h'))));  // hot 1 is now the LRU one
  REQUIRE(test::run(cache.get(K("demand", 0, 4096), instant('d'))));
  CHECK_FALSE(cache.contains(K("hot", 1, 4096)));
  CHECK(cache.contains(K("hot", 0, 4096)));
  CHECK(cache.contains(K("ahead", 0, 4096)));
  CHECK(cache.contains(K("ahead", 1, 4096)));
  // Once the reader has moved on (not wanted), the next prefetch replaces the oldest.
  wanted = false;
  CHECK(cache.prefetch(K("ahead", 2, 4096), instant('a'), ex));
  test::run_until_idle(ctx, "the prefetches land");
  CHECK_FALSE(cache.contains(K("ahead", 0, 4096)));
  CHECK(cache.contains(K("ahead", 2, 4096)));
}

TEST_CASE("a reader's fetch evicts an unwanted guess before read-ahead that is still wanted") {
  chunk_cache cache(4 * 4096, 4096, 1);
  cache.set_prefetch_share(1.0);
  asio::io_context ctx(1);
  auto ex = ctx.get_executor();
  CHECK(cache.prefetch(K("ahead", 0, 4096), instant('a'), ex, [] { return true; }));
  CHECK(cache.prefetch(K("ahead", 1, 4096), instant('a'), ex, [] { return true; }));
  CHECK(cache.prefetch(K("guess", 0, 4096), instant('g'), ex));
  CHECK(cache.prefetch(K("ahead", 2, 4096), instant('a'), ex, [] { return true; }));
  test::run_until_idle(ctx, "the prefetch lands");
  REQUIRE(test::run(cache.get(K("demand", 0, 4096), instant('d'))));  // the guess goes, though not the oldest
  CHECK_FALSE(cache.contains(K("guess", 0, 4096)));
  CHECK(cache.contains(K("ahead", 0, 4096)));
  // Nothing but wanted read-ahead left (and a pinned chunk): the reader still gets a slot.
  auto pinned = test::run(cache.get(K("demand", 0, 4096), instant('d')));
  REQUIRE(pinned);
  REQUIRE(test::run(cache.get(K("demand", 1, 4096), instant('d'))));
  CHECK_FALSE(cache.contains(K("ahead", 0, 4096)));  // the oldest read-ahead, as a last resort
  CHECK(cache.contains(K("ahead", 1, 4096)));
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

TEST_CASE("with an order, read-ahead of a file outside it is admitted while wanted; other such prefetches are not") {
  chunk_cache cache(2 * 4096, 4096, 1);
  cache.set_eviction_ranker([](const chunk_id& k) -> std::uint64_t {
    return k.object->key == "outside" ? chunk_cache::not_in_order : k.index;
  });
  asio::io_context ctx(1);
  auto ex = ctx.get_executor();
  REQUIRE(test::run(cache.get(K("ordered", 1, 4096), instant('o'))));
  REQUIRE(test::run(cache.get(K("ordered", 5, 4096), instant('o'))));
  CHECK_FALSE(cache.prefetch(K("outside", 0, 4096), instant('x'), ex));                     // a guess: refused
  CHECK_FALSE(cache.prefetch(K("outside", 1, 4096), instant('x'), ex, [] { return false; }));  // no longer wanted
  CHECK(cache.prefetch(K("outside", 2, 4096), instant('x'), ex, [] { return true; }));          // its reader is coming
  test::run_until_idle(ctx, "the prefetch lands");
  CHECK(cache.contains(K("outside", 2, 4096)));
  CHECK(cache.contains(K("ordered", 1, 4096)));
  CHECK_FALSE(cache.contains(K("ordered", 5, 4096)));  // the furthest in the order made room
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
