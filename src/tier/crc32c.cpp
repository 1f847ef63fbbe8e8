#include "tier/crc32c.hpp"

#include <isa-l/crc.h>

#include <algorithm>
#include <climits>

namespace valkyrie::tier {

std::uint32_t crc32c(const void* data, std::size_t n, std::uint32_t crc) {
  auto* p = static_cast<unsigned char*>(const_cast<void*>(data));
  while (n > 0) {  // (isa-l takes an int length)
    const std::size_t step = std::min<std::size_t>(n, std::size_t{1} << 30);
    crc = crc32_iscsi(p, static_cast<int>(step), crc);
    p += step;
    n -= step;
  }
  return crc;
}

}  // namespace valkyrie::tier
