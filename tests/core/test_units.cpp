#include <doctest/doctest.h>

#include "core/errors.hpp"
#include "core/memory_room.hpp"
#include "core/units.hpp"

using namespace valkyrie;

TEST_CASE("human sizes") {
  CHECK(parse_size("0").value() == 0);
  CHECK(parse_size("4096").value() == 4096);
  CHECK(parse_size("16G").value() == 16ull << 30);
  CHECK(parse_size("512MiB").value() == 512ull << 20);
  CHECK(parse_size("64MB").value() == 64ull << 20);
  CHECK(parse_size("1.5k").value() == 1536);
  CHECK(parse_size(" 2 GiB ").value() == 2ull << 30);
  CHECK(parse_size("1T").value() == 1ull << 40);
  for (const char* bad : {"", "G", "-1", "12X", "1.1", "1e3", "0x10", "abc", "16GiBs", "99999999999T"}) {
    INFO(std::string(bad));
    CHECK(parse_size(bad).error() == errc::invalid_argument);
  }
  CHECK(format_size(1536) == "1.5 KiB");
  CHECK(format_size(100) == "100 B");
  CHECK(format_size(1ull << 30) == "1.0 GiB");
}

TEST_CASE("durations") {
  using namespace std::chrono;
  CHECK(parse_duration("30ms").value() == milliseconds(30));
  CHECK(parse_duration("10s").value() == seconds(10));
  CHECK(parse_duration("10").value() == seconds(10));
  CHECK(parse_duration("2m").value() == minutes(2));
  CHECK(parse_duration("1.5s").value() == milliseconds(1500));
  CHECK(parse_duration("250us").value() == microseconds(250));
  CHECK_FALSE(parse_duration("fast"));
  CHECK_FALSE(parse_duration("-1s"));
  CHECK_FALSE(parse_duration("3 days"));
}

TEST_CASE("error vocabulary") {
  std::error_code ec = errc::precondition_failed;
  CHECK(ec.category().name() == std::string("valkyrie"));
  CHECK(ec.message().find("ETag") != std::string::npos);
  CHECK(ec == errc::precondition_failed);
  CHECK(ec != errc::not_found);
}

TEST_CASE("memory room: MemAvailable, and a memory cgroup's limit less what it holds beyond page cache") {
  CHECK(valkyrie::meminfo_available("MemTotal:       24683656 kB\nMemFree:  100 kB\nMemAvailable:   22237292 kB\n") ==
        22237292ull * 1024);
  CHECK_FALSE(valkyrie::meminfo_available("MemTotal: 1 kB\n"));
  // v2: a 4 GiB limit, 3 GiB used of which 1 GiB page cache: 2 GiB of room.
  CHECK(valkyrie::cgroup_room("4294967296\n", "3221225472\n", "anon 2147483648\nfile 1073741824\n") == 2147483648ull);
  CHECK_FALSE(valkyrie::cgroup_room("max\n", "3221225472\n", "file 0\n"));
  // v1: no limit is a page-rounded 2^63 - 1; "total_cache" is the page cache.
  CHECK_FALSE(valkyrie::cgroup_room("9223372036854771712\n", "1426087936\n", "cache 1\n"));
  CHECK(valkyrie::cgroup_room("1000\n", "900\n", "cache 300\ntotal_cache 400\n") == 500);
  CHECK(valkyrie::cgroup_room("1000\n", "1500\n", "") == 0);
  auto here = valkyrie::available_memory();
  REQUIRE(here);
  CHECK(here->bytes > 0);
}
