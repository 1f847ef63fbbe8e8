#pragma once
// Waiting for a condition with a deadline, never for a fixed time: tests that need something to
// have happened run the io_context (or let other threads run) until it has, and fail the test
// with `what` when it has not by the deadline. A sleep is only right where time passing is the
// scenario itself (a slow server, an expiry), and is commented as such where it is used.
#include <doctest/doctest.h>

#include <chrono>
#include <thread>

#include "core/asio.hpp"

namespace valkyrie::test {

inline constexpr std::chrono::milliseconds default_deadline{10000};

// Runs `ctx` on this thread until pred() holds (checked between handlers). Fails the test (and
// returns false) when it still does not hold after `deadline`.
template <class Pred>
bool wait_for(asio::io_context& ctx, Pred pred, const char* what,
              std::chrono::milliseconds deadline = default_deadline) {
  const auto give_up = std::chrono::steady_clock::now() + deadline;
  ctx.restart();
  while (!pred()) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= give_up) {
      FAIL_CHECK("not within " << deadline.count() << " ms: " << std::string(what));
      return false;
    }
    // In slices, so that a condition another thread makes true is seen soon.
    auto slice =
        std::min<std::chrono::steady_clock::duration>(give_up - now, std::chrono::milliseconds(5));
    if (ctx.run_one_for(slice) == 0 && ctx.stopped()) {
      ctx.restart();  // out of work: what is left to happen happens on other threads
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }
  return true;
}

// Runs `ctx` until it has no work left (every handler run, every timer fired). Fails the test
// when work is still pending after `deadline` (something waits that should not).
inline bool run_until_idle(asio::io_context& ctx, const char* what,
                           std::chrono::milliseconds deadline = default_deadline) {
  ctx.restart();
  ctx.run_for(deadline);
  if (!ctx.stopped()) {
    FAIL_CHECK("work still pending after " << deadline.count() << " ms: " << std::string(what));
    return false;
  }
  return true;
}

// Runs every handler of `ctx` that is ready now, without waiting for timers or I/O: after it,
// whatever the code under test posted has had its turn.
inline void poll_ready(asio::io_context& ctx) {
  ctx.restart();
  while (ctx.poll() > 0) ctx.restart();
}

// For conditions other threads make true (reactor pools): polls pred() until it holds or the
// deadline passes (then fails the test).
template <class Pred>
bool wait_until(Pred pred, const char* what,
                std::chrono::milliseconds deadline = default_deadline) {
  const auto give_up = std::chrono::steady_clock::now() + deadline;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= give_up) {
      FAIL_CHECK("not within " << deadline.count() << " ms: " << std::string(what));
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

}  // namespace valkyrie::test
