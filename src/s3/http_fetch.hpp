#pragma once
// A one-shot plain-HTTP request, for the credential endpoints (EC2 IMDS, ECS). Not for S3
// traffic: that goes through beast_client's pooled connections.
#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "core/asio.hpp"
#include "core/result.hpp"

namespace valkyrie::s3 {
struct http_reply {
  unsigned status = 0;
  std::string body;
};
using header_list = std::vector<std::pair<std::string, std::string>>;

// url: "http://host[:port]/path". Runs on the calling coroutine's executor; the whole exchange
// is bounded by `timeout`.
awaitable<result<http_reply>> http_fetch(std::string method, std::string url, header_list headers,
                                         std::chrono::milliseconds timeout);
}  // namespace valkyrie::s3
