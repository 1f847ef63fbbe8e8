// readdir and readdirplus as the kernel pages through a directory: resuming at any offset gives
// the rest exactly once, also when the listing is refreshed between pages; readdirplus counts
// one lookup per entry it hands out (never for "." and ".."), so the kernel's FORGETs balance.
#include <doctest/doctest.h>

#include <linux/fuse.h>

#include <algorithm>
#include <chrono>
#include <set>
#include <string>
#include <vector>

#include "core/errors.hpp"
#include "fuse/dir_stream.hpp"
#include "helpers.hpp"
#include "s3/memory_client.hpp"
#include "wait.hpp"

using namespace valkyrie;
using valkyrie::fuse::dir_stream;

namespace test_dir_stream {
struct dirent_seen {
  std::string name;
  std::uint64_t ino = 0;     // the dirent's inode number
  std::uint64_t next = 0;    // the offset that resumes after it
  std::uint64_t nodeid = 0;  // readdirplus: the inode the kernel now holds a lookup of (0: none)
};

// Decodes a reply the way the kernel does (fuse_dirent / fuse_direntplus records).
std::vector<dirent_seen> decode(const std::vector<char>& buf, bool plus) {
  std::vector<dirent_seen> out;
  std::size_t at = 0;
  while (at < buf.size()) {
    const fuse_dirent* d;
    std::uint64_t nodeid = 0;
    std::size_t len;
    if (plus) {
      REQUIRE(at + FUSE_NAME_OFFSET_DIRENTPLUS <= buf.size());
      auto* dp = reinterpret_cast<const fuse_direntplus*>(buf.data() + at);
      d = &dp->dirent;
      nodeid = dp->entry_out.nodeid;
      len = FUSE_DIRENTPLUS_SIZE(dp);
    } else {
      REQUIRE(at + FUSE_NAME_OFFSET <= buf.size());
      d = reinterpret_cast<const fuse_dirent*>(buf.data() + at);
      len = FUSE_DIRENT_SIZE(d);
    }
    REQUIRE(at + len <= buf.size());
    out.push_back({std::string(d->name, d->namelen), d->ino, d->off, nodeid});
    at += len;
  }
  return out;
}

struct fixture {
  explicit fixture(std::chrono::nanoseconds ttl = std::chrono::seconds(60)) {
    fs::options o;
    o.metadata_ttl = ttl;
    filesystem =
        std::make_unique<fs::filesystem>(o, std::vector<std::shared_ptr<s3::object_client>>{mem},
                                         std::make_shared<cache::chunk_cache>(1 << 20, 64 * 1024));
  }
  // A page from `off`; readdirplus entries are forgotten again at once (as the kernel does once
  // it drops them) unless `keep` collects them.
  std::vector<dirent_seen> page(dir_stream& s, off_t off, std::size_t size, bool plus,
                                std::vector<dirent_seen>* keep = nullptr) {
    auto r = test::run(s.page(off, size, plus));
    REQUIRE(r);
    auto entries = decode(*r, plus);
    for (auto& e : entries) {
      if (!plus || e.nodeid == 0) continue;
      if (keep)
        keep->push_back(e);
      else
        filesystem->forget(e.nodeid, 1);
    }
    return entries;
  }
  // Every name from `off` on, in pages of `size` bytes, resuming where each page ended.
  std::vector<std::string> rest(dir_stream& s, off_t off, std::size_t size, bool plus) {
    std::vector<std::string> names;
    for (int pages = 0; pages < 10000; ++pages) {
      auto entries = page(s, off, size, plus);
      if (entries.empty()) return names;
      for (auto& e : entries) names.push_back(e.name);
      off = static_cast<off_t>(entries.back().next);
    }
    FAIL("paging never ended");
    return names;
  }

  std::shared_ptr<s3::memory_client> mem = std::make_shared<s3::memory_client>();
  std::unique_ptr<fs::filesystem> filesystem;
  fuse::mount_options opts;
};

std::vector<std::string> expected_from(const std::vector<std::string>& all, std::size_t k) {
  return {all.begin() + static_cast<std::ptrdiff_t>(std::min(k, all.size())), all.end()};
}

TEST_CASE(
    "readdir(plus) resumed at every offset returns the rest exactly once, whatever the page size") {
  fixture f;
  std::vector<std::string> all = {".", ".."};
  for (int i = 0; i < 40; ++i) {
    // Names of different lengths, a directory among the files.
    std::string name =
        "entry_" + std::to_string(i) + std::string(static_cast<std::size_t>(i % 7), 'x');
    f.mem->put(i % 5 == 0 ? name + "/inner" : name, "data");
  }
  auto listed = test::run(f.filesystem->readdir(fs::root_ino));
  REQUIRE(listed);
  for (auto& e : *listed) all.push_back(e.name);
  REQUIRE(all.size() == 42);
  dir_stream s(*f.filesystem, f.opts, fs::root_ino);
  for (bool plus : {false, true}) {
    CAPTURE(plus);
    // The offsets the kernel can pass back: 0 and each entry's next offset.
    std::vector<std::uint64_t> offsets = {0};
    for (auto& e : f.page(s, 0, 1 << 16, plus)) offsets.push_back(e.next);
    REQUIRE(offsets.size() == all.size() + 1);
    for (std::size_t k = 0; k < offsets.size(); ++k) {
      for (std::size_t size : {std::size_t{1} << 16, std::size_t{200}, std::size_t{4096}}) {
        CAPTURE(k);
        CAPTURE(size);
        CHECK(f.rest(s, static_cast<off_t>(offsets[k]), size, plus) == expected_from(all, k));
      }
    }
  }
  CHECK(f.filesystem->inode_count() == 1);  // every lookup readdirplus counted was forgotten
}

TEST_CASE("a listing refreshed between two pages: no entry is repeated or skipped") {
  // A short --metadata-ttl: the kernel's next page may come after the listing expired, and the
  // bucket may have changed meanwhile.
  fixture f(std::chrono::milliseconds(50));
  for (char c = 'b'; c <= 'y'; c += 2) f.mem->put(std::string("file_") + c, "x");  // b d f ... x
  for (bool plus : {false, true}) {
    CAPTURE(plus);
    dir_stream s(*f.filesystem, f.opts, fs::root_ino);
    const std::size_t page_size = plus ? 700 : 200;  // ".", "..", and a few files
    auto first = f.page(s, 0, page_size, plus);
    REQUIRE(first.size() >= 4);
    std::set<std::string> before;
    for (auto& e : *test::run(f.filesystem->readdir(fs::root_ino))) before.insert(e.name);
    // Names are added before and after the page's end, and one after it is removed.
    f.mem->put("file_a", "new");
    f.mem->put("file_c", "new");
    f.mem->put("file_z", "new");
    f.mem->remove("file_x");
    // Until the filesystem's listing shows the change (the TTL ran out and it was listed again).
    test::wait_until(
        [&] {
          auto now = test::run(f.filesystem->readdir(fs::root_ino));
          return now &&
                 std::any_of(now->begin(), now->end(), [](auto& e) { return e.name == "file_a"; });
        },
        "the listing is refreshed after the TTL");
    std::vector<std::string> names;
    for (auto& e : first) names.push_back(e.name);
    auto rest = f.rest(s, static_cast<off_t>(first.back().next), page_size, plus);
    names.insert(names.end(), rest.begin(), rest.end());
    CAPTURE(names.size());
    // Every name present before and after the change appears exactly once; nothing repeats.
    std::multiset<std::string> seen(names.begin(), names.end());
    for (auto& n : before) {
      if (n == "file_x") continue;  // removed meanwhile: may or may not appear
      CHECK_MESSAGE(seen.count(n) == 1, n << " appears " << seen.count(n) << " times");
    }
    for (auto& n : std::set<std::string>(names.begin(), names.end()))
      CHECK_MESSAGE(seen.count(n) == 1, n << " repeated");
    // Back to the bucket as it was, for the second round.
    f.mem->remove("file_a");
    f.mem->remove("file_c");
    f.mem->remove("file_z");
    f.mem->put("file_x", "x");
    test::wait_until(
        [&] {
          auto now = test::run(f.filesystem->readdir(fs::root_ino));
          return now &&
                 std::none_of(now->begin(), now->end(), [](auto& e) { return e.name == "file_a"; });
        },
        "the listing is refreshed again");
  }
  CHECK(f.filesystem->inode_count() == 1);
}

TEST_CASE(
    "readdirplus counts one lookup per entry handed out, never for . and ..; FORGET balances it") {
  fixture f;
  for (int i = 0; i < 12; ++i) f.mem->put("f" + std::to_string(i), "x");
  f.mem->put("sub/inner", "y");
  dir_stream s(*f.filesystem, f.opts, fs::root_ino);
  // Small pages: some entries do not fit and must not be counted by the page that left them out.
  std::vector<dirent_seen> held;
  off_t off = 0;
  for (;;) {
    auto entries = f.page(s, off, 300, true, &held);
    if (entries.empty()) break;
    for (auto& e : entries) {
      CAPTURE(e.name);
      if (e.name == "." || e.name == "..") {
        CHECK(e.nodeid == 0);  // the kernel takes no reference to these
      } else {
        CHECK(e.nodeid != 0);
        CHECK(e.nodeid == e.ino);
        CHECK(f.filesystem->getattr(e.nodeid));
      }
    }
    off = static_cast<off_t>(entries.back().next);
  }
  REQUIRE(held.size() == 13);
  CHECK(f.filesystem->inode_count() == 1 + 13);
  // A lookup of a listed entry finds the same inode (and counts one more).
  auto sub = test::run(f.filesystem->lookup(fs::root_ino, "sub"));
  REQUIRE(sub);
  auto listed_sub = std::find_if(held.begin(), held.end(), [](auto& e) { return e.name == "sub"; });
  REQUIRE(listed_sub != held.end());
  CHECK(sub->ino == listed_sub->nodeid);
  f.filesystem->forget(sub->ino, 1);
  // The kernel forgets every entry but one, each with the count it received (1): those inodes
  // are freed, the one it still holds stays.
  const dirent_seen kept = held.front();
  for (auto& e : held)
    if (e.nodeid != kept.nodeid) f.filesystem->forget(e.nodeid, 1);
  CHECK(f.filesystem->inode_count() == 2);
  for (auto& e : held) {
    CAPTURE(e.name);
    CHECK(static_cast<bool>(f.filesystem->getattr(e.nodeid)) == (e.nodeid == kept.nodeid));
  }
  f.filesystem->forget(kept.nodeid, 1);
  CHECK(f.filesystem->inode_count() == 1);
}
}  // namespace test_dir_stream
