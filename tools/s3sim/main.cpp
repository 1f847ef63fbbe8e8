// valkyrie-s3sim: an S3-compatible server for tests, benchmarks and demos. See docs/s3sim.md.
#include <csignal>
#include <cstdio>
#include <iostream>

#include <CLI/CLI.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl/context.hpp>

#include "core/log.hpp"
#include "core/reactor_pool.hpp"
#include "core/units.hpp"
#include "server.hpp"
#include "store.hpp"

using namespace valkyrie;

namespace {
[[noreturn]] void usage_error(const std::string& msg) {
  std::cerr << "valkyrie-s3sim: " << msg << "\n";
  std::exit(2);
}

std::uint64_t size_arg(const std::string& what, const std::string& text) {
  auto v = parse_size(text);
  if (!v) usage_error("bad size for " + what + ": '" + text + "' (examples: 64MiB, 1GiB, 4096)");
  return *v;
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"valkyrie-s3sim: an S3-compatible server with a link model and fault injection"};
  std::string listen = "127.0.0.1:0", data_dir, credentials_arg, region = "us-east-1";
  std::vector<std::string> synthetic_args, bucket_args, fault_args;
  std::string first_byte = "0ms", conn_bw = "0", total_bw = "0", stall_time = "60s",
              keepalive = "60s", tls_cert, tls_key, log_level = "warn", session_lifetime = "300s";
  unsigned threads = 0;
  std::uint64_t fault_seed = 42;
  app.add_option("--listen", listen, "HOST:PORT to listen on (port 0 picks a free one)");
  app.add_option("--data", data_dir, "directory whose subdirectories are buckets")->check(CLI::ExistingDirectory);
  app.add_option("--synthetic", synthetic_args,
                 "BUCKET:COUNT:SIZE[:PREFIX] synthetic objects PREFIXshard_NNNNNN.tar (repeatable)");
  app.add_option("--bucket", bucket_args, "create an empty bucket (repeatable)");
  app.add_option("--credentials", credentials_arg,
                 "AKID:SECRET[:SESSION_TOKEN]: verify SigV4 signatures with these keys");
  app.add_option("--region", region, "region expected in signatures");
  app.add_option(
      "--session-lifetime", session_lifetime,
      "lifetime of S3 Express sessions (CreateSession on buckets named *--x-s3), e.g. 5s");
  app.add_option("--first-byte-latency", first_byte, "delay before each response (e.g. 30ms)");
  app.add_option("--conn-bandwidth", conn_bw, "bytes per second per connection (e.g. 64MiB; 0: unlimited)");
  app.add_option("--total-bandwidth", total_bw, "bytes per second for all connections (e.g. 1GiB)");
  app.add_option("--fault", fault_args,
                 "KIND=PROBABILITY, KIND one of slowdown, error500, reset, truncate, stall, corrupt (repeatable)");
  app.add_option("--fault-seed", fault_seed, "seed of the fault dice");
  app.add_option("--stall-time", stall_time, "how long a stall fault pauses a body");
  app.add_option("--keepalive-timeout", keepalive, "close idle keep-alive connections after this");
  app.add_option("--tls-cert", tls_cert, "PEM certificate chain: serve https");
  app.add_option("--tls-key", tls_key, "PEM private key for --tls-cert");
  app.add_option("--threads", threads, "reactor threads (default: cores)");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (!log::set_level(log_level)) usage_error("unknown log level '" + log_level + "'");

  sim::server_options opts;
  opts.region = region;
  auto duration_arg = [](const std::string& what, const std::string& text) {
    auto d = parse_duration(text);
    if (!d) usage_error("bad duration for " + what + ": '" + text + "' (examples: 30ms, 2s)");
    return *d;
  };
  opts.first_byte_latency = duration_arg("--first-byte-latency", first_byte);
  opts.stall_time = duration_arg("--stall-time", stall_time);
  opts.keepalive_timeout = duration_arg("--keepalive-timeout", keepalive);
  opts.session_lifetime = duration_arg("--session-lifetime", session_lifetime);
  if (opts.session_lifetime <= std::chrono::nanoseconds::zero())
    usage_error("--session-lifetime must be above 0");
  opts.conn_bandwidth = static_cast<double>(size_arg("--conn-bandwidth", conn_bw));
  opts.total_bandwidth = static_cast<double>(size_arg("--total-bandwidth", total_bw));
  opts.fault_seed = fault_seed;
  for (auto& f : fault_args) {
    auto eq = f.find('=');
    auto kind = sim::parse_fault_kind(f.substr(0, eq));
    if (!kind || eq == std::string::npos) usage_error("bad --fault '" + f + "' (example: reset=0.01)");
    char* end = nullptr;
    double p = std::strtod(f.c_str() + eq + 1, &end);
    if (*end != '\0' || p < 0 || p > 1) usage_error("bad probability in --fault '" + f + "'");
    opts.fault_probability[static_cast<int>(*kind)] = p;
  }
  if (!credentials_arg.empty()) {
    auto c1 = credentials_arg.find(':');
    if (c1 == std::string::npos || c1 == 0 || c1 + 1 == credentials_arg.size())
      usage_error("--credentials must be AKID:SECRET[:SESSION_TOKEN]");
    s3::credentials c;
    c.access_key_id = credentials_arg.substr(0, c1);
    std::string rest = credentials_arg.substr(c1 + 1);
    auto c2 = rest.find(':');
    c.secret_access_key = rest.substr(0, c2);
    if (c2 != std::string::npos) c.session_token = rest.substr(c2 + 1);
    opts.credentials = c;
  }
  if (!tls_cert.empty() || !tls_key.empty()) {
    if (tls_cert.empty() || tls_key.empty()) usage_error("--tls-cert and --tls-key go together");
    auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
    boost::system::error_code ec;
    ctx->use_certificate_chain_file(tls_cert, ec);
    if (!ec) ctx->use_private_key_file(tls_key, asio::ssl::context::pem, ec);
    if (ec) usage_error("cannot load TLS certificate/key: " + ec.message());
    opts.tls = ctx;
  }

  sim::store objects;
  for (auto& b : bucket_args) objects.create_bucket(b);
  if (!data_dir.empty()) objects.load_directory(data_dir);
  for (auto& s : synthetic_args) {
    std::vector<std::string> parts;
    std::size_t start = 0;
    for (std::size_t i = 0; i <= s.size(); ++i)
      if (i == s.size() || (s[i] == ':' && parts.size() < 3)) {
        parts.push_back(s.substr(start, i - start));
        start = i + 1;
      }
    if (parts.size() < 3 || parts[0].empty())
      usage_error("bad --synthetic '" + s + "' (example: data:64:64MiB or data:10:1MiB:train/)");
    char* end = nullptr;
    auto count = std::strtoull(parts[1].c_str(), &end, 10);
    if (*end != '\0' || parts[1].empty()) usage_error("bad object count in --synthetic '" + s + "'");
    objects.add_synthetic(parts[0], count, size_arg("--synthetic", parts[2]),
                          parts.size() > 3 ? parts[3] : "");
  }

  auto colon = listen.rfind(':');
  if (colon == std::string::npos) usage_error("--listen must be HOST:PORT");
  std::string host = listen.substr(0, colon), port = listen.substr(colon + 1);
  if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);

  reactor_pool pool({threads, false});
  sim::server srv(pool, objects, opts);
  boost::asio::ip::tcp::endpoint bound;
  try {
    bound = srv.listen(host, port);
  } catch (const std::exception& e) {
    std::cerr << "valkyrie-s3sim: cannot listen on " << listen << ": " << e.what() << "\n";
    return 1;
  }
  std::string shown = bound.address().is_v6() ? "[" + bound.address().to_string() + "]"
                                              : bound.address().to_string();
  std::printf("listening on %s://%s:%u\n", opts.tls ? "https" : "http", shown.c_str(), bound.port());
  std::fflush(stdout);

  boost::asio::signal_set signals(pool.context(0), SIGINT, SIGTERM);
  signals.async_wait([&pool](const boost::system::error_code&, int) { pool.request_stop(); });
  pool.start();
  pool.join();  // until SIGINT/SIGTERM
  return 0;
}
