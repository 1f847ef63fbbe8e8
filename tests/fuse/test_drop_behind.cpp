// Drop-behind: which ranges a stream of reads drops from the page cache, and the notification
// written for each (read back from a pipe standing in for /dev/fuse).
#include "fuse/drop_behind.hpp"

#include <doctest/doctest.h>
#include <linux/fuse.h>
#include <poll.h>
#include <unistd.h>

#include <random>
#include <vector>

namespace valkyrie::fuse {
namespace {

constexpr std::uint64_t MiB = 1 << 20;
using range = drop_behind::range;

drop_behind::params params() {
  drop_behind::params p;
  p.keep = 32 * MiB;
  p.step = 8 * MiB;
  p.slack = 16 * MiB;
  return p;
}

// Reads [from, to) in 1 MiB requests; the ranges dropped on the way, in order.
std::vector<range> read_through(drop_behind::stream& s, std::uint64_t from, std::uint64_t to) {
  std::vector<range> out;
  for (auto off = from; off < to; off += MiB)
    if (auto r = s.advance(off, MiB, params())) out.push_back(*r);
  return out;
}

TEST_CASE("a sequential reader drops one step at a time, keeping `keep` behind its front") {
  drop_behind::stream s;
  CHECK(read_through(s, 0, 40 * MiB - MiB).empty());  // front 39 MiB: under keep + step
  auto r = read_through(s, 39 * MiB, 40 * MiB);
  REQUIRE(r.size() == 1);
  CHECK(r[0] == range{0, 8 * MiB});
  r = read_through(s, 40 * MiB, 128 * MiB);
  REQUIRE(r.size() == 11);
  for (std::size_t i = 0; i < r.size(); ++i) CHECK(r[i] == range{(8 + 8 * i) * MiB, 8 * MiB});
  // Dropped up to 96 MiB: the last 32 MiB stay.
  CHECK(r.back().offset + r.back().length == 96 * MiB);
}

TEST_CASE("a mount's parameters: keep at least two read-aheads; reach is where dropping begins") {
  auto p = drop_behind::params::for_mount(32 * MiB, 4 * MiB, MiB);  // the defaults
  CHECK(p == params());
  CHECK(p.reach() == 40 * MiB);  // --direct-io-above auto: 40 MiB, the file streamed above
  drop_behind::stream s;
  CHECK(read_through(s, 0, p.reach() - MiB).empty());
  auto wide = drop_behind::params::for_mount(32 * MiB, 32 * MiB, MiB);
  CHECK(wide.keep == 64 * MiB);
  CHECK(wide.step == 16 * MiB);
  CHECK(wide.slack == 32 * MiB);
  CHECK(wide.reach() == 80 * MiB);
  auto small = drop_behind::params::for_mount(MiB, 0, MiB);
  CHECK(small.step == MiB);       // at least 1 MiB a step
  CHECK(small.slack == 4 * MiB);  // at least four max_read requests
}

TEST_CASE("read-ahead requests arriving out of order continue the stream") {
  drop_behind::stream s;
  std::vector<range> dropped;
  // Groups of four 1 MiB requests answered in the order 2, 0, 3, 1.
  for (std::uint64_t base = 0; base < 64 * MiB; base += 4 * MiB)
    for (std::uint64_t k : {2, 0, 3, 1})
      if (auto r = s.advance(base + k * MiB, MiB, params())) dropped.push_back(*r);
  std::uint64_t total = 0, next = 0;
  for (auto& r : dropped) {
    CHECK(r.offset == next);  // contiguous, never twice
    next = r.offset + r.length;
    total += r.length;
  }
  CHECK(total == 32 * MiB);  // 64 MiB read, 32 kept
}

TEST_CASE("random reads drop nothing") {
  drop_behind::stream s;
  std::mt19937_64 rng(7);
  for (int i = 0; i < 10000; ++i) {
    std::uint64_t off = rng() % (16384 * MiB) / (256 << 10) * (256 << 10);
    CHECK_FALSE(s.advance(off, 256 << 10, params()));
  }
}

TEST_CASE("a seek back over dropped pages starts a new stream there") {
  drop_behind::stream s;
  auto first = read_through(s, 0, 64 * MiB);
  CHECK(first.back().offset + first.back().length == 32 * MiB);
  // Back to 8 MiB (dropped): nothing more is dropped until the new stream is keep + step long.
  CHECK(read_through(s, 8 * MiB, 47 * MiB).empty());
  auto r = read_through(s, 47 * MiB, 48 * MiB);
  REQUIRE(r.size() == 1);
  CHECK(r[0] == range{8 * MiB, 8 * MiB});
}

TEST_CASE("each drop is one FUSE_NOTIFY_INVAL_INODE of its range") {
  int p[2];
  REQUIRE(::pipe(p) == 0);
  {
    drop_behind d(p[1], params());
    ::close(p[1]);  // (the drop_behind writes to its own dup)
    drop_behind::stream s;
    for (std::uint64_t off = 0; off < 48 * MiB; off += MiB) d.on_read(s, 42, off, MiB);
    // Front 48 MiB: [0, 8) and [8, 16) dropped.
    for (std::uint64_t want : {0 * MiB, 8 * MiB}) {
      pollfd pf{p[0], POLLIN, 0};
      REQUIRE(::poll(&pf, 1, 10000) == 1);
      struct {
        fuse_out_header h;
        fuse_notify_inval_inode_out b;
      } msg;
      static_assert(sizeof msg == sizeof(fuse_out_header) + sizeof(fuse_notify_inval_inode_out));
      REQUIRE(::read(p[0], &msg, sizeof msg) == static_cast<ssize_t>(sizeof msg));
      CHECK(msg.h.len == sizeof msg);
      CHECK(msg.h.error == FUSE_NOTIFY_INVAL_INODE);
      CHECK(msg.h.unique == 0);
      CHECK(msg.b.ino == 42);
      CHECK(msg.b.off == static_cast<std::int64_t>(want));
      CHECK(msg.b.len == static_cast<std::int64_t>(8 * MiB));
    }
  }
  // Destroyed: the thread has closed its end, so the pipe reports end of file.
  char c;
  CHECK(::read(p[0], &c, 1) == 0);
  ::close(p[0]);
}

}  // namespace
}  // namespace valkyrie::fuse
