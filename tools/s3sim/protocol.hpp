#pragma once
// The simulator's side of the S3 wire protocol: request targets (path or virtual-hosted style,
// decoded query), replies and S3 error documents, ListObjectsV2/V1 XML, Range headers, and its
// admin documents (fault names, /_sim/stats: server_counters, declared in server.hpp). Pure
// functions, no I/O; server.cpp serves requests with them.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/beast/http.hpp>

#include "s3/types.hpp"
#include "server.hpp"
#include "store.hpp"

namespace valkyrie::sim {

using request_t = boost::beast::http::request<boost::beast::http::string_body>;

struct parsed_target {
  std::string bucket, key;
  std::vector<std::pair<std::string, std::string>> query;  // decoded
  std::string raw_path;
  bool ok = true;
};

// The value of query parameter `name` ("" when absent; *present says which).
std::string query_value(const parsed_target& t, const std::string& name, bool* present = nullptr);
// Bucket, key and query of a request target; the bucket from Host when it names one.
parsed_target parse_target(std::string_view target, std::string_view host, const store& objects);

struct reply {
  boost::beast::http::response<boost::beast::http::string_body> msg;
};

reply make_reply(unsigned status, std::string body, std::string content_type);
// An S3 error document.
reply error_reply(unsigned status, const std::string& code, const std::string& message,
                  const std::string& resource, const std::string& region = {});
// ListObjectsV2, or V1 (no list-type=2: Marker/NextMarker instead of continuation tokens).
std::string list_xml(const std::string& bucket, const s3::list_request& lr,
                     const s3::list_page& page, bool url_encoding, bool v1 = false);
// Parses a Range header against an object of `size` bytes. nullopt: serve the whole object.
// Sets *unsatisfiable for ranges that start past the end.
std::optional<std::pair<std::uint64_t, std::uint64_t>> parse_range(std::string_view h,
                                                                   std::uint64_t size,
                                                                   bool* unsatisfiable);

}  // namespace valkyrie::sim
