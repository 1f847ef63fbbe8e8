// The journal: records round-trip, a torn or corrupt tail is cut off at replay, a checkpoint
// replaces the file; CRC32C chains over pieces.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <vector>

#include "helpers.hpp"
#include "tier/crc32c.hpp"
#include "tier/journal.hpp"

using namespace valkyrie;
using namespace valkyrie::tier;

namespace test_journal {
slot_record rec_of(const std::string& key, std::uint64_t seq) {
  slot_record r;
  r.id = {cache::make_version("b", key, "\"etag\"", 100), 64, 1};
  r.length = 36;
  r.crc = static_cast<std::uint32_t>(seq * 7);
  r.seq = seq;
  return r;
}
std::vector<journal_record> replay_all(const std::string& path, replay_stats& st) {
  std::vector<journal_record> out;
  journal::open(
      path, [&](const journal_record& r) { out.push_back(r); }, st);
  return out;
}

// Appends `records` to the journal at `path` (created if absent): REQUIRE'd to succeed.
void append_records(const std::string& path, const std::string& records) {
  replay_stats st;
  auto j = journal::open(
      path, [](const journal_record&) {}, st);
  REQUIRE(!j.append(records));
}

// `n` insert records, slot i holding key "k<i>" with CRC i + 1.
std::string inserts(int n) {
  std::string recs;
  for (int i = 0; i < n; ++i)
    encode_insert(recs, static_cast<std::uint32_t>(i), 0, false,
                  rec_of("k" + std::to_string(i), i + 1));
  return recs;
}

TEST_CASE("crc32c chains over pieces and sees one flipped bit") {
  std::string s(100000, 'x');
  for (std::size_t i = 0; i < s.size(); ++i) s[i] = static_cast<char>(i * 31);
  auto whole = crc32c(s.data(), s.size());
  CHECK(crc32c(s.data() + 4096, s.size() - 4096, crc32c(s.data(), 4096)) == whole);
  s[5000] ^= 1;
  CHECK(crc32c(s.data(), s.size()) != whole);
}

TEST_CASE("journal records round-trip; a torn tail is ignored and cut off") {
  test::temp_dir dir;
  const std::string path = (dir.path() / "journal").string();
  std::string recs = inserts(10);
  encode_remove(recs, 3);
  append_records(path, recs);
  replay_stats st;
  auto all = replay_all(path, st);
  REQUIRE(all.size() == 11);
  CHECK(st.torn_bytes == 0);
  CHECK(all[4].type == record_type::insert);
  CHECK(all[4].slot == 4);
  CHECK(all[4].rec.id.object->key == "k4");
  CHECK(all[4].rec.seq == 5);
  CHECK(all[4].rec.crc == 35);
  CHECK(all[4].rec.id.chunk_size == 64);
  CHECK(all[4].rec.id.index == 1);
  CHECK(all[10].type == record_type::remove);
  CHECK(all[10].slot == 3);

  // Half of one more record (a kill -9 in mid-append): ignored, and cut off.
  const auto good_size = std::filesystem::file_size(path);
  {
    std::string more;
    encode_insert(more, 11, 0, false, rec_of("torn", 99));
    std::ofstream f(path, std::ios::app | std::ios::binary);
    f.write(more.data(), static_cast<std::streamsize>(more.size() / 2));
  }
  replay_stats st2;
  {
    std::vector<journal_record> seen;
    auto j = journal::open(
        path, [&](const journal_record& r) { seen.push_back(r); }, st2);
    CHECK(seen.size() == 11);
    CHECK(st2.torn_bytes > 0);
    CHECK(std::filesystem::file_size(path) == good_size);
    // Appends after the cut are read back.
    std::string after;
    encode_insert(after, 12, 0, false, rec_of("after", 100));
    REQUIRE(!j.append(after));
  }
  replay_stats st3;
  auto again = replay_all(path, st3);
  REQUIRE(again.size() == 12);
  CHECK(again.back().rec.id.object->key == "after");
}

TEST_CASE("journal: a record with a flipped bit ends the replay there") {
  test::temp_dir dir;
  const std::string path = (dir.path() / "journal").string();
  append_records(path, inserts(5));
  // Flip a bit inside the third record's key.
  std::string bytes;
  {
    std::ifstream f(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(f), {});
  }
  auto at = bytes.find("k2");
  REQUIRE(at != std::string::npos);
  bytes[at + 1] ^= 0x04;
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  replay_stats st;
  auto all = replay_all(path, st);
  CHECK(all.size() == 2);
}

TEST_CASE("journal: a checkpoint replaces the records") {
  test::temp_dir dir;
  const std::string path = (dir.path() / "journal").string();
  replay_stats st;
  {
    auto j = journal::open(
        path, [](const journal_record&) {}, st);
    std::string recs;
    for (int i = 0; i < 50; ++i) encode_insert(recs, 0, 0, false, rec_of("k", i + 1));
    REQUIRE(!j.append(recs));
    std::string one;
    encode_insert(one, 7, 0, false, rec_of("kept", 51));
    REQUIRE(!j.rewrite(one));
    CHECK(j.appended_records() == 0);
    std::string later;
    encode_remove(later, 7);
    REQUIRE(!j.append(later));
  }
  auto all = replay_all(path, st);
  REQUIRE(all.size() == 2);
  CHECK(all[0].rec.id.object->key == "kept");
  CHECK(all[1].type == record_type::remove);
}

TEST_CASE("journal: a checkpoint written in the background keeps the records appended meanwhile") {
  test::temp_dir dir;
  const std::string path = (dir.path() / "journal").string();
  replay_stats st;
  {
    auto j = journal::open(
        path, [](const journal_record&) {}, st);
    REQUIRE(!j.append(inserts(40)));
    std::string live;  // what the store would snapshot: one record
    encode_insert(live, 7, 0, false, rec_of("kept", 41));
    j.begin_rewrite();
    std::string during;  // appended before and while the file is written
    encode_remove(during, 3);
    REQUIRE(!j.append(during));
    auto write = j.write_rewrite(live);
    std::string more;
    encode_insert(more, 3, 0, false, rec_of("new", 42));
    REQUIRE(!j.append(more));
    CHECK(!test::run(std::move(write)));
    CHECK(std::filesystem::exists(path + ".checkpoint"));
    REQUIRE(!j.finish_rewrite());
    CHECK(!j.rewriting());
    CHECK(!std::filesystem::exists(path + ".checkpoint"));
    CHECK(j.appended_records() == 2);  // (the two kept aside)
    std::string after;
    encode_remove(after, 7);
    REQUIRE(!j.append(after));
    CHECK(j.bytes() == std::filesystem::file_size(path));
  }
  auto all = replay_all(path, st);
  REQUIRE(all.size() == 4);
  CHECK(all[0].rec.id.object->key == "kept");
  CHECK(all[1].type == record_type::remove);
  CHECK(all[1].slot == 3);
  CHECK(all[2].rec.id.object->key == "new");
  CHECK(all[3].type == record_type::remove);
  CHECK(all[3].slot == 7);
  CHECK(st.torn_bytes == 0);
}

TEST_CASE("journal: a background checkpoint overtaken by a rewrite is dropped") {
  test::temp_dir dir;
  const std::string path = (dir.path() / "journal").string();
  replay_stats st;
  {
    auto j = journal::open(
        path, [](const journal_record&) {}, st);
    REQUIRE(!j.append(inserts(10)));
    std::string stale;
    encode_insert(stale, 1, 0, false, rec_of("stale", 11));
    j.begin_rewrite();
    CHECK(!test::run(j.write_rewrite(stale)));
    std::string clean;  // a clean stop's checkpoint, meanwhile
    encode_insert(clean, 2, 0, false, rec_of("clean", 12));
    REQUIRE(!j.rewrite(clean));
    CHECK(!j.finish_rewrite());  // (nothing to do)
    CHECK(!std::filesystem::exists(path + ".checkpoint"));
  }
  auto all = replay_all(path, st);
  REQUIRE(all.size() == 1);
  CHECK(all[0].rec.id.object->key == "clean");
}

TEST_CASE("journal: a packed member's offset and flag round-trip; remove_member names one") {
  test::temp_dir dir;
  const std::string path = (dir.path() / "journal").string();
  std::string recs;
  encode_insert(recs, 5, 0, true, rec_of("a", 1));
  encode_insert(recs, 5, 8192, true, rec_of("b", 2));
  encode_remove_member(recs, 5, 8192);
  encode_insert(recs, 6, 0, false, rec_of("c", 3));
  append_records(path, recs);
  replay_stats st;
  auto got = replay_all(path, st);
  REQUIRE(got.size() == 4);
  CHECK((got[0].type == record_type::insert && got[0].slot == 5 && got[0].offset == 0 &&
         got[0].packed && got[0].rec.id.object->key == "a"));
  CHECK((got[1].type == record_type::insert && got[1].offset == 8192 && got[1].packed &&
         got[1].rec.seq == 2));
  CHECK((got[2].type == record_type::remove_member && got[2].slot == 5 && got[2].offset == 8192));
  CHECK((got[3].type == record_type::insert && got[3].slot == 6 && !got[3].packed));
  CHECK(st.torn_bytes == 0);
}

TEST_CASE("journal: a journal of format 1 (magic VKYJRN01) is not replayed") {
  test::temp_dir dir;
  const std::string path = (dir.path() / "journal").string();
  {
    std::string old = "VKYJRN01";
    encode_insert(old, 1, 0, false, rec_of("x", 1));
    std::ofstream f(path, std::ios::binary);
    f.write(old.data(), static_cast<std::streamsize>(old.size()));
  }
  replay_stats st;
  CHECK(replay_all(path, st).empty());
  CHECK(st.records == 0);
}
}  // namespace test_journal
