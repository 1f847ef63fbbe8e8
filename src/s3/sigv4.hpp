#pragma once
// AWS Signature Version 4 for S3 (header-based). The pieces are exposed so that tests can check
// each step against AWS's published examples and the simulator can verify incoming requests.
// Nothing here logs; callers must not log secret keys, session tokens or signatures either.
#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace valkyrie::s3 {

struct credentials {
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;  // empty for long-term keys
  std::optional<std::chrono::system_clock::time_point> expiration;
  bool anonymous() const { return access_key_id.empty(); }
};

inline constexpr std::string_view empty_payload_sha256 =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
inline constexpr std::string_view unsigned_payload = "UNSIGNED-PAYLOAD";

struct request_to_sign {
  std::string method;
  std::string canonical_uri;  // the path exactly as sent: already URI-encoded, '/' kept
  // Query parameters as (name, value), NOT yet encoded; encoded and sorted while signing.
  std::vector<std::pair<std::string, std::string>> query;
  // Headers to sign as (name, value); names are lower-cased and values trimmed while signing.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string payload_hash{empty_payload_sha256};
};

std::string sha256_hex(std::string_view data);
std::string canonical_request(const request_to_sign& req);
std::string signed_headers(const request_to_sign& req);
// amz_date: "YYYYMMDDTHHMMSSZ".
std::string string_to_sign(std::string_view canonical_request, std::string_view amz_date,
                           std::string_view region, std::string_view service);
std::string signature(std::string_view secret_key, std::string_view string_to_sign,
                      std::string_view amz_date, std::string_view region, std::string_view service);
// The full Authorization header value.
std::string authorization(const request_to_sign& req, const credentials& creds,
                          std::string_view amz_date, std::string_view region,
                          std::string_view service = "s3");

std::string amz_date(std::chrono::system_clock::time_point t);

// A parsed "AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=..." header.
struct parsed_authorization {
  std::string access_key_id, date, region, service;
  std::vector<std::string> signed_headers;
  std::string signature;
};
std::optional<parsed_authorization> parse_authorization(std::string_view header);

// Constant-time comparison, for verifying signatures.
bool equal_constant_time(std::string_view a, std::string_view b);

}  // namespace valkyrie::s3
