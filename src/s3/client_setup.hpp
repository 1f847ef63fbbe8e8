#pragma once
// Start-up helper: turns user-facing settings (bucket, region, endpoint, credentials, TLS) into
// client_options, walking the credential chain once so that a missing or broken source is
// reported before anything else starts. Blocking: call it at start-up, not on a reactor.
// S3 Express One Zone: directory buckets (names ending "--x-s3") get session authentication
// (express_session.hpp) unless it is turned off; it can also be forced on for another name.
#include <optional>
#include <string>
#include <string_view>

#include "s3/beast_client.hpp"

namespace valkyrie::s3 {

// automatic: session authentication for directory buckets only. off: requests to a directory
// bucket are signed with the long-term credentials (service "s3express"; the bucket's policy must
// allow it). on: CreateSession on any bucket (stores that offer it under other names).
enum class express_mode { automatic, on, off };
// "auto", "on", "off".
std::optional<express_mode> parse_express_mode(std::string_view text);

struct client_setup {
  endpoint_options endpoint;
  credential_options credentials;
  std::string ca_bundle;  // empty: AWS_CA_BUNDLE, else the system store
  bool verify_tls = true;
  unsigned max_connections = 64;
  client_timeouts timeouts;
  retry_policy retry;
  express_mode express = express_mode::automatic;
};

result<client_options> prepare_client_options(const client_setup& setup);

}  // namespace valkyrie::s3
