#pragma once
// Shared by the tier tests: one io_context for a store's whole life (its files keep a handle per
// io_context), page-aligned buffers, deterministic chunk bytes.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <future>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <boost/asio/use_future.hpp>

#include "cache/chunk_cache.hpp"
#include "helpers.hpp"
#include "tier/disk_store.hpp"

namespace valkyrie::test {

struct io_loop {
  asio::io_context ctx{1};
  template <class T>
  T run(awaitable<T> a) {
    auto fut = asio::co_spawn(ctx, std::move(a), asio::use_future);
    ctx.restart();
    ctx.run();
    return fut.get();
  }
};

struct aligned_buffer {
  char* p = nullptr;
  std::size_t n = 0;
  explicit aligned_buffer(std::size_t bytes) : n(bytes) {
    p = static_cast<char*>(std::aligned_alloc(4096, (bytes + 4095) / 4096 * 4096));
    std::memset(p, 0, (bytes + 4095) / 4096 * 4096);
  }
  ~aligned_buffer() { std::free(p); }
  aligned_buffer(const aligned_buffer&) = delete;
  std::span<char> span() { return {p, n}; }
  std::vector<std::span<char>> pieces() { return {span()}; }
  std::vector<std::span<const char>> cpieces() { return {std::span<const char>(p, n)}; }
};

// Byte i of chunk `index` of `key`: differs by key, chunk and offset.
inline char pattern(const std::string& key, std::uint64_t index, std::uint64_t i) {
  std::uint64_t h = std::hash<std::string>{}(key) ^ (index * 0x9E3779B97F4A7C15ull);
  return static_cast<char>((i * 131 + (h >> 7) + (i >> 12)) & 0xFF);
}
inline void fill(std::span<char> s, const std::string& key, std::uint64_t index) {
  for (std::size_t i = 0; i < s.size(); ++i) s[i] = pattern(key, index, i);
}
inline bool matches(std::span<const char> s, const std::string& key, std::uint64_t index) {
  for (std::size_t i = 0; i < s.size(); ++i)
    if (s[i] != pattern(key, index, i)) return false;
  return true;
}

inline cache::chunk_id chunk_of(const std::string& key, std::uint64_t index,
                                std::uint32_t chunk_size, std::uint64_t object_size,
                                const std::string& etag = "\"e1\"") {
  return {cache::make_version("bucket", key, etag, object_size), chunk_size, index};
}

// A store of `slots` slots of `chunk` bytes in `dir`, its files opened through `plan`'s faults
// if given.
inline tier::store_options store_options_for(const temp_dir& dir, std::uint64_t slots,
                                             std::uint32_t chunk,
                                             unsigned files = tier::store_options{}.files,
                                             std::shared_ptr<tier::fault_plan> plan = nullptr) {
  tier::store_options o;
  o.dir = dir.path().string();
  o.size = slots * (tier::disk_store::header_bytes + chunk);
  o.chunk_size = chunk;
  o.files = files;
  if (plan) o.opener = tier::fault_opener(std::move(plan));
  return o;
}

// Writes the chunk's test pattern to the store; true if it was stored.
inline bool put(io_loop& io, tier::disk_store& s, const cache::chunk_id& id) {
  aligned_buffer b(id.length());
  fill(b.span(), id.object->key, id.index);
  return io.run(s.write(id, b.cpieces()));
}

// Reads the chunk; true if it was a hit with the right bytes.
inline bool get(io_loop& io, tier::disk_store& s, const cache::chunk_id& id) {
  aligned_buffer b(id.length());
  auto r = io.run(s.read(id, b.pieces()));
  return r && *r == id.length() && matches(b.span(), id.object->key, id.index);
}

// "S3" for the tiers' tests: fills the chunk with its pattern and counts the calls.
inline cache::chunk_cache::fetch_fn s3_fetch(cache::chunk_id id,
                                             std::shared_ptr<std::atomic<int>> calls) {
  return [id, calls](cache::chunk_buffers dest) -> awaitable<result<std::size_t>> {
    ++*calls;
    std::size_t at = 0;
    for (auto& p : dest) {
      for (std::size_t i = 0; i < p.size(); ++i) p[i] = pattern(id.object->key, id.index, at + i);
      at += p.size();
    }
    co_return at;
  };
}

// Reads the chunk through the cache and `tier` (its wrap(id, s3_fetch, wrap_args...)); true if
// it came back whole with the right bytes.
template <class Tier, class... WrapArgs>
awaitable<bool> read_through(cache::chunk_cache& c, Tier& tier, cache::chunk_id id,
                             std::shared_ptr<std::atomic<int>> calls, WrapArgs... wrap_args) {
  auto ref = co_await c.get(id, tier.wrap(id, s3_fetch(id, calls), wrap_args...));
  if (!ref) co_return false;
  std::string bytes;
  for (auto& p : ref->pieces()) bytes.append(p.data(), p.size());
  co_return bytes.size() == id.length() && matches(bytes, id.object->key, id.index);
}

// One turn of the loop: lets work the last step started (write-backs, stores) begin.
inline awaitable<void> idle() {
  co_return;
}

}  // namespace valkyrie::test
