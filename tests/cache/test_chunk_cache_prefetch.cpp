// The chunk cache's prefetch side: queues served in turn by source, the limits on requests and
// bytes in flight, local (disk) prefetches, and the prefetch and hot zones.
#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <vector>

#include "cache/chunk_cache.hpp"
#include "chunk_keys.hpp"
#include "core/errors.hpp"
#include "helpers.hpp"
#include "wait.hpp"

using namespace valkyrie;
using namespace valkyrie::cache;

namespace test_chunk_cache_prefetch {
using test_keys::K;

// Fetches that wait until the test opens the gate, recording the order they started in.
struct gate {
  explicit gate(asio::io_context& ctx)
      : timer(std::make_shared<asio::steady_timer>(ctx, asio::steady_timer::time_point::max())) {}
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
chunk_cache::fetch_fn instant(char byte, std::vector<std::string>* log = nullptr,
                              std::string name = {}) {
  return [byte, log, name](chunk_buffers pieces) -> awaitable<result<std::size_t>> {
    std::span<char> dest = pieces.front();
    if (log) log->push_back(name);
    dest[0] = byte;
    co_return std::size_t{1};
  };
}

TEST_CASE(
    "prefetch queues are served in turn by source: a stream that queued first does not starve the "
    "others") {
  chunk_cache cache(64 * 4096, 4096, 1);
  cache.set_prefetch_limit(1);  // one at a time: the order they start in is the policy
  asio::io_context ctx(1);
  gate g(ctx);
  // Stream A queues 4 chunks, then B and C 2 each.
  for (int c = 0; c < 4; ++c)
    CHECK(cache.prefetch(K("a", static_cast<std::uint64_t>(c), 4096),
                         g.fetch("a" + std::to_string(c)), ctx.get_executor(), {}, 10));
  for (int c = 0; c < 2; ++c) {
    CHECK(cache.prefetch(K("b", static_cast<std::uint64_t>(c), 4096),
                         g.fetch("b" + std::to_string(c)), ctx.get_executor(), {}, 20));
    CHECK(cache.prefetch(K("c", static_cast<std::uint64_t>(c), 4096),
                         g.fetch("c" + std::to_string(c)), ctx.get_executor(), {}, 30));
  }
  test::wait_for(
      ctx, [&] { return g.started.size() == 1; }, "the first prefetch starts");
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
    CHECK(cache.prefetch(K("p", static_cast<std::uint64_t>(c), 4096),
                         g.fetch("p" + std::to_string(c)), ctx.get_executor()));
  test::wait_for(
      ctx, [&] { return g.started.size() == 3; }, "three prefetches start");
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

TEST_CASE(
    "prefetches run at most the limit at once, nearest first; a reader's fetch never queues behind "
    "them") {
  chunk_cache cache(16 * 4096, 4096, 1);
  cache.set_prefetch_limit(2);
  asio::io_context ctx(1);
  gate g(ctx);
  for (int c = 0; c < 6; ++c)
    CHECK(cache.prefetch(K("p", static_cast<std::uint64_t>(c), 4096),
                         g.fetch("p" + std::to_string(c)), ctx.get_executor()));
  test::wait_for(
      ctx, [&] { return g.started.size() == 2; }, "two prefetches start");
  test::poll_ready(ctx);  // (a third would have started by now)
  CHECK(g.started == std::vector<std::string>{"p0", "p1"});
  // A reader of another chunk is served while every prefetch slot is busy.
  std::optional<char> got;
  asio::co_spawn(
      ctx,
      [](chunk_cache* c, std::optional<char>* out) -> awaitable<void> {
        chunk_id key = K("d", 0, 4096);
        auto ref = co_await c->get(key, instant('d'));
        if (ref) *out = ref->data()[0];
      }(&cache, &got),
      asio::detached);
  test::wait_for(
      ctx, [&] { return got.has_value(); },
      "the reader is served while both prefetch turns are busy");
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
    CHECK(cache.prefetch(K("d", static_cast<std::uint64_t>(c), 4096),
                         disk.fetch("d" + std::to_string(c)), ctx.get_executor(), {}, 0, true));
  test::wait_for(
      ctx, [&] { return disk.started.size() == 2; }, "two disk reads start");
  test::poll_ready(ctx);  // (a third, or a second S3 one, would have started by now)
  CHECK(s3.started == std::vector<std::string>{"s0"});
  CHECK(disk.started == std::vector<std::string>{"d0", "d1"});
  // Disk reads finishing start the next disk read, not an S3 one.
  disk.release();
  test::wait_for(
      ctx, [&] { return disk.started.size() == 3; }, "the third disk read starts");
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
  asio::co_spawn(
      ctx,
      [](chunk_cache* c, std::optional<char>* out,
         std::vector<std::string>* log) -> awaitable<void> {
        chunk_id key = K("p", 1, 4096);
        auto ref = co_await c->get(key, instant('r', log, "reader 1"));
        if (ref) *out = ref->data()[0];
      }(&cache, &got, &reader_log),
      asio::detached);
  test::wait_for(
      ctx, [&] { return got.has_value(); }, "the reader is served ahead of the queue");
  CHECK(got == 'r');  // served while "prefetch 0" still holds the only prefetch turn
  CHECK(reader_log == std::vector<std::string>{"reader 1"});
  g.release();
  test::run_until_idle(ctx, "the prefetch in flight ends; nothing else is left to run");
  CHECK(g.started ==
        std::vector<std::string>{"prefetch 0"});  // chunk 1's queued prefetch never ran
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
  CHECK(cache.prefetch(K("p", 1, 4096), g.fetch("p1"), ctx.get_executor(),
                       [&still_wanted] { return still_wanted; }));
  CHECK(cache.prefetch(K("p", 2, 4096), g.fetch("p2"), ctx.get_executor(), [] { return true; }));
  CHECK_FALSE(
      cache.prefetch(K("p", 3, 4096), g.fetch("p3"), ctx.get_executor()));  // every slot taken
  still_wanted = false;  // e.g. the reader closed the file or moved away
  g.release();
  test::run_until_idle(ctx, "the queue is served");
  CHECK(g.started == std::vector<std::string>{"p0", "p2"});
  CHECK_FALSE(cache.contains(K("p", 1, 4096)));
  CHECK(cache.prefetch(K("p", 3, 4096), g.fetch("p3"),
                       ctx.get_executor()));  // the dropped one's slot
  test::run_until_idle(ctx, "the new prefetch runs");
  CHECK(cache.contains(K("p", 3, 4096)));
}

TEST_CASE(
    "two zones: unread prefetches are bounded and FIFO, a first read makes a chunk hot, and "
    "streaming "
    "prefetch never flushes the hot zone") {
  chunk_cache cache(8 * 4096, 4096, 1);
  cache.set_prefetch_share(0.5);
  REQUIRE(cache.prefetch_zone_bound() == 4 * 4096);
  asio::io_context ctx(1);
  auto ex = ctx.get_executor();
  for (std::uint64_t c = 0; c < 4; ++c)
    REQUIRE(test::run(cache.get(K("hot", c, 4096), instant('h'))));
  CHECK(cache.stats().hot_zone == 4);
  // Four guesses fill the prefetch zone; a fifth replaces the oldest; the hot zone is untouched.
  for (std::uint64_t c = 0; c < 4; ++c)
    CHECK(cache.prefetch(K("guess", c, 4096), instant('g'), ex));
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

TEST_CASE(
    "a prefetch never replaces one that is still wanted; a reader's fetch takes the hot zone's LRU "
    "first") {
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
  CHECK_FALSE(cache.prefetch(K("ahead", 2, 4096), instant('a'),
                             ex));  // zone full, both still wanted: refused
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
  REQUIRE(test::run(
      cache.get(K("demand", 0, 4096), instant('d'))));  // the guess goes, though not the oldest
  CHECK_FALSE(cache.contains(K("guess", 0, 4096)));
  CHECK(cache.contains(K("ahead", 0, 4096)));
  // Nothing but wanted read-ahead left (and a pinned chunk): the reader still gets a slot.
  auto pinned = test::run(cache.get(K("demand", 0, 4096), instant('d')));
  REQUIRE(pinned);
  REQUIRE(test::run(cache.get(K("demand", 1, 4096), instant('d'))));
  CHECK_FALSE(cache.contains(K("ahead", 0, 4096)));  // the oldest read-ahead, as a last resort
  CHECK(cache.contains(K("ahead", 1, 4096)));
}

TEST_CASE(
    "with an order, read-ahead of a file outside it is admitted while wanted; other such "
    "prefetches are not") {
  chunk_cache cache(2 * 4096, 4096, 1);
  cache.set_eviction_ranker([](const chunk_id& k) -> std::uint64_t {
    return k.object->key == "outside" ? chunk_cache::not_in_order : k.index;
  });
  asio::io_context ctx(1);
  auto ex = ctx.get_executor();
  REQUIRE(test::run(cache.get(K("ordered", 1, 4096), instant('o'))));
  REQUIRE(test::run(cache.get(K("ordered", 5, 4096), instant('o'))));
  CHECK_FALSE(cache.prefetch(K("outside", 0, 4096), instant('x'), ex));  // a guess: refused
  CHECK_FALSE(cache.prefetch(K("outside", 1, 4096), instant('x'), ex,
                             [] { return false; }));  // no longer wanted
  CHECK(cache.prefetch(K("outside", 2, 4096), instant('x'), ex,
                       [] { return true; }));  // its reader is coming
  test::run_until_idle(ctx, "the prefetch lands");
  CHECK(cache.contains(K("outside", 2, 4096)));
  CHECK(cache.contains(K("ordered", 1, 4096)));
  CHECK_FALSE(cache.contains(K("ordered", 5, 4096)));  // the furthest in the order made room
}

}  // namespace test_chunk_cache_prefetch
