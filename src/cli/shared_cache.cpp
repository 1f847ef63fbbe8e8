#include "cli/shared_cache.hpp"

#include <cctype>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

#include "core/errors.hpp"
#include "core/log.hpp"
#include "s3/beast_client.hpp"
#include "s3/credentials.hpp"

namespace valkyrie::cli {

namespace {
[[noreturn]] void usage_error(const std::string& msg) {
  std::cerr << "valkyrie: " << msg << " (see --help)\n";
  std::exit(2);
}
[[noreturn]] void fatal(const std::string& msg) {
  std::cerr << "valkyrie: " << msg << "\n";
  std::exit(1);
}

// The origin as part of every chunk's identity: scheme and host, without a virtual-hosted
// bucket label (the bucket is a field of its own), so path-style and virtual-hosted nodes agree.
std::string origin_of(const s3::endpoint& ep) {
  std::string host = ep.host_header;
  if (!ep.path_style && host.rfind(ep.bucket + ".", 0) == 0)
    host = host.substr(ep.bucket.size() + 1);
  return (ep.tls ? "https://" : "http://") + host;
}
}  // namespace

void add_shared_cache_options(CLI::App& app, shared_cache_flags& f) {
  app.add_option("--shared-cache", f.url,
                 "s3://BUCKET[/PREFIX]: a cache tier shared by many nodes in an S3-compatible "
                 "bucket (S3 Express, "
                 "MinIO, Ceph RGW), looked up before the origin and filled from it");
  app.add_option("--shared-cache-endpoint", f.endpoint,
                 "the shared cache bucket's endpoint URL (default: as for AWS)");
  app.add_option("--shared-cache-region", f.region,
                 "the shared cache bucket's region (default: the origin's)");
  app.add_option(
      "--shared-cache-profile", f.profile,
      "credentials profile for the shared cache bucket (default: the same chain as the origin)");
  app.add_flag("--shared-cache-force-path-style", f.force_path_style,
               "path-style requests to the shared cache");
  app.add_option(
      "--shared-cache-ca-bundle", f.ca_bundle,
      "CA certificates for the shared cache's TLS (default: AWS_CA_BUNDLE, else the system store)");
  app.add_flag("--shared-cache-no-verify-tls", f.no_verify_tls,
               "do not verify the shared cache's TLS certificate (test set-ups only)");
  app.add_option("--shared-cache-express-session", f.express_session,
                 "S3 Express One Zone session authentication (CreateSession) for the shared cache: "
                 "auto (for directory buckets, NAME--AZID--x-s3), on, off")
      ->check(CLI::IsMember({"auto", "on", "off"}));
  app.add_option(
      "--shared-cache-key-file", f.key_file,
      "file with a secret key (at least 16 bytes): chunks are authenticated with HMAC-SHA256, and "
      "chunks written without it are rejected");
}

std::optional<shared_cache_setup> prepare_shared_cache(const shared_cache_flags& f,
                                                       const s3::client_options& origin,
                                                       unsigned max_connections) {
  if (f.url.empty()) {
    if (!f.endpoint.empty() || !f.region.empty() || !f.profile.empty() || !f.ca_bundle.empty() ||
        !f.key_file.empty() || f.no_verify_tls || f.force_path_style || f.express_session != "auto")
      usage_error("--shared-cache-* options need --shared-cache s3://BUCKET[/PREFIX]");
    return std::nullopt;
  }
  if (f.url.rfind("s3://", 0) != 0 || f.url.size() <= 5 || f.url[5] == '/')
    usage_error("bad --shared-cache '" + f.url + "' (s3://BUCKET or s3://BUCKET/PREFIX)");
  std::string rest = f.url.substr(5);
  std::string bucket = rest.substr(0, rest.find('/'));
  std::string prefix = rest.size() > bucket.size() ? rest.substr(bucket.size() + 1) : "";
  if (!prefix.empty() && prefix.back() != '/') prefix += '/';
  if (prefix.find("//") != std::string::npos || (!prefix.empty() && prefix.front() == '/'))
    usage_error("bad --shared-cache prefix in '" + f.url + "' (no empty path segments)");

  if (s3::is_directory_bucket(bucket) && f.endpoint.empty() &&
      s3::directory_bucket_zone(bucket).empty())
    usage_error(
        "--shared-cache bucket '" + bucket +
        "' ends in --x-s3 but names no zone (NAME--AZID--x-s3, e.g. cache--usw2-az1--x-s3)");

  shared_cache_setup out;
  if (!f.key_file.empty()) {
    std::ifstream in(f.key_file, std::ios::binary);
    if (!in)
      fatal("cannot read --shared-cache-key-file " + f.key_file + ": " + std::strerror(errno));
    std::stringstream ss;
    ss << in.rdbuf();
    std::string key = ss.str();
    while (!key.empty() && std::isspace(static_cast<unsigned char>(key.back()))) key.pop_back();
    if (key.size() < 16)
      usage_error("--shared-cache-key-file " + f.key_file +
                  " holds fewer than 16 bytes (e.g. openssl rand -hex 32 > KEYFILE)");
    out.tier.mac_key = std::move(key);
  }

  s3::client_setup setup;
  setup.endpoint.bucket = bucket;
  setup.endpoint.endpoint_url = f.endpoint;
  setup.endpoint.region = f.region.empty() ? origin.ep.region : f.region;
  setup.endpoint.force_path_style = f.force_path_style;
  // An explicit profile wins over the environment (which the origin may be using).
  setup.credentials.profile = f.profile;
  setup.credentials.profile_only = !f.profile.empty();
  setup.express = *s3::parse_express_mode(f.express_session);
  setup.ca_bundle = f.ca_bundle;
  setup.verify_tls = !f.no_verify_tls;
  setup.max_connections = max_connections;
  // The shared cache must never hold a reader much longer than the origin would: short
  // timeouts and no retries (a failure is a miss, and the origin is the retry).
  setup.timeouts.connect = std::chrono::milliseconds(1000);
  setup.timeouts.first_byte = std::chrono::milliseconds(2000);
  setup.timeouts.stall = std::chrono::milliseconds(1000);
  setup.retry.max_attempts = 1;
  auto opts = s3::prepare_client_options(setup);
  if (!opts) {
    if (opts.error() == errc::invalid_argument)
      usage_error("bad --shared-cache-endpoint or --shared-cache bucket");
    if (opts.error() == errc::tls_error)
      fatal("cannot set up TLS for --shared-cache (--shared-cache-ca-bundle?)");
    if (opts.error() == errc::no_credentials) {
      if (!f.profile.empty())
        fatal("no credentials in profile '" + f.profile + "' (--shared-cache-profile)");
      fatal("no credentials for --shared-cache");
    }
    fatal("cannot set up --shared-cache: " + opts.error().message());
  }
  out.client = *opts;
  out.tier.prefix = prefix;
  out.tier.origin = origin_of(origin.ep);
  return out;
}

std::shared_ptr<tier::shared_tier> make_shared_cache(const shared_cache_setup& setup,
                                                     reactor_pool& pool,
                                                     std::shared_ptr<cache::chunk_cache> cache,
                                                     std::uint64_t write_back_bytes) {
  std::vector<std::shared_ptr<s3::object_client>> clients;
  for (unsigned i = 0; i < pool.size(); ++i)
    clients.push_back(std::make_shared<s3::beast_client>(pool.executor(i), setup.client));
  auto o = setup.tier;
  o.write_back_bytes = write_back_bytes;
  log::event("cli", spdlog::level::info, "shared cache tier",
             {{"bucket", setup.client.ep.bucket},
              {"prefix", o.prefix},
              {"endpoint", setup.client.ep.url()},
              {"express_session", setup.client.session ? "on" : "off"},
              {"hmac", o.mac_key.empty() ? "off" : "on"}});
  return std::make_shared<tier::shared_tier>(std::move(o), std::move(clients), std::move(cache));
}

}  // namespace valkyrie::cli
