// The shared cache tier: the chunk-object format (round trip; bad CRC, bad HMAC, wrong identity,
// truncation are rejected), the key layout, and the tier through a real chunk cache over an
// in-memory bucket (node 2 reads what node 1 stored with no origin fetch; 412 deduplication;
// faults, corrupt bodies and forged chunks are misses with exact bytes from the origin).
#include <doctest/doctest.h>

#include <atomic>
#include <set>

#include "cache/chunk_cache.hpp"
#include "core/errors.hpp"
#include "s3/fault_client.hpp"
#include "s3/memory_client.hpp"
#include "tier/shared_format.hpp"
#include "tier/shared_tier.hpp"
#include "tier_fixture.hpp"

using namespace valkyrie;
using namespace valkyrie::tier;
using test::chunk_of;
using test::idle;
using test::s3_fetch;

namespace test_shared_tier {

constexpr std::uint32_t cs = 64 * 1024;
const std::string origin = "http://origin.example:9000";

std::string chunk_bytes(const cache::chunk_id& id) {
  std::string s(id.length(), '\0');
  test::fill(std::span<char>(s), id.object->key, id.index);
  return s;
}

std::vector<std::span<const char>> one(const std::string& s) {
  return {std::span<const char>(s)};
}

awaitable<bool> read_through(cache::chunk_cache& c, shared_tier& tier, cache::chunk_id id,
                             std::shared_ptr<std::atomic<int>> calls,
                             std::size_t part = 16 * 1024) {
  return test::read_through(c, tier, std::move(id), std::move(calls), part);
}

std::vector<cache::chunk_id> dataset() {
  std::vector<cache::chunk_id> ids;
  for (int f = 0; f < 3; ++f)
    for (std::uint64_t c = 0; c < 3; ++c)
      ids.push_back(chunk_of("data/f" + std::to_string(f), c, cs, 2 * cs + 5000));
  return ids;
}

shared_options small_opts(std::string key = "") {
  shared_options o;
  o.prefix = "cache/";
  o.origin = origin;
  o.mac_key = std::move(key);
  o.small_chunk = 8 * 1024;  // the last chunks (5000 bytes) in one GET, the others in parts
  o.write_back_bytes = 4 * cs;
  o.backoff = std::chrono::milliseconds(60000);
  return o;
}

// Node 1 reads the dataset through its tier and stores it; returns after the stores finished.
void fill_bucket(test::io_loop& io, std::shared_ptr<s3::object_client> bucket, shared_options o) {
  auto calls = std::make_shared<std::atomic<int>>(0);
  auto c = std::make_shared<cache::chunk_cache>(32 * cs, cs, 1);
  auto tier =
      std::make_shared<shared_tier>(o, std::vector<std::shared_ptr<s3::object_client>>{bucket}, c);
  for (auto& id : dataset()) REQUIRE(io.run(read_through(*c, *tier, id, calls)));
  io.run(idle());
  REQUIRE(tier->write_back_pending() == 0);
  REQUIRE(tier->counts().puts == dataset().size());
}

TEST_CASE("shared format: round trip with and without a key") {
  auto id = chunk_of("a/b.tar", 1, cs, 2 * cs + 5000);
  const std::string data = chunk_bytes(id);
  for (std::string key : {std::string(), std::string("k3y-of-32-bytes-0123456789abcdef")}) {
    auto h = shared_header(origin, id, one(data), key);
    CHECK(h.size() == shared_header_size(origin, id));
    CHECK(check_shared_chunk(h, origin, id, one(data), key) == shared_check::ok);
    // Data in pieces checks the same as in one.
    std::vector<std::span<const char>> pieces{std::span<const char>(data).subspan(0, 1000),
                                              std::span<const char>(data).subspan(1000)};
    CHECK(check_shared_chunk(h, origin, id, pieces, key) == shared_check::ok);
  }
}

TEST_CASE("shared format: bad CRC, bad HMAC, wrong identity, truncation are rejected") {
  auto id = chunk_of("a/b.tar", 1, cs, 2 * cs + 5000);
  std::string data = chunk_bytes(id);
  const std::string key = "k3y-of-32-bytes-0123456789abcdef";
  auto h = shared_header(origin, id, one(data), "");
  auto hk = shared_header(origin, id, one(data), key);

  std::string flipped = data;
  flipped[777] ^= 1;
  CHECK(check_shared_chunk(h, origin, id, one(flipped), "") == shared_check::bad_crc);
  // A forger who recomputes the CRC still lacks the key.
  auto forged = shared_header(origin, id, one(flipped), "another key of 32 bytes.........");
  CHECK(check_shared_chunk(forged, origin, id, one(flipped), "") ==
        shared_check::ok);  // (no key: trusted)
  CHECK(check_shared_chunk(forged, origin, id, one(flipped), key) == shared_check::bad_mac);
  // No HMAC at all, read by a node with a key.
  CHECK(check_shared_chunk(h, origin, id, one(data), key) == shared_check::bad_mac);
  // A flipped header byte (the CRC field) under a key.
  std::string hk2 = hk;
  hk2[20] ^= 1;
  CHECK(check_shared_chunk(hk2, origin, id, one(data), key) != shared_check::ok);

  // Another chunk, version, object, bucket or origin is not this chunk.
  CHECK(check_shared_chunk(h, origin, chunk_of("a/b.tar", 0, cs, 2 * cs + 5000), one(data), "") !=
        shared_check::ok);
  CHECK(check_shared_chunk(h, origin, chunk_of("a/b.tar", 1, cs, 2 * cs + 5000, "\"e2\""),
                           one(data), "") == shared_check::wrong_identity);
  CHECK(check_shared_chunk(h, origin, chunk_of("a/c.tar", 1, cs, 2 * cs + 5000), one(data), "") !=
        shared_check::ok);
  CHECK(check_shared_chunk(h, "http://other:9000", id, one(data), "") != shared_check::ok);
  cache::chunk_id other_bucket{cache::make_version("bucket2", "a/b.tar", "\"e1\"", 2 * cs + 5000),
                               cs, 1};
  CHECK(check_shared_chunk(h, origin, other_bucket, one(data), "") != shared_check::ok);

  // Truncated: short data, short header, empty, garbage.
  CHECK(check_shared_chunk(h, origin, id, one(data.substr(0, data.size() - 1)), "") ==
        shared_check::bad_length);
  CHECK(check_shared_chunk(std::span<const char>(h).subspan(0, h.size() - 1), origin, id, one(data),
                           "") != shared_check::ok);
  CHECK(check_shared_chunk(std::span<const char>(h).subspan(0, 10), origin, id, one(data), "") !=
        shared_check::ok);
  CHECK(check_shared_chunk({}, origin, id, one(data), "") == shared_check::bad_header);
  CHECK(check_shared_chunk(std::string(h.size(), 'x'), origin, id, one(data), "") ==
        shared_check::bad_header);
}

TEST_CASE(
    "shared key layout: versioned, plain keys kept, odd keys hashed, every part of the identity "
    "counts") {
  auto k = shared_chunk_key("p/", origin,
                            chunk_of("data/shard_000001.tar", 3, 8 << 20, 100 << 20, "\"abc-2\""));
  CHECK(k.rfind("p/v1/", 0) == 0);
  CHECK(k.find("/k/data/shard_000001.tar/abc-2/8388608/3") != std::string::npos);
  std::set<std::string> keys;
  for (std::string odd : std::vector<std::string>{"a b", "../x", "a//b", "/lead", "trail/", "ünï",
                                                  std::string(600, 'x'), "a?b=c&d", "."}) {
    auto key = shared_chunk_key("p/", origin, chunk_of(odd, 0, cs, 10));
    CHECK(key.find("/h/") != std::string::npos);
    CHECK(key.size() < 200);
    for (char c : key)
      CHECK((std::isalnum(static_cast<unsigned char>(c)) ||
             std::string("/-._").find(c) != std::string::npos));
    keys.insert(key);
  }
  CHECK(keys.size() == 9);
  auto base = chunk_of("f", 0, cs, 10);
  std::set<std::string> variants{
      shared_chunk_key("", origin, base),
      shared_chunk_key("", "http://o2", base),
      shared_chunk_key("", origin, chunk_of("f", 1, cs, 10)),
      shared_chunk_key("", origin, chunk_of("f", 0, cs / 2, 10)),
      shared_chunk_key("", origin, chunk_of("f", 0, cs, 10, "\"e2\"")),
      shared_chunk_key("", origin, chunk_of("f", 0, cs, 10, "\"weird/etag\""))};
  CHECK(variants.size() == 6);
}

TEST_CASE("shared tier: node 2 reads what node 1 stored, with no origin fetch, bytes exact") {
  test::io_loop io;
  auto bucket = std::make_shared<s3::memory_client>();
  fill_bucket(io, bucket, small_opts());
  CHECK(bucket->puts == dataset().size());

  auto calls = std::make_shared<std::atomic<int>>(0);
  auto c2 = std::make_shared<cache::chunk_cache>(32 * cs, cs, 1);
  auto tier2 = std::make_shared<shared_tier>(
      small_opts(), std::vector<std::shared_ptr<s3::object_client>>{bucket}, c2);
  for (auto& id : dataset()) CHECK(io.run(read_through(*c2, *tier2, id, calls)));
  CHECK(calls->load() == 0);
  CHECK(tier2->counts().hits == dataset().size());
  CHECK(tier2->counts().check_failures == 0);
  CHECK(tier2->counts().bytes_read == 3 * (2 * cs + 5000));
  // Hits are not stored again.
  io.run(idle());
  CHECK(bucket->puts == dataset().size());
  CHECK(c2->check_invariants() == "");
}

TEST_CASE("shared tier: a chunk another node stored first is a 412, counted as deduplicated") {
  test::io_loop io;
  auto bucket = std::make_shared<s3::memory_client>();
  fill_bucket(io, bucket, small_opts());
  auto faults = std::make_shared<s3::fault_client>(bucket);
  faults->fail_next(1, make_error_code(errc::not_found));  // node 2 misses once (as in a race)
  auto calls = std::make_shared<std::atomic<int>>(0);
  auto c2 = std::make_shared<cache::chunk_cache>(32 * cs, cs, 1);
  auto tier2 = std::make_shared<shared_tier>(
      small_opts(), std::vector<std::shared_ptr<s3::object_client>>{faults}, c2);
  auto id = dataset()[0];
  CHECK(io.run(read_through(*c2, *tier2, id, calls)));
  io.run(idle());
  CHECK(calls->load() == 1);
  CHECK(tier2->counts().puts_deduplicated == 1);
  CHECK(tier2->counts().puts == 0);
  CHECK(bucket->put_conflicts == 1);
}

TEST_CASE("shared tier: errors are misses served by the origin; repeated errors step aside") {
  test::io_loop io;
  auto bucket = std::make_shared<s3::memory_client>();
  fill_bucket(io, bucket, small_opts());
  for (auto ec : {errc::server_error, errc::connection_reset, errc::timeout, errc::access_denied,
                  errc::no_such_bucket}) {
    INFO(make_error_code(ec).message());
    auto faults = std::make_shared<s3::fault_client>(bucket);
    faults->fail_with_probability(1, make_error_code(ec));
    auto calls = std::make_shared<std::atomic<int>>(0);
    auto c2 = std::make_shared<cache::chunk_cache>(32 * cs, cs, 1);
    auto o = small_opts();
    o.errors_before_backoff = 3;
    auto tier2 = std::make_shared<shared_tier>(
        o, std::vector<std::shared_ptr<s3::object_client>>{faults}, c2);
    for (auto& id : dataset()) CHECK(io.run(read_through(*c2, *tier2, id, calls)));
    io.run(idle());
    CHECK(calls->load() ==
          static_cast<int>(dataset().size()));  // every byte from the origin, exact
    CHECK(tier2->counts().hits == 0);
    CHECK(tier2->backing_off());
    CHECK(tier2->counts().errors >= 3);
    // Stepped aside after 3 failed GETs (of 1-3 requests each) and maybe a failed PUT: not
    // one request per chunk.
    CHECK(faults->injected.load() < 3 * 4);
  }
}

TEST_CASE("shared tier: a corrupt body and forged chunks are rejected and counted; bytes exact") {
  test::io_loop io;
  auto bucket = std::make_shared<s3::memory_client>();
  const std::string key = "the shared key of the good nodes";
  fill_bucket(io, bucket, small_opts(key));
  auto ids = dataset();
  shared_tier probe(small_opts(key), {bucket}, nullptr);
  // Chunk 0: bad CRC (a data byte flipped in the stored object).
  {
    std::vector<char> obj(shared_header_size(origin, ids[0]) + ids[0].length());
    REQUIRE(io.run(bucket->get(probe.object_key(ids[0]), 0, std::span<char>(obj), "")).value() ==
            obj.size());
    obj.back() ^= 1;
    bucket->put(probe.object_key(ids[0]), std::string(obj.begin(), obj.end()));
  }
  // Chunk 1: other bytes, written with another key (the CRC is right).
  {
    std::string fake(ids[1].length(), 'F');
    bucket->put(probe.object_key(ids[1]),
                shared_header(origin, ids[1], one(fake), "a forger's key") + fake);
  }
  // Chunk 2: other bytes, no HMAC at all.
  {
    std::string fake(ids[2].length(), 'G');
    bucket->put(probe.object_key(ids[2]), shared_header(origin, ids[2], one(fake), "") + fake);
  }
  // Chunk 3: truncated.
  {
    std::vector<char> obj(shared_header_size(origin, ids[3]) + ids[3].length());
    REQUIRE(io.run(bucket->get(probe.object_key(ids[3]), 0, std::span<char>(obj), "")).value() ==
            obj.size());
    bucket->put(probe.object_key(ids[3]), std::string(obj.begin(), obj.end() - 100));
  }
  auto faults = std::make_shared<s3::fault_client>(bucket);
  auto calls = std::make_shared<std::atomic<int>>(0);
  auto c2 = std::make_shared<cache::chunk_cache>(32 * cs, cs, 1);
  auto tier2 = std::make_shared<shared_tier>(
      small_opts(key), std::vector<std::shared_ptr<s3::object_client>>{faults}, c2);
  for (std::size_t i = 0; i < 4; ++i) CHECK(io.run(read_through(*c2, *tier2, ids[i], calls)));
  CHECK(calls->load() == 4);
  CHECK(tier2->counts().check_failures == 4);
  // Chunk 4: a body corrupted in flight (one byte flipped in a GET's answer).
  faults->corrupt_next(1);
  CHECK(io.run(read_through(*c2, *tier2, ids[4], calls)));
  CHECK(calls->load() == 5);
  CHECK(tier2->counts().check_failures == 5);
  // The rest are good.
  for (std::size_t i = 5; i < ids.size(); ++i)
    CHECK(io.run(read_through(*c2, *tier2, ids[i], calls)));
  CHECK(calls->load() == 5);
  CHECK(tier2->counts().hits == ids.size() - 5);
  CHECK(!tier2->backing_off());  // (check failures are not errors of the store)
  io.run(idle());
}

TEST_CASE("shared tier: the store queue drops under pressure, never delaying a reader") {
  test::io_loop io;
  auto bucket = std::make_shared<s3::memory_client>();
  auto o = small_opts();
  o.max_queued = 2;
  o.write_back_bytes = 1;  // one store at a time
  auto calls = std::make_shared<std::atomic<int>>(0);
  auto c = std::make_shared<cache::chunk_cache>(32 * cs, cs, 1);
  auto slow = std::make_shared<s3::fault_client>(bucket);
  slow->set_delay(std::chrono::milliseconds(20));  // every GET and PUT takes a while
  auto tier =
      std::make_shared<shared_tier>(o, std::vector<std::shared_ptr<s3::object_client>>{slow}, c);
  // All readers at once: their chunks finish together and queue more stores than fit.
  int ok = 0;
  auto started = std::chrono::steady_clock::now();
  for (auto& id : dataset())
    asio::co_spawn(io.ctx, read_through(*c, *tier, id, calls),
                   [&ok](std::exception_ptr, bool r) { ok += r; });
  io.ctx.restart();
  while (ok < static_cast<int>(dataset().size()) && io.ctx.run_one() > 0) {
  }
  CHECK(ok == static_cast<int>(dataset().size()));
  // The readers waited for one shared-store GET (20 ms), not for the stores behind them.
  CHECK(std::chrono::steady_clock::now() - started < std::chrono::milliseconds(20 * 5));
  io.run(idle());
  CHECK(tier->write_back_pending() == 0);
  CHECK(tier->counts().writes_dropped > 0);
  CHECK(tier->counts().puts + tier->counts().writes_dropped == dataset().size());
}
}  // namespace test_shared_tier
