#pragma once
// The object-client interface: everything above the s3 layer (cache, prefetch, fs) talks to S3
// through this and nothing else. Implementations: beast_client (HTTP/1.1 over Beast, SigV4,
// keep-alive pool, retries), memory_client (unit tests), fault_client (wraps another and injects
// failures).
//
// Threading: an instance is used from one reactor at a time unless the implementation says
// otherwise (beast_client: one per reactor; memory_client and fault_client: any thread).
// Coroutines take their parameters by value. Errors come back as values (valkyrie::errc).
#include <cstddef>
#include <span>
#include <string>

#include "core/asio.hpp"
#include "core/result.hpp"
#include "s3/types.hpp"

namespace valkyrie::s3 {

class object_client {
 public:
  virtual ~object_client() = default;

  // HEAD: size, ETag and modification time. errc::not_found when the key does not exist.
  virtual awaitable<result<object_info>> head(std::string key) = 0;

  // Ranged GET of [offset, offset + dest.size()) written straight into dest. Returns the number
  // of bytes written: fewer than dest.size() only when the object ends first. A non-empty
  // if_match makes the server refuse (errc::precondition_failed) if the object has another ETag,
  // so the bytes of one call never mix two versions. errc::invalid_range when offset >= size.
  virtual awaitable<result<std::size_t>> get(std::string key, std::uint64_t offset,
                                             std::span<char> dest, std::string if_match) = 0;

  // One page of ListObjectsV2.
  virtual awaitable<result<list_page>> list(list_request request) = 0;

  // PutObject (the shared cache tier's writes; the filesystem itself never writes). With
  // if_none_match the server refuses (errc::precondition_failed, 412) when the key exists, so
  // of N writers of one key exactly one stores it (S3, the simulator; servers that ignore the
  // header overwrite). Returns the new ETag. Default: errc::invalid_argument (not supported).
  virtual awaitable<result<std::string>> put_object(std::string key, std::string body, bool if_none_match);
};

}  // namespace valkyrie::s3
