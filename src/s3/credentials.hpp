#pragma once
// Credentials and the provider chain, in the AWS SDKs' order:
//   1. environment: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
//   2. shared files: AWS_SHARED_CREDENTIALS_FILE (~/.aws/credentials), then AWS_CONFIG_FILE
//      (~/.aws/config), profile AWS_PROFILE or "default"
//   3. ECS container credentials: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or _FULL_URI
//      (with AWS_CONTAINER_AUTHORIZATION_TOKEN[_FILE])
//   4. EC2 instance metadata, IMDSv2 (AWS_EC2_METADATA_SERVICE_ENDPOINT overrides the address,
//      AWS_EC2_METADATA_DISABLED=true skips it)
// Temporary credentials (3, 4) are refreshed in the background once they are within
// refresh_ahead of expiring; readers keep using the current ones meanwhile and only wait when
// they have really expired.
//
// Threading: providers are shared by all reactors; get() may be called from any of them.
// Secrets never appear in logs or error messages: only the source and the key id's prefix do.
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "core/asio.hpp"
#include "core/result.hpp"
#include "s3/sigv4.hpp"

namespace valkyrie::s3 {

class credentials_provider {
 public:
  virtual ~credentials_provider() = default;
  virtual awaitable<result<credentials>> get() = 0;
  // Where the credentials come from ("environment", "profile default", "ecs", "imds", ...).
  virtual std::string source() const = 0;
  // The server said the token expired: refresh before the next use (no-op for static keys).
  virtual void invalidate() {}
  // How many times the provider fetched credentials (1 for static ones).
  virtual unsigned fetch_count() const { return 1; }
};

class static_credentials_provider final : public credentials_provider {
 public:
  static_credentials_provider(credentials c, std::string source)
      : creds_(std::move(c)), source_(std::move(source)) {}
  awaitable<result<credentials>> get() override { co_return creds_; }
  std::string source() const override { return source_; }

 private:
  credentials creds_;
  std::string source_;
};

// Temporary credentials fetched over HTTP and refreshed ahead of expiry.
class refreshing_credentials_provider final
    : public credentials_provider,
      public std::enable_shared_from_this<refreshing_credentials_provider> {
 public:
  using fetch_fn = std::function<awaitable<result<credentials>>()>;
  refreshing_credentials_provider(fetch_fn fetch, std::string source,
                                  std::chrono::seconds refresh_ahead);
  awaitable<result<credentials>> get() override;
  std::string source() const override { return source_; }
  void invalidate() override;
  unsigned fetch_count() const override;
  // Fetches now (used once at start-up so that a bad endpoint is reported immediately).
  awaitable<result<credentials>> refresh();

 private:
  static awaitable<void> background_refresh(std::shared_ptr<refreshing_credentials_provider> self);
  fetch_fn fetch_;
  std::string source_;
  std::chrono::seconds refresh_ahead_;
  mutable std::mutex mu_;
  std::optional<credentials> current_;
  bool refreshing_ = false;
  unsigned fetches_ = 0;
  // Background refreshes start at most this often: an endpoint that keeps returning the same
  // credentials inside the refresh window is not asked on every request.
  static constexpr std::chrono::seconds min_background_interval{5};
  std::chrono::steady_clock::time_point last_background_{};
};

struct credential_options {
  bool anonymous = false;          // sign nothing (public buckets)
  std::string profile{};           // overrides AWS_PROFILE
  bool profile_only = false;       // the profile, and nothing else (not the environment first)
  std::chrono::seconds refresh_ahead{300};
  std::chrono::milliseconds http_timeout{2000};
};

// Walks the chain and returns the first provider that yields credentials, or
// errc::no_credentials. Must run on a reactor (it may make HTTP requests).
awaitable<result<std::shared_ptr<credentials_provider>>> resolve_credentials(credential_options opts);

// Pieces of the chain, exposed for tests.
std::optional<credentials> credentials_from_environment();
std::optional<credentials> credentials_from_profile(const std::string& profile);
// Parses the JSON document of IMDS and ECS ({"AccessKeyId": ..., "Expiration": ...}).
result<credentials> parse_credentials_json(std::string_view json);
awaitable<result<credentials>> fetch_imds_credentials(std::string endpoint,
                                                      std::chrono::milliseconds timeout);
awaitable<result<credentials>> fetch_container_credentials(std::string url, std::string token,
                                                           std::chrono::milliseconds timeout);

}  // namespace valkyrie::s3
