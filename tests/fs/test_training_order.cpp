// read_order: a training order checked against the listing, both ways of
// finding its keys (a tree search per key for a small order, a walk of the listing for a big
// one), the lines that name missing keys, the order's size in whole chunks and its bytes
// (distinct, and as read).
#include <doctest/doctest.h>

#include "fs/training_order.hpp"

using namespace valkyrie;
using namespace valkyrie::fs;

namespace test_training_order {

object_map listing_of(std::size_t n, std::uint64_t size) {
  object_map m;
  for (std::size_t i = 0; i < n; ++i) {
    std::string key = "d/f" + std::to_string(i);
    m[key] = s3::object_info{key, size + i, "\"e\"", {}};
  }
  return m;
}

std::uint64_t chunks_of(std::uint64_t size, std::uint64_t chunk) {
  return (size + chunk - 1) / chunk * chunk;
}

TEST_CASE("read_order: every key listed, repeats kept in order but sized once, both search ways") {
  const std::uint64_t chunk = 1000;
  for (std::size_t listed : {std::size_t{4}, std::size_t{400}}) {  // (a walk; a search per key)
    CAPTURE(listed);
    auto listing = listing_of(listed, 1500);  // f0: 1500 bytes (2 chunks), f1: 1501, ...
    auto r = read_order("d/f2\n# a comment\n\n  d/f0  \n/d/f2\nd/f1\n", listing, chunk);
    REQUIRE(r.predictor);
    CHECK(r.problems.empty());
    CHECK(r.predictor->keys() == std::vector<std::string>{"d/f2", "d/f0", "d/f2", "d/f1"});
    CHECK(r.chunk_bytes == 3 * chunks_of(1500, chunk));
    CHECK(r.distinct_bytes == 1502 + 1500 + 1501);
    CHECK(r.read_bytes == 2 * 1502 + 1500 + 1501);             // (d/f2 twice)
    CHECK(r.in_range_bytes == 0);                              // (no range asked)
    CHECK(read_order("d/f2\nd/f0\nd/f1\n", listing, 0, {1501, 1502}).in_range_bytes == 1501 + 1502);
    CHECK(read_order("d/f1\n", listing, 0).chunk_bytes == 0);  // (not asked)
  }
}

TEST_CASE("read_order: missing keys and non-file lines are named with their lines, the rest kept") {
  for (std::size_t listed : {std::size_t{3}, std::size_t{300}}) {
    CAPTURE(listed);
    auto listing = listing_of(listed, 10);
    auto r = read_order("d/f1\nd/nope\nd/\nd/f0\nd/f1\n", listing, 8);
    REQUIRE(r.predictor);
    CHECK(r.predictor->keys() == std::vector<std::string>{"d/f1", "d/f0", "d/f1"});
    REQUIRE(r.problems.size() == 2);
    CHECK(r.problems[0].line == 2);
    CHECK(r.problems[0].key == "d/nope");
    CHECK(r.problems[0].reason == "no such key");
    CHECK(r.problems[1].line == 3);
    CHECK(r.problems[1].reason == "not a file key");
    CHECK(r.chunk_bytes == chunks_of(11, 8) + chunks_of(10, 8));  // (what was kept)
    CHECK(r.distinct_bytes == 11 + 10);
    CHECK(r.read_bytes == 2 * 11 + 10);
  }
}

TEST_CASE("read_order: no listing, no keys; an order's size counts only the keys listed") {
  auto none = read_order("a\nb\n", object_map{}, 8);
  CHECK(!none.predictor->has_order());
  CHECK(none.problems.size() == 2);
  auto empty = read_order("# nothing\n\n", listing_of(5, 1), 8);
  CHECK(!empty.predictor->has_order());
  CHECK(empty.problems.empty());
  CHECK(read_order("d/f0\nd/f9\n", listing_of(5, 1), 8).chunk_bytes == 8);        // (d/f9 skipped)
  CHECK(read_order("d/f0\nd/f9\n", listing_of(10, 1), 8).chunk_bytes == 8 + 16);  // (1, 10 bytes)
}

}  // namespace test_training_order
