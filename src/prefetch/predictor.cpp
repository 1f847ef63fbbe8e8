#include "prefetch/predictor.hpp"

#include <algorithm>
#include <functional>

#include "core/errors.hpp"

namespace valkyrie::prefetch {

manifest parse_manifest(std::string_view text, const std::function<bool(const std::string&)>& exists) {
  manifest m;
  unsigned line_no = 0;
  while (!text.empty()) {
    auto nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    ++line_no;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.remove_suffix(1);
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
    if (line.empty() || line.front() == '#') continue;
    std::string key(line);
    while (!key.empty() && key.front() == '/') key.erase(0, 1);
    if (key.empty() || key.back() == '/') {
      m.problems.push_back({line_no, std::string(line), "not a file key"});
    } else if (!exists(key)) {
      m.problems.push_back({line_no, key, "no such key"});
    } else {
      m.order.push_back(std::move(key));
    }
  }
  return m;
}

std::optional<std::string> numbered_successor(std::string_view name) {
  auto last_digit = name.find_last_of("0123456789");
  if (last_digit == std::string_view::npos) return std::nullopt;
  std::size_t first_digit = last_digit;
  while (first_digit > 0 && name[first_digit - 1] >= '0' && name[first_digit - 1] <= '9') --first_digit;
  std::string digits(name.substr(first_digit, last_digit - first_digit + 1));
  // Add one, right to left, keeping the width (and growing it past all nines).
  int i = static_cast<int>(digits.size()) - 1;
  for (; i >= 0; --i) {
    if (digits[static_cast<std::size_t>(i)] == '9') {
      digits[static_cast<std::size_t>(i)] = '0';
    } else {
      ++digits[static_cast<std::size_t>(i)];
      break;
    }
  }
  if (i < 0) digits.insert(digits.begin(), '1');
  return std::string(name.substr(0, first_digit)) + digits + std::string(name.substr(last_digit + 1));
}

predictor::predictor(std::vector<std::string> order) : order_(std::move(order)) {
  positions_.reserve(order_.size());  // (no rehash while it fills: an order of 1.28 M keys)
  for (std::size_t i = 0; i < order_.size(); ++i) positions_[order_[i]].push_back(i);
}

std::uint64_t predictor::next_use(std::string_view key, std::uint64_t chunk) const {
  auto it = positions_.find(key);
  if (it == positions_.end()) return never;
  const auto& pos = it->second;
  std::size_t cursor = cursor_.load(std::memory_order_relaxed);
  // The first occurrence at or after the cursor (after it, for the part of the current file
  // already read); past the end, the next pass starts over.
  bool passed = chunk < passed_chunks_.load(std::memory_order_relaxed);
  auto next = passed ? std::upper_bound(pos.begin(), pos.end(), cursor) : std::lower_bound(pos.begin(), pos.end(), cursor);
  std::uint64_t distance = next != pos.end() ? *next - cursor : pos.front() + order_.size() - cursor;
  return (distance << 24) + std::min<std::uint64_t>(chunk, (1u << 24) - 1);
}

std::vector<std::string> predictor::next_in_order(const std::string& key, unsigned count) {
  std::size_t at = advance_to(key);
  if (at == npos) return {};
  std::vector<std::string> out;
  for (std::size_t i = at + 1; i < order_.size() && out.size() < count; ++i) out.push_back(order_[i]);
  return out;
}

std::size_t predictor::advance_to(const std::string& key) {
  std::lock_guard lock(mu_);
  auto found = positions_.find(key);
  if (found == positions_.end()) return npos;
  // The next occurrence from the cursor on; failing that (a new pass began), the first one.
  // (positions are ascending: a binary search, not a scan of the order.)
  const auto& pos = found->second;
  const std::size_t cursor = cursor_.load(std::memory_order_relaxed);
  auto next = std::lower_bound(pos.begin(), pos.end(), cursor);
  std::size_t at = next != pos.end() ? *next : pos.front();
  if (at != cursor) passed_chunks_.store(0, std::memory_order_relaxed);
  cursor_.store(at, std::memory_order_relaxed);
  return at;
}

void predictor::reading(std::string_view key, std::uint64_t chunk) {
  std::size_t cursor = cursor_.load(std::memory_order_relaxed);
  if (cursor < order_.size() && order_[cursor] == key) {
    std::uint64_t prev = passed_chunks_.load(std::memory_order_relaxed);
    while (chunk > prev && !passed_chunks_.compare_exchange_weak(prev, chunk, std::memory_order_relaxed)) {
    }
  }
}

std::vector<std::string> predictor::first(unsigned count) const {
  return {order_.begin(), order_.begin() + std::min<std::size_t>(count, order_.size())};
}

}  // namespace valkyrie::prefetch
