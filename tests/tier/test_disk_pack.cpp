// disk_store's packed slots: small chunks of random sizes packed and read back exact, restart
// after a clean stop and after a kill -9 with a torn last member, eviction of a packed slot (all
// its members, the slot reused, the reference bit of a member's hit), a bit flip in one member,
// an old-format directory, and how many small chunks a store holds against what fits by bytes.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include "tier/journal.hpp"
#include "tier_fixture.hpp"

using namespace valkyrie;
using namespace valkyrie::tier;
using test::aligned_buffer;
using test::chunk_of;
using test::get;
using test::put;

namespace test_disk_pack {

constexpr std::uint32_t cs = 256 * 1024;  // packs chunks of up to 64 KiB
constexpr std::uint64_t hdr = 4096;
constexpr std::uint64_t stride = hdr + cs;

std::uint64_t pages(std::uint64_t n) {
  return (n + 4095) / 4096 * 4096;
}
// A small chunk's bytes on disk: its header and its data's pages.
std::uint64_t packed_bytes(std::uint64_t length) {
  return hdr + pages(length);
}

store_options options_for(const test::temp_dir& dir, std::uint64_t slots, std::uint32_t chunk = cs,
                          unsigned files = 2, std::shared_ptr<fault_plan> plan = nullptr) {
  return test::store_options_for(dir, slots, chunk, files, std::move(plan));
}

// A small object: one chunk of its own length.
cache::chunk_id small(const std::string& key, std::uint64_t length, std::uint32_t chunk = cs) {
  return chunk_of(key, 0, chunk, length);
}

std::size_t held(disk_store& s, const std::vector<cache::chunk_id>& ids) {
  std::size_t n = 0;
  for (auto& id : ids) n += s.contains(id) ? 1 : 0;
  return n;
}

std::string slurp(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}
void spit(const std::filesystem::path& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(s.data(), static_cast<std::streamsize>(s.size()));
}

void flip_byte(const std::filesystem::path& file, std::uint64_t at) {
  int fd = ::open(file.c_str(), O_RDWR);
  REQUIRE(fd >= 0);
  char c;
  REQUIRE(::pread(fd, &c, 1, static_cast<off_t>(at)) == 1);
  c ^= 0x10;
  REQUIRE(::pwrite(fd, &c, 1, static_cast<off_t>(at)) == 1);
  ::close(fd);
}

TEST_CASE("pack: small chunks of random sizes share slots and read back exact") {
  test::temp_dir dir;
  test::io_loop io;
  constexpr std::uint64_t slots = 16;
  auto s = disk_store::open(options_for(dir, slots));
  std::mt19937_64 rng(14);
  std::vector<cache::chunk_id> ids;
  // The edges first (1 byte, a page, a page and a byte, the largest packed chunk), then random
  // sizes, up to 70% of the store's bytes; and one chunk too big to pack (a slot of its own).
  std::vector<std::uint64_t> sizes = {1, 4096, 4097, cs / 4};
  std::uint64_t bytes = 0;
  for (auto n : sizes) bytes += packed_bytes(n);
  for (;;) {
    std::uint64_t n = 1 + rng() % (cs / 4);
    if (bytes + packed_bytes(n) > slots * stride * 7 / 10) break;
    bytes += packed_bytes(n);
    sizes.push_back(n);
  }
  for (std::size_t i = 0; i < sizes.size(); ++i)
    ids.push_back(small("img/" + std::to_string(i) + ".jpg", sizes[i]));
  auto big = small("big.bin", cs / 4 + 1);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    REQUIRE(put(io, *s, ids[i]));
    if (i == ids.size() / 2) REQUIRE(put(io, *s, big));
  }
  MESSAGE(ids.size() << " small chunks (" << bytes << " bytes on disk) in " << slots << " slots of "
                     << stride << " bytes");
  CHECK(ids.size() > 4 * slots);
  CHECK(held(*s, ids) == ids.size());
  for (auto& id : ids) CHECK(get(io, *s, id));
  CHECK(get(io, *s, big));
  auto st = s->stats();                          // packing stats
  CHECK(st.chunks == ids.size() + 1);            // packing stats
  CHECK(st.packed_chunks == ids.size());         // packing stats
  CHECK(st.used_slots == st.packed_slots + 1);   // packing stats
  CHECK(st.packed_slots * stride >= bytes);      // packing stats
  CHECK(st.packed_slots <= bytes / stride + 2);  // packing stats (each closed slot nearly full)
  std::uint64_t data = big.length();
  for (auto& id : ids) data += id.length();
  CHECK(st.used_bytes == data);
  CHECK(st.check_failures == 0);
  CHECK(st.hits == ids.size() + 1);
}

TEST_CASE("pack: members survive a clean restart and a kill -9 with a torn last member") {
  test::temp_dir dir;
  test::io_loop io;
  std::vector<cache::chunk_id> ids;
  for (int i = 0; i < 30; ++i)
    ids.push_back(small("s" + std::to_string(i), 10000 + 1777 * static_cast<std::uint64_t>(i)));
  auto last = small("last", 50000);
  std::string journal_before, journal_after;
  {
    auto s = disk_store::open(options_for(dir, 8));
    for (auto& id : ids) REQUIRE(put(io, *s, id));
    journal_before = slurp(dir.path() / "journal");
    REQUIRE(put(io, *s, last));
    journal_after = slurp(dir.path() / "journal");
  }
  REQUIRE(journal_after.size() > journal_before.size());
  {  // A clean stop (the checkpoint): all of them, without reading data at open.
    auto plan = std::make_shared<fault_plan>();
    auto s = disk_store::open(options_for(dir, 8, cs, 2, plan));
    CHECK(plan->reads == 0);
    CHECK(held(*s, ids) == ids.size());
    CHECK(s->contains(last));
    for (auto& id : ids) CHECK(get(io, *s, id));
    CHECK(get(io, *s, last));
  }
  // A kill -9 while the last member's record was being appended: the journal as it was before,
  // then half of that record. (A member whose record is complete but whose bytes are not what
  // it names is a check failure: the bit-flip case below.)
  const std::string record = journal_after.substr(journal_before.size());
  spit(dir.path() / "journal", journal_before + record.substr(0, record.size() / 2));
  {
    auto plan = std::make_shared<fault_plan>();
    auto s = disk_store::open(options_for(dir, 8, cs, 2, plan));
    CHECK(plan->reads == 0);
    CHECK(s->stats().replay.torn_bytes == record.size() / 2);
    CHECK(!s->contains(last));
    CHECK(!get(io, *s, last));
    CHECK(held(*s, ids) == ids.size());
    for (auto& id : ids) CHECK(get(io, *s, id));
    // New small chunks go to a fresh packed slot: the replayed members stay intact.
    std::vector<cache::chunk_id> more;
    for (int i = 0; i < 10; ++i) more.push_back(small("m" + std::to_string(i), 20000));
    for (auto& id : more) REQUIRE(put(io, *s, id));
    for (auto& id : ids) CHECK(get(io, *s, id));
    for (auto& id : more) CHECK(get(io, *s, id));
    CHECK(s->stats().check_failures == 0);
  }
}

TEST_CASE("pack: evicting a packed slot drops all its members; a member's hit keeps its slot") {
  test::temp_dir dir;
  test::io_loop io;
  // 60 KiB chunks take 64 KiB each: four to a slot, sixteen fill the four slots.
  auto o = options_for(dir, 4);
  auto s = disk_store::open(o);
  REQUIRE(s->slots() == 4);
  const std::uint64_t data_bytes = std::filesystem::file_size(dir.path() / "data.0") +
                                   std::filesystem::file_size(dir.path() / "data.1");
  std::vector<cache::chunk_id> ids;
  for (int i = 0; i < 24; ++i) ids.push_back(small("e" + std::to_string(i), 60 * 1024));
  for (int i = 0; i < 16; ++i) REQUIRE(put(io, *s, ids[i]));
  CHECK(held(*s, ids) == 16);
  // The 17th needs a slot: the oldest packed slot goes, all four of its members with it.
  REQUIRE(put(io, *s, ids[16]));
  for (int i = 0; i < 4; ++i) CHECK(!s->contains(ids[i]));
  for (int i = 4; i <= 16; ++i) CHECK(get(io, *s, ids[i]));  // (all referenced now)
  CHECK(s->stats().used_slots == 4);                         // packing stats
  CHECK(s->stats().chunks == 13);                            // packing stats
  // Every slot was read: the hand clears all the bits in one turn and takes the next slot in
  // its second (members 4..7).
  for (int i = 17; i < 20; ++i) REQUIRE(put(io, *s, ids[i]));  // (fill the open slot)
  REQUIRE(put(io, *s, ids[20]));
  for (int i = 4; i < 8; ++i) CHECK(!s->contains(ids[i]));
  for (int i = 8; i < 12; ++i) CHECK(get(io, *s, ids[i]));  // one hit per member: bit set
  for (int i = 21; i < 24; ++i) REQUIRE(put(io, *s, ids[i]));
  auto extra = small("extra", 60 * 1024);
  REQUIRE(put(io, *s, extra));
  // The slot of 8..11 was read since (one member's hit sets its slot's bit): it stays; the
  // slot of 12..15, not read since, goes.
  for (int i = 8; i < 12; ++i) CHECK(s->contains(ids[i]));
  for (int i = 12; i < 16; ++i) CHECK(!s->contains(ids[i]));
  CHECK(s->stats().used_slots == 4);  // packing stats
  CHECK(std::filesystem::file_size(dir.path() / "data.0") +
            std::filesystem::file_size(dir.path() / "data.1") ==
        data_bytes);
  std::vector<bool> kept;
  for (auto& id : ids) kept.push_back(s->contains(id));
  s.reset();
  // After a restart the dropped members stay dropped (the slot's remove was journaled before
  // it was reused), and the kept ones read back exact.
  s = disk_store::open(o);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    CHECK(s->contains(ids[i]) == kept[i]);
    if (kept[i]) CHECK(get(io, *s, ids[i]));
  }
  CHECK(get(io, *s, extra));
  CHECK(s->stats().check_failures == 0);
}

TEST_CASE("pack: a bit flip in one member's data or header is a miss for that member only") {
  test::temp_dir dir;
  test::io_loop io;
  // Eight 20 KiB chunks, 24 KiB each on disk, all in slot 0 (data.0), member k at k x 24 KiB.
  std::vector<cache::chunk_id> ids;
  for (int i = 0; i < 8; ++i) ids.push_back(small("f" + std::to_string(i), 20 * 1024));
  {
    auto s = disk_store::open(options_for(dir, 2));
    for (auto& id : ids) REQUIRE(put(io, *s, id));
  }
  const std::uint64_t each = packed_bytes(20 * 1024);
  flip_byte(dir.path() / "data.0", 3 * each + hdr + 777);  // member 3's data
  flip_byte(dir.path() / "data.0", 5 * each + 20);         // member 5's header
  {
    auto s = disk_store::open(options_for(dir, 2));
    REQUIRE(held(*s, ids) == ids.size());
    for (int i = 0; i < 8; ++i) CHECK(get(io, *s, ids[i]) == (i != 3 && i != 5));
    CHECK(s->stats().check_failures == 2);
    CHECK(!s->contains(ids[3]));
    CHECK(!s->contains(ids[5]));
    CHECK(held(*s, ids) == 6);
  }
  auto s = disk_store::open(options_for(dir, 2));
  CHECK(held(*s, ids) == 6);  // (each member's drop was journaled)
  for (int i = 0; i < 8; ++i)
    if (i != 3 && i != 5) CHECK(get(io, *s, ids[i]));
  REQUIRE(put(io, *s, ids[3]));  // written again, into a new packed slot
  CHECK(get(io, *s, ids[3]));
}

TEST_CASE("pack: a directory of the format before packing starts empty, never misread") {
  test::temp_dir dir;
  test::io_loop io;
  auto id = small("old", 30000);
  {
    auto s = disk_store::open(options_for(dir, 2));
    REQUIRE(put(io, *s, id));
  }
  // What a daemon of format 1 left: its meta line (format 1) and its journal magic.
  std::string meta = slurp(dir.path() / "meta");
  REQUIRE(meta.rfind("valkyrie-disk-cache ", 0) == 0);
  meta[std::string("valkyrie-disk-cache ").size()] = '1';
  spit(dir.path() / "meta", meta);
  std::string j = slurp(dir.path() / "journal");
  j.replace(0, 8, "VKYJRN01");
  spit(dir.path() / "journal", j);
  auto s = disk_store::open(options_for(dir, 2));
  CHECK(!s->contains(id));
  CHECK(s->stats().used_slots == 0);
  CHECK(put(io, *s, id));
  CHECK(get(io, *s, id));
}

TEST_CASE("pack: a store holds >= 90% of the 110 KiB objects its bytes could hold") {
  constexpr std::uint64_t object = 110 * 1024;
  for (std::uint32_t chunk : {1u << 20, 8u << 20}) {
    test::temp_dir dir;
    test::io_loop io;
    const std::uint64_t slots = chunk == (1u << 20) ? 64 : 8;
    auto s = disk_store::open(options_for(dir, slots, chunk, 4));
    const std::uint64_t by_bytes = slots * (hdr + chunk) / object;
    std::vector<cache::chunk_id> ids;
    // As many as the slots hold once packed (each slot its share, no eviction yet).
    const std::uint64_t per_slot = (hdr + chunk) / packed_bytes(object);
    for (std::uint64_t i = 0; i < slots * per_slot; ++i)
      ids.push_back(small("train/" + std::to_string(i) + ".jpg", object, chunk));
    for (auto& id : ids) REQUIRE(put(io, *s, id));
    const std::size_t n = held(*s, ids);
    MESSAGE(slots << " slots of " << (chunk >> 20) << " MiB: " << n << " objects of 110 KiB held, "
                  << by_bytes << " fit by bytes (" << 100.0 * double(n) / double(by_bytes) << "%), "
                  << slots << " without packing");
    CHECK(n == ids.size());
    if (chunk == (1u << 20)) CHECK(n >= 500);  // (4 KiB header and padding per object: 85%)
    if (chunk == (8u << 20)) CHECK(double(n) >= 0.9 * double(by_bytes));
    for (std::size_t i = 0; i < ids.size(); i += 37) CHECK(get(io, *s, ids[i]));
  }
}

TEST_CASE("pack: with an order a packed slot ranks as its member needed soonest") {
  test::temp_dir dir;
  test::io_loop io;
  auto s = disk_store::open(options_for(dir, 4));
  std::map<std::string, std::uint64_t> ranks;
  s->set_ranker([&](const cache::chunk_id& id) { return ranks.at(id.object->key); });
  // Four 60 KiB chunks to a slot: slot A needed at 10..13, B at 20..23, C at 1 and 100..102,
  // D (the open one) at 30..33.
  const std::vector<std::vector<std::uint64_t>> slots = {
      {10, 11, 12, 13}, {20, 21, 22, 23}, {1, 100, 101, 102}, {30, 31, 32, 33}};
  std::vector<std::vector<cache::chunk_id>> held_in(4);
  for (std::size_t k = 0; k < slots.size(); ++k)
    for (auto r : slots[k]) {
      auto id = small("r" + std::to_string(r), 60 * 1024);
      ranks[id.object->key] = r;
      REQUIRE(put(io, *s, id));
      held_in[k].push_back(id);
    }
  auto all_in = [&](std::size_t k) { return held(*s, held_in[k]) == held_in[k].size(); };
  auto none_in = [&](std::size_t k) { return held(*s, held_in[k]) == 0; };
  auto chunk = [&](std::uint64_t r) {
    auto id = small("n" + std::to_string(r), 60 * 1024);
    ranks[id.object->key] = r;
    return id;
  };
  // Needed at 5: the slot whose soonest member is farthest (D, 30) goes, not C (its 100..102
  // are farther, but it is needed at 1).
  REQUIRE(put(io, *s, chunk(5)));
  CHECK(none_in(3));
  CHECK((all_in(0) && all_in(1) && all_in(2)));
  for (std::uint64_t r : {6, 7, 8}) REQUIRE(put(io, *s, chunk(r)));  // (the new open slot)
  // Needed at 25: every slot is needed sooner (A 10, B 20, C 1, the new one 5): declined.
  CHECK(!put(io, *s, chunk(25)));
  CHECK(s->stats().writes_declined == 1);
  CHECK((all_in(0) && all_in(1) && all_in(2)));
  // Needed at 15: B (20) goes.
  REQUIRE(put(io, *s, chunk(15)));
  CHECK(none_in(1));
  CHECK((all_in(0) && all_in(2)));
  CHECK(get(io, *s, chunk(15)));
  for (auto& id : held_in[2]) CHECK(get(io, *s, id));
}
}  // namespace test_disk_pack
