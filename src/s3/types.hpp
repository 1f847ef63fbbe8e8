#pragma once
// Plain data exchanged through the object-client interface.
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace valkyrie::s3 {

struct object_info {
  std::string key;
  std::uint64_t size = 0;
  std::string etag;  // as the server sent it, quotes included
  std::chrono::system_clock::time_point last_modified{};
};

struct list_request {
  std::string prefix;
  std::string delimiter;
  std::string continuation_token;
  std::string start_after;
  unsigned max_keys = 1000;
};

struct list_page {
  std::vector<object_info> objects;
  std::vector<std::string> common_prefixes;
  std::string next_continuation_token;  // empty when !truncated
  bool truncated = false;
};

}  // namespace valkyrie::s3
