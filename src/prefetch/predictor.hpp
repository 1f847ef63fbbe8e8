#pragma once
// prefetch: which files a training job reads next.
//
// Owns: a training order (from --manifest or a live hint; the fs layer swaps whole predictors)
// and the rules that name the next files:
//   1. the manifest order, when there is one (keys may repeat: one pass per epoch);
//   2. otherwise the numbered successor (shard_0009.tar -> shard_0010.tar, padding kept,
//      999 -> 1000), only if the listing has it, so missing names are never requested;
//   3. otherwise the next names of the same directory in listing order.
// Threading: predictor is thread-safe (an atomic cursor; a mutex serialises its moves); the free functions
// are pure. Nothing here does I/O: the fs layer supplies listings and issues the fetches.
#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/result.hpp"

namespace valkyrie::prefetch {

struct manifest_problem {
  unsigned line = 0;
  std::string key;
  std::string reason;
};

struct manifest {
  std::vector<std::string> order;          // usable keys, in order, repeats kept
  std::vector<manifest_problem> problems;  // skipped lines, with their line numbers
};

// One key per line, relative to the mount's prefix; blank lines and '#' comments ignored;
// surrounding spaces trimmed. `exists` says whether a key is a file of the bucket. Lines that
// are not usable are listed in `problems`; a manifest whose `order` ends up empty is for the
// caller to refuse.
manifest parse_manifest(std::string_view text, const std::function<bool(const std::string&)>& exists);

// "shard_0009.tar" -> "shard_0010.tar"; the last run of digits in the name is incremented,
// keeping its zero padding (it widens past all nines). nullopt when the name has no digits.
std::optional<std::string> numbered_successor(std::string_view name);

// The next `count` files after entry `self` of a sorted directory listing: numbered successors
// first, as long as they exist, otherwise listing order. `Listing` offers size(), name(i) (a
// string_view), is_file(i) and find(name) (~0 when absent), so a caller's own listing is walked
// in place: a directory of 100,000 names is not copied for every file a reader opens.
template <class Listing>
std::vector<std::size_t> next_in_listing(const Listing& dir, std::size_t self, unsigned count) {
  std::vector<std::size_t> out;
  // Numbered successors, while they exist (numbers sort badly: shard_10 < shard_9).
  for (std::string at(dir.name(self)); out.size() < count;) {
    auto successor = numbered_successor(at);
    std::size_t i = successor ? dir.find(*successor) : ~std::size_t{0};
    if (i == ~std::size_t{0} || !dir.is_file(i)) break;
    out.push_back(i);
    at = *successor;
  }
  if (!out.empty()) return out;
  for (std::size_t i = self + 1; i < dir.size() && out.size() < count; ++i)
    if (dir.is_file(i)) out.push_back(i);
  return out;
}


class predictor {
 public:
  explicit predictor(std::vector<std::string> order = {});
  bool has_order() const { return !order_.empty(); }
  const std::vector<std::string>& keys() const { return order_; }
  bool contains(std::string_view key) const { return positions_.find(key) != positions_.end(); }
  std::size_t distinct_keys() const { return positions_.size(); }
  // How many times the order reads `key` (0 when it is not in the order).
  std::size_t occurrences(std::string_view key) const {
    auto it = positions_.find(key);
    return it == positions_.end() ? 0 : it->second.size();
  }
  // Index in keys() of the last key read (0 before any read).
  std::size_t position() const { return cursor_.load(std::memory_order_relaxed); }
  // The `count` keys that follow `key` in the training order: the next occurrence of `key` at
  // or after the cursor (the last key read), so repeated epochs advance. Empty when `key` is not
  // in the order.
  std::vector<std::string> next_in_order(const std::string& key, unsigned count);
  // Moves the cursor to `key` as next_in_order does and returns its index in keys() (npos when
  // `key` is not in the order).
  std::size_t advance_to(const std::string& key);
  static constexpr std::size_t npos = ~std::size_t{0};
  // The first `count` keys of the order (what to warm up at mount time).
  std::vector<std::string> first(unsigned count) const;
  // Calls f(key, occurrences) once for each key of the order, with how often it occurs (in no
  // set order).
  template <class F>
  void for_each_distinct_key(F&& f) const {
    for (const auto& entry : positions_) f(entry.first, entry.second.size());
  }
  // How far in the future chunk `chunk` of `key` will be read, for eviction: the number of
  // order positions from the cursor to the key's next occurrence (the order repeats, as epochs
  // do), then the chunk index. Smaller: needed sooner. Keys not in the order rank last.
  // Lock-free (the cursor is atomic, the positions never change).
  // Chunks of the file at the cursor that its reader has passed count from the key's following
  // occurrence (the next epoch), not from now.
  std::uint64_t next_use(std::string_view key, std::uint64_t chunk) const;
  // A reader of `key` got up to chunk `chunk` (lock-free; ignored unless `key` is at the cursor).
  void reading(std::string_view key, std::uint64_t chunk);
  static constexpr std::uint64_t never = ~std::uint64_t{0};  // = chunk_cache::not_in_order

 private:
  std::vector<std::string> order_;
  // Looked up by string_view (no allocation on the eviction path).
  struct key_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view k) const noexcept { return std::hash<std::string_view>{}(k); }
  };
  std::unordered_map<std::string, std::vector<std::size_t>, key_hash, std::equal_to<>> positions_;  // ascending
  std::mutex mu_;
  std::atomic<std::size_t> cursor_{0};
  std::atomic<std::uint64_t> passed_chunks_{0};  // of the file at the cursor
};

}  // namespace valkyrie::prefetch
