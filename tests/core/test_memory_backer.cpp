// memory_backer: backs every page of its ranges without changing a byte its owner writes
// meanwhile, counts what it backed (and gives the count back when it goes), takes the ranges in
// turn, and stops at its destructor without finishing.
#include <doctest/doctest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "core/huge_region.hpp"
#include "core/memory_backer.hpp"
#include "core/metrics.hpp"

using valkyrie::huge_region;
using valkyrie::memory_backer;

namespace {
constexpr std::size_t page = 4096;

// Pages of [p, p + bytes) in memory (mincore).
std::size_t resident_pages(char* p, std::size_t bytes) {
  std::vector<unsigned char> v(bytes / page);
  REQUIRE(::mincore(p, bytes, v.data()) == 0);
  std::size_t n = 0;
  for (auto b : v) n += b & 1;
  return n;
}

// Waits up to 30 s for the thread to end.
bool finishes(const memory_backer& b) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!b.finished()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}
}  // namespace

TEST_CASE("every page of every range is backed, and counted") {
  auto r = huge_region::reserve(16 * huge_region::huge_page);
  REQUIRE(r.has_value());
  const std::size_t half = 8 * huge_region::huge_page;
  valkyrie::metrics::gauge progress;
  {
    // Two ranges of the mapping, the second shorter: the rest stays unbacked.
    memory_backer b({{r->data(), half}, {r->data() + half, half / 2}}, huge_region::huge_page, 19,
                    &progress);
    CHECK(b.total_bytes() == half + half / 2);
    REQUIRE(finishes(b));
    CHECK(b.backed_bytes() == half + half / 2);
    CHECK(progress.value() == static_cast<std::int64_t>(half + half / 2));
    CHECK(resident_pages(r->data(), half + half / 2) == (half + half / 2) / page);
    CHECK(resident_pages(r->data() + half + half / 2, half / 2) == 0);
    for (std::size_t at = 0; at < half + half / 2; at += page) REQUIRE(r->data()[at] == 0);
  }
  CHECK(progress.value() == 0);  // (a second cache's backing counts from nothing)
}

TEST_CASE("bytes written while it backs stay as written") {
  auto r = huge_region::reserve(64 * huge_region::huge_page);
  REQUIRE(r.has_value());
  char* p = r->data();
  const std::size_t bytes = r->size();
  memory_backer b({{p, bytes}}, 64 * 1024, 0);
  // The owner writes every page while the backer goes over the same pages.
  for (std::size_t at = 0; at < bytes; at += page)
    std::memset(p + at, static_cast<int>(at / page % 251 + 1), page);
  REQUIRE(finishes(b));
  for (std::size_t at = 0; at < bytes; at += page) {
    const char want = static_cast<char>(at / page % 251 + 1);
    REQUIRE(p[at] == want);
    REQUIRE(p[at + page - 1] == want);
  }
}

TEST_CASE("the ranges are taken in turn: the first steps of every range before later ones") {
  // Range 1 is big; range 2 is one step. Taken in turn, range 2 is backed with the first steps,
  // not after all of range 1: once it is, most of range 1 is still to come.
  const std::size_t step = huge_region::huge_page;
  auto r = huge_region::reserve(2049 * step);
  REQUIRE(r.has_value());
  char* small = r->data() + 2048 * step;
  memory_backer b({{r->data(), 2048 * step}, {small, step}}, step, 19);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (resident_pages(small, step) < step / page) {
    REQUIRE(std::chrono::steady_clock::now() < deadline);
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  CHECK(resident_pages(r->data(), 2048 * step) < 1024 * step / page);
}

TEST_CASE("its destructor stops it early") {
  // 4 GiB reserved (not committed): destroyed at once, it has backed little of it.
  const std::size_t bytes = std::size_t{4} << 30;
  auto r = huge_region::reserve(bytes);
  REQUIRE(r.has_value());
  { memory_backer b({{r->data(), bytes}}, huge_region::huge_page, 19); }
  CHECK(resident_pages(r->data(), bytes) < bytes / page / 2);
}
