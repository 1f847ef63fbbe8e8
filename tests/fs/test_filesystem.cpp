#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <map>

#include "core/errors.hpp"
#include "fs/filesystem.hpp"
#include "fs_fixture.hpp"
#include "helpers.hpp"

using namespace valkyrie;
using namespace valkyrie::fs;
using namespace valkyrie::fs::test_support;

TEST_CASE("directories come from delimited listings: markers, clashes and impossible names") {
  fixture f;
  f.mem->put("a.txt", "a");
  f.mem->put("dir/", "");          // a directory marker
  f.mem->put("dir/inner", "x");
  f.mem->put("empty-dir/", "");
  f.mem->put("clash", "file");     // clash with the directory below: the directory wins
  f.mem->put("clash/inner", "y");
  f.mem->put("x//y", "z");         // empty segment
  f.mem->put(std::string(300, 'n'), "too long");
  f.mem->put("sp ace+pl%us~", "odd");
  CHECK(f.names(root_ino) == std::vector<std::string>{"a.txt", "clash/", "dir/", "empty-dir/", "sp ace+pl%us~", "x/"});
  auto dir = f.lookup_path("dir");
  CHECK(dir.directory);
  CHECK(f.names(dir.ino) == std::vector<std::string>{"inner"});
  CHECK(f.names(f.lookup_path("empty-dir").ino).empty());
  CHECK(f.names(f.lookup_path("x").ino).empty());
  CHECK(f.lookup_path("clash").directory);
  CHECK(f.lookup_path("a.txt").size == 1);
}

TEST_CASE("a path that was never listed resolves with targeted listings") {
  fixture f;
  f.mem->put("deep/er/still/file.bin", pattern(1000, 1));
  f.mem->put("deep/er/still/file.bin2", "other");
  f.mem->put("deep/er/still/file.bin-", "other");
  auto a = f.lookup_path("deep/er/still/file.bin");
  CHECK_FALSE(a.directory);
  CHECK(a.size == 1000);
  CHECK(f.mem->lists < 10);
  CHECK_THROWS(f.lookup_path("deep/er/nothing"));
  auto missing = test::run(f.fs->lookup(root_ino, "nope"));
  CHECK(missing.error() == errc::not_found);
}

TEST_CASE("a mount prefix shows only what is under it") {
  fixture f("train/");
  f.mem->put("train/a", "1");
  f.mem->put("train/sub/b", "2");
  f.mem->put("test/c", "3");
  CHECK(f.names(root_ino) == std::vector<std::string>{"a", "sub/"});
  CHECK_THROWS(f.lookup_path("test"));
}

TEST_CASE("reads are byte-exact at every offset and across chunk boundaries") {
  fixture f;
  const std::string data = pattern(5 * chunk + 123, 2);
  f.mem->put("obj", data);
  auto a = f.lookup_path("obj");
  auto file = test::run(f.fs->open(a.ino));
  REQUIRE(file);
  for (std::uint64_t off : {0ull, 1ull, chunk - 1ull, chunk + 0ull, 3ull * chunk + 7, data.size() - 1ull}) {
    for (std::size_t n : {1ul, 100ul, chunk + 0ul, 2ul * chunk + 5}) {
      INFO("offset " << off << " size " << n);
      CHECK(f.read(*file, off, n) == data.substr(off, n));
    }
  }
  CHECK(f.read(*file, data.size(), 10).empty());
  CHECK(f.read(*file, data.size() + 100, 10).empty());
}

TEST_CASE("sequential reads fetch ahead; random reads fetch only what they touch") {
  fixture f;
  const std::string data = pattern(32 * chunk, 3);
  f.mem->put("seq", data);
  f.mem->put("rnd", data);
  auto seq = test::run(f.fs->open(f.lookup_path("seq").ino));
  std::string got;
  for (std::uint64_t off = 0; off < 4 * chunk; off += chunk / 2) got += f.read(*seq, off, chunk / 2);
  CHECK(got == data.substr(0, 4 * chunk));
  // Reading 4 chunks sequentially made the cache fetch beyond them.
  auto gets_after_seq = f.mem->gets.load();
  CHECK(gets_after_seq > 4);
  CHECK(f.cache->contains(f.cache->chunk((*seq)->object, 6)));

  auto rnd = test::run(f.fs->open(f.lookup_path("rnd").ino));
  std::vector<std::uint64_t> offsets = {20 * chunk + 5, 3 * chunk + 1, 27 * chunk, 11 * chunk + 99};
  for (auto off : offsets) CHECK(f.read(*rnd, off, 10) == data.substr(off, 10));
  CHECK(f.mem->gets.load() - gets_after_seq == offsets.size());
}

TEST_CASE("an object replaced after open: precondition error, never mixed bytes; a new open sees it") {
  fixture f;
  const std::string v1 = pattern(8 * chunk, 4), v2 = pattern(8 * chunk, 5);
  f.mem->put("obj", v1);
  auto a = f.lookup_path("obj");
  auto file = test::run(f.fs->open(a.ino));
  CHECK(f.read(*file, 0, 100) == v1.substr(0, 100));
  f.mem->put("obj", v2);
  auto r = test::run(f.fs->read(*file, 7 * chunk, 100));  // not fetched yet
  CHECK(r.error() == errc::precondition_failed);
  auto reopened = test::run(f.fs->open(a.ino));
  REQUIRE(reopened);
  CHECK((*reopened)->etag != (*file)->etag);
  CHECK_FALSE((*reopened)->keep_cache);  // the kernel must drop the old version's pages
  CHECK(f.read(*reopened, 7 * chunk, 100) == v2.substr(7 * chunk, 100));
}

TEST_CASE("inodes are stable while referenced and freed on forget") {
  fixture f;
  f.mem->put("d/x", "1");
  auto d1 = f.lookup_path("d");
  auto d2 = f.lookup_path("d");
  CHECK(d1.ino == d2.ino);
  auto before = f.fs->inode_count();
  f.fs->forget(d1.ino, 1);
  CHECK(f.fs->inode_count() == before);  // still one lookup outstanding
  f.fs->forget(d1.ino, 1);
  CHECK(f.fs->inode_count() == before - 1);
  CHECK(f.fs->getattr(d1.ino).error() == errc::not_found);
  CHECK(f.fs->getattr(root_ino));
}

namespace {
struct shard_set {
  explicit shard_set(fixture& f, int count, std::uint32_t chunks_each) {
    for (int i = 1; i <= count; ++i) {
      char name[32];
      std::snprintf(name, sizeof name, "shard_%04d.tar", i);
      etags[name] = f.mem->put(name, pattern(chunks_each * chunk, i));
      sizes[name] = std::uint64_t{chunks_each} * chunk;
    }
  }
  bool fully_cached(fixture& f, const std::string& key, std::uint32_t chunks) {
    for (std::uint32_t c = 0; c < chunks; ++c)
      if (!f.cache->contains(f.cache->chunk(cache::make_version("", key, etags.at(key), sizes.at(key)), c))) return false;
    return true;
  }
  bool any_cached(fixture& f, const std::string& key, std::uint32_t chunks) {
    for (std::uint32_t c = 0; c < chunks; ++c)
      if (f.cache->contains(f.cache->chunk(cache::make_version("", key, etags.at(key), sizes.at(key)), c))) return true;
    return false;
  }
  std::map<std::string, std::string> etags;
  std::map<std::string, std::uint64_t> sizes;
};
}  // namespace

TEST_CASE("a sequential reader makes the next numbered files arrive whole; gaps are never requested") {
  fixture f;
  shard_set shards(f, 5, 4);
  f.mem->remove("shard_0004.tar");
  auto file = test::run(f.fs->open(f.lookup_path("shard_0002.tar").ino));
  CHECK(f.read(*file, 0, 1000).size() == 1000);  // the run drains the detached prefetches too
  CHECK(shards.fully_cached(f, "shard_0003.tar", 4));
  CHECK_FALSE(shards.any_cached(f, "shard_0005.tar", 4));  // 0004 is missing: the chain stops
  CHECK_FALSE(shards.any_cached(f, "shard_0001.tar", 4));  // never backwards
  CHECK(f.mem->heads == 0);  // sizes and ETags came from the listing
}

TEST_CASE(
    "readers following the listing: the read-ahead deepens, goes on from where it stopped, never "
    "twice") {
  fixture f("", 256 * chunk);
  options o;
  o.lookahead_files = 8;
  o.cold_read_direct_max = 0;
  f.reopen(o);
  // Names without digits: listing order, not numbered successors.
  std::vector<std::string> names, bodies, etags;
  for (int i = 0; i < 60; ++i) {
    names.push_back(std::string("img-") + static_cast<char>('a' + i / 26) +
                    static_cast<char>('a' + i % 26));
    bodies.push_back(pattern(1000 + i, i));
    etags.push_back(f.mem->put(names.back(), bodies.back()));
  }
  auto cached = [&](int i) {
    auto object = cache::make_version("", names[i], etags[i], bodies[i].size());
    return f.cache->contains(f.cache->chunk(object, 0));
  };
  REQUIRE(f.names(root_ino).size() == names.size());
  const auto gets_before = f.mem->gets.load();
  int waited = 0;
  auto read = [&](int i) {
    if (!cached(i)) ++waited;  // its reader waits for a GET
    auto file = test::run(f.fs->open(f.lookup_path(names[i]).ino));
    REQUIRE(file);
    CHECK(f.read(*file, 0, 4096) == bodies[i]);  // (the run drains the fetches started ahead)
    f.fs->release(*file);
  };
  SUBCASE("one reader") {
    for (int i = 0; i < 50; ++i) {
      read(i);
      // Depth 2, 4, then the --lookahead bound of 8: exactly the next files up to it, none beyond.
      const int depth = std::min(8, 2 << std::min(i, 10));
      for (int k = i + 1; k <= i + depth; ++k)
        CHECK_MESSAGE(cached(k), "file " << k << " after " << i);
      CHECK_MESSAGE(!cached(i + depth + 1), "file " << i + depth + 1 << " after " << i);
    }
    CHECK(waited == 1);                                 // only the first file
    CHECK(f.mem->gets.load() - gets_before == 50 + 8);  // each file once
  }
  SUBCASE("readers taking the next names in turn open them out of order") {
    int furthest = -1;
    for (int j = 0; j < 50; ++j) {
      const int i = j ^ 1;  // 1, 0, 3, 2, 5, 4, ...
      read(i);
      furthest = std::max(furthest, i);
      if (j < 3) continue;  // (the first depths)
      // The depth reached the bound and stays there: 8 or 9 files past the furthest opened.
      for (int k = furthest + 1; k <= furthest + 8; ++k)
        CHECK_MESSAGE(cached(k), "file " << k << " after " << i);
      CHECK_MESSAGE(!cached(furthest + 10), "file " << furthest + 10 << " after " << i);
    }
    CHECK(waited == 2);  // the first two
    std::uint64_t files_cached = 0;
    for (int k = 0; k < 60; ++k) files_cached += cached(k);
    CHECK(f.mem->gets.load() - gets_before == files_cached);  // each file once
  }
}

TEST_CASE("with a training order, the next files are the manifest's, across epochs") {
  fixture f;
  shard_set shards(f, 5, 3);
  f.fs.reset();
  options o;
  o.lookahead_files = 2;
  o.order = std::make_shared<prefetch::predictor>(std::vector<std::string>{
      "shard_0005.tar", "shard_0001.tar", "shard_0003.tar", "shard_0005.tar", "shard_0002.tar"});
  f.reopen(o);
  auto file = test::run(f.fs->open(f.lookup_path("shard_0005.tar").ino));
  f.read(*file, 0, 10);
  CHECK(shards.fully_cached(f, "shard_0001.tar", 3));
  CHECK(shards.fully_cached(f, "shard_0003.tar", 3));
  CHECK_FALSE(shards.any_cached(f, "shard_0002.tar", 3));
  CHECK_FALSE(shards.any_cached(f, "shard_0004.tar", 3));
  // Epoch 2 of shard_0005 (after 0003): its successor in the order is 0002.
  auto third = test::run(f.fs->open(f.lookup_path("shard_0003.tar").ino));
  f.read(*third, 0, 10);
  auto again = test::run(f.fs->open(f.lookup_path("shard_0005.tar").ino));
  f.read(*again, 0, 10);
  CHECK(shards.fully_cached(f, "shard_0002.tar", 3));
}

TEST_CASE("warm-up fetches the first files of the order before any read") {
  fixture f;
  shard_set shards(f, 3, 2);
  test::run(f.fs->warm_up({"shard_0002.tar", "shard_0003.tar"}));
  CHECK(shards.fully_cached(f, "shard_0002.tar", 2));
  CHECK(shards.fully_cached(f, "shard_0003.tar", 2));
  CHECK_FALSE(shards.any_cached(f, "shard_0001.tar", 2));
}

TEST_CASE("random readers do not trigger whole-file prefetch") {
  fixture f;
  shard_set shards(f, 2, 8);
  auto file = test::run(f.fs->open(f.lookup_path("shard_0001.tar").ino));
  f.read(*file, 5 * chunk + 3, 10);
  CHECK_FALSE(shards.any_cached(f, "shard_0002.tar", 8));
}

TEST_CASE("with the start-up listing, lookups of known keys send no request") {
  fixture f;
  f.mem->put("dir/a.tar", "aaa");
  f.mem->put("top.tar", "tt");
  auto known = std::make_shared<std::map<std::string, s3::object_info>>();
  for (auto& k : {"dir/a.tar", "top.tar"}) (*known)[k] = *test::run(f.mem->head(k));
  options o;
  o.known_objects = known;
  f.reopen(o);
  auto lists = f.mem->lists.load();
  CHECK(f.lookup_path("dir").directory);
  auto a = f.lookup_path("dir/a.tar");
  CHECK(a.size == 3);
  CHECK(f.lookup_path("top.tar").size == 2);
  CHECK(f.mem->lists.load() == lists);
  auto file = test::run(f.fs->open(a.ino));
  CHECK(f.read(*file, 0, 3) == "aaa");
  // A key added after start-up is still found by asking S3.
  f.mem->put("late.tar", "l");
  CHECK(f.lookup_path("late.tar").size == 1);
}

TEST_CASE("a live order hint replaces what is prefetched next, warms up its first files, and can be cleared") {
  fixture f;
  shard_set shards(f, 6, 2);
  // No order: the numbered successor comes next.
  auto one = test::run(f.fs->open(f.lookup_path("shard_0001.tar").ino));
  f.read(*one, 0, 10);
  CHECK(shards.fully_cached(f, "shard_0002.tar", 2));
  CHECK_FALSE(shards.any_cached(f, "shard_0005.tar", 2));
  CHECK_FALSE(shards.any_cached(f, "shard_0006.tar", 2));

  // A hint (with a comment, a blank line, an unknown key and a directory-like line).
  auto lists = f.mem->lists.load();
  auto u = test::run(f.fs->set_order("# epoch 2\nshard_0006.tar\n\nmissing.tar\nshard_0004.tar\nshard_0001.tar\n"
                                     "shard_0005.tar\ndir/\n",
                                     "hint"));
  REQUIRE(u);
  CHECK(u->keys == 4);
  CHECK(u->skipped == 2);
  CHECK_FALSE(u->cleared);
  CHECK(f.mem->lists.load() > lists);  // unknown keys: checked against a fresh listing
  // Warm-up: the first files of the new order (lookahead 2) are fetched at once.
  CHECK(shards.fully_cached(f, "shard_0006.tar", 2));
  CHECK(shards.fully_cached(f, "shard_0004.tar", 2));
  REQUIRE(f.fs->order());
  CHECK(f.fs->order()->source == "hint");
  auto text = f.fs->order_text();
  CHECK(text.find("from hint: 4 keys") != std::string::npos);
  CHECK(text.find("# skipped line 4: missing.tar: no such key") != std::string::npos);
  CHECK(text.find("\nshard_0006.tar\nshard_0004.tar\nshard_0001.tar\nshard_0005.tar\n") != std::string::npos);

  // Reading shard_0001 now prefetches what follows it in the hint (0005), not its numbered
  // successors.
  auto again = test::run(f.fs->open(f.lookup_path("shard_0001.tar").ino));
  f.read(*again, 0, 10);
  CHECK(shards.fully_cached(f, "shard_0005.tar", 2));

  // Nothing usable: refused, the order in force stays.
  auto bad = test::run(f.fs->set_order("nope.tar\nalso-nope.tar\n", "hint"));
  REQUIRE_FALSE(bad);
  CHECK(bad.error() == errc::invalid_argument);
  CHECK(f.fs->order()->predictor->keys().size() == 4);

  // No key line at all: cleared (no listing needed), back to numbered successors.
  lists = f.mem->lists.load();
  auto cleared = test::run(f.fs->set_order("# nothing this time\n\n", "hint"));
  REQUIRE(cleared);
  CHECK(cleared->cleared);
  CHECK(f.mem->lists.load() == lists);
  CHECK_FALSE(f.fs->order());
  CHECK(f.fs->order_text().find("none") != std::string::npos);
  auto two = test::run(f.fs->open(f.lookup_path("shard_0002.tar").ino));
  f.read(*two, 0, 10);
  CHECK(shards.fully_cached(f, "shard_0003.tar", 2));
}

TEST_CASE("the control directory: found by name, never listed, one file") {
  fixture f;
  f.mem->put("a.tar", "a");
  f.mem->put(".valkyrie/shadowed.tar", "s");  // a bucket's own key there is shadowed
  auto dir = f.lookup_path(".valkyrie");
  CHECK(dir.ino == control_dir_ino);
  CHECK(dir.directory);
  CHECK(dir.control);
  auto order = f.lookup_path(".valkyrie/order");
  CHECK(order.ino == order_file_ino);
  CHECK_FALSE(order.directory);
  CHECK(f.fs->getattr(order_file_ino)->control);
  CHECK_THROWS(f.lookup_path(".valkyrie/shadowed.tar"));
  CHECK(f.names(root_ino) == std::vector<std::string>{"a.tar"});
  CHECK(f.names(control_dir_ino) == std::vector<std::string>{"order"});

  // --no-control-files: an ordinary namespace.
  options o;
  o.control_files = false;
  f.reopen(o);
  CHECK_FALSE(f.lookup_path(".valkyrie").control);
  CHECK(f.lookup_path(".valkyrie/shadowed.tar").size == 1);
  CHECK(f.names(root_ino) == std::vector<std::string>{".valkyrie/", "a.tar"});
}

TEST_CASE("read-ahead still queued when the file is closed, or when its reader turns random, is dropped") {
  for (bool close_it : {true, false}) {
    CAPTURE(close_it);
    fixture f;
    shard_set shards(f, 1, 12);
    options o;
    o.max_readahead_chunks = 8;
    o.lookahead_files = 0;
    o.cold_read_direct_max = 0;
    f.cache->set_prefetch_limit(1);  // one read-ahead GET at a time: the rest wait their turn
    f.reopen(o, std::chrono::milliseconds(30));
    auto file = *test::run(f.fs->open(f.lookup_path("shard_0001.tar").ino));
    auto gets_before = f.mem->gets.load();
    test::run([](filesystem* fs, std::shared_ptr<open_file> file, bool close_it) -> awaitable<void> {
      auto first = co_await fs->read(file, 0, 100);  // sequential from 0: chunks 1-4 queued
      if (close_it) {
        fs->release(file);
      } else {
        auto jump = co_await fs->read(file, 10 * chunk, 100);  // random: the window collapses
      }
    }(f.fs.get(), file, close_it));
    // Chunk 0 (the reader's) and at most the read-ahead chunks that had started; never all four.
    auto gets = f.mem->gets.load() - gets_before;
    CHECK(gets <= 1 + 2 + (close_it ? 0 : 1));
    CHECK_FALSE(shards.fully_cached(f, "shard_0001.tar", 5));
    CHECK_FALSE(f.cache->contains(f.cache->chunk(file->object, 4)));
  }
}

TEST_CASE("a cold small read at a stream's start gets its own GET of just its bytes; the chunk is filled beside it") {
  fixture f;
  shard_set shards(f, 1, 4);
  options o;
  o.lookahead_files = 0;
  o.max_readahead_chunks = 0;  // (only the requests of the read itself are counted)
  o.cold_read_direct_max = 4096;
  o.cold_read_direct_min_chunk = 0;
  f.reopen(o, std::chrono::milliseconds(20));
  auto file = *test::run(f.fs->open(f.lookup_path("shard_0001.tar").ino));
  const std::string whole = pattern(4 * chunk, 1);
  auto gets = f.mem->gets.load(), bytes = f.mem->bytes.load();
  // A 100-byte read of the cold start of the file: the bytes, then the chunk in the cache too.
  CHECK(f.read(file, 10, 100) == whole.substr(10, 100));
  CHECK(f.mem->gets.load() - gets == 2);
  CHECK(f.mem->bytes.load() - bytes == 100 + chunk);
  CHECK(f.cache->contains(f.cache->chunk(file->object, 0)));
  // Now cached: no request. A random reader's small read elsewhere: through the cache, the
  // block it touches (here the whole chunk: blocks are not smaller than the test's chunks).
  gets = f.mem->gets.load();
  auto again = *test::run(f.fs->open(f.lookup_path("shard_0001.tar").ino));
  CHECK(f.read(again, 5, 100) == whole.substr(5, 100));
  CHECK(f.mem->gets.load() == gets);
  CHECK(f.read(file, 2 * chunk + 10, 100) == whole.substr(2 * chunk + 10, 100));
  CHECK(f.mem->gets.load() - gets == 1);
}

TEST_CASE("a small peek at a file's start reads one chunk ahead; a big first read starts a wider window") {
  fixture f;
  shard_set shards(f, 2, 8);
  options o;
  o.lookahead_files = 0;
  o.cold_read_direct_max = 0;
  f.reopen(o);
  auto peek = *test::run(f.fs->open(f.lookup_path("shard_0001.tar").ino));
  f.read(peek, 0, 512);  // a header
  CHECK(f.cache->contains(f.cache->chunk(peek->object, 1)));
  CHECK_FALSE(f.cache->contains(f.cache->chunk(peek->object, 2)));
  f.read(peek, 512, 512);  // it goes on reading: the window grows
  CHECK(f.cache->contains(f.cache->chunk(peek->object, 2)));
  auto whole = *test::run(f.fs->open(f.lookup_path("shard_0002.tar").ino));
  f.read(whole, 0, 2 * chunk);  // chunks 0 and 1, then four ahead
  CHECK(f.cache->contains(f.cache->chunk(whole->object, 5)));
  CHECK_FALSE(f.cache->contains(f.cache->chunk(whole->object, 6)));
}

TEST_CASE("reads of one stream that arrive out of order keep its read-ahead; a jump ends it") {
  fixture f;
  shard_set shards(f, 1, 16);
  options o;
  o.max_readahead_chunks = 4;
  o.lookahead_files = 0;
  o.cold_read_direct_max = 0;
  f.cache->set_prefetch_limit(1);  // one read-ahead GET at a time: the rest wait their turn
  f.reopen(o, std::chrono::milliseconds(20));
  auto file = *test::run(f.fs->open(f.lookup_path("shard_0001.tar").ino));
  const std::string whole = pattern(16 * chunk, 1);
  auto gets_before = f.mem->gets.load();
  test::run([](filesystem* fs, std::shared_ptr<open_file> file) -> awaitable<void> {
    // The kernel sent [0, c/2) and [c/2, c); a second reactor answers the later one first.
    auto later = co_await fs->read(file, chunk / 2, chunk / 2);
    auto earlier = co_await fs->read(file, 0, chunk / 2);
  }(f.fs.get(), file));
  CHECK(file->stream->window() > 0);
  CHECK(file->stream->position() == chunk);  // the late read did not move the stream back
  // Every read-ahead chunk queued behind the one-at-a-time limit was still sent, none dropped.
  for (std::uint64_t c = 1; c <= 4; ++c) CHECK(f.cache->contains(f.cache->chunk(file->object, c)));
  CHECK(f.mem->gets.load() - gets_before == 5);
  // A jump, forward or back by more than a chunk: a random read. The window closes and only
  // the chunk read is fetched.
  auto gets = f.mem->gets.load();
  CHECK(f.read(file, 12 * chunk + 7, 10) == whole.substr(12 * chunk + 7, 10));
  CHECK(file->stream->window() == 0);
  CHECK(f.read(file, 3 * chunk + 5, 10) == whole.substr(3 * chunk + 5, 10));  // (cached)
  CHECK(file->stream->window() == 0);
  CHECK(f.mem->gets.load() - gets == 1);
}

TEST_CASE("a random reader's miss fetches the aligned blocks it touches, not the whole chunk; a sequential one whole chunks") {
  fixture f;
  shard_set shards(f, 1, 16);
  options o;
  o.max_readahead_chunks = 4;
  o.lookahead_files = 0;
  o.cold_read_direct_max = 0;
  o.random_block_size = 16 * 1024;
  f.reopen(o);
  auto file = *test::run(f.fs->open(f.lookup_path("shard_0001.tar").ino));
  const std::string whole = pattern(16 * chunk, 1);
  auto bytes = f.mem->bytes.load();
  auto gets = f.mem->gets.load();
  // Far from the start: random. 10 bytes inside one block, then a read across two blocks.
  CHECK(f.read(file, 9 * chunk + 20000, 10) == whole.substr(9 * chunk + 20000, 10));
  CHECK(f.mem->bytes.load() - bytes == 16 * 1024);
  CHECK(f.read(file, 5 * chunk + 16 * 1024 - 100, 200) == whole.substr(5 * chunk + 16 * 1024 - 100, 200));
  CHECK(f.mem->bytes.load() - bytes == 3 * 16 * 1024);
  CHECK(f.mem->gets.load() - gets == 3);
  // The same block again: cached, no request.
  CHECK(f.read(file, 9 * chunk + 20005, 5) == whole.substr(9 * chunk + 20005, 5));
  CHECK(f.mem->gets.load() - gets == 3);
  // From the start of the file: a sequential reader, whole chunks and read-ahead.
  CHECK(f.read(file, 0, chunk) == whole.substr(0, chunk));
  CHECK(f.cache->contains(f.cache->chunk(file->object, 0)));
}
