#pragma once
// The fs layer's test fixture: a filesystem over a memory_client bucket and a small cache, with
// helpers to look up paths, read and list.
#include <chrono>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "fs/filesystem.hpp"
#include "helpers.hpp"
#include "s3/fault_client.hpp"
#include "s3/memory_client.hpp"

namespace valkyrie::fs::test_support {
inline constexpr std::uint32_t chunk = 64 * 1024;

inline std::string pattern(std::size_t n, int seed) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i)
    s[i] = static_cast<char>((i * 131 + seed * 7 + i / 977) & 0xff);
  return s;
}

struct fixture {
  explicit fixture(std::string prefix = "", std::uint64_t cache_bytes = 64 * chunk) {
    options o;
    o.prefix = prefix;
    o.max_readahead_chunks = 8;
    o.cold_read_direct_max = 0;  // counted requests stay one per chunk (its own test turns it on)
    cache = std::make_shared<cache::chunk_cache>(cache_bytes, chunk);
    fs = std::make_unique<filesystem>(o, std::vector<std::shared_ptr<s3::object_client>>{mem},
                                      cache);
  }
  attributes lookup_path(const std::string& path) {
    ino_t ino = root_ino;
    attributes a{root_ino, true, 0, {}};
    std::size_t start = 0;
    while (start < path.size()) {
      auto slash = path.find('/', start);
      std::string name =
          path.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
      auto r = test::run(fs->lookup(ino, name));
      if (!r) throw std::system_error(r.error());
      a = *r;
      ino = a.ino;
      start = slash == std::string::npos ? path.size() : slash + 1;
    }
    return a;
  }
  std::string read(std::shared_ptr<open_file> f, std::uint64_t off, std::size_t n) {
    auto r = test::run(fs->read(f, off, n));
    if (!r) throw std::system_error(r.error());
    std::string out;
    for (auto& s : r->slices) out.append(s.data(), s.size());
    return out;
  }
  // A new filesystem over the same bucket and cache with these options; with `delay`, every S3
  // call waits that long first.
  void reopen(const options& o, std::chrono::milliseconds delay = {}) {
    std::shared_ptr<s3::object_client> client = mem;
    if (delay.count() > 0) {
      auto slow = std::make_shared<s3::fault_client>(mem);
      slow->set_delay(delay);
      client = slow;
    }
    fs = std::make_unique<filesystem>(o, std::vector<std::shared_ptr<s3::object_client>>{client},
                                      cache);
  }
  std::vector<std::string> names(ino_t dir) {
    auto r = test::run(fs->readdir(dir));
    std::vector<std::string> out;
    for (auto& e : *r) out.push_back(e.name + (e.attr.directory ? "/" : ""));
    return out;
  }

  std::shared_ptr<s3::memory_client> mem = std::make_shared<s3::memory_client>();
  std::shared_ptr<cache::chunk_cache> cache;
  std::unique_ptr<filesystem> fs;
};
}  // namespace valkyrie::fs::test_support
