#pragma once
// The chunk cache tests' chunk ids: chunk `index` of a test object, large enough that every chunk
// is whole, in a `chunk_size` layout.
#include <cstdint>
#include <string>

#include "cache/chunk_id.hpp"

namespace valkyrie::cache::test_keys {
inline chunk_id K(const std::string& name, std::uint64_t index, std::uint32_t chunk_size) {
  return chunk_id{make_version("test-bucket", name, "\"etag\"", std::uint64_t{1} << 40), chunk_size,
                  index};
}
}  // namespace valkyrie::cache::test_keys
