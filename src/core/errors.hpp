#pragma once
// The project's error vocabulary. Each layer reports failures as std::error_code; values of
// valkyrie::errc live in the "valkyrie" category so that the fuse layer can turn every one of
// them into a precise errno in one place.
#include <string>
#include <system_error>

namespace valkyrie {

enum class errc {
  ok = 0,
  // Object-store answers.
  not_found = 1,          // 404 NoSuchKey
  no_such_bucket,         // 404 NoSuchBucket
  access_denied,          // 403 AccessDenied / InvalidAccessKeyId
  signature_mismatch,     // 403 SignatureDoesNotMatch (wrong secret)
  expired_token,          // 400/403 ExpiredToken
  precondition_failed,    // 412: the object changed (If-Match)
  invalid_range,          // 416
  slow_down,              // 503 SlowDown
  server_error,           // 500/502/503/504 and other 5xx
  bad_request,            // other 4xx
  wrong_region,           // 301 PermanentRedirect / AuthorizationHeaderMalformed region
  // Transport.
  connect_failed,
  timeout,                // connect, first byte or stalled body
  connection_reset,
  truncated_body,
  protocol_error,         // unparsable HTTP or XML
  tls_error,              // handshake or certificate verification failed
  // Local.
  no_credentials,
  cache_full,             // every cache slot pinned or in flight for too long
  invalid_argument,
  cancelled,
  // S3 kept failing (refused connections, timeouts, resets, 5xx, throttling) for the whole
  // retry budget (--retry-timeout, --metadata-retry-timeout): the outage outlasted it.
  retries_exhausted,
};

const std::error_category& valkyrie_category() noexcept;

inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), valkyrie_category()};
}

}  // namespace valkyrie

template <>
struct std::is_error_code_enum<valkyrie::errc> : std::true_type {};
