#include "core/errors.hpp"

namespace valkyrie {
namespace {
class category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "valkyrie"; }
  std::string message(int v) const override {
    switch (static_cast<errc>(v)) {
      case errc::ok: return "success";
      case errc::not_found: return "no such key";
      case errc::no_such_bucket: return "no such bucket";
      case errc::access_denied: return "access denied";
      case errc::signature_mismatch: return "signature does not match (wrong secret key?)";
      case errc::expired_token: return "credentials expired";
      case errc::precondition_failed: return "object changed (ETag mismatch)";
      case errc::invalid_range: return "requested range not satisfiable";
      case errc::slow_down: return "throttled by the server (SlowDown)";
      case errc::server_error: return "server error";
      case errc::bad_request: return "request rejected by the server";
      case errc::wrong_region: return "bucket is in another region";
      case errc::connect_failed: return "could not connect to the endpoint";
      case errc::timeout: return "timed out";
      case errc::connection_reset: return "connection reset";
      case errc::truncated_body: return "response body truncated";
      case errc::protocol_error: return "malformed response";
      case errc::tls_error: return "TLS handshake or certificate verification failed";
      case errc::no_credentials: return "no credentials found";
      case errc::cache_full: return "cache full: every chunk is in use";
      case errc::invalid_argument: return "invalid argument";
      case errc::cancelled: return "cancelled";
      case errc::retries_exhausted:
        return "S3 kept failing for the whole retry budget";
    }
    return "unknown valkyrie error";
  }
};
}  // namespace

const std::error_category& valkyrie_category() noexcept {
  static const category c;
  return c;
}
}  // namespace valkyrie
