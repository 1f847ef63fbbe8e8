// disk_store: restart without data reads, bit flips, ETag changes, the lock, the exact cap,
// CLOCK eviction, I/O faults (EIO, ENOSPC, short reads, a slow disk) and the replay time of 100,000
// records.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <thread>

#include "tier/journal.hpp"
#include "tier_fixture.hpp"

using namespace valkyrie;
using namespace valkyrie::tier;
using test::aligned_buffer;
using test::chunk_of;
using test::get;
using test::put;

namespace test_disk_store {

constexpr std::uint32_t cs = 64 * 1024;
constexpr std::uint64_t stride = disk_store::header_bytes + cs;

store_options options_for(const test::temp_dir& dir, std::uint64_t slots,
                          std::shared_ptr<fault_plan> plan = nullptr) {
  return test::store_options_for(dir, slots, cs, 2, std::move(plan));
}

std::uint64_t dir_data_bytes(const test::temp_dir& dir) {
  std::uint64_t n = 0;
  for (auto& e : std::filesystem::directory_iterator(dir.path()))
    if (e.path().filename().string().rfind("data.", 0) == 0) n += e.file_size();
  return n;
}

TEST_CASE("store: chunks survive a restart, indexed without reading data, bytes exact") {
  test::temp_dir dir;
  test::io_loop io;
  std::vector<cache::chunk_id> ids;
  // Whole chunks and a short last one (an object of 2.5 chunks).
  for (int f = 0; f < 6; ++f)
    for (std::uint64_t c = 0; c < 3; ++c)
      ids.push_back(chunk_of("file" + std::to_string(f), c, cs, 2 * cs + cs / 2 + 100));
  {
    auto s = disk_store::open(options_for(dir, 32));
    for (auto& id : ids) CHECK(put(io, *s, id));
    CHECK(s->stats().used_slots == ids.size());
    CHECK(!put(io, *s, ids[0]));  // (already there)
  }
  auto plan = std::make_shared<fault_plan>();
  auto s = disk_store::open(options_for(dir, 32, plan));
  CHECK(plan->reads == 0);  // the index comes from the journal alone
  CHECK(s->stats().used_slots == ids.size());
  for (auto& id : ids) CHECK(s->contains(id));
  for (auto& id : ids) CHECK(get(io, *s, id));
  CHECK(plan->reads == ids.size());  // (each chunk's header and data in one request)
  CHECK(s->stats().hits == ids.size());
  CHECK(s->stats().check_failures == 0);
}

TEST_CASE(
    "store: a kill -9 before the journal append leaves no chunk; one after, the whole chunk") {
  // A chunk is journaled only after its writes complete: the journal as it was before the
  // write (a kill -9 in mid-write) has no record of it.
  test::temp_dir dir;
  test::io_loop io;
  auto a = chunk_of("a", 0, cs, cs), b = chunk_of("b", 0, cs, cs);
  std::string journal_before;
  {
    auto s = disk_store::open(options_for(dir, 4));
    CHECK(put(io, *s, a));
    std::ifstream f(dir.path() / "journal", std::ios::binary);
    journal_before.assign(std::istreambuf_iterator<char>(f), {});
    CHECK(put(io, *s, b));
    // (the destructor's checkpoint is what a clean stop writes; undo it below)
  }
  {
    std::ofstream f(dir.path() / "journal", std::ios::binary | std::ios::trunc);
    f.write(journal_before.data(), static_cast<std::streamsize>(journal_before.size()));
  }
  auto s = disk_store::open(options_for(dir, 4));
  CHECK(s->contains(a));
  CHECK(!s->contains(b));
  CHECK(get(io, *s, a));
}

TEST_CASE("store: the journal is checkpointed while running; what it says survives a restart") {
  // Each write into a full store appends a remove and an insert: past 2 x chunks + 4096 records
  // the store rewrites the journal in the background (journal.hpp). The journal as it stands
  // then (not the clean stop's checkpoint, undone below) must bring back every chunk held.
  test::temp_dir dir;
  test::io_loop io;
  constexpr std::uint32_t small = 4096;
  std::vector<cache::chunk_id> ids;
  for (int i = 0; i < 2300; ++i) ids.push_back(chunk_of("c" + std::to_string(i), 0, small, small));
  std::string journal_now;
  std::vector<cache::chunk_id> held;
  {
    auto s = disk_store::open(test::store_options_for(dir, 8, small, 2));
    for (auto& id : ids) CHECK(put(io, *s, id));
    CHECK(s->stats().checkpoints >= 1);
    CHECK(!std::filesystem::exists(dir.path() / "journal.checkpoint"));
    // (a journal of every record would be over 4,600 records of about 80 bytes)
    CHECK(std::filesystem::file_size(dir.path() / "journal") < 4600 * 60);
    for (auto& id : ids)
      if (s->contains(id)) held.push_back(id);
    CHECK(held.size() == 8);
    std::ifstream f(dir.path() / "journal", std::ios::binary);
    journal_now.assign(std::istreambuf_iterator<char>(f), {});
  }
  {
    std::ofstream f(dir.path() / "journal", std::ios::binary | std::ios::trunc);
    f.write(journal_now.data(), static_cast<std::streamsize>(journal_now.size()));
  }
  auto s = disk_store::open(test::store_options_for(dir, 8, small, 2));
  CHECK(s->stats().replay.torn_bytes == 0);
  CHECK(s->stats().chunks == held.size());
  for (auto& id : held) CHECK(get(io, *s, id));
}

TEST_CASE("store: a bit flipped in a slot's data is a miss, counted and dropped") {
  test::temp_dir dir;
  test::io_loop io;
  auto id = chunk_of("flip", 0, cs, cs);
  {
    auto s = disk_store::open(options_for(dir, 2));
    REQUIRE(put(io, *s, id));
  }
  // The only used slot is slot 0 (data.0, after its 4 KiB header).
  {
    int fd = ::open((dir.path() / "data.0").c_str(), O_RDWR);
    REQUIRE(fd >= 0);
    char c;
    REQUIRE(::pread(fd, &c, 1, disk_store::header_bytes + 12345) == 1);
    c ^= 0x10;
    REQUIRE(::pwrite(fd, &c, 1, disk_store::header_bytes + 12345) == 1);
    ::close(fd);
  }
  {
    auto s = disk_store::open(options_for(dir, 2));
    REQUIRE(s->contains(id));
    CHECK(!get(io, *s, id));
    CHECK(s->stats().check_failures == 1);
    CHECK(!s->contains(id));
    CHECK(s->stats().used_slots == 0);
  }
  auto s = disk_store::open(options_for(dir, 2));
  CHECK(!s->contains(id));  // (the drop was journaled)
  CHECK(put(io, *s, id));   // and it can be written again
  CHECK(get(io, *s, id));
}

TEST_CASE("store: a header naming another chunk is a miss (the journal and the slot disagree)") {
  test::temp_dir dir;
  test::io_loop io;
  auto a = chunk_of("a", 0, cs, cs), b = chunk_of("b", 0, cs, cs);
  {
    auto s = disk_store::open(options_for(dir, 2));
    REQUIRE(put(io, *s, a));
    REQUIRE(put(io, *s, b));
  }
  // Swap the two slots' headers: each slot now claims to hold the other chunk.
  {
    int fd = ::open((dir.path() / "data.0").c_str(), O_RDWR);
    int fd1 = ::open((dir.path() / "data.1").c_str(), O_RDWR);
    REQUIRE(fd >= 0);
    REQUIRE(fd1 >= 0);
    std::vector<char> h0(disk_store::header_bytes), h1(disk_store::header_bytes);
    REQUIRE(::pread(fd, h0.data(), h0.size(), 0) == static_cast<ssize_t>(h0.size()));
    REQUIRE(::pread(fd1, h1.data(), h1.size(), 0) == static_cast<ssize_t>(h1.size()));
    // (two slots in two files: one slot each)
    REQUIRE(::pwrite(fd, h1.data(), h1.size(), 0) == static_cast<ssize_t>(h1.size()));
    REQUIRE(::pwrite(fd1, h0.data(), h0.size(), 0) == static_cast<ssize_t>(h0.size()));
    ::close(fd);
    ::close(fd1);
  }
  auto s = disk_store::open(options_for(dir, 2));
  CHECK(!get(io, *s, a));
  CHECK(!get(io, *s, b));
  CHECK(s->stats().check_failures == 2);
}

TEST_CASE("store: a new ETag never gets the old version's bytes") {
  test::temp_dir dir;
  test::io_loop io;
  auto old_id = chunk_of("obj", 0, cs, cs, "\"v1\"");
  auto new_id = chunk_of("obj", 0, cs, cs, "\"v2\"");
  auto s = disk_store::open(options_for(dir, 4));
  REQUIRE(put(io, *s, old_id));
  CHECK(!s->contains(new_id));
  aligned_buffer b(cs);
  CHECK(!io.run(s->read(new_id, b.pieces())));
  // Another size or chunk layout is another identity too.
  CHECK(!s->contains(chunk_of("obj", 0, cs, cs + 1, "\"v1\"")));
  CHECK(!s->admits(chunk_of("obj", 0, cs / 4, cs, "\"v1\"")));
  CHECK(get(io, *s, old_id));
}

TEST_CASE("store: a second store on the same directory gets a clear error") {
  test::temp_dir dir;
  auto s = disk_store::open(options_for(dir, 2));
  std::string what;
  try {
    disk_store::open(options_for(dir, 2));
  } catch (const std::runtime_error& e) {
    what = e.what();
  }
  CHECK(what.find("in use by another valkyrie") != std::string::npos);
  CHECK(what.find("pid " + std::to_string(::getpid())) != std::string::npos);
  s.reset();
  CHECK_NOTHROW(disk_store::open(options_for(dir, 2)));  // (released at close)
}

TEST_CASE("store: the cap is exact and CLOCK evicts unreferenced slots first") {
  test::temp_dir dir;
  test::io_loop io;
  auto o = options_for(dir, 5);
  o.size += stride - 1;  // not a whole slot more: still 5
  auto s = disk_store::open(o);
  CHECK(s->slots() == 5);
  CHECK(dir_data_bytes(dir) == 5 * stride);
  CHECK(dir_data_bytes(dir) <= o.size);
  std::vector<cache::chunk_id> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(chunk_of("k" + std::to_string(i), 0, cs, cs));
  for (auto& id : ids) REQUIRE(put(io, *s, id));
  // k0 and k1 are read (referenced); two new chunks take the slots of k2 and k3.
  CHECK(get(io, *s, ids[0]));
  CHECK(get(io, *s, ids[1]));
  REQUIRE(put(io, *s, chunk_of("n0", 0, cs, cs)));
  REQUIRE(put(io, *s, chunk_of("n1", 0, cs, cs)));
  CHECK(s->contains(ids[0]));
  CHECK(s->contains(ids[1]));
  CHECK(!s->contains(ids[2]));
  CHECK(!s->contains(ids[3]));
  for (int i = 0; i < 20; ++i)
    REQUIRE(put(io, *s, chunk_of("churn" + std::to_string(i), 0, cs, cs)));
  CHECK(s->stats().used_slots == 5);
  CHECK(dir_data_bytes(dir) == 5 * stride);
  CHECK(s->stats().used_bytes == 5 * cs);
}

TEST_CASE(
    "store: EIO on reads is a miss, counted; repeated errors step the store aside, then it comes "
    "back") {
  test::temp_dir dir;
  test::io_loop io;
  auto plan = std::make_shared<fault_plan>();
  auto o = options_for(dir, 16, plan);
  o.max_consecutive_errors = 3;
  o.retry_after = std::chrono::milliseconds(200);
  auto s = disk_store::open(o);
  std::vector<cache::chunk_id> ids;
  for (int i = 0; i < 10; ++i) ids.push_back(chunk_of("k" + std::to_string(i), 0, cs, cs));
  for (auto& id : ids) REQUIRE(put(io, *s, id));
  plan->read_errno = EIO;
  for (int i = 0; i < 3; ++i) CHECK(!get(io, *s, ids[i]));
  CHECK(s->stats().errors == 3);
  CHECK(s->stats().disabled);
  plan->read_errno = 0;
  const unsigned reads_before = plan->reads;
  CHECK(!get(io, *s, ids[5]));  // stepped aside: a miss without touching the disk
  CHECK(plan->reads == reads_before);
  CHECK(!put(io, *s, chunk_of("while-off", 0, cs, cs)));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  bool back = false;
  while (!back && std::chrono::steady_clock::now() < deadline) {
    back = get(io, *s, ids[5]);
    if (!back) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  CHECK(back);
  CHECK(!s->stats().disabled);
  for (int i = 6; i < 10; ++i) CHECK(get(io, *s, ids[i]));  // the other slots were kept
}

TEST_CASE("store: ENOSPC and EIO on writes drop the write; short reads are misses") {
  test::temp_dir dir;
  test::io_loop io;
  auto plan = std::make_shared<fault_plan>();
  auto s = disk_store::open(options_for(dir, 8, plan));
  auto a = chunk_of("a", 0, cs, cs), b = chunk_of("b", 0, cs, cs);
  plan->write_errno = ENOSPC;
  CHECK(!put(io, *s, a));
  plan->write_errno = EIO;
  CHECK(!put(io, *s, a));
  CHECK(s->stats().errors == 2);
  CHECK(s->stats().writes_dropped == 2);
  CHECK(!s->contains(a));
  CHECK(s->stats().used_slots == 0);
  plan->write_errno = 0;
  REQUIRE(put(io, *s, a));
  REQUIRE(put(io, *s, b));
  plan->short_reads = true;
  CHECK(!get(io, *s, a));
  CHECK(s->stats().errors == 3);
  plan->short_reads = false;
  CHECK(get(io, *s, b));
}

TEST_CASE(
    "store: a slow disk is counted; slow operations in a row step the store aside, retried later") {
  test::temp_dir dir;
  test::io_loop io;
  auto plan = std::make_shared<fault_plan>();
  auto o = options_for(dir, 16, plan);
  o.max_consecutive_errors = 3;
  o.retry_after = std::chrono::milliseconds(300);
  // 50 ms: far above a 64 KiB read of a temporary file, even on a loaded machine, and a quarter
  // of the injected delay (every read and write waits 200 ms on a timer: a chunk's read is two
  // requests, its header and its data).
  o.slow_after = std::chrono::milliseconds(50);
  auto s = disk_store::open(o);
  std::vector<cache::chunk_id> ids;
  for (int i = 0; i < 10; ++i) ids.push_back(chunk_of("k" + std::to_string(i), 0, cs, cs));
  for (auto& id : ids) REQUIRE(put(io, *s, id));
  REQUIRE(s->stats().slow == 0);
  auto wait_until_back = [&](const cache::chunk_id& id) {
    // Stepped aside: a miss at once, without the file; after retry_after the read reaches it.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      if (get(io, *s, id)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  };

  plan->delay_ms = 200;
  // Slow but correct: the data is served (bytes compared) and stored, and each one counts.
  CHECK(get(io, *s, ids[0]));
  CHECK(get(io, *s, ids[1]));
  CHECK(s->stats().slow == 2);
  CHECK(!s->stats().disabled);
  auto late = chunk_of("late", 0, cs, cs);
  CHECK(put(io, *s, late));  // the third slow operation in a row
  CHECK(s->contains(late));
  CHECK(s->stats().slow == 3);
  CHECK(s->stats().errors == 0);  // (slow is not an I/O error)
  CHECK(s->stats().hits == 2);
  CHECK(s->stats().disabled);

  // Stepped aside: reads are misses and writes dropped, the file untouched.
  const unsigned reads_before = plan->reads, writes_before = plan->writes;
  const auto dropped_before = s->stats().writes_dropped;
  auto started = std::chrono::steady_clock::now();
  CHECK(!get(io, *s, ids[5]));
  CHECK(!put(io, *s, chunk_of("while-off", 0, cs, cs)));
  CHECK(std::chrono::steady_clock::now() - started < std::chrono::milliseconds(200));
  CHECK(plan->reads == reads_before);
  CHECK(plan->writes == writes_before);
  CHECK(s->stats().writes_dropped == dropped_before + 1);
  CHECK(s->stats().slow == 3);

  // Retried after retry_after: still slow, so three more in a row step it aside again.
  REQUIRE(wait_until_back(ids[5]));  // (a slow hit: the file was read)
  CHECK(plan->reads > reads_before);
  CHECK(s->stats().slow == 4);
  CHECK(!s->stats().disabled);
  CHECK(get(io, *s, ids[6]));
  CHECK(get(io, *s, ids[7]));
  CHECK(s->stats().slow == 6);
  CHECK(s->stats().disabled);

  // The disk is fast again: after retry_after hits resume, none slow, all slots kept.
  plan->delay_ms = 0;
  REQUIRE(wait_until_back(ids[8]));
  CHECK(!s->stats().disabled);
  for (auto& id : ids) CHECK(get(io, *s, id));
  CHECK(get(io, *s, late));
  CHECK(put(io, *s, chunk_of("after", 0, cs, cs)));
  CHECK(s->stats().slow == 6);
  CHECK(s->stats().errors == 0);
  CHECK(s->stats().check_failures == 0);
}

TEST_CASE("store: a deep queue on a disk fast enough is not slow; a disk too slow for it is") {
  // Writes submitted at once to a disk that serves them one after another: the n-th completes
  // after n services. It is slow only if the disk moves less than 8 MiB per slow_after.
  auto run = [](unsigned writes, unsigned service_ms) {
    constexpr std::uint32_t mib = 1 << 20;
    test::temp_dir dir;
    test::io_loop io;
    auto plan = std::make_shared<fault_plan>();
    auto o = test::store_options_for(dir, 32, mib, 2, plan);
    o.slow_after = std::chrono::milliseconds(500);  // (slow: under 8 MiB per 0.5 s, 16 MB/s)
    o.max_consecutive_errors = 3;
    auto s = disk_store::open(o);
    plan->serial = true;
    plan->delay_ms = service_ms;
    std::vector<std::unique_ptr<aligned_buffer>> data;
    int stored = 0;
    for (unsigned i = 0; i < writes; ++i) {
      auto id = chunk_of("q" + std::to_string(i), 0, mib, mib);
      data.push_back(std::make_unique<aligned_buffer>(mib));
      test::fill(data.back()->span(), id.object->key, 0);
      asio::co_spawn(io.ctx, s->write(id, data.back()->cpieces()),
                     [&](std::exception_ptr, bool ok) { stored += ok; });
    }
    io.ctx.run();
    return std::make_pair(stored, s->stats());
  };
  // 20 MiB at 30 ms per MiB (33 MB/s): the last write waits 600 ms, within 3 x 0.5 s for the
  // 20 MiB it queued behind; measured per operation it would have been slow from the 17th on.
  auto [stored, fast] = run(20, 30);
  CHECK(stored == 20);
  CHECK(fast.slow == 0);
  CHECK(!fast.disabled);
  // 4 MiB at 300 ms per MiB (3.3 MB/s): from the second write on, slow; three in a row step aside.
  auto [stored_slow, slow] = run(4, 300);
  CHECK(slow.slow == 3);
  CHECK(slow.disabled);
  CHECK(stored_slow == 4);  // (slow, but stored: each completed)
}

TEST_CASE(
    "store: a disk that stops answering steps the store aside while its operation is in flight") {
  test::temp_dir dir;
  test::io_loop io;
  auto plan = std::make_shared<fault_plan>();
  auto o = options_for(dir, 16, plan);
  o.hung_after = std::chrono::milliseconds(100);
  o.retry_after = std::chrono::milliseconds(100);
  auto s = disk_store::open(o);
  std::vector<cache::chunk_id> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(chunk_of("k" + std::to_string(i), 0, cs, cs));
  for (auto& id : ids) REQUIRE(put(io, *s, id));
  // Runs the loop until `done` or 10 s have passed.
  auto run_until = [&](auto done) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!done() && std::chrono::steady_clock::now() < deadline) {
      io.ctx.restart();
      io.ctx.run_for(std::chrono::milliseconds(5));
    }
    return done();
  };

  plan->hang = true;
  aligned_buffer first(cs);
  std::optional<std::optional<std::size_t>> first_result;
  asio::co_spawn(io.ctx, s->read(ids[0], first.pieces()),
                 [&](std::exception_ptr, std::optional<std::size_t> r) { first_result = r; });
  // Within the limit the read waiting on the disk is only slow: the store stays in use.
  REQUIRE(run_until([&] { return plan->reads == 1; }));
  CHECK(!s->stats().disabled);
  REQUIRE(run_until([&] { return s->stalled_for() > o.hung_after; }));
  CHECK(!first_result);

  // Past it, the next read is a miss at once without touching the disk (its reader goes to
  // S3) and writes are dropped, while the first read still waits.
  aligned_buffer second(cs);
  std::optional<std::optional<std::size_t>> second_result;
  asio::co_spawn(io.ctx, s->read(ids[1], second.pieces()),
                 [&](std::exception_ptr, std::optional<std::size_t> r) { second_result = r; });
  REQUIRE(run_until([&] { return second_result.has_value(); }));
  CHECK(!*second_result);
  CHECK(s->stats().disabled);
  CHECK(s->stats().hung == 1);
  std::optional<bool> stored;
  aligned_buffer late(cs);
  asio::co_spawn(io.ctx, s->write(chunk_of("late", 0, cs, cs), late.cpieces()),
                 [&](std::exception_ptr, bool r) { stored = r; });
  REQUIRE(run_until([&] { return stored.has_value(); }));
  CHECK(!*stored);
  CHECK(plan->reads == 1);
  CHECK(plan->writes == ids.size());
  CHECK(!first_result);
  // Still off after retry_after while the operation stays in flight (one episode, counted once).
  const auto off_since = std::chrono::steady_clock::now();
  REQUIRE(
      run_until([&] { return std::chrono::steady_clock::now() - off_since > 2 * o.retry_after; }));
  aligned_buffer third(cs);
  std::optional<std::optional<std::size_t>> third_result;
  asio::co_spawn(io.ctx, s->read(ids[2], third.pieces()),
                 [&](std::exception_ptr, std::optional<std::size_t> r) { third_result = r; });
  REQUIRE(run_until([&] { return third_result.has_value(); }));
  CHECK(!*third_result);
  CHECK(plan->reads == 1);
  CHECK(s->stats().hung == 1);

  // The disk answers again: the first read completes with the right bytes, and once it is out
  // of flight the store is back (retry_after has passed), reading and writing.
  plan->hang = false;
  REQUIRE(run_until([&] { return first_result.has_value(); }));
  CHECK(*first_result == std::optional<std::size_t>(cs));
  CHECK(test::matches(first.span(), ids[0].object->key, 0));
  CHECK(s->stalled_for() == std::chrono::steady_clock::duration{});
  CHECK(get(io, *s, ids[1]));
  CHECK(!s->stats().disabled);
  CHECK(put(io, *s, chunk_of("after", 0, cs, cs)));
  CHECK(s->stats().hung == 1);
  CHECK(s->stats().errors == 0);
  CHECK(s->stats().check_failures == 0);
}

TEST_CASE("store: 100000 journal records replay in well under 2 s") {
  test::temp_dir dir;
  constexpr std::uint32_t small = 4096;
  constexpr std::uint64_t n = 100000;
  // Files that hold nothing: this measures the index alone (the data files are never read at
  // start-up anyway).
  struct null_file final : block_file {
    awaitable<std::error_code> read_at(std::uint64_t, std::span<char>) override {
      co_return std::error_code();
    }
    awaitable<std::error_code> write_at(std::uint64_t, std::span<const char>) override {
      co_return std::error_code();
    }
    bool direct() const override { return true; }
  };
  store_options o;
  o.dir = dir.path().string();
  o.chunk_size = small;
  o.size = n * (disk_store::header_bytes + small);
  o.opener = [](const std::string&, std::uint64_t) { return std::make_shared<null_file>(); };
  { auto s = disk_store::open(o); }  // (writes the geometry)
  {
    std::string all = "VKYJRN02";
    for (std::uint64_t i = 0; i < n; ++i) {
      slot_record r;
      r.id = chunk_of(
          "train/shard-" + std::to_string(i / 64) + "/sample-" + std::to_string(i) + ".jpg", 0,
          small, small);
      r.length = small;
      r.crc = static_cast<std::uint32_t>(i);
      r.seq = i + 1;
      encode_insert(all, static_cast<std::uint32_t>(i), 0, false, r);
    }
    std::ofstream f(dir.path() / "journal", std::ios::binary | std::ios::trunc);
    f.write(all.data(), static_cast<std::streamsize>(all.size()));
    MESSAGE("journal of " << n << " records: " << all.size() << " bytes");
  }
  auto started = std::chrono::steady_clock::now();
  auto s = disk_store::open(o);
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  MESSAGE("disk_store::open with " << n << " records: " << seconds << " s (replay "
                                   << s->stats().replay.seconds << " s)");
  CHECK(s->stats().used_slots == n);
  CHECK(s->contains(chunk_of("train/shard-0/sample-17.jpg", 0, small, small)));
  CHECK(seconds < 2.0);
}
}  // namespace test_disk_store
