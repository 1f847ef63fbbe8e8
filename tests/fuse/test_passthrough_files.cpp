// passthrough_files' bookkeeping against the kernel's rules, with a stand-in for the /dev/fuse
// ioctls: per inode, opens through passthrough and through the page cache never overlap (the
// kernel fails the open with EIO otherwise), passthrough opens at the same time share one backing
// file, and the pool's bytes are never exceeded. Also when --passthrough-pool auto sizes a pool,
// and when a known order that reads its objects again turns it off.
#include <doctest/doctest.h>

#include <cerrno>
#include <cstring>
#include <set>

#include "cache/chunk_id.hpp"
#include "fuse/passthrough.hpp"

using namespace valkyrie;
using fuse::passthrough_files;

namespace test_passthrough_files {
constexpr std::uint64_t mib = 1 << 20;

// The kernel's side: ids handed out and still registered.
struct fake_kernel {
  int next_id = 1;
  std::set<int> live;
  int refuse_with = 0;  // an errno for every open, or 0
  fuse::backing_registry registry() {
    return {[this](int fd) {
              if (fd < 0) return (errno = EBADF, -1);
              if (refuse_with) return (errno = refuse_with, -1);
              live.insert(next_id);
              return next_id++;
            },
            [this](int id) { CHECK(live.erase(id) == 1); }};
  }
};

cache::version_ref object(const char* key, std::uint64_t size, const char* etag = "e1") {
  return cache::make_version("b", key, etag, size);
}

// Fills a file for `v` as an open would, with a byte pattern; its id, or -1.
int fill_and_finish(passthrough_files& pt, std::uint64_t ino, const cache::version_ref& v) {
  auto f = pt.begin_fill(v->size);
  if (!f) return pt.open_unfilled(ino);
  passthrough_files::back_pages(f->data, f->fresh_from, f->size);
  std::memset(f->data, 'x', f->size);
  auto id = pt.finish_fill(ino, v, *f);
  return id ? *id : -1;
}

TEST_CASE(
    "passthrough_files: an open that found no room joins the passthrough opens that came "
    "meanwhile (a page-cache open then fails with EIO in the kernel)") {
  fake_kernel k;
  passthrough_files pt(k.registry(), 8 * mib, mib);
  auto v = object("shard", 8 * mib);
  // Two opens of one inode at once: both are candidates; the first fills the whole pool.
  REQUIRE(pt.on_open(7, v).v == passthrough_files::verdict::candidate);
  REQUIRE(pt.on_open(7, v).v == passthrough_files::verdict::candidate);
  const int first = fill_and_finish(pt, 7, v);
  REQUIRE(first > 0);
  CHECK_FALSE(pt.begin_fill(v->size));  // the pool is the first's file, in use
  CHECK(pt.open_unfilled(7) == first);  // the second shares it
  // Both releases: the file stays idle for the next open of the same version.
  CHECK_FALSE(pt.release_passthrough(7));
  CHECK_FALSE(pt.release_passthrough(7));
  auto again = pt.on_open(7, v);
  CHECK(again.v == passthrough_files::verdict::passthrough);
  CHECK(again.backing_id == first);
  CHECK(k.live.size() == 1);
}

TEST_CASE(
    "passthrough_files: an open that went to the page cache first keeps the inode there until "
    "its release") {
  fake_kernel k;
  passthrough_files pt(k.registry(), 8 * mib, mib);
  auto v = object("shard", 4 * mib);
  REQUIRE(pt.on_open(3, v).v == passthrough_files::verdict::candidate);
  REQUIRE(pt.on_open(3, v).v == passthrough_files::verdict::candidate);
  CHECK(pt.open_unfilled(3) == -1);        // e.g. its chunks were not all cached
  CHECK(fill_and_finish(pt, 3, v) == -1);  // the other's fill is given back unused
  CHECK(pt.on_open(3, v).v == passthrough_files::verdict::page_cache);
  CHECK(k.live.empty());
  for (int i = 0; i < 3; ++i) pt.release_page_cache(3);
  CHECK(pt.on_open(3, v).v == passthrough_files::verdict::candidate);
  CHECK(fill_and_finish(pt, 3, v) > 0);
}

TEST_CASE(
    "passthrough_files: an open of a newer version shares the open files' backing file; an idle "
    "one of an older version is dropped") {
  fake_kernel k;
  passthrough_files pt(k.registry(), 8 * mib, mib);
  auto old_v = object("k", 2 * mib, "e1"), new_v = object("k", 3 * mib, "e2");
  REQUIRE(pt.on_open(1, old_v).v == passthrough_files::verdict::candidate);
  const int id = fill_and_finish(pt, 1, old_v);
  REQUIRE(id > 0);
  auto shared = pt.on_open(1, new_v);
  CHECK(shared.v == passthrough_files::verdict::passthrough);
  CHECK(shared.backing_id == id);
  pt.release_passthrough(1);
  pt.release_passthrough(1);
  CHECK(pt.on_open(1, new_v).v == passthrough_files::verdict::candidate);
  CHECK(k.live.empty());  // the old version's id was closed
  CHECK(fill_and_finish(pt, 1, new_v) > 0);
}

TEST_CASE("passthrough_files: a refusal for want of privilege turns passthrough off") {
  fake_kernel k;
  k.refuse_with = EPERM;
  passthrough_files pt(k.registry(), 8 * mib, mib);
  auto v = object("a", 2 * mib);
  REQUIRE(pt.on_open(1, v).v == passthrough_files::verdict::candidate);
  CHECK(fill_and_finish(pt, 1, v) == -1);
  k.refuse_with = 0;
  CHECK(pt.on_open(2, object("b", 2 * mib)).v == passthrough_files::verdict::page_cache);
  CHECK_FALSE(pt.begin_prepare(object("c", 2 * mib)));
  CHECK(k.live.empty());
}

TEST_CASE(
    "passthrough_files: a prepare with no room waits for the release that leaves a file idle; "
    "the open then finds it ready") {
  fake_kernel k;
  passthrough_files pt(k.registry(), 8 * mib, mib);
  auto a = object("a", 6 * mib), b = object("b", 6 * mib);
  REQUIRE(pt.on_open(1, a).v == passthrough_files::verdict::candidate);
  REQUIRE(fill_and_finish(pt, 1, a) > 0);
  REQUIRE(pt.begin_prepare(b));
  CHECK_FALSE(pt.begin_fill(b->size, true));  // a's file is in use
  pt.defer_prepare(b);
  auto resumed = pt.release_passthrough(1);
  REQUIRE(resumed);
  CHECK(**resumed == *b);
  auto f = pt.begin_fill(b->size, true);  // a's idle file is evicted for it
  REQUIRE(f);
  pt.end_prepare(b, *f);
  auto opened = pt.on_open(2, b);
  CHECK(opened.v == passthrough_files::verdict::passthrough);
  CHECK(k.live.size() == 1);
  CHECK(pt.on_open(1, a).v == passthrough_files::verdict::candidate);
}
TEST_CASE(
    "passthrough_files: an idle file kept under an inode number the kernel forgot serves the same "
    "version's open under its new number; not another version's") {
  fake_kernel k;
  passthrough_files pt(k.registry(), 8 * mib, mib);
  auto v = object("shard", 4 * mib);
  REQUIRE(pt.on_open(10, v).v == passthrough_files::verdict::candidate);
  const int id = fill_and_finish(pt, 10, v);
  REQUIRE(id > 0);
  pt.release_passthrough(10);
  // Dropped caches: the kernel forgot inode 10 and looked the key up again as inode 11.
  auto again = pt.on_open(11, v);
  CHECK(again.v == passthrough_files::verdict::passthrough);
  CHECK(again.backing_id == id);
  CHECK(k.live.size() == 1);
  pt.release_passthrough(11);
  CHECK(pt.on_open(12, object("shard", 4 * mib, "e2")).v ==
        passthrough_files::verdict::candidate);  // a newer version: no
  auto back = pt.on_open(13, v);                 // and the file is still kept for the old one
  CHECK(back.backing_id == id);
}

TEST_CASE("auto pool: an eighth of the cache in whole MiB, leaving the chunk cache two chunks") {
  CHECK(fuse::auto_passthrough_pool(16ull << 30, 8 * mib) == 2ull << 30);
  CHECK(fuse::auto_passthrough_pool(512 * mib, 8 * mib) == 64 * mib);
  CHECK(fuse::auto_passthrough_pool(4 * mib, 1 * mib) == 0);   // (an eighth is under 1 MiB)
  CHECK(fuse::auto_passthrough_pool(17 * mib, 8 * mib) == 0);  // (a 2 MiB pool would leave 15 MiB)
}

TEST_CASE("auto pool: off for an order that reads again more than stays local") {
  const std::uint64_t cache = 512 * mib, pool = 64 * mib, dataset = 1024 * mib;
  auto off = [&](std::uint64_t distinct, std::uint64_t read, std::uint64_t disk = 0) {
    return fuse::auto_pool_off_for_order(pool, mib, cache, disk, {distinct, read, distinct});
  };
  // Three epochs over twice the cache (valkyrie-bench's epochs): off, and the reason says why.
  auto why = off(dataset, 3 * dataset);
  CHECK(why.find("reads 2.0 GiB again of 1.0 GiB") != std::string::npos);
  CHECK(why.find("(448.0 MiB)") != std::string::npos);
  // One pass (the training loop over four times the cache): nothing is read again, kept.
  CHECK(off(4 * dataset, 4 * dataset).empty());
  // Read again, but it all stays local beside the pool: in memory, or with the disk tier.
  CHECK(off(448 * mib, 3 * 448 * mib).empty());
  CHECK(!off(449 * mib, 3 * 449 * mib).empty());
  CHECK(off(dataset, 3 * dataset, 1024 * mib).empty());
  // A few lines read twice: less again than the pool's room, which could not save more; kept.
  CHECK(off(dataset, dataset + pool - 1).empty());
  CHECK(!off(dataset, dataset + pool).empty());
  CHECK(fuse::auto_pool_off_for_order(0, mib, cache, 0, {dataset, 3 * dataset, dataset}).empty());
}

TEST_CASE("auto pool: off for an order with no object a backing file takes (small objects)") {
  const std::uint64_t cache = 2048 * mib, pool = 256 * mib;
  // 20,000 objects of 110 KiB, one pass: none is 1 MiB to the pool's size.
  auto why = fuse::auto_pool_off_for_order(
      pool, mib, cache, 0,
      {std::uint64_t{20000} * 110 * 1024, std::uint64_t{20000} * 110 * 1024, 0});
  CHECK(why.find("no object of the training order") != std::string::npos);
  CHECK(why.find("(1.0 MiB to the pool's 256.0 MiB)") != std::string::npos);
  // One object it takes is enough to keep it.
  CHECK(
      fuse::auto_pool_off_for_order(pool, mib, cache, 0, {100 * mib, 100 * mib, 4 * mib}).empty());
}

}  // namespace test_passthrough_files
