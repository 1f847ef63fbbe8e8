#include "cache/page_allocator.hpp"

#include <iterator>
#include <limits>
#include <stdexcept>

namespace valkyrie::cache {

page_allocator::page_allocator(std::uint32_t first_page, std::uint32_t page_count)
    : first_page_(first_page), page_count_(page_count), free_pages_(page_count) {
  if (std::uint64_t{first_page} + page_count > std::numeric_limits<std::uint32_t>::max())
    throw std::invalid_argument("page_allocator: the page range does not fit in 32 bits");
  if (page_count > 0) {
    by_addr_.emplace(first_page, page_count);
    by_size_.emplace(page_count, first_page);
  }
}

void page_allocator::erase_free(std::map<std::uint32_t, std::uint32_t>::iterator it) {
  by_size_.erase({it->second, it->first});
  by_addr_.erase(it);
}

void page_allocator::insert_free(std::uint32_t first, std::uint32_t count) {
  by_addr_.emplace(first, count);
  by_size_.emplace(count, first);
}

extent page_allocator::take(std::uint32_t first, std::uint32_t have, std::uint32_t count) {
  erase_free(by_addr_.find(first));
  // The rest keeps its place: its neighbours were not adjacent to the whole extent either.
  if (have > count) insert_free(first + count, have - count);
  free_pages_ -= count;
  return {first, count};
}

bool page_allocator::allocate(std::uint64_t bytes, unsigned max_extents, std::vector<extent>& out) {
  const std::uint64_t wanted = pages_for(bytes);
  if (wanted == 0) return true;
  if (max_extents == 0 || wanted > free_pages_) return false;
  const auto n = static_cast<std::uint32_t>(wanted);  // <= free_pages_, a 32-bit count

  // One extent: the smallest that holds n pages, the lowest address among equals.
  if (auto it = by_size_.lower_bound({n, 0}); it != by_size_.end()) {
    out.push_back(take(it->second, it->first, n));
    return true;
  }

  // Pieces: how many of the largest extents it takes (the fewest possible), before any change.
  unsigned pieces = 0;
  std::uint64_t sum = 0;
  for (auto it = by_size_.rbegin(); sum < n; ++it) {  // ends: n <= free_pages_
    if (++pieces > max_extents) return false;
    sum += it->first;
  }
  std::uint32_t left = n;
  for (unsigned i = 0; i + 1 < pieces; ++i) {  // the largest ones, whole
    auto largest = std::prev(by_size_.end());
    const auto [count, first] = *largest;
    out.push_back(take(first, count, count));
    left -= count;
  }
  // The last piece by best fit: the extent the count above stopped at holds it, maybe a smaller.
  auto it = by_size_.lower_bound({left, 0});
  out.push_back(take(it->second, it->first, left));
  return true;
}

void page_allocator::release(std::span<const extent> extents) {
  const std::uint64_t end = std::uint64_t{first_page_} + page_count_;
  for (const extent& e : extents) {
    if (e.count == 0) continue;
    const std::uint64_t e_end = std::uint64_t{e.first} + e.count;
    if (e.first < first_page_ || e_end > end)
      throw std::logic_error("page_allocator: released pages outside the range");
    auto next = by_addr_.lower_bound(e.first);
    if (next != by_addr_.end() && next->first < e_end)
      throw std::logic_error("page_allocator: released pages that are free");
    auto prev = next == by_addr_.begin() ? by_addr_.end() : std::prev(next);
    if (prev != by_addr_.end() && std::uint64_t{prev->first} + prev->second > e.first)
      throw std::logic_error("page_allocator: released pages that are free");

    std::uint32_t first = e.first, count = e.count;
    if (prev != by_addr_.end() && prev->first + prev->second == e.first) {
      first = prev->first;
      count += prev->second;
      erase_free(prev);
    }
    if (next != by_addr_.end() && next->first == e_end) {
      count += next->second;
      erase_free(next);
    }
    insert_free(first, count);
    free_pages_ += e.count;
  }
}

std::string page_allocator::check_invariants() const {
  const std::uint64_t end = std::uint64_t{first_page_} + page_count_;
  std::uint64_t sum = 0;
  std::uint64_t prev_end = 0;
  bool first_extent = true;
  for (const auto& [first, count] : by_addr_) {
    const std::string where = "free extent at " + std::to_string(first);
    if (count == 0) return where + " is empty";
    if (first < first_page_ || std::uint64_t{first} + count > end)
      return where + " is outside the range";
    if (!first_extent && first < prev_end) return where + " overlaps the one before";
    if (!first_extent && first == prev_end) return where + " is not merged with the one before";
    if (!by_size_.contains({count, first})) return where + " is missing from the size index";
    first_extent = false;
    prev_end = std::uint64_t{first} + count;
    sum += count;
  }
  if (by_size_.size() != by_addr_.size())
    return "the size index holds " + std::to_string(by_size_.size()) + " extents, the map " +
           std::to_string(by_addr_.size());
  if (sum != free_pages_)
    return "free extents hold " + std::to_string(sum) + " pages, free_pages() says " +
           std::to_string(free_pages_);
  if (free_pages_ > page_count_) return "more pages free than in the range";
  return "";
}

}  // namespace valkyrie::cache
