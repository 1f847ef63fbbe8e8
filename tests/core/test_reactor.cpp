#include <doctest/doctest.h>

#include <atomic>
#include <future>
#include <set>

#include <boost/asio/use_future.hpp>

#include "core/background.hpp"
#include "core/reactor_pool.hpp"

using namespace valkyrie;

TEST_CASE("work posted to a reactor runs on that reactor's thread") {
  reactor_pool pool({3, false});
  REQUIRE(pool.size() == 3);
  pool.start();
  std::set<std::thread::id> threads;
  for (unsigned i = 0; i < pool.size(); ++i) {
    std::promise<std::pair<int, std::thread::id>> p;
    pool.post(i, [&p] { p.set_value({reactor_pool::current(), std::this_thread::get_id()}); });
    auto [index, id] = p.get_future().get();
    CHECK(index == static_cast<int>(i));
    CHECK(id != std::this_thread::get_id());
    threads.insert(id);
  }
  CHECK(threads.size() == 3);
  CHECK(reactor_pool::current() == -1);
  pool.stop();
}

awaitable<int> sleepy_add(int a, int b) {
  asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(5));
  co_await t.async_wait(use_tuple);
  co_return a + b;
}

TEST_CASE("coroutines and timers run on the reactors (io_uring backend when enabled)") {
  reactor_pool pool({2, false});
  pool.start();
  auto f0 = asio::co_spawn(pool.executor(0), sleepy_add(1, 2), asio::use_future);
  auto f1 = asio::co_spawn(pool.executor(1), sleepy_add(3, 4), asio::use_future);
  CHECK(f0.get() == 3);
  CHECK(f1.get() == 7);
  pool.stop();
  pool.stop();  // idempotent
}

TEST_CASE("drain_and_join lets outstanding work finish") {
  reactor_pool pool({2, false});
  pool.start();
  std::atomic<int> done{0};
  for (int i = 0; i < 100; ++i) pool.post(i % 2, [&done] { ++done; });
  pool.drain_and_join();
  CHECK(done == 100);
}

namespace {
// Counts the coroutines alive, and needs `owner` alive when it ends (as a read in flight needs
// the cache it pins).
struct frame_guard {
  std::shared_ptr<int> owner;
  std::atomic<int>& alive;
  frame_guard(std::shared_ptr<int> o, std::atomic<int>& a) : owner(std::move(o)), alive(a) {
    ++alive;
  }
  ~frame_guard() {
    CHECK(*owner == 42);
    --alive;
  }
};
asio::awaitable<void> wait_forever(std::shared_ptr<asio::steady_timer> timer,
                                   std::shared_ptr<int> owner, std::atomic<int>& alive,
                                   std::atomic<int>& started) {
  frame_guard g(owner, alive);
  ++started;
  co_await timer->async_wait(asio::use_awaitable);
}
}  // namespace

TEST_CASE(
    "destroy_pending_work ends suspended coroutines while what they use exists; timers outlive "
    "it") {
  // What the daemon does at SIGTERM with reads in flight: stop, destroy the suspended coroutines,
  // then destroy the objects owning timers on the reactors, and the contexts last.
  reactor_pool pool({2, false});
  auto owner = std::make_shared<int>(42);
  std::atomic<int> alive{0}, started{0};
  std::vector<std::shared_ptr<asio::steady_timer>> timers;
  for (unsigned i = 0; i < 4; ++i) {
    auto t = std::make_shared<asio::steady_timer>(pool.executor(i % 2), std::chrono::hours(1));
    timers.push_back(t);
    asio::co_spawn(pool.executor(i % 2), wait_forever(t, owner, alive, started), asio::detached);
  }
  pool.start();
  for (int spins = 0; started < 4 && spins < 10'000'000; ++spins) std::this_thread::yield();
  REQUIRE(started == 4);
  pool.stop();
  CHECK(alive == 4);  // stopped, not destroyed
  pool.destroy_pending_work();
  CHECK(alive == 0);
  pool.destroy_pending_work();  // idempotent
  timers.clear();  // a timer destroyed after its coroutine and before its context: no report under
                   // ASan
  *owner = 0;
}

namespace {
// Where in_background's work ran and where the coroutine went on: {work's reactor index,
// the coroutine's reactor index after, the result}.
awaitable<std::tuple<int, int, int>> run_beside(asio::any_io_executor background) {
  int ran_on = -2;
  int r = co_await in_background(background, [&ran_on] {
    ran_on = reactor_pool::current();
    return 42;
  });
  co_return std::tuple<int, int, int>{ran_on, reactor_pool::current(), r};
}
// Counts its live copies: every one made must be destroyed exactly once.
struct counted {
  static inline std::atomic<int> alive{0};
  int value = 7;
  counted() { ++alive; }
  counted(const counted& o) : value(o.value) { ++alive; }
  counted(counted&& o) noexcept : value(o.value) { ++alive; }
  ~counted() { --alive; }
};
// Work that owns what it reads, as set_order's does.
awaitable<int> owned_beside(asio::any_io_executor background) {
  counted owned;
  // (named: a closure that owns something must not be a temporary of the co_await's expression)
  auto work = [owned] { return owned.value * 6; };
  auto run = in_background(background, std::move(work));
  co_return co_await std::move(run);
}
awaitable<int> throw_beside(asio::any_io_executor background) {
  co_return co_await in_background(background, []() -> int { throw std::runtime_error("bug"); });
}
}  // namespace

TEST_CASE("in_background runs work off the reactors and resumes the coroutine on its reactor") {
  reactor_pool pool({2, false});
  pool.start();
  auto [ran_on, back_on, r] =
      asio::co_spawn(pool.executor(1), run_beside(pool.background()), asio::use_future).get();
  CHECK(ran_on == -1);  // not a reactor's thread
  CHECK(back_on == 1);
  CHECK(r == 42);
  // What the work owned is destroyed once: GCC 12 destroyed a temporary of a co_await's
  // expression twice (a shared_ptr in it freed what the daemon still used).
  CHECK(asio::co_spawn(pool.executor(0), owned_beside(pool.background()), asio::use_future).get() ==
        42);
  // A bug in the work reaches the coroutine that waited for it.
  auto thrown = asio::co_spawn(pool.executor(0), throw_beside(pool.background()), asio::use_future);
  CHECK_THROWS_AS(thrown.get(), std::runtime_error);
  // Without a background executor the work runs inline, on the reactor.
  auto [inline_on, inline_back, r2] =
      asio::co_spawn(pool.executor(0), run_beside({}), asio::use_future).get();
  CHECK(inline_on == 0);
  CHECK(inline_back == 0);
  CHECK(r2 == 42);
  pool.stop();
  CHECK(counted::alive == 0);
}
