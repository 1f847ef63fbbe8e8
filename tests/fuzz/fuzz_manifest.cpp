// Fuzz target: training orders, from --manifest at mount time or written to /.valkyrie/order
// (src/prefetch/predictor.*: parse_manifest, the predictor over the order, numbered_successor
// and next_in_listing). Which keys "exist" is decided by a hash of the key. Invariants: usable
// keys are non-empty file keys without a leading '/'; every line is counted once; the
// predictor's answers stay inside the order; a numbered successor differs from its name only in
// its last run of digits, which grows by one.
#include <algorithm>
#include <string>
#include <vector>

#include "fuzz.hpp"
#include "prefetch/predictor.hpp"

namespace {
using namespace valkyrie::prefetch;

bool exists(const std::string& key) {
  std::size_t h = std::hash<std::string>{}(key);
  return h % 5 != 0;
}

// A sorted listing as next_in_listing walks it.
struct listing {
  std::vector<std::string> names;
  std::size_t size() const { return names.size(); }
  std::string_view name(std::size_t i) const { return names[i]; }
  bool is_file(std::size_t i) const { return names[i].size() % 7 != 0; }
  std::size_t find(const std::string& n) const {
    auto it = std::lower_bound(names.begin(), names.end(), n);
    return it != names.end() && *it == n ? static_cast<std::size_t>(it - names.begin())
                                         : ~std::size_t{0};
  }
};

void check_successor(const std::string& name) {
  auto next = numbered_successor(name);
  bool has_digit = name.find_first_of("0123456789") != std::string::npos;
  FUZZ_CHECK(next.has_value() == has_digit, name);
  if (!next) return;
  // Same text around the last run of digits; the run itself is one more, as a number.
  auto last = name.find_last_of("0123456789");
  std::string suffix = name.substr(last + 1);
  FUZZ_CHECK(next->size() >= name.size() && next->size() <= name.size() + 1, *next);
  FUZZ_CHECK(next->compare(next->size() - suffix.size(), suffix.size(), suffix) == 0, *next);
  auto first = last;
  while (first > 0 && name[first - 1] >= '0' && name[first - 1] <= '9') --first;
  FUZZ_CHECK(next->compare(0, first, name, 0, first) == 0, *next);
  std::string digits = name.substr(first, last - first + 1);
  std::string grown = next->substr(first, next->size() - suffix.size() - first);
  bool all_nines = std::all_of(digits.begin(), digits.end(), [](char c) { return c == '9'; });
  FUZZ_CHECK(grown.size() == digits.size() + (all_nines ? 1 : 0), *next);
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  manifest m = parse_manifest(text, exists);
  std::size_t lines = static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n')) + 1;
  FUZZ_CHECK(m.order.size() + m.problems.size() <= lines, text);
  for (auto& k : m.order) {
    FUZZ_CHECK(!k.empty() && k.front() != '/' && k.back() != '/' && exists(k), k);
    FUZZ_CHECK(k.find('\n') == std::string::npos, k);
  }
  for (auto& p : m.problems) FUZZ_CHECK(p.line >= 1 && p.line <= lines, p.key);

  predictor pred(m.order);
  FUZZ_CHECK(pred.has_order() == !m.order.empty(), text);
  auto first = pred.first(4);
  FUZZ_CHECK(first.size() == std::min<std::size_t>(4, m.order.size()), text);
  std::size_t n = 0;
  for (auto& k : m.order) {
    if (++n > 64) break;
    FUZZ_CHECK(pred.contains(k), k);
    auto next = pred.next_in_order(k, 3);
    FUZZ_CHECK(next.size() <= 3, k);
    std::size_t at = pred.position();
    FUZZ_CHECK(at < m.order.size() && m.order[at] == k, k);
    for (std::size_t i = 0; i < next.size(); ++i) FUZZ_CHECK(next[i] == m.order[at + 1 + i], k);
    pred.reading(k, n % 3);
    FUZZ_CHECK(pred.next_use(k, n) != predictor::never, k);
    FUZZ_CHECK(pred.advance_to(k) == at, k);
    check_successor(k);
  }
  FUZZ_CHECK(pred.next_use("\n", 0) == predictor::never || pred.contains("\n"), text);

  listing dir{m.order};
  std::sort(dir.names.begin(), dir.names.end());
  dir.names.erase(std::unique(dir.names.begin(), dir.names.end()), dir.names.end());
  for (std::size_t i = 0; i < dir.size() && i < 16; ++i)
    for (std::size_t j : next_in_listing(dir, i, 4))
      FUZZ_CHECK(j < dir.size() && dir.is_file(j), dir.names[i]);
  for (auto& p : m.problems) check_successor(p.key);
  return 0;
}
