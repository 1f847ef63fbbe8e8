// Listings and attributes over time (--metadata-ttl) and the lookup counts readdirplus hands
// out through remember_entry.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>

#include "core/errors.hpp"
#include "fs/filesystem.hpp"
#include "fs_fixture.hpp"
#include "helpers.hpp"
#include "wait.hpp"

using namespace valkyrie;
using namespace valkyrie::fs;
using namespace valkyrie::fs::test_support;

TEST_CASE(
    "--metadata-ttl: within it a changed bucket is not seen (no LIST); after it the change is") {
  fixture f;
  const auto ttl = std::chrono::milliseconds(1000);
  options o;
  o.metadata_ttl = ttl;
  o.cold_read_direct_max = 0;
  f.reopen(o);
  f.mem->put("a", "1");
  f.mem->put("b", std::string(10, 'b'));
  const auto listed_at = std::chrono::steady_clock::now();
  CHECK(f.names(root_ino) == std::vector<std::string>{"a", "b"});
  auto b = test::run(f.fs->lookup(root_ino, "b"));
  REQUIRE(b);
  CHECK(b->size == 10);
  const auto lists = f.mem->lists.load();

  // The bucket changes: a new key, a deleted key, a size change.
  f.mem->put("c", "333");
  f.mem->remove("a");
  f.mem->put("b", std::string(20, 'B'));
  // Within the TTL: the cached listing answers, unchanged, and S3 is not asked.
  CHECK(f.names(root_ino) == std::vector<std::string>{"a", "b"});
  CHECK(test::run(f.fs->lookup(root_ino, "c")).error() == errc::not_found);
  CHECK(test::run(f.fs->lookup(root_ino, "a")));
  CHECK(f.fs->getattr(b->ino)->size == 10);
  CHECK(f.mem->lists.load() == lists);
  REQUIRE_MESSAGE(
      std::chrono::steady_clock::now() - listed_at < ttl,
      "the checks within the TTL took longer than the TTL itself (machine overloaded?)");

  // After it: the next listing shows the bucket as it is now.
  std::vector<std::string> now;
  test::wait_until(
      [&] {
        now = f.names(root_ino);
        return now != std::vector<std::string>{"a", "b"};
      },
      "the listing shows the change after the TTL");
  CHECK(std::chrono::steady_clock::now() - listed_at >= ttl);
  CHECK(now == std::vector<std::string>{"b", "c"});
  CHECK(f.mem->lists.load() > lists);
  // The inode of b (looked up before) takes the new size from the listing; c is found, a is not.
  CHECK(f.fs->getattr(b->ino)->size == 20);
  auto c = test::run(f.fs->lookup(root_ino, "c"));
  REQUIRE(c);
  CHECK(c->size == 3);
  CHECK(test::run(f.fs->lookup(root_ino, "a")).error() == errc::not_found);
  auto file = test::run(f.fs->open(b->ino));
  REQUIRE(file);
  CHECK(f.read(*file, 0, 100) == std::string(20, 'B'));
}

TEST_CASE(
    "--metadata-ttl: a path looked up without a listing is answered from S3 again after the TTL") {
  fixture f;
  options o;
  o.metadata_ttl = std::chrono::milliseconds(300);
  f.reopen(o);
  f.mem->put("dir/x", "1");
  auto dir = f.lookup_path("dir");
  CHECK(f.names(dir.ino) == std::vector<std::string>{"x"});
  f.mem->put("dir/y", "22");
  CHECK(test::run(f.fs->lookup(dir.ino, "y")).error() ==
        errc::not_found);  // the fresh listing says so
  test::wait_until([&] { return static_cast<bool>(test::run(f.fs->lookup(dir.ino, "y"))); },
                   "dir/y is found once the listing expired");
  CHECK(f.lookup_path("dir/y").size == 2);
}

TEST_CASE("remember_entry counts one lookup per call; forget with that count frees the inode") {
  fixture f;
  f.mem->put("d/x", "1");
  f.mem->put("z", "2");
  auto listing = test::run(f.fs->listing(root_ino));
  REQUIRE(listing);
  REQUIRE((*listing)->size() == 2);
  const auto base = f.fs->inode_count();
  // Listed only: no inode yet.
  for (std::size_t i = 0; i < 2; ++i) CHECK(f.fs->entry_attr(root_ino, **listing, i).ino == 0);
  // Handed out by readdirplus: an inode each, one lookup each.
  std::vector<attributes> handed;
  for (std::size_t i = 0; i < 2; ++i) {
    auto a = f.fs->remember_entry(root_ino, **listing, i);
    REQUIRE(a);
    CHECK(a->ino != 0);
    CHECK(f.fs->entry_attr(root_ino, **listing, i).ino == a->ino);
    handed.push_back(*a);
  }
  CHECK(f.fs->inode_count() == base + 2);
  // A second readdirplus of z (another page, or another reader): the same inode, two lookups.
  auto again = f.fs->remember_entry(root_ino, **listing, 1);
  REQUIRE(again);
  CHECK(again->ino == handed[1].ino);
  f.fs->forget(handed[1].ino, 1);
  CHECK(f.fs->getattr(handed[1].ino));  // one lookup left
  f.fs->forget(handed[1].ino, 1);
  CHECK(f.fs->getattr(handed[1].ino).error() == errc::not_found);
  // d was never forgotten: it stays.
  CHECK(f.fs->getattr(handed[0].ino));
  CHECK(f.fs->inode_count() == base + 1);
  f.fs->forget(handed[0].ino, 1);
  CHECK(f.fs->inode_count() == base);
}
