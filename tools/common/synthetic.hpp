#pragma once
// Deterministic content for synthetic objects: byte i of an object is a pure function of the
// object's seed and i, so the simulator can serve terabytes without storing them and any
// client (tests, valkyrie-bench) can check any range it read, at any offset.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace valkyrie::synthetic {

// The seed of an object: a 64-bit hash (FNV-1a) of "bucket/key".
std::uint64_t seed_for(std::string_view bucket, std::string_view key);

// Writes bytes [offset, offset + out.size()) of the object with this seed.
void fill(std::uint64_t seed, std::uint64_t offset, std::span<char> out);

// Index of the first byte of `data` (read at `offset`) that differs from the object's content,
// or data.size() when all match.
std::size_t first_mismatch(std::uint64_t seed, std::uint64_t offset, std::span<const char> data);

}  // namespace valkyrie::synthetic
