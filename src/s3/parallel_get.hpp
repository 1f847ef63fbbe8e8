#pragma once
// Ranged GETs of one object, all in flight at once on the calling reactor: how a chunk is
// filled from the origin (fs) and from a shared cache bucket (tier). Each part's bytes go
// straight into its span of the caller's memory.
#include <chrono>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "core/asio.hpp"
#include "s3/object_client.hpp"

namespace valkyrie::s3 {

using part_list =
    std::vector<std::pair<std::uint64_t, std::span<char>>>;  // (object offset, memory)

struct parallel_get_result {
  std::error_code first_error;  // the first failed GET's error, in the order they ended
  std::error_code
      first_failure;            // the same, a part that came back short counting as truncated_body
  bool not_found = false;       // some GET answered 404
  std::size_t short_parts = 0;  // parts that came back shorter than their span
  std::size_t bytes = 0;        // bytes of the parts that came back whole
};

// Every part's GET at once (If-Match `etag` unless empty); waits for all of them. `on_part`, if
// set, is told each whole part's size and the time since the first GET was sent.
awaitable<parallel_get_result> get_parts(
    object_client* client, std::string key, std::string etag, part_list parts,
    std::function<void(std::size_t, std::chrono::steady_clock::duration)> on_part = {});

}  // namespace valkyrie::s3
