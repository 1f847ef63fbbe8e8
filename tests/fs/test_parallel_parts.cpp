// The ranged fetch of a chunk a reader waits for: cut into 1 MiB parts (filesystem's
// demand_part_size), all in flight at once, put together byte-exact, and failing as a whole when
// one part fails.
#include <doctest/doctest.h>

#include "core/errors.hpp"
#include "counting_client.hpp"
#include "fs/filesystem.hpp"
#include "fs_fixture.hpp"
#include "helpers.hpp"

using namespace valkyrie;
using namespace valkyrie::fs;
using valkyrie::fs::test_support::pattern;

namespace {
constexpr std::uint64_t MiB = 1 << 20;
// Not a multiple of the 1 MiB part: each chunk is fetched as 1 MiB + 1 MiB + 300 KiB.
constexpr std::uint32_t big_chunk = 2 * MiB + 300 * 1024;

struct parts_fixture {
  parts_fixture() {
    options o;
    o.max_readahead_chunks = 0;  // only the reader's own fetches
    o.lookahead_files = 0;
    o.cold_read_direct_max = 0;
    o.random_block_size = big_chunk;  // a reader anywhere fetches whole chunks
    cache = std::make_shared<cache::chunk_cache>(8 * std::uint64_t{big_chunk}, big_chunk, 1);
    fs = std::make_unique<filesystem>(o, std::vector<std::shared_ptr<s3::object_client>>{client},
                                      cache);
  }
  std::shared_ptr<open_file> open(const std::string& name) {
    auto a = test::run(fs->lookup(root_ino, name));
    REQUIRE(a);
    auto f = test::run(fs->open(a->ino));
    REQUIRE(f);
    return *f;
  }
  result<std::string> read(std::shared_ptr<open_file> f, std::uint64_t off, std::size_t n) {
    auto r = test::run(fs->read(f, off, n));
    if (!r) return r.error();
    std::string out;
    for (auto& s : r->slices) out.append(s.data(), s.size());
    return out;
  }

  std::shared_ptr<s3::memory_client> mem = std::make_shared<s3::memory_client>();
  std::shared_ptr<test::counting_client> client = std::make_shared<test::counting_client>(mem);
  std::shared_ptr<cache::chunk_cache> cache;
  std::unique_ptr<filesystem> fs;
};
}  // namespace

TEST_CASE("a chunk a reader waits for comes in 1 MiB parts, all in flight at once, byte-exact") {
  parts_fixture f;
  const std::string data = pattern(2 * std::uint64_t{big_chunk} + 12345, 21);
  f.mem->put("obj", data);
  auto file = f.open("obj");
  // GETs wait until three are in flight together: parts sent one after another never get there
  // (they go after a 2 s deadline, and max_in_flight tells).
  f.client->hold_until(3);
  auto first = f.read(file, 0, big_chunk);
  REQUIRE(first);
  CHECK(*first == data.substr(0, big_chunk));
  CHECK(f.client->max_in_flight() == 3);
  auto gets = f.client->records();
  REQUIRE(gets.size() == 3);
  std::map<std::uint64_t, std::size_t> parts;
  for (auto& g : gets) parts[g.offset] = g.size;
  CHECK(parts == std::map<std::uint64_t, std::size_t>{{0, MiB}, {MiB, MiB}, {2 * MiB, 300 * 1024}});

  // The second chunk likewise, read across its parts' boundaries.
  f.client->reset();
  auto second = f.read(file, big_chunk, big_chunk);
  REQUIRE(second);
  CHECK(*second == data.substr(big_chunk, big_chunk));
  CHECK(f.client->max_in_flight() == 3);
  CHECK(f.client->get_count() == 3);

  // The last chunk is shorter than a part: one GET, nothing held back for it.
  f.client->hold_until(0);
  f.client->reset();
  auto last = f.read(file, 2 * std::uint64_t{big_chunk}, big_chunk);
  REQUIRE(last);
  CHECK(*last == data.substr(2 * std::uint64_t{big_chunk}));
  CHECK(f.client->get_count() == 1);

  // Everything is cached now: reads across part and chunk boundaries send nothing and are exact.
  f.client->reset();
  for (std::uint64_t off :
       {MiB - 7, 2 * MiB - 1, std::uint64_t{big_chunk} - 100, 2 * std::uint64_t{big_chunk} - 5})
    CHECK(f.read(file, off, 300).value() == data.substr(off, 300));
  CHECK(f.client->get_count() == 0);
}

TEST_CASE(
    "one failing part fails the whole fetch with its error; no partial chunk is cached or served") {
  for (std::uint64_t failing : {std::uint64_t{0}, MiB, 2 * MiB}) {
    CAPTURE(failing);
    parts_fixture f;
    const std::string data = pattern(2 * std::uint64_t{big_chunk}, 22);
    f.mem->put("obj", data);
    auto file = f.open("obj");
    f.client->fail_at(failing, make_error_code(errc::server_error), 1);
    // The bytes asked for lie in a part that arrived (except when the first part fails): the read
    // still fails, the chunk is not half there.
    auto r = f.read(file, failing == 0 ? MiB + 10 : 10, 100);
    REQUIRE_FALSE(r);
    CHECK(r.error() == errc::server_error);
    CHECK_FALSE(f.cache->contains(f.cache->chunk(file->object, 0)));
    CHECK(f.cache->check_invariants() == "");
    // The next read fetches the chunk again, whole and exact.
    f.client->reset();
    auto again = f.read(file, 0, big_chunk);
    REQUIRE(again);
    CHECK(*again == data.substr(0, big_chunk));
    CHECK(f.client->get_count() == 3);
  }
}
