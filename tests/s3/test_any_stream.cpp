// any_stream: a stream behind one type carries every byte of a write, however many buffers it
// comes in (more than max_buffers: short writes that the composed operation completes), and
// reads into buffer sequences, over a real connected socket pair.
#include <doctest/doctest.h>

#include <array>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/connect_pair.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>

#include "core/asio.hpp"
#include "s3/any_stream.hpp"

namespace test_any_stream {
using namespace valkyrie;
using boost::asio::local::stream_protocol;

TEST_CASE("any_stream: a write of many buffers arrives whole and in order") {
  asio::io_context ctx;
  stream_protocol::socket a(ctx), b(ctx);
  asio::local::connect_pair(a, b);
  s3::any_stream writer(a), reader(b);

  // 40 pieces of different lengths, some empty (skipped), 2.5 x max_buffers in all.
  std::vector<std::string> pieces;
  std::string expected;
  for (int i = 0; i < 40; ++i) {
    pieces.emplace_back(i % 7 == 3 ? 0 : 1 + i * 37 % 1000, static_cast<char>('a' + i % 26));
    expected += pieces.back();
  }
  std::vector<asio::const_buffer> out;
  for (auto& p : pieces) out.push_back(asio::buffer(p));

  std::string first(expected.size() / 3, '\0'), rest(expected.size() - first.size(), '\0');
  auto run = [&]() -> awaitable<std::size_t> {
    auto [wec, written] = co_await asio::async_write(writer, out, use_tuple);
    REQUIRE(!wec);
    // Read back through a sequence of two buffers.
    std::array<asio::mutable_buffer, 2> in{asio::buffer(first), asio::buffer(rest)};
    auto [rec, got] = co_await asio::async_read(reader, in, use_tuple);
    REQUIRE(!rec);
    CHECK(got == written);
    co_return written;
  };
  auto done = asio::co_spawn(ctx, run(), asio::use_future);
  ctx.run();
  CHECK(done.get() == expected.size());
  CHECK(first + rest == expected);
}

TEST_CASE("any_stream: errors of the wrapped stream come through") {
  asio::io_context ctx;
  stream_protocol::socket a(ctx), b(ctx);
  asio::local::connect_pair(a, b);
  s3::any_stream reader(b);
  a.close();
  auto run = [&]() -> awaitable<boost::system::error_code> {
    char c;
    auto [ec, n] = co_await reader.async_read_some(asio::buffer(&c, 1), use_tuple);
    CHECK(n == 0);
    co_return ec;
  };
  auto done = asio::co_spawn(ctx, run(), asio::use_future);
  ctx.run();
  CHECK(done.get() == asio::error::eof);
}
}  // namespace test_any_stream
