#include <doctest/doctest.h>

#include <random>
#include <set>

#include "core/errors.hpp"
#include "helpers.hpp"
#include "s3/fault_client.hpp"
#include "s3/memory_client.hpp"
#include "s3/parallel_list.hpp"

using namespace valkyrie;
using namespace valkyrie::s3;

namespace {

// The reference: one continuation chain, as S3 pages it.
awaitable<result<list_page>> sequential(object_client& c, list_request req) {
  list_page out;
  for (;;) {
    auto page = co_await c.list(req);
    if (!page) co_return page.error();
    for (auto& o : page->objects) out.objects.push_back(o);
    for (auto& p : page->common_prefixes) out.common_prefixes.push_back(p);
    if (!page->truncated) co_return out;
    req.continuation_token = page->next_continuation_token;
  }
}

std::vector<std::string> keys_of(const list_page& p) {
  std::vector<std::string> k;
  for (auto& o : p.objects) k.push_back(o.key);
  return k;
}

struct outcome {
  std::uint64_t sequential_requests = 0;
  parallel_list_stats stats;
};

// Lists `prefix` both ways and checks they agree exactly.
outcome compare(memory_client& m, const std::string& prefix, const std::string& delimiter,
                parallel_list_options opts = {}) {
  outcome o;
  list_request req{prefix, delimiter, "", "", 1000};
  auto before = m.lists.load();
  auto want = test::run(sequential(m, req));
  o.sequential_requests = m.lists.load() - before;
  auto got = test::run(parallel_list(m, req, opts, &o.stats));
  REQUIRE(want);
  REQUIRE(got);
  CHECK(keys_of(*got) == keys_of(*want));
  CHECK(got->common_prefixes == want->common_prefixes);
  CHECK(!got->truncated);
  for (std::size_t i = 0; i < got->objects.size() && i < want->objects.size(); ++i)
    if (got->objects[i].etag != want->objects[i].etag) FAIL("etag differs for " << got->objects[i].key);
  return o;
}

std::string utf8(std::uint32_t cp) {
  std::string s;
  if (cp < 0x80) s += char(cp);
  else if (cp < 0x800) s += char(0xC0 | (cp >> 6)), s += char(0x80 | (cp & 0x3F));
  else if (cp < 0x10000)
    s += char(0xE0 | (cp >> 12)), s += char(0x80 | ((cp >> 6) & 0x3F)), s += char(0x80 | (cp & 0x3F));
  else
    s += char(0xF0 | (cp >> 18)), s += char(0x80 | ((cp >> 12) & 0x3F)), s += char(0x80 | ((cp >> 6) & 0x3F)),
        s += char(0x80 | (cp & 0x3F));
  return s;
}

}  // namespace

TEST_CASE("cut points lie strictly between the page and the end, increasing, valid UTF-8 below U+D800") {
  auto pts = cut_points("d/file-000000", "d/file-000999", "", 15);
  REQUIRE(pts.size() == 15);
  CHECK(pts.front() > "d/file-000999");
  for (std::size_t i = 1; i < pts.size(); ++i) CHECK(pts[i - 1] < pts[i]);
  CHECK(pts.front() < "d/file-002000");  // about one page further
  auto bounded = cut_points("d/a00", "d/a99", "d/b", 15);
  for (auto& p : bounded) CHECK((p > "d/a99" && p < "d/b"));
  CHECK(cut_points("x", "x", "", 15).empty());
  // Non-ASCII keys: points are valid UTF-8 of code points below U+D800, after the page.
  auto wide = cut_points("d/" + utf8(0x4E00) + "a", "d/" + utf8(0x4E01) + "z", "", 15);
  CHECK(!wide.empty());
  for (auto& p : wide) {
    CHECK(p > "d/" + utf8(0x4E01) + "z");
    for (std::size_t i = 0; i < p.size();) {
      auto b = static_cast<unsigned char>(p[i]);
      int len = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : 0;
      REQUIRE(len > 0);
      if (len == 3) CHECK(b < 0xED);  // below U+D000..: never a surrogate or U+E000 and up
      for (int k = 1; k < len; ++k) REQUIRE((static_cast<unsigned char>(p[i + k]) & 0xC0) == 0x80);
      i += len;
    }
  }
}

TEST_CASE("parallel listing returns exactly the sequential listing, with few extra requests") {
  std::mt19937_64 rng(13);
  SUBCASE("dense numbered names") {
    memory_client m;
    for (int i = 0; i < 30000; ++i) {
      char name[32];
      std::snprintf(name, sizeof name, "dir/file-%06d.jpg", i);
      m.put(name, "");
    }
    auto o = compare(m, "dir/", "/");
    CHECK(o.sequential_requests == 30);
    CHECK(o.stats.requests <= 3 * o.sequential_requests);
    CHECK(o.stats.splits > 0);
  }
  SUBCASE("random names over the whole alphabet, with subdirectories") {
    memory_client m;
    std::set<std::string> subdirs;
    for (int i = 0; i < 12000; ++i) {
      std::string name;
      int len = 1 + rng() % 12;
      for (int k = 0; k < len; ++k) name += char(0x21 + rng() % 94);
      if (name == "/" || name.find('/') != std::string::npos) {
        m.put("p/" + name + "x", "");  // some keys fall into subdirectories
        continue;
      }
      m.put("p/" + name, "");
    }
    auto o = compare(m, "p/", "/");
    CHECK(o.stats.requests <= 3 * o.sequential_requests + 16);
    compare(m, "p/", "");  // no delimiter: every key
  }
  SUBCASE("clustered keys: a few dense runs far apart") {
    memory_client m;
    for (const char* run : {"a", "m/q", "mzzzz", "zz~"})
      for (int i = 0; i < 2500; ++i) m.put(std::string("c/") + run + std::to_string(100000 + i), "");
    auto o = compare(m, "c/", "/");
    CHECK(o.stats.requests <= 3 * o.sequential_requests + 4 * 16);
  }
  SUBCASE("single-character names and a tiny directory") {
    memory_client m;
    for (int c = 0x21; c < 0x7f; ++c)
      if (c != '/') m.put(std::string("s/") + char(c), "");
    auto o = compare(m, "s/", "/");
    CHECK(o.stats.requests == 1);
    compare(m, "nothing/", "/");
  }
  SUBCASE("non-ASCII names: accents, CJK, emoji, private use, controls") {
    memory_client m;
    const std::uint32_t ranges[][2] = {{0x41, 0x7a}, {0xc0, 0x17f}, {0x4e00, 0x4fff}, {0xe000, 0xe0ff},
                                        {0x1f600, 0x1f64f}, {0x1, 0x1f}};
    for (int i = 0; i < 9000; ++i) {
      std::string name;
      int len = 1 + rng() % 6;
      for (int k = 0; k < len; ++k) {
        auto& r = ranges[rng() % 6];
        name += utf8(r[0] + rng() % (r[1] - r[0] + 1));
      }
      m.put("u/" + name, "");
      if (i % 50 == 0) m.put("u/" + name + "/inner", "");
    }
    auto o = compare(m, "u/", "/");
    CHECK(o.stats.requests <= 3 * o.sequential_requests + 2 * 16);
  }
  SUBCASE("one page per request and little concurrency still agree") {
    memory_client m;
    for (int i = 0; i < 3000; ++i) m.put("k/" + std::to_string(rng() % 1000000), "");
    compare(m, "k/", "/", {1, 2});
    compare(m, "k/", "/", {32, 32});
  }
}

TEST_CASE("a failing page fails the whole listing") {
  auto m = std::make_shared<memory_client>();
  for (int i = 0; i < 10000; ++i) m->put("f/" + std::to_string(100000 + i), "");
  for (unsigned at = 0; at < 6; ++at) {
    fault_client f(m, at + 1);
    f.fail_with_probability(0.2, errc::server_error);
    auto got = test::run(parallel_list(f, {"f/", "/", "", "", 1000}));
    if (f.injected > 0) {
      REQUIRE(!got);
      CHECK(got.error() == errc::server_error);
    } else {
      CHECK(got);
    }
  }
  fault_client first(m, 1);
  first.fail_next(1, errc::access_denied);
  CHECK(test::run(parallel_list(first, {"f/", "/", "", "", 1000})).error() == errc::access_denied);
}
