#include "s3/credentials.hpp"

#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>

#include <simdjson.h>

#include "core/environment.hpp"
#include "core/errors.hpp"
#include "core/log.hpp"
#include "s3/s3_metrics.hpp"
#include "s3/http_fetch.hpp"
#include "s3/time_format.hpp"

namespace valkyrie::s3 {
namespace {
std::string trim(std::string s) {
  auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  auto e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

std::string home_file(const char* rel) {
  std::string home = env_or_empty("HOME");
  return home.empty() ? std::string() : home + "/" + rel;
}

// The keys of one [section] of an INI-style AWS file.
std::optional<std::map<std::string, std::string>> ini_section(const std::string& path,
                                                             const std::string& section) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::map<std::string, std::string> keys;
  bool inside = false, found = false;
  std::string line;
  while (std::getline(in, line)) {
    line = trim(line);
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    if (line.front() == '[' && line.back() == ']') {
      inside = trim(line.substr(1, line.size() - 2)) == section;
      found = found || inside;
      continue;
    }
    if (!inside) continue;
    auto eq = line.find('=');
    if (eq == std::string::npos) continue;
    keys[trim(line.substr(0, eq))] = trim(line.substr(eq + 1));
  }
  if (!found) return std::nullopt;
  return keys;
}

std::optional<credentials> from_keys(const std::map<std::string, std::string>& keys) {
  auto id = keys.find("aws_access_key_id");
  auto secret = keys.find("aws_secret_access_key");
  if (id == keys.end() || secret == keys.end() || id->second.empty()) return std::nullopt;
  credentials c;
  c.access_key_id = id->second;
  c.secret_access_key = secret->second;
  if (auto t = keys.find("aws_session_token"); t != keys.end()) c.session_token = t->second;
  return c;
}
}  // namespace

std::optional<credentials> credentials_from_environment() {
  credentials c;
  c.access_key_id = env_or_empty("AWS_ACCESS_KEY_ID");
  c.secret_access_key = env_or_empty("AWS_SECRET_ACCESS_KEY");
  c.session_token = env_or_empty("AWS_SESSION_TOKEN");
  if (c.access_key_id.empty() || c.secret_access_key.empty()) return std::nullopt;
  return c;
}

std::optional<credentials> credentials_from_profile(const std::string& profile) {
  std::string creds_file = env_or_empty("AWS_SHARED_CREDENTIALS_FILE");
  if (creds_file.empty()) creds_file = home_file(".aws/credentials");
  if (auto keys = ini_section(creds_file, profile))
    if (auto c = from_keys(*keys)) return c;
  std::string config_file = env_or_empty("AWS_CONFIG_FILE");
  if (config_file.empty()) config_file = home_file(".aws/config");
  // The config file names non-default profiles "[profile NAME]".
  auto keys = ini_section(config_file, profile == "default" ? profile : "profile " + profile);
  if (!keys && profile == "default") keys = ini_section(config_file, "profile default");
  if (keys) return from_keys(*keys);
  return std::nullopt;
}

result<credentials> parse_credentials_json(std::string_view json) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(json.data(), json.size()).get(doc)) return make_error_code(errc::protocol_error);
  std::string_view id, secret, token, expiration, code;
  if (!doc["Code"].get(code) && code != "Success") return make_error_code(errc::access_denied);
  // An empty key id would make the client send unsigned requests, an empty secret wrong
  // signatures: the document is broken either way.
  if (doc["AccessKeyId"].get(id) || doc["SecretAccessKey"].get(secret) || id.empty() ||
      secret.empty())
    return make_error_code(errc::protocol_error);
  credentials c;
  c.access_key_id = id;
  c.secret_access_key = secret;
  if (!doc["Token"].get(token)) c.session_token = token;
  if (!doc["Expiration"].get(expiration)) {
    auto t = parse_iso8601(expiration);
    if (!t) return make_error_code(errc::protocol_error);
    c.expiration = *t;
  }
  return c;
}

awaitable<result<credentials>> fetch_imds_credentials(std::string endpoint,
                                                      std::chrono::milliseconds timeout) {
  while (!endpoint.empty() && endpoint.back() == '/') endpoint.pop_back();
  // (Built outside co_await: GCC 12 miscompiles braced string literals in coroutine calls.)
  header_list ttl;
  ttl.emplace_back("X-aws-ec2-metadata-token-ttl-seconds", "21600");
  auto token = co_await http_fetch("PUT", endpoint + "/latest/api/token", ttl, timeout);
  if (!token) co_return token.error();
  if (token->status != 200) co_return make_error_code(errc::access_denied);
  header_list auth;
  auth.emplace_back("X-aws-ec2-metadata-token", token->body);
  std::string base = endpoint + "/latest/meta-data/iam/security-credentials/";
  auto role = co_await http_fetch("GET", base, auth, timeout);
  if (!role) co_return role.error();
  if (role->status != 200) co_return make_error_code(errc::no_credentials);
  std::string name = trim(role->body.substr(0, role->body.find('\n')));
  if (name.empty()) co_return make_error_code(errc::no_credentials);
  auto doc = co_await http_fetch("GET", base + name, auth, timeout);
  if (!doc) co_return doc.error();
  if (doc->status != 200) co_return make_error_code(errc::no_credentials);
  co_return parse_credentials_json(doc->body);
}

awaitable<result<credentials>> fetch_container_credentials(std::string url, std::string token,
                                                           std::chrono::milliseconds timeout) {
  header_list headers;
  if (!token.empty()) headers.emplace_back("Authorization", token);
  auto doc = co_await http_fetch("GET", url, headers, timeout);
  if (!doc) co_return doc.error();
  if (doc->status != 200) co_return make_error_code(errc::access_denied);
  co_return parse_credentials_json(doc->body);
}

refreshing_credentials_provider::refreshing_credentials_provider(fetch_fn fetch, std::string source,
                                                                 std::chrono::seconds refresh_ahead)
    : fetch_(std::move(fetch)), source_(std::move(source)), refresh_ahead_(refresh_ahead) {}

unsigned refreshing_credentials_provider::fetch_count() const {
  std::lock_guard lock(mu_);
  return fetches_;
}

void refreshing_credentials_provider::invalidate() {
  std::lock_guard lock(mu_);
  if (current_) current_->expiration = std::chrono::system_clock::time_point{};
}

awaitable<result<credentials>> refreshing_credentials_provider::refresh() {
  auto r = co_await fetch_();
  (r ? s3_metrics::get().credential_refreshes_ok : s3_metrics::get().credential_refreshes_failed)->add();
  std::lock_guard lock(mu_);
  ++fetches_;
  if (r) current_ = *r;
  co_return r;
}

awaitable<void> refreshing_credentials_provider::background_refresh(
    std::shared_ptr<refreshing_credentials_provider> self) {
  auto r = co_await self->refresh();
  if (!r)
    log::limited("s3", spdlog::level::warn, "credential-refresh", "credential refresh failed",
                 {{"source", self->source_}, {"error", r.error().message()}});
  std::lock_guard lock(self->mu_);
  self->refreshing_ = false;
}

awaitable<result<credentials>> refreshing_credentials_provider::get() {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (;;) {
    auto now = std::chrono::system_clock::now();
    bool start_background = false, fetch_inline = false;
    std::optional<credentials> snapshot;
    {
      std::lock_guard lock(mu_);
      bool usable = current_ && (!current_->expiration || now < *current_->expiration);
      bool stale = current_ && current_->expiration && now >= *current_->expiration - refresh_ahead_;
      if (usable) {
        snapshot = current_;
        auto since = std::chrono::steady_clock::now() - last_background_;
        if (stale && !refreshing_ && since >= min_background_interval) {
          start_background = refreshing_ = true;
          last_background_ = std::chrono::steady_clock::now();
        }
      } else if (!refreshing_) {
        fetch_inline = refreshing_ = true;
      }
    }
    if (start_background) {
      asio::co_spawn(co_await asio::this_coro::executor, background_refresh(shared_from_this()),
                     asio::detached);
    }
    if (snapshot) co_return *snapshot;
    if (fetch_inline) {
      auto r = co_await refresh();
      std::lock_guard lock(mu_);
      refreshing_ = false;
      co_return r;
    }
    // Another coroutine is fetching: wait for it, briefly and boundedly.
    if (std::chrono::steady_clock::now() > deadline) co_return make_error_code(errc::timeout);
    asio::steady_timer timer(co_await asio::this_coro::executor, std::chrono::milliseconds(5));
    co_await timer.async_wait(use_tuple);
  }
}

awaitable<result<std::shared_ptr<credentials_provider>>> resolve_credentials(credential_options opts) {
  using provider_ptr = std::shared_ptr<credentials_provider>;
  if (opts.anonymous)
    co_return provider_ptr(std::make_shared<static_credentials_provider>(credentials{}, "anonymous"));
  if (opts.profile_only && !opts.profile.empty()) {
    auto c = credentials_from_profile(opts.profile);
    if (!c) co_return make_error_code(errc::no_credentials);
    co_return provider_ptr(
        std::make_shared<static_credentials_provider>(*c, "profile " + opts.profile));
  }
  if (auto c = credentials_from_environment())
    co_return provider_ptr(std::make_shared<static_credentials_provider>(*c, "environment"));
  std::string profile = opts.profile.empty() ? env_or_empty("AWS_PROFILE") : opts.profile;
  if (profile.empty()) profile = "default";
  if (auto c = credentials_from_profile(profile))
    co_return provider_ptr(std::make_shared<static_credentials_provider>(*c, "profile " + profile));

  std::shared_ptr<refreshing_credentials_provider> provider;
  std::string relative = env_or_empty("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
  std::string full = env_or_empty("AWS_CONTAINER_CREDENTIALS_FULL_URI");
  if (!relative.empty() || !full.empty()) {
    std::string url = relative.empty() ? full : "http://169.254.170.2" + relative;
    std::string token = env_or_empty("AWS_CONTAINER_AUTHORIZATION_TOKEN");
    if (std::string file = env_or_empty("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"); !file.empty()) {
      std::ifstream in(file);
      std::stringstream ss;
      ss << in.rdbuf();
      token = trim(ss.str());
    }
    auto timeout = opts.http_timeout;
    provider = std::make_shared<refreshing_credentials_provider>(
        [url, token, timeout]() { return fetch_container_credentials(url, token, timeout); }, "ecs",
        opts.refresh_ahead);
  } else if (env_or_empty("AWS_EC2_METADATA_DISABLED") != "true") {
    std::string endpoint = env_or_empty("AWS_EC2_METADATA_SERVICE_ENDPOINT");
    if (endpoint.empty()) endpoint = "http://169.254.169.254";
    auto timeout = opts.http_timeout;
    provider = std::make_shared<refreshing_credentials_provider>(
        [endpoint, timeout]() { return fetch_imds_credentials(endpoint, timeout); }, "imds",
        opts.refresh_ahead);
  }
  if (!provider) co_return make_error_code(errc::no_credentials);
  auto first = co_await provider->refresh();
  if (!first) {
    log::get("s3")->debug("credential source {} failed: {}", provider->source(), first.error().message());
    co_return make_error_code(errc::no_credentials);
  }
  co_return provider_ptr(provider);
}
}  // namespace valkyrie::s3
