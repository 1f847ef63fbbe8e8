#include <doctest/doctest.h>

#include <algorithm>

#include <set>

#include "core/errors.hpp"
#include "prefetch/predictor.hpp"
#include "result_printer.hpp"

using namespace valkyrie;
using namespace valkyrie::prefetch;

TEST_CASE("numbered successors keep padding and widen past nines") {
  CHECK(numbered_successor("shard_0009.tar") == "shard_0010.tar");
  CHECK(numbered_successor("shard_0010.tar") == "shard_0011.tar");
  CHECK(numbered_successor("shard_999.tar") == "shard_1000.tar");
  CHECK(numbered_successor("part-00099") == "part-00100");
  CHECK(numbered_successor("v2/data7") == "v2/data8");  // the last run of digits
  CHECK(numbered_successor("epoch1_shard9.tar") == "epoch1_shard10.tar");
  CHECK_FALSE(numbered_successor("readme.txt"));
}

namespace {
// A sorted vector of file names as a listing next_in_listing walks; the result as names.
std::vector<std::string> next_in_directory(const std::vector<std::string>& files, const std::string& name,
                                           unsigned count) {
  struct names {
    const std::vector<std::string>& v;
    std::size_t size() const { return v.size(); }
    std::string_view name(std::size_t i) const { return v[i]; }
    bool is_file(std::size_t) const { return true; }
    std::size_t find(std::string_view n) const {
      auto it = std::lower_bound(v.begin(), v.end(), n);
      return it != v.end() && *it == n ? static_cast<std::size_t>(it - v.begin()) : ~std::size_t{0};
    }
  } dir{files};
  std::vector<std::string> out;
  for (auto i : next_in_listing(dir, dir.find(name), count)) out.push_back(files[i]);
  return out;
}
}  // namespace

TEST_CASE("next files in a directory: successors that exist, else listing order") {
  std::vector<std::string> files = {"shard_0008.tar", "shard_0009.tar", "shard_0010.tar", "shard_0011.tar",
                                    "shard_0013.tar", "zeta.bin"};
  CHECK(next_in_directory(files, "shard_0009.tar", 2) == std::vector<std::string>{"shard_0010.tar", "shard_0011.tar"});
  // A gap: 0012 is missing, so it is never requested; the successor chain stops there.
  CHECK(next_in_directory(files, "shard_0010.tar", 3) == std::vector<std::string>{"shard_0011.tar"});
  // No successor at all (0014 missing): listing order.
  CHECK(next_in_directory(files, "shard_0013.tar", 2) == std::vector<std::string>{"zeta.bin"});
  std::vector<std::string> words = {"apple", "banana", "cherry", "date"};
  CHECK(next_in_directory(words, "banana", 2) == std::vector<std::string>{"cherry", "date"});
  CHECK(next_in_directory(words, "date", 2).empty());
}

TEST_CASE("manifests: comments, blanks, repeats, unknown keys reported by line") {
  std::set<std::string> bucket = {"a.tar", "b.tar", "c.tar", "dir/d.tar"};
  auto exists = [&](const std::string& k) { return bucket.count(k) > 0; };
  auto m = parse_manifest("# epoch 1\n a.tar \n\nb.tar\nmissing.tar\n/dir/d.tar\ndir/\n# epoch 2\nb.tar\r\na.tar\n", exists);
  CHECK(m.order == std::vector<std::string>{"a.tar", "b.tar", "dir/d.tar", "b.tar", "a.tar"});
  REQUIRE(m.problems.size() == 2);
  CHECK(m.problems[0].line == 5);
  CHECK(m.problems[0].key == "missing.tar");
  CHECK(m.problems[0].reason == "no such key");
  CHECK(m.problems[1].line == 7);
  CHECK(m.problems[1].reason == "not a file key");
  auto none = parse_manifest("# nothing\n\nmissing\n", exists);
  CHECK(none.order.empty());
  REQUIRE(none.problems.size() == 1);
  CHECK(none.problems[0].line == 3);
  CHECK(parse_manifest("", exists).order.empty());
}

TEST_CASE("the manifest order advances through repeated epochs") {
  predictor p({"s1", "s2", "s3", "s1", "s3", "s2"});
  CHECK(p.first(2) == std::vector<std::string>{"s1", "s2"});
  CHECK(p.next_in_order("s1", 2) == std::vector<std::string>{"s2", "s3"});
  CHECK(p.next_in_order("s2", 2) == std::vector<std::string>{"s3", "s1"});
  CHECK(p.next_in_order("s3", 2) == std::vector<std::string>{"s1", "s3"});
  CHECK(p.next_in_order("s1", 2) == std::vector<std::string>{"s3", "s2"});  // epoch 2
  CHECK(p.next_in_order("s3", 9) == std::vector<std::string>{"s2"});
  CHECK(p.next_in_order("s2", 2).empty());                                  // the end
  CHECK(p.next_in_order("unknown", 2).empty());
  // A key only behind the cursor: a new pass starts from its first occurrence.
  CHECK(p.next_in_order("s1", 1) == std::vector<std::string>{"s2"});
}

TEST_CASE("next_use: distance in the training order from the cursor, wrapping into the next pass") {
  prefetch::predictor p({"a", "b", "c", "a", "b", "c"});
  auto d = [&p](const char* k) { return p.next_use(k, 0) >> 24; };
  CHECK(d("a") == 0);
  CHECK(d("b") == 1);
  CHECK(d("c") == 2);
  CHECK(p.next_use("zzz", 0) == prefetch::predictor::never);
  CHECK(p.next_use("b", 3) > p.next_use("b", 2));  // later chunks of a file are read later
  p.next_in_order("b", 1);                          // the reader is at position 1
  CHECK(d("a") == 2);
  CHECK(d("b") == 0);
  CHECK(d("c") == 1);
  p.next_in_order("c", 1);
  p.next_in_order("a", 1);
  p.next_in_order("b", 1);
  p.next_in_order("c", 1);                          // position 5, the last
  CHECK(d("a") == 1);                               // the next pass starts with it
  CHECK(d("b") == 2);
  // The reader of "c" (at the cursor) is in chunk 4: chunks before it are needed next pass.
  p.reading("c", 4);
  auto dc = [&p](const char* k, std::uint64_t chunk) { return p.next_use(k, chunk) >> 24; };
  CHECK(dc("c", 5) == 0);
  CHECK(dc("c", 4) == 0);
  CHECK(dc("c", 3) == 3);                           // position 2 of the next pass
  p.reading("a", 9);                                // not at the cursor: ignored
  CHECK(dc("a", 0) == 1);
}
