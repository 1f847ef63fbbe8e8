#include <doctest/doctest.h>

#include "prefetch/stream.hpp"

using namespace valkyrie::prefetch;

namespace {
constexpr std::uint32_t cs = 1 << 20;
}

TEST_CASE("stream: a sequential reader's window doubles up to its bound; each chunk is asked for once") {
  stream s(64ull * cs, cs, 8);
  auto a = s.on_read(0, cs);  // a whole-file read starts with 4 ahead
  CHECK(a.sequential);
  CHECK(a.window == 4);
  CHECK(a.from == 1);
  CHECK(a.to == 5);
  auto b = s.on_read(cs, cs);
  CHECK(b.window == 8);
  CHECK(b.from == 5);  // 1-4 were asked for already
  CHECK(b.to == 10);
  auto c = s.on_read(2ull * cs, cs);
  CHECK(c.window == 8);  // the bound
  CHECK(c.from == 10);
  CHECK(c.to == 11);
  CHECK(s.wants(10));
  CHECK_FALSE(s.wants(1));  // the reader is past it
  s.close();
  CHECK_FALSE(s.wants(10));
}

TEST_CASE("stream: a small first read is a peek (one chunk); a random read collapses the window") {
  stream s(64ull * cs, cs, 8);
  auto peek = s.on_read(0, 4096);
  CHECK(peek.window == 1);
  CHECK(peek.to == 2);
  auto jump = s.on_read(40ull * cs, 256 * 1024);
  CHECK_FALSE(jump.sequential);
  CHECK(jump.window == 0);
  CHECK(jump.from >= jump.to);
  CHECK_FALSE(s.wants(1));
}

TEST_CASE("stream: a late read of the stream (answered out of order) neither collapses it nor moves it back") {
  stream s(64ull * cs, cs, 8);
  const std::uint64_t half = cs / 2;
  s.on_read(0, half);
  s.on_read(2 * half, half);  // sent after the read of [half, cs), answered first
  auto late = s.on_read(half, half);
  CHECK(late.sequential);
  CHECK(late.window > 0);
  CHECK(s.position() == 3 * half);
  CHECK_FALSE(s.on_read(40ull * cs, half).sequential);  // far away: random
}

TEST_CASE("stream: the next files are claimed once; the window stops at the end of the file") {
  stream s(3ull * cs, cs, 8);
  CHECK(s.claim_next_files(0));
  CHECK_FALSE(s.claim_next_files(0));
  auto a = s.on_read(0, cs);
  CHECK(a.to == 3);
  CHECK(s.on_read(5ull * cs, cs).window == 0);  // past the end: nothing
}

TEST_CASE("stream: a random read split into two requests does not start read-ahead; a run mid-file does, after min_run") {
  stream s(4096ull * cs, cs, 8);
  for (std::uint64_t at : {1000ull, 37ull, 2900ull, 512ull}) {
    const std::uint64_t off = at * cs + 3 * 256 * 1024;
    auto a = s.on_read(off, 128 * 1024);
    auto b = s.on_read(off + 128 * 1024, 128 * 1024);  // the same 256 KiB read's second half
    CHECK_FALSE(a.sequential);
    CHECK_FALSE(b.sequential);
    CHECK(b.from >= b.to);
  }
  // A reader that goes on from somewhere in the middle is sequential once it has read min_run.
  const std::uint64_t start = 100ull * cs;
  readahead r;
  std::uint64_t at = start;
  for (; at < start + stream::min_run; at += 128 * 1024) CHECK_FALSE(s.on_read(at, 128 * 1024).sequential);
  r = s.on_read(at, 128 * 1024);
  CHECK(r.sequential);
  CHECK(r.window == 2);
  CHECK(r.to > r.from);
}

TEST_CASE("stream: read-ahead the cache refused is asked for again by the next read") {
  stream s(64ull * cs, cs, 8);
  auto a = s.on_read(0, cs);
  REQUIRE(a.to == 5);
  s.refused(3);  // chunks 3 and 4 found no room
  auto b = s.on_read(cs, cs);
  CHECK(b.from == 3);
}

TEST_CASE("stream: a random read in the first chunk reads ahead but does not start the next files") {
  stream s(4096ull * cs, cs, 8);
  auto r = s.on_read(3 * 256 * 1024, 256 * 1024);  // inside chunk 0, not at its start
  CHECK(r.sequential);
  CHECK_FALSE(s.claim_next_files(3 * 256 * 1024));
  // A reader that goes on for min_run does.
  for (std::uint64_t at = 4 * 256 * 1024; at < 8 * 256 * 1024; at += 256 * 1024) s.on_read(at, 256 * 1024);
  CHECK(s.claim_next_files(7 * 256 * 1024));
}
