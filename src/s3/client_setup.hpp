#pragma once
// Start-up helper: turns user-facing settings (bucket, region, endpoint, credentials, TLS) into
// client_options, walking the credential chain once so that a missing or broken source is
// reported before anything else starts. Blocking: call it at start-up, not on a reactor.
#include <string>

#include "s3/beast_client.hpp"

namespace valkyrie::s3 {

struct client_setup {
  endpoint_options endpoint;
  credential_options credentials;
  std::string ca_bundle;  // empty: AWS_CA_BUNDLE, else the system store
  bool verify_tls = true;
  unsigned max_connections = 64;
  client_timeouts timeouts;
  retry_policy retry;
};

result<client_options> prepare_client_options(const client_setup& setup);

}  // namespace valkyrie::s3
