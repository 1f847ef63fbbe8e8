// The spill hook as the cache drives it (the disk tier's side is in tests/tier): which chunks an
// eviction hands over, when one is dropped unwritten, and when a written chunk leaves memory. The
// hook here is a stand-in that keeps the refs it is handed (a write in progress) until the test
// says the write is done.
#include <doctest/doctest.h>

#include <cstring>
#include <vector>

#include "cache/chunk_cache.hpp"
#include "helpers.hpp"

using namespace valkyrie;
using namespace valkyrie::cache;

namespace test_chunk_cache_spill {
constexpr std::uint32_t cs = 4096;

chunk_id K(std::uint64_t index) {
  return chunk_id{make_version("test-bucket", "o", "\"etag\"", std::uint64_t{1} << 40), cs, index};
}

chunk_cache::fetch_fn instant_fill() {
  return [](chunk_buffers pieces) -> awaitable<result<std::size_t>> {
    std::memset(pieces.front().data(), 'z', 16);
    co_return std::size_t{16};
  };
}

// A spill hook that answers `answer` at eviction (never ahead of it) and keeps what it is handed.
struct stand_in_disk {
  chunk_cache::spill_answer answer = chunk_cache::spill_answer::write;
  std::vector<std::pair<chunk_id, chunk_ref>> writing;  // handed over, not written yet
  int offered = 0, dropped = 0;
  std::vector<std::uint64_t> on_disk;  // the chunks the disk holds (by index)
  void install(chunk_cache& c) {
    chunk_cache::spill_hook hook;
    hook.wants = [this](const chunk_id& id, std::uint64_t, bool ahead) {
      if (ahead) return chunk_cache::spill_answer::no;
      for (auto i : on_disk)
        if (id == K(i)) return chunk_cache::spill_answer::on_disk;
      ++offered;
      if (answer == chunk_cache::spill_answer::busy) ++dropped;  // (an eviction goes on without it)
      return answer;
    };
    hook.take = [this](const chunk_id& id, chunk_ref ref, bool) {
      writing.emplace_back(id, std::move(ref));  // (kept: released later, not under the lock)
    };
    hook.on_disk = [this](const chunk_id& id) {
      for (auto i : on_disk)
        if (id == K(i)) return true;
      return false;
    };
    c.set_spill(std::move(hook));
  }
};

// Two ready chunks, 1 and 5, in a cache of two, ranked by index (index = next use).
void fill(chunk_cache& c) {
  c.set_eviction_ranker([](const chunk_id& k) -> std::uint64_t { return k.index; });
  REQUIRE(test::run(c.get(K(1), instant_fill())));
  REQUIRE(test::run(c.get(K(5), instant_fill())));
}

TEST_CASE("spill: a victim is handed over for writing and leaves memory once written") {
  chunk_cache c(2 * cs, cs, 1);
  stand_in_disk disk;
  disk.install(c);
  c.set_eviction_ranker([](const chunk_id& k) -> std::uint64_t { return k.index; });
  REQUIRE(test::run(c.get(K(5), instant_fill())));
  REQUIRE(test::run(c.get(K(7), instant_fill())));
  asio::io_context ctx(1);
  // Chunk 3 needs room: 7 (the farthest) is handed over, then 5; both stay pinned until
  // written, so there is no room yet and the prefetch is refused (its reader asks again).
  CHECK_FALSE(c.prefetch(K(3), instant_fill(), ctx.get_executor()));
  REQUIRE(disk.writing.size() == 2);
  CHECK(disk.writing[0].first == K(7));
  CHECK(disk.writing[1].first == K(5));
  CHECK(c.contains(K(7)));
  CHECK(c.contains(K(5)));
  // 7's write is done: it leaves memory (the disk has it), and 3 fits without another eviction.
  c.mark_stored(std::move(disk.writing[0].second), true);
  CHECK_FALSE(c.contains(K(7)));
  CHECK(c.check_invariants() == "");
  CHECK(c.prefetch(K(3), instant_fill(), ctx.get_executor()));
  ctx.run();
  // 5's too: memory does not keep a second copy of what the disk holds.
  c.mark_stored(std::move(disk.writing[1].second), true);
  CHECK_FALSE(c.contains(K(5)));
  CHECK(c.contains(K(3)));
  CHECK(disk.offered == 2);
  CHECK(disk.dropped == 0);
  CHECK(c.check_invariants() == "");
}

TEST_CASE("spill: a written victim a reader pinned meanwhile stays, and goes first later") {
  chunk_cache c(2 * cs, cs, 1);
  stand_in_disk disk;
  disk.install(c);
  fill(c);
  asio::io_context ctx(1);
  CHECK_FALSE(c.prefetch(K(3), instant_fill(), ctx.get_executor()));
  REQUIRE(disk.writing.size() == 1);
  {
    auto reading = test::run(c.get(K(5), instant_fill()));  // a reader holds 5 as its write ends
    REQUIRE(reading);
    c.mark_stored(std::move(disk.writing[0].second), true);
    CHECK(c.contains(K(5)));
  }
  // Stored: the next eviction takes it first (nothing lost), though it is the farthest anyway;
  // a reader's fetch of 0 then keeps 1.
  REQUIRE(test::run(c.get(K(0), instant_fill())));
  CHECK_FALSE(c.contains(K(5)));
  CHECK(c.contains(K(1)));
  CHECK(disk.offered == 1);  // (a stored chunk is not offered again)
  CHECK(c.check_invariants() == "");
}

TEST_CASE("spill: with the disk behind, the farthest is dropped unwritten, counted; nobody waits") {
  chunk_cache c(2 * cs, cs, 1);
  stand_in_disk disk;
  disk.answer = chunk_cache::spill_answer::busy;
  disk.install(c);
  fill(c);
  asio::io_context ctx(1);
  // Read-ahead is not held back for the disk: 5 goes, unwritten.
  CHECK(c.prefetch(K(3), instant_fill(), ctx.get_executor()));
  ctx.run();
  CHECK(disk.dropped == 1);
  CHECK_FALSE(c.contains(K(5)));
  CHECK(c.contains(K(1)));
  // A reader's fetch the same: 3 is the farthest now.
  REQUIRE(test::run(c.get(K(0), instant_fill())));
  CHECK(disk.dropped == 2);
  CHECK_FALSE(c.contains(K(3)));
  CHECK(c.contains(K(1)));
  CHECK(disk.writing.empty());
  CHECK(c.check_invariants() == "");
}

TEST_CASE("spill: a disk chunk is not read ahead at the cost of one only memory holds") {
  chunk_cache c(2 * cs, cs, 1);
  stand_in_disk disk;
  disk.on_disk = {0};
  disk.install(c);
  fill(c);  // 1 and 5, on no disk
  asio::io_context ctx(1);
  // 0 is needed before both, but it is on the disk: reading it early would evict 5, and memory
  // and disk together would hold one chunk fewer. Refused, nothing evicted or handed over.
  CHECK_FALSE(c.prefetch(K(0), instant_fill(), ctx.get_executor(), {}, 0, true));
  CHECK(c.contains(K(1)));
  CHECK(c.contains(K(5)));
  CHECK(disk.offered == 0);
  // The same prefetch over the link (not local) takes 5's place as before (handed over).
  CHECK_FALSE(c.prefetch(K(3), instant_fill(), ctx.get_executor()));
  CHECK(disk.offered == 1);
  disk.writing.clear();
  // Once 5 is on the disk too, evicting it loses nothing: the local prefetch goes ahead.
  chunk_cache c2(2 * cs, cs, 1);
  stand_in_disk disk2;
  disk2.on_disk = {0, 5};
  disk2.install(c2);
  fill(c2);
  CHECK(c2.prefetch(K(0), instant_fill(), ctx.get_executor(), {}, 0, true));
  ctx.run();
  CHECK_FALSE(c2.contains(K(5)));
  CHECK(c2.contains(K(0)));
  CHECK(c2.contains(K(1)));
  CHECK(disk2.writing.empty());
  // A reader's own fetch of a disk chunk is never refused.
  REQUIRE(test::run(c.get(K(0), instant_fill())));
  CHECK(c.contains(K(0)));
  CHECK(c.check_invariants() == "");
  CHECK(c2.check_invariants() == "");
}
}  // namespace test_chunk_cache_spill
