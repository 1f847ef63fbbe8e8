#include "synthetic.hpp"

#include <cstring>

namespace valkyrie::synthetic {
namespace {
// splitmix64: a fast, well-mixed function of the word index.
inline std::uint64_t word(std::uint64_t seed, std::uint64_t index) {
  std::uint64_t z = seed + (index + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
}  // namespace

std::uint64_t seed_for(std::string_view bucket, std::string_view key) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  auto mix = [&h](std::string_view s) {
    for (unsigned char c : s) {
      h ^= c;
      h *= 0x100000001b3ull;
    }
  };
  mix(bucket);
  mix("/");
  mix(key);
  return h;
}

void fill(std::uint64_t seed, std::uint64_t offset, std::span<char> out) {
  std::size_t pos = 0;
  // Leading partial word.
  if (offset % 8 != 0 && !out.empty()) {
    std::uint64_t w = word(seed, offset / 8);
    std::size_t skip = offset % 8;
    std::size_t n = std::min<std::size_t>(8 - skip, out.size());
    std::memcpy(out.data(), reinterpret_cast<const char*>(&w) + skip, n);
    pos = n;
  }
  std::uint64_t index = (offset + pos) / 8;
  for (; pos + 8 <= out.size(); pos += 8, ++index) {
    std::uint64_t w = word(seed, index);
    std::memcpy(out.data() + pos, &w, 8);
  }
  if (pos < out.size()) {
    std::uint64_t w = word(seed, index);
    std::memcpy(out.data() + pos, &w, out.size() - pos);
  }
}

std::size_t first_mismatch(std::uint64_t seed, std::uint64_t offset, std::span<const char> data) {
  char expected[4096];
  for (std::size_t pos = 0; pos < data.size(); pos += sizeof expected) {
    std::size_t n = std::min(sizeof expected, data.size() - pos);
    fill(seed, offset + pos, std::span<char>(expected, n));
    if (std::memcmp(expected, data.data() + pos, n) != 0) {
      for (std::size_t i = 0; i < n; ++i)
        if (expected[i] != data[pos + i]) return pos + i;
    }
  }
  return data.size();
}

}  // namespace valkyrie::synthetic
