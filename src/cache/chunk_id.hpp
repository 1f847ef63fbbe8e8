#pragma once
// Chunk identity: which bytes of which object version a cached chunk holds.
//
// An object_version is one immutable version of one object (bucket, key, ETag, size): S3 objects
// are immutable per ETag, so bytes cached under one version are right for as long as anyone
// asks for that version, and a new ETag is a different identity that never hits old bytes. A
// chunk is [index * chunk_size, min(size, (index + 1) * chunk_size)) of a version: the layout
// (chunk_size) is part of the identity, so ranges fetched at another granularity (a random
// reader's small blocks, a sequential reader's large chunks) never alias. Every tier (memory,
// disk, a shared bucket) keys on this type; nothing parses strings to find out what a chunk is.
// Versions are shared (shared_ptr, built once per open or listing entry) and carry their hash,
// so keying a chunk costs no string hashing on the read path.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace valkyrie::cache {

struct object_version {
  std::string bucket, key, etag;
  std::uint64_t size = 0;
  std::size_t hash = 0;  // of the fields above (set by make_version)

  bool operator==(const object_version& o) const {
    return hash == o.hash && size == o.size && key == o.key && etag == o.etag && bucket == o.bucket;
  }
};
using version_ref = std::shared_ptr<const object_version>;

inline version_ref make_version(std::string bucket, std::string key, std::string etag,
                                std::uint64_t size) {
  auto v = std::make_shared<object_version>();
  std::size_t h = std::hash<std::string>{}(key);
  h ^= std::hash<std::string>{}(etag) + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
  h ^= std::hash<std::string>{}(bucket) + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
  h ^= std::hash<std::uint64_t>{}(size) + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
  v->bucket = std::move(bucket);
  v->key = std::move(key);
  v->etag = std::move(etag);
  v->size = size;
  v->hash = h;
  return v;
}

struct chunk_id {
  version_ref object;
  std::uint32_t chunk_size = 0;
  std::uint64_t index = 0;

  std::uint64_t offset() const { return index * chunk_size; }
  // The object's bytes in this chunk (fewer than chunk_size for the last one; 0 past the end).
  std::uint64_t length() const {
    std::uint64_t at = offset();
    return at >= object->size ? 0 : std::min<std::uint64_t>(chunk_size, object->size - at);
  }
  std::size_t hash() const {
    return object->hash ^ ((index + 1) * 0x9E3779B97F4A7C15ull) ^ chunk_size;
  }
  bool operator==(const chunk_id& o) const {
    return index == o.index && chunk_size == o.chunk_size &&
           (object == o.object || *object == *o.object);
  }
};

struct chunk_id_hash {
  std::size_t operator()(const chunk_id& k) const noexcept { return k.hash(); }
};

}  // namespace valkyrie::cache
