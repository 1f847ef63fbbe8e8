#pragma once
// The shared cache tier's chunk objects: where a chunk lives in the cache bucket and what the
// object holds. Pure functions, no I/O (tested on their own).
//
// Key layout (version 1), under the configured prefix:
//   PREFIX v1/<origin>/<key part>/<etag part>/<chunk size>/<index>
// <origin>: 16 hex digits of SHA-256("<origin endpoint URL>\n<origin bucket>"), so two origins
// never share chunks. <key part>: "k/" + the origin key as it is when it is plain (at most 512
// bytes of [A-Za-z0-9._-/], no empty, "." or ".." segment), else "h/" + 64 hex digits of its
// SHA-256; either way a valid S3 key of at most ~700 bytes. <etag part>: the ETag without
// quotes when it is plain ([A-Za-z0-9-], at most 64), else "h-" + 32 hex digits of its SHA-256.
// A new ETag is a new key: chunks of an old version are never read for a new one, and expire
// by the bucket's lifecycle rule (docs/operations.md). The last three segments never contain
// "/", so the layout parses from the end and two identities never share a key.
//
// A chunk object: a header, then the chunk's data. Header (little-endian):
//   "VKSC" | u16 format version (1) | u16 flags (bit 0: HMAC) | u32 header length |
//   u64 data length | u32 CRC32C of the data | u32 chunk size | u64 index | u64 object size |
//   u16 lengths of origin, bucket, key, etag | those four strings | 32 bytes HMAC-SHA256
// The HMAC (with a key file; zeros without) covers the header up to the HMAC and the data. A
// reader builds the header it expects from the identity it wants and accepts only an exact
// match of every field (and the HMAC when it has a key): a wrong identity, length, CRC or
// HMAC, or a truncated object, is a miss, never data.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cache/chunk_id.hpp"

namespace valkyrie::tier {

inline constexpr std::size_t shared_mac_size = 32;

// The origin a chunk came from: its endpoint URL (the identity includes the bucket too).
std::string shared_chunk_key(std::string_view prefix, std::string_view origin,
                             const cache::chunk_id& id);

// The header's length for this identity (header_bytes(...).size() without building it).
std::size_t shared_header_size(std::string_view origin, const cache::chunk_id& id);

// The header of a chunk object for `data` (pieces in order); mac_key empty: no HMAC.
std::string shared_header(std::string_view origin, const cache::chunk_id& id,
                          const std::vector<std::span<const char>>& data, std::string_view mac_key);

enum class shared_check { ok, bad_header, wrong_identity, bad_length, bad_crc, bad_mac };
const char* to_string(shared_check c);

// Checks a header read from the cache bucket against the identity wanted and the data read
// after it. With a mac_key the object must carry a matching HMAC.
shared_check check_shared_chunk(std::span<const char> header, std::string_view origin,
                                const cache::chunk_id& id,
                                const std::vector<std::span<const char>>& data,
                                std::string_view mac_key);

}  // namespace valkyrie::tier
