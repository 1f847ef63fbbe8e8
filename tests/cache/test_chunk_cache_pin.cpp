// pin_when_ready: how the disk tier's write-back waits for the chunk it was handed to be ready.
#include <doctest/doctest.h>

#include <atomic>
#include <cstring>
#include <future>
#include <optional>

#include <boost/asio/use_future.hpp>

#include "cache/chunk_cache.hpp"
#include "core/errors.hpp"
#include "core/reactor_pool.hpp"

using namespace valkyrie;
using namespace valkyrie::cache;

namespace test_chunk_cache_pin {
chunk_id K(const std::string& name, std::uint64_t index) {
  return chunk_id{make_version("test-bucket", name, "\"etag\"", std::uint64_t{1} << 40), 64 * 1024,
                  index};
}

// A fetch held until the test opens its gate (a timer on reactor 0, cancelled from the test).
struct gated_fetch {
  std::shared_ptr<asio::steady_timer> gate;
  bool fail = false;
  chunk_cache::fetch_fn fn(std::promise<void>* started) {
    return [g = gate, fail = fail, started](chunk_buffers dest) -> awaitable<result<std::size_t>> {
      started->set_value();
      co_await g->async_wait(use_tuple);
      if (fail) co_return make_error_code(errc::server_error);
      std::memset(dest.front().data(), 'w', 1000);
      co_return std::size_t{1000};
    };
  }
};

awaitable<std::string> pin_and_read(chunk_cache* c, chunk_id key, bool wait_queued = false) {
  auto ref = co_await c->pin_when_ready(key, wait_queued);
  if (!ref) co_return "none";
  co_return std::string(ref->data().begin(), ref->data().end());
}

TEST_CASE(
    "pin_when_ready waits for a chunk being fetched, pins it when ready; absent or failed: none") {
  for (bool fail : {false, true}) {
    CAPTURE(fail);
    chunk_cache cache(1 << 20, 64 * 1024);
    reactor_pool pool({2, false});
    pool.start();
    chunk_id key = K("obj", fail ? 1 : 0);
    // Absent: nothing to wait for.
    CHECK(asio::co_spawn(pool.executor(1), pin_and_read(&cache, key), boost::asio::use_future)
              .get() == "none");
    gated_fetch f{std::make_shared<asio::steady_timer>(pool.executor(0),
                                                       asio::steady_timer::time_point::max()),
                  fail};
    std::promise<void> started;
    auto reader = asio::co_spawn(
        pool.executor(0),
        [](chunk_cache* c, chunk_id k, chunk_cache::fetch_fn fn) -> awaitable<bool> {
          auto r = co_await c->get(k, std::move(fn));
          co_return r.has_value();
        }(&cache, key, f.fn(&started)),
        boost::asio::use_future);
    started.get_future().get();  // the fetch is in flight now
    auto pinned =
        asio::co_spawn(pool.executor(1), pin_and_read(&cache, key), boost::asio::use_future);
    // Registered as a waiter (or about to be): it cannot finish before the fetch does.
    CHECK(pinned.wait_for(std::chrono::milliseconds(50)) == std::future_status::timeout);
    asio::post(pool.executor(0), [g = f.gate] { g->cancel(); });
    CHECK(reader.get() == !fail);
    CHECK(pinned.get() == (fail ? "none" : std::string(1000, 'w')));
    pool.stop();
  }
}

TEST_CASE(
    "pin_when_ready(wait_queued) waits for a prefetch still in the queue, which then starts") {
  chunk_cache cache(1 << 20, 64 * 1024);
  cache.set_prefetch_limit(1);
  reactor_pool pool({2, false});
  pool.start();
  gated_fetch f{std::make_shared<asio::steady_timer>(pool.executor(0),
                                                     asio::steady_timer::time_point::max())};
  std::promise<void> first_started, second_started;
  chunk_id first = K("obj", 0), second = K("obj", 1);
  // The first prefetch holds the only turn; the second waits in the queue, not wanted any more
  // (a queued prefetch nobody waits for would be dropped when its turn came).
  std::promise<void> queued;
  asio::post(pool.executor(0), [&] {
    CHECK(cache.prefetch(first, f.fn(&first_started), pool.executor(0)));
    auto at_once = [started =
                        &second_started](chunk_buffers dest) -> awaitable<result<std::size_t>> {
      started->set_value();
      std::memset(dest.front().data(), 'w', 1000);
      co_return std::size_t{1000};
    };
    CHECK(cache.prefetch(second, at_once, pool.executor(0), [] { return false; }));
    queued.set_value();
  });
  queued.get_future().get();
  first_started.get_future().get();
  // Without wait_queued: nothing to wait for yet.
  CHECK(asio::co_spawn(pool.executor(1), pin_and_read(&cache, second), boost::asio::use_future)
            .get() == "none");
  auto pinned =
      asio::co_spawn(pool.executor(1), pin_and_read(&cache, second, true), boost::asio::use_future);
  CHECK(pinned.wait_for(std::chrono::milliseconds(50)) == std::future_status::timeout);
  // The first fetch ends; the second gets its turn (its waiter keeps it wanted) and runs.
  asio::post(pool.executor(0), [g = f.gate] { g->cancel(); });
  second_started.get_future().get();
  CHECK(pinned.get() == std::string(1000, 'w'));
  pool.stop();
}
}  // namespace test_chunk_cache_pin
