#pragma once
// memory_client: an object client over an in-memory map, for deterministic unit tests of the
// layers above s3. Answers like S3 (ETags, If-Match, ranges, ListObjectsV2 paging) and counts
// requests by kind. Thread-safe: usable from every reactor at once.
#include <atomic>
#include <map>
#include <mutex>

#include "s3/object_client.hpp"

namespace valkyrie::s3 {

class memory_client final : public object_client {
 public:
  // Stores (or replaces) an object; returns its new ETag.
  std::string put(const std::string& key, std::string data);
  void remove(const std::string& key);

  awaitable<result<object_info>> head(std::string key) override;
  awaitable<result<std::size_t>> get(std::string key, std::uint64_t offset, std::span<char> dest,
                                     std::string if_match) override;
  awaitable<result<list_page>> list(list_request request) override;
  awaitable<result<std::string>> put_object(std::string key, std::string body, bool if_none_match) override;

  std::atomic<std::uint64_t> heads{0}, gets{0}, lists{0}, bytes{0}, puts{0}, put_conflicts{0};

 private:
  struct object {
    object_info info;
    std::shared_ptr<const std::string> data;
  };
  std::string store(const std::string& key, std::string data);  // (mu_ held)
  std::mutex mu_;
  std::map<std::string, object> objects_;
  std::uint64_t version_ = 0;
};

}  // namespace valkyrie::s3
