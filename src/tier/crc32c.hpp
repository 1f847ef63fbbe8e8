#pragma once
// CRC32C (Castagnoli, the iSCSI polynomial) through isa-l: the check on every slot's data and
// every journal record. crc32c(b, crc32c(a)) == crc32c(a + b), so pieces chain.
#include <cstddef>
#include <cstdint>
#include <span>

namespace valkyrie::tier {

inline constexpr std::uint32_t crc32c_seed = 0xFFFFFFFFu;
std::uint32_t crc32c(const void* data, std::size_t n, std::uint32_t crc = crc32c_seed);
inline std::uint32_t crc32c(std::span<const char> s, std::uint32_t crc = crc32c_seed) {
  return crc32c(s.data(), s.size(), crc);
}

}  // namespace valkyrie::tier
