#pragma once
// Short aliases for the Asio/Beast names used across layers.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace valkyrie {
namespace asio = boost::asio;
template <class T = void>
using awaitable = asio::awaitable<T>;
// Completion token that reports errors as values: `auto [ec, n] = co_await op(..., use_tuple);`
inline constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
}  // namespace valkyrie
