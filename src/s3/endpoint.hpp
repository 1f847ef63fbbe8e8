#pragma once
// Where requests for a bucket go: scheme, host, port, Host header and path prefix.
// Region: the explicit setting, else AWS_REGION, else AWS_DEFAULT_REGION, else us-east-1.
// Endpoint: the explicit URL, else AWS_ENDPOINT_URL, else AWS's regional endpoint.
// Addressing: virtual-hosted ("bucket.host") unless path style is forced, the host is an IP
// address or "localhost", or the bucket name cannot be a DNS label (dots break TLS then).
// S3 Express One Zone directory buckets (NAME--AZID--x-s3): requests are signed for the service
// "s3express", and without an endpoint URL they go to the zonal endpoint
// "NAME--AZID--x-s3.s3express-AZID.REGION.amazonaws.com".
#include <string>
#include <string_view>

#include "core/result.hpp"

namespace valkyrie::s3 {

struct endpoint_options {
  std::string bucket;
  std::string region;        // empty: from the environment
  std::string endpoint_url;  // empty: from the environment or AWS
  bool force_path_style = false;
};

struct endpoint {
  bool tls = true;
  std::string host;         // to connect to and for SNI
  std::string port;         // "443", "80", or the URL's
  std::string host_header;  // host[:port] as sent
  std::string base_path;    // "" (virtual-hosted) or "/bucket" (path style)
  std::string region;
  std::string bucket;
  bool path_style = false;
  std::string signing_service = "s3";  // "s3express" for directory buckets

  std::string url() const;  // for messages: "https://host:port/base"
  // The request path for a key: base_path + "/" + URI-encoded key.
  std::string object_path(const std::string& key) const;
};

result<endpoint> resolve_endpoint(const endpoint_options& opts);

// A directory bucket's name ends in "--x-s3"; its zone id is the part before that
// ("usw2-az1" in "data--usw2-az1--x-s3"; "" when the name has none).
bool is_directory_bucket(std::string_view bucket);
std::string directory_bucket_zone(std::string_view bucket);

}  // namespace valkyrie::s3
