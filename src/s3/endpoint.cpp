#include "s3/endpoint.hpp"

#include <arpa/inet.h>

#include <cstdlib>

#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

#include "core/environment.hpp"
#include "core/errors.hpp"
#include "s3/uri.hpp"

namespace valkyrie::s3 {
namespace {
bool is_ip_literal(const std::string& host) {
  unsigned char buf[16];
  std::string h = host;
  if (!h.empty() && h.front() == '[') h = h.substr(1, h.size() - 2);
  return inet_pton(AF_INET, h.c_str(), buf) == 1 || inet_pton(AF_INET6, h.c_str(), buf) == 1;
}

bool dns_compatible(const std::string& bucket) {
  if (bucket.size() < 3 || bucket.size() > 63) return false;
  for (char c : bucket)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  return bucket.front() != '-' && bucket.back() != '-';
}
}  // namespace

bool is_directory_bucket(std::string_view bucket) {
  constexpr std::string_view suffix = "--x-s3";
  return bucket.size() > suffix.size() && bucket.substr(bucket.size() - suffix.size()) == suffix;
}

std::string directory_bucket_zone(std::string_view bucket) {
  if (!is_directory_bucket(bucket)) return "";
  auto base = bucket.substr(0, bucket.size() - 6);
  auto sep = base.rfind("--");
  if (sep == std::string_view::npos || sep == 0 || sep + 2 == base.size()) return "";
  return std::string(base.substr(sep + 2));
}

std::string endpoint::url() const {
  return std::string(tls ? "https://" : "http://") + host_header + base_path;
}

std::string endpoint::object_path(const std::string& key) const {
  return base_path + "/" + uri_encode(key, true);
}

result<endpoint> resolve_endpoint(const endpoint_options& opts) {
  if (opts.bucket.empty()) return make_error_code(errc::invalid_argument);
  endpoint ep;
  ep.bucket = opts.bucket;
  ep.region = opts.region;
  if (ep.region.empty()) ep.region = env_or_empty("AWS_REGION");
  if (ep.region.empty()) ep.region = env_or_empty("AWS_DEFAULT_REGION");
  if (ep.region.empty()) ep.region = "us-east-1";

  std::string url =
      opts.endpoint_url.empty() ? env_or_empty("AWS_ENDPOINT_URL") : opts.endpoint_url;
  std::string base_host;
  bool explicit_port = false;
  const bool directory = is_directory_bucket(opts.bucket);
  if (directory) ep.signing_service = "s3express";
  if (url.empty()) {
    ep.tls = true;
    if (directory) {
      std::string zone = directory_bucket_zone(opts.bucket);
      if (zone.empty()) return make_error_code(errc::invalid_argument);
      base_host = "s3express-" + zone + "." + ep.region + ".amazonaws.com";
    } else {
      base_host = "s3." + ep.region + ".amazonaws.com";
    }
    ep.port = "443";
  } else {
    if (!plausible_url(url)) return make_error_code(errc::invalid_argument);
    auto parsed = boost::urls::parse_absolute_uri(url);
    if (!parsed) return make_error_code(errc::invalid_argument);
    std::string scheme(parsed->scheme());
    if (scheme == "https") ep.tls = true;
    else if (scheme == "http") ep.tls = false;
    else return make_error_code(errc::invalid_argument);
    base_host = std::string(parsed->encoded_host());
    if (base_host.empty()) return make_error_code(errc::invalid_argument);
    // "http://host:/" has an empty port, which RFC 3986 says means the default one.
    if (parsed->has_port() && !parsed->port().empty()) {
      ep.port = std::string(parsed->port());
      explicit_port = true;
    } else {
      ep.port = ep.tls ? "443" : "80";
    }
    std::string path(parsed->encoded_path());
    while (!path.empty() && path.back() == '/') path.pop_back();
    ep.base_path = path;
  }
  ep.path_style = opts.force_path_style || is_ip_literal(base_host) || base_host == "localhost" ||
                  !dns_compatible(opts.bucket);
  if (ep.path_style) {
    ep.host = base_host;
    ep.base_path += "/" + uri_encode(opts.bucket, false);
  } else {
    ep.host = opts.bucket + "." + base_host;
  }
  ep.host_header = ep.host + (explicit_port ? ":" + ep.port : "");
  if (!ep.host.empty() && ep.host.front() == '[') ep.host = ep.host.substr(1, ep.host.size() - 2);
  return ep;
}
}  // namespace valkyrie::s3
