// huge_region: aligned, usable, unmapped when its owner goes, movable without a double unmap.
#include <doctest/doctest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include "core/huge_region.hpp"

using valkyrie::huge_region;

namespace {
// Whether [p, p + 4 KiB) is mapped: mincore fails with ENOMEM on an unmapped page.
bool mapped(const char* p) {
  unsigned char v;
  return ::mincore(const_cast<char*>(p), 4096, &v) == 0;
}
}  // namespace

TEST_CASE("a huge region starts on a huge page boundary and holds what is written") {
  auto r = huge_region::reserve(3 * huge_region::huge_page + 4096);
  REQUIRE(r.has_value());
  CHECK(reinterpret_cast<std::uintptr_t>(r->data()) % huge_region::huge_page == 0);
  CHECK(r->size() == 3 * huge_region::huge_page + 4096);
  r->advise_huge();  // may be refused where THP is off; the memory works either way
  std::memset(r->data(), 0x5a, r->size());
  CHECK(r->data()[0] == 0x5a);
  CHECK(r->data()[r->size() - 1] == 0x5a);
  CHECK(mapped(r->data() + r->size() - 4096));
}

TEST_CASE("a huge region is unmapped by its last owner, once") {
  char* p = nullptr;
  {
    auto r = huge_region::reserve(huge_region::huge_page);
    REQUIRE(r.has_value());
    huge_region moved = std::move(*r);
    CHECK(r->data() == nullptr);
    p = moved.data();
    p[0] = 1;
    CHECK(mapped(p));
    huge_region again;
    again = std::move(moved);
    CHECK(again.data() == p);
    CHECK(mapped(p));
  }
  CHECK_FALSE(mapped(p));
}

TEST_CASE("reserving more address space than exists is an error, not an exception") {
  auto r = huge_region::reserve(std::size_t{1} << 62);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error() == std::errc::not_enough_memory);
}
