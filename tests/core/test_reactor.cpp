#include <doctest/doctest.h>

#include <atomic>
#include <future>
#include <set>

#include <boost/asio/use_future.hpp>

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
