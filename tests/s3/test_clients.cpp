#include <doctest/doctest.h>

#include "core/errors.hpp"
#include "helpers.hpp"
#include "s3/fault_client.hpp"
#include "s3/memory_client.hpp"

using namespace valkyrie;
using namespace valkyrie::s3;

TEST_CASE("memory client answers like S3") {
  auto m = std::make_shared<memory_client>();
  std::string etag = m->put("dir/a", "0123456789");
  m->put("dir/b", "x");
  m->put("top", "");
  auto info = test::run(m->head("dir/a"));
  REQUIRE(info);
  CHECK(info->size == 10);
  CHECK(info->etag == etag);
  CHECK(test::run(m->head("nope")).error() == errc::not_found);

  char buf[8];
  CHECK(test::run(m->get("dir/a", 6, std::span<char>(buf, 8), etag)).value() == 4);
  CHECK(std::string(buf, 4) == "6789");
  CHECK(test::run(m->get("dir/a", 10, std::span<char>(buf, 8), "")).error() == errc::invalid_range);
  CHECK(test::run(m->get("dir/a", 0, std::span<char>(buf, 8), "\"other\"")).error() == errc::precondition_failed);
  // An overwrite changes the ETag, so a reader pinned to the old one is refused.
  std::string etag2 = m->put("dir/a", "new");
  CHECK(etag2 != etag);
  CHECK(test::run(m->get("dir/a", 0, std::span<char>(buf, 8), etag)).error() == errc::precondition_failed);

  auto page = test::run(m->list({"", "/", "", "", 1000}));
  REQUIRE(page);
  CHECK(page->common_prefixes == std::vector<std::string>{"dir/"});
  REQUIRE(page->objects.size() == 1);
  CHECK(page->objects[0].key == "top");
  CHECK(m->gets == 4);
}

TEST_CASE("fault client injects errors by schedule and probability") {
  auto m = std::make_shared<memory_client>();
  m->put("k", "data");
  fault_client f(m, 1);
  f.fail_next(2, errc::slow_down);
  CHECK(test::run(f.head("k")).error() == errc::slow_down);
  CHECK(test::run(f.head("k")).error() == errc::slow_down);
  CHECK(test::run(f.head("k")));
  f.fail_with_probability(0.5, errc::server_error);
  int failures = 0;
  for (int i = 0; i < 400; ++i) failures += test::run(f.head("k")) ? 0 : 1;
  CHECK(failures > 140);
  CHECK(failures < 260);
  CHECK(f.injected == static_cast<std::uint64_t>(2 + failures));
  f.fail_with_probability(0, {});
  f.set_delay(std::chrono::milliseconds(20));
  auto t0 = std::chrono::steady_clock::now();
  char b[4];
  CHECK(test::run(f.get("k", 0, std::span<char>(b, 4), "")).value() == 4);
  CHECK(std::chrono::steady_clock::now() - t0 >= std::chrono::milliseconds(20));
}
