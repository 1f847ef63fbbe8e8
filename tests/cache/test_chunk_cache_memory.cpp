// The cache's arena as memory: aligned to 2 MiB, marked for transparent huge pages when asked
// (use_huge_pages), backed at once by prefault(), and the bytes stored in it unchanged.
#include <doctest/doctest.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include <boost/asio/use_future.hpp>

#include "cache/chunk_cache.hpp"
#include "core/errors.hpp"

using namespace valkyrie;
using namespace valkyrie::cache;

namespace test_chunk_cache_memory {

// The mapping of /proc/self/smaps that holds `p`: its start and its THPeligible and Rss fields.
struct mapping {
  std::uintptr_t start = 0;
  int thp_eligible = -1;
  std::uint64_t rss_kib = 0;
};
mapping mapping_of(const void* p) {
  const auto at = reinterpret_cast<std::uintptr_t>(p);
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  mapping m;
  bool inside = false;
  while (std::getline(smaps, line)) {
    std::uintptr_t lo = 0, hi = 0;
    char dash = 0;
    std::istringstream head(line);
    if (head >> std::hex >> lo >> dash >> hi && dash == '-') {
      if (inside) break;  // (the next mapping)
      inside = lo <= at && at < hi;
      if (inside) m.start = lo;
      continue;
    }
    if (!inside) continue;
    if (line.rfind("THPeligible:", 0) == 0) m.thp_eligible = std::stoi(line.substr(12));
    if (line.rfind("Rss:", 0) == 0) m.rss_kib = std::stoull(line.substr(4));
  }
  return m;
}

std::string thp_mode() {
  std::ifstream f("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string s;
  std::getline(f, s);
  return s;
}

// Stores one chunk of `byte`s and returns where its data lies (checking the bytes).
const char* store_one(chunk_cache& cache, char byte) {
  asio::io_context io(1);
  const chunk_id id{make_version("b", "k", "\"e\"", 1 << 20), 64 * 1024, 0};
  auto fut = asio::co_spawn(
      io,
      [](chunk_cache* c, chunk_id id, char byte) -> awaitable<const char*> {
        auto ref =
            co_await c->get(id, [byte](chunk_buffers pieces) -> awaitable<result<std::size_t>> {
              std::size_t n = 0;
              for (auto& p : pieces) {
                std::memset(p.data(), byte, p.size());
                n += p.size();
              }
              co_return n;
            });
        if (!ref) co_return nullptr;
        for (char c : ref->data())
          if (c != byte) co_return nullptr;
        co_return ref->data().data();
      }(&cache, id, byte),
      asio::use_future);
  io.run();
  return fut.get();
}

TEST_CASE("the arena is aligned to 2 MiB and marked for huge pages when asked; bytes unchanged") {
  const std::string mode = thp_mode();
  MESSAGE("transparent_hugepage/enabled: " << mode);
  chunk_cache huge(8 << 20, 64 * 1024);
  REQUIRE(huge.use_huge_pages());
  REQUIRE(!huge.prefault(2));
  const char* data = store_one(huge, 'h');
  REQUIRE(data);
  auto m = mapping_of(data);
  CHECK(m.start % (2 << 20) == 0);
  CHECK(m.rss_kib >= (8 << 10));  // (prefaulted: all of it resident)
  if (mode.find("[never]") == std::string::npos) CHECK(m.thp_eligible == 1);

  chunk_cache small_pages(8 << 20, 64 * 1024);
  const char* other = store_one(small_pages, 's');
  REQUIRE(other);
  if (mode.find("[madvise]") != std::string::npos) CHECK(mapping_of(other).thp_eligible == 0);
}

}  // namespace test_chunk_cache_memory
