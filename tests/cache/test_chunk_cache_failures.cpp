// The chunk cache when fetches fail: what readers waiting on a failed fetch get.
#include <doctest/doctest.h>

#include <atomic>
#include <cstring>
#include <future>
#include <tuple>

#include "cache/chunk_cache.hpp"
#include "chunk_keys.hpp"
#include "core/errors.hpp"
#include "core/reactor_pool.hpp"
#include "helpers.hpp"

using namespace valkyrie;
using namespace valkyrie::cache;

namespace test_chunk_cache_failures {
using test_keys::K;

TEST_CASE(
    "readers waiting on a fetch that spent its whole retry budget share its failure; other "
    "failures they retry") {
  // Two readers of one chunk on two reactors: the first fetches, the second waits for it. When
  // the fetch gives up after S3 failed for its whole budget, the waiter fails with it at once
  // instead of fetching again and waiting out a second budget. After a plain failure it fetches
  // itself, as before.
  for (auto [error, fetches, second] :
       {std::tuple{errc::retries_exhausted, 1, errc::retries_exhausted},
        std::tuple{errc::server_error, 2, errc::ok}}) {
    CAPTURE(make_error_code(error).message());
    chunk_cache cache(1 << 20, 64 * 1024);
    reactor_pool pool({2, false});
    pool.start();
    std::atomic<int> calls{0};
    std::promise<void> first_started;
    auto fetch = [&calls, &first_started,
                  error = error](chunk_buffers pieces) -> awaitable<result<std::size_t>> {
      if (++calls == 1) {
        first_started.set_value();
        asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(100));
        co_await t.async_wait(use_tuple);
        co_return make_error_code(error);
      }
      std::memset(pieces.front().data(), 'y', 10);
      co_return std::size_t{10};
    };
    auto reader = [](chunk_cache* c, chunk_cache::fetch_fn f) -> awaitable<std::error_code> {
      chunk_id key = K("obj", 1, 65536);  // named: GCC 12 mishandles temporaries in co_await
      auto ref = co_await c->get(key, std::move(f));
      co_return ref ? std::error_code{} : ref.error();
    };
    auto a = asio::co_spawn(pool.executor(0), reader(&cache, fetch), asio::use_future);
    first_started.get_future().wait();
    auto b = asio::co_spawn(pool.executor(1), reader(&cache, fetch), asio::use_future);
    CHECK(a.get() == error);
    auto second_reader = b.get();
    if (second == errc::ok)
      CHECK_FALSE(second_reader);
    else
      CHECK(second_reader == second);
    CHECK(calls == fetches);
    pool.stop();
    CHECK(cache.check_invariants() == "");
  }
}
}  // namespace test_chunk_cache_failures
