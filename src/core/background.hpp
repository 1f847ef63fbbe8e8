#pragma once
// Bulk CPU work that must not hold a reactor: checking a live training order of a million keys
// against the listing takes about a second, and meanwhile every request and S3 completion of
// that reactor would wait (with FUSE over io_uring, every request from that reactor's CPU).
// The reactor's coroutine hands such work to the reactor pool's background thread
// (reactor_pool::background()) and is resumed on its own reactor with the result; the reactor
// serves other work in between.
// Invariant: the work owns what it reads (captured by value: shared_ptrs to immutable data,
// moved strings) and touches nothing a reactor owns, because it may finish after the coroutine
// that waits for it was destroyed (at shutdown).
#include <type_traits>
#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "core/asio.hpp"

namespace valkyrie {

// Runs work() on `background` (inline when it is empty, as in unit tests without reactors).
// Callers name the work and the returned awaitable before co_await-ing it (see below).
template <class F>
awaitable<std::invoke_result_t<F&>> in_background(asio::any_io_executor background, F work) {
  using result_type = std::invoke_result_t<F&>;
  if (!background) co_return work();
  // Named, not temporaries of the co_await's expression: GCC 12 destroys such a temporary twice,
  // and this one holds the work's shared_ptrs (freed early: the heap corrupted at exit).
  auto run = [work = std::move(work)]() mutable -> awaitable<result_type> { co_return work(); };
  auto done = asio::co_spawn(background, std::move(run), asio::use_awaitable);
  co_return co_await std::move(done);
}

}  // namespace valkyrie
