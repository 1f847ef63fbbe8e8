#pragma once
// S3's XML answers, parsed with pugixml: ListObjectsV2 pages and error documents.
#include <string>
#include <string_view>
#include <system_error>

#include "core/result.hpp"
#include "s3/types.hpp"

namespace valkyrie::s3 {
// Parses a ListBucketResult; decodes keys and prefixes when EncodingType is "url".
result<list_page> parse_list_response(std::string_view body);

struct s3_error_body {
  std::string code;     // "NoSuchKey", "SlowDown", ...
  std::string message;
  std::string region;   // some redirects say where the bucket is
};
s3_error_body parse_error_body(std::string_view body);

// Maps an HTTP status and S3 error code to the project's error vocabulary.
std::error_code error_from_response(unsigned status, const s3_error_body& err);
}  // namespace valkyrie::s3
