// valkyrie: mounts an S3 bucket (or a prefix of it) read-only. See docs/usage.md.
//
// Start-up order: parse and validate flags (usage errors exit 2 with one line), resolve
// credentials, check the mount point (a dead FUSE mount there is named, or replaced with
// --replace-dead-mount: mount_point.hpp), check that the bucket answers (precise message and
// exit 1 if not), then (without --foreground) fork: the child mounts and tells the parent
// through a pipe once the mount is ready, so `valkyrie ... && ls MOUNT` works, and lets go of
// the caller's stderr (daemon.hpp). SIGINT/SIGTERM unmount; an external umount ends the
// daemon; SIGHUP reopens the --log-file (and ends nothing).
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <set>
#include <thread>
#include <sstream>

#include <CLI/CLI.hpp>
#include <systemd/sd-daemon.h>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/use_future.hpp>

#include "cache/chunk_cache.hpp"
#include "cli/cache_backing.hpp"
#include "cli/daemon.hpp"
#include "cli/direct_io.hpp"
#include "cli/mount_point.hpp"
#include "cli/passthrough_pool.hpp"
#include "cli/shared_cache.hpp"
#include "core/errors.hpp"
#include "core/log.hpp"
#include "core/metrics.hpp"
#include "core/metrics_server.hpp"
#include "core/reactor_pool.hpp"
#include "core/trace.hpp"
#include "core/units.hpp"
#include "fs/filesystem.hpp"
#include "fuse/session.hpp"
#include "fuse/uring_transport.hpp"
#include "prefetch/predictor.hpp"
#include "s3/client_setup.hpp"
#include "tier/disk_tier.hpp"

using namespace valkyrie;

namespace {
cli::daemon_link daemon_link;

[[noreturn]] void usage_error(const std::string& msg) {
  std::cerr << "valkyrie: " << msg << " (see --help)\n";
  std::exit(2);
}
// Before the mount is ready a daemonized child hands the message to its parent, which prints it.
[[noreturn]] void fatal(const std::string& msg) {
  if (daemon_link.waiting_parent()) daemon_link.fail(msg);
  std::cerr << "valkyrie: " << msg << "\n";
  std::exit(1);
}

std::string bucket_problem(std::error_code ec, const std::string& bucket, const s3::endpoint& ep) {
  std::string where = " (endpoint " + ep.url() + ", region " + ep.region + ")";
  if (ec == errc::no_such_bucket) return "no such bucket '" + bucket + "'" + where;
  if (ec == errc::signature_mismatch) return "the secret key is wrong for bucket '" + bucket + "'" + where;
  if (ec == errc::access_denied || ec == errc::expired_token)
    return "access denied to bucket '" + bucket + "' with these credentials" + where;
  if (ec == errc::wrong_region) return "bucket '" + bucket + "' is not in region " + ep.region + where;
  if (ec == errc::connect_failed || ec == errc::timeout)
    return "endpoint unreachable: " + ep.url() + " (" + ec.message() + ")";
  if (ec == errc::tls_error) return "TLS failed with " + ep.url() + " (certificate not trusted? see AWS_CA_BUNDLE)";
  return "bucket '" + bucket + "' does not answer: " + ec.message() + where;
}
}  // namespace

int warm_main(int argc, char** argv);  // warm.cpp

int main(int argc, char** argv) {
  if (argc >= 2 && std::string_view(argv[1]) == "warm") return warm_main(argc - 1, argv + 1);
  CLI::App app{"valkyrie: mount an S3 bucket read-only, with prefetch for training jobs"};
  app.set_version_flag("--version", "valkyrie 0.1.0");
  // /etc/valkyrie/NAME.conf: "key = value" lines named like the long flags; flags given on the
  // command line win. Unknown keys are errors, so a typo is not silently ignored.
  app.set_config("--config", "", "read flags from this file (key = value, e.g. cache-size = 16G)");
  app.allow_config_extras(CLI::config_extras_mode::error);
  std::string mountpoint, bucket, prefix, cache_size = "16G", chunk_size = "8MiB", log_level = "info",
                                          metadata_ttl = "60s", manifest, file_mode = "0444", dir_mode = "0555",
                                          prefetch_share = "50%", kernel_read_ahead = "4MiB", lookahead = "auto";
  std::string retry_timeout = "5m", metadata_retry_timeout = "5m";
  std::string metrics_addr = "127.0.0.1:9090", log_format = "json", trace_output, trace_max_size = "64MiB";
  std::string log_file, fuse_transport = "auto", fuse_uring_poll = "30us", drop_behind = "32MiB",
                        passthrough_pool = "auto", cache_backing = "background",
                        direct_io_above = "auto";
  s3::client_setup setup;
  unsigned workers = 256, threads = 0, metrics_port = 0;
  bool foreground = false, allow_other = false, anonymous = false, no_metrics = false, tracing = false,
       no_control_files = false, direct_io = false, cache_prefault = false, no_cache_huge_pages = false;
  bool replace_dead_mount = false;
  unsigned uid = getuid(), gid = getgid();
  std::string disk_cache, disk_cache_size;
  cli::shared_cache_flags shared_flags;
  app.add_option("--mount", mountpoint, "empty directory to mount on")->required();
  app.add_flag("--replace-dead-mount", replace_dead_mount,
               "detach a dead FUSE mount (\"Transport endpoint is not connected\") at --mount and "
               "mount in its place");
  app.add_option("--bucket", bucket, "bucket to mount")->required();
  app.add_option("--prefix,--s3-prefix", prefix, "mount only the keys under this prefix");
  app.add_option("--region", setup.endpoint.region, "region (default: AWS_REGION, AWS_DEFAULT_REGION, us-east-1)");
  app.add_option("--endpoint", setup.endpoint.endpoint_url, "S3 endpoint URL (default: AWS_ENDPOINT_URL or AWS)");
  app.add_flag("--force-path-style", setup.endpoint.force_path_style, "path-style requests");
  app.add_flag("--no-sign-request", anonymous, "anonymous access (public buckets)");
  app.add_option("--profile", setup.credentials.profile, "credentials profile (default: AWS_PROFILE)");
  std::string express_session = "auto";
  app.add_option("--express-session", express_session,
                 "S3 Express One Zone session authentication (CreateSession): auto (for directory "
                 "buckets, NAME--AZID--x-s3), on, off")
      ->check(CLI::IsMember({"auto", "on", "off"}));
  app.add_option("--cache-size", cache_size,
                 "memory for cached data, a hard cap (the chunk cache and --passthrough-pool; e.g. "
                 "16G, 512MiB)");
  app.add_option(
         "--cache-backing", cache_backing,
         "when the cache's memory gets its pages: background (from a low-priority thread once "
         "mounted, ahead of use: reads rarely take a page fault), start (all before the mount "
         "answers; a node without the memory fails at mount), lazy (at each page's first write)")
      ->check(CLI::IsMember({"background", "start", "lazy"}));
  app.add_flag("--cache-prefault", cache_prefault, "the same as --cache-backing start");
  app.add_flag(
      "--no-cache-huge-pages", no_cache_huge_pages,
      "cache memory in 4 KiB pages instead of transparent huge pages (half the CPU per GiB "
      "copied in and out of the cache here; backed ahead, the kernel assembles them "
      "at start)");
  app.add_option("--chunk-size", chunk_size, "bytes per cached chunk and ranged GET");
  app.add_option("--disk-cache", disk_cache,
                 "directory for a persistent disk tier under the memory cache (kept across mounts; one mount per directory)");
  app.add_option("--disk-cache-size", disk_cache_size, "the disk tier's size, a hard cap (e.g. 500G; needs --disk-cache)");
  cli::add_shared_cache_options(app, shared_flags);
  app.add_option("--workers", workers,
                 "most S3 requests (and connections) in flight at once; prefetch uses at most 3/4 of them, and "
                 "no more bytes in flight than the measured link needs");
  app.add_option("--threads", threads, "reactor threads (default: cores)");
  app.add_option("--lookahead", lookahead,
                 "most whole files fetched ahead of a reader (auto: as many as the prefetch budget allows; 0: none)");
  app.add_option("--prefetch-share", prefetch_share,
                 "most of --cache-size that prefetched, not yet read data may hold (e.g. 50%)");
  app.add_option("--manifest", manifest, "training order: one key per line, relative to --prefix");
  app.add_option("--kernel-read-ahead", kernel_read_ahead,
                 "how far the kernel reads ahead of buffered readers, in requests of up to 1 MiB (0: the kernel's 128 KiB)");
  app.add_flag("--direct-io", direct_io,
               "reads bypass the kernel page cache (faster streaming from the chunk cache; files cannot be mmap'ed)");
  app.add_option(
      "--drop-behind", drop_behind,
      "a file read in sequence keeps only this much behind its reader in the kernel's page cache "
      "(at least twice --kernel-read-ahead; the chunk cache keeps the data; 0: the page cache "
      "keeps everything until the kernel needs the memory)");
  app.add_option("--direct-io-above", direct_io_above,
                 "files larger than this skip the kernel page cache (FOPEN_DIRECT_IO; shared mmap "
                 "still works on Linux >= 6.6); auto: those drop-behind would drop pages of "
                 "(5/4 of --drop-behind; off with --drop-behind 0); off: none");
  app.add_option("--passthrough-pool", passthrough_pool,
                 "FUSE passthrough (Linux >= 6.9, CAP_SYS_ADMIN): an object of at least 1 MiB is "
                 "copied from the cache into a backing file (ahead of its open when fetched whole, "
                 "else at an open that finds it all cached), which the kernel then reads itself; "
                 "this much of --cache-size may be such files (auto: an eighth where passthrough "
                 "is possible, else 0, and 0 for a --manifest with no object it takes or that "
                 "reads more again than stays local; 0: off; e.g. 512MiB)");
  app.add_option("--fuse-transport", fuse_transport,
                 "how FUSE requests reach the daemon: io-uring (FUSE over io_uring: Linux >= 6.14 with the fuse "
                 "module's enable_uring set), dev-fuse (/dev/fuse through libfuse), auto (io-uring when the kernel "
                 "offers it, else dev-fuse)")
      ->check(CLI::IsMember({"auto", "io-uring", "dev-fuse"}));
  app.add_option("--fuse-uring-poll", fuse_uring_poll,
                 "with FUSE over io_uring: how long a reactor watches its ring for the next request after "
                 "answering one, before it sleeps (lower latency for back-to-back requests; 0: never; at most 1ms)");
  app.add_flag("--no-control-files", no_control_files,
               "no /.valkyrie/order (live training order); the kernel then mounts read-only (ro)");
  auto* addr_opt = app.add_option("--metrics-addr", metrics_addr,
                                  "serve Prometheus /metrics on HOST:PORT (default 127.0.0.1:9090; port 0: any)");
  auto* port_opt = app.add_option("--metrics-port", metrics_port, "the same on 127.0.0.1 (or --metrics-addr's host)");
  app.add_flag("--no-metrics", no_metrics, "do not serve /metrics");
  app.add_flag("--enable-tracing", tracing, "write a Chrome trace (Perfetto) of reads, S3 requests and prefetch");
  app.add_option("--trace-output", trace_output, "trace file (default /tmp/valkyrie_trace_<pid>.json; implies tracing)");
  app.add_option("--trace-max-size", trace_max_size, "the trace file is rotated to FILE.1 at this size");
  app.add_option("--log-format", log_format, "json (one object per line) or text");
  app.add_option("--metadata-ttl", metadata_ttl, "how long listings and attributes are cached");
  app.add_option("--retry-timeout", retry_timeout,
                 "how long a read waits through an S3 outage (refused connections, timeouts, "
                 "5xx, throttling), retrying, before it fails with ETIMEDOUT (default 5m; 0: no "
                 "retries)");
  app.add_option("--metadata-retry-timeout", metadata_retry_timeout,
                 "the same for lookups, opens and directory listings (HEAD, LIST; default 5m)");
  app.add_flag("-f,--foreground", foreground, "stay in the foreground");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error");
  app.add_option("--log-file", log_file,
                 "append log lines to this file (SIGHUP reopens it); without it a daemon logs to "
                 "syslog once mounted");
  app.add_flag("--allow-other", allow_other, "let other users see the mount");
  app.add_option("--uid", uid, "owner of files");
  app.add_option("--gid", gid, "group of files");
  app.add_option("--file-mode", file_mode, "permission bits of files (octal)");
  app.add_option("--dir-mode", dir_mode, "permission bits of directories (octal)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    std::string what = e.what();
    if (what.rfind("INI was not able to parse ", 0) == 0)
      what = "unknown setting '" + what.substr(26) + "' in the --config file";
    std::cerr << "valkyrie: " << what << " (see --help)\n";
    return 2;
  }

  if (!log::set_level(log_level)) usage_error("unknown --log-level '" + log_level + "'");
  if (!log::set_format(log_format)) usage_error("unknown --log-format '" + log_format + "' (json or text)");
  if (!log_file.empty())
    if (auto ec = log::to_file(log_file))
      fatal("cannot open --log-file " + log_file + ": " + ec.message());
  std::string metrics_host;
  unsigned short metrics_tcp_port = 0;
  if (!metrics::parse_listen_address(metrics_addr, metrics_host, metrics_tcp_port))
    usage_error("bad --metrics-addr '" + metrics_addr + "' (HOST:PORT, e.g. 127.0.0.1:9090)");
  if (*port_opt) {
    if (metrics_port > 65535) usage_error("bad --metrics-port " + std::to_string(metrics_port));
    metrics_tcp_port = static_cast<unsigned short>(metrics_port);
  }
  // An address the user chose must work; the default one may be taken by another mount.
  const bool metrics_addr_required = *addr_opt || *port_opt;
  auto trace_bytes = parse_size(trace_max_size);
  if (!trace_bytes || *trace_bytes < 4096) usage_error("bad --trace-max-size '" + trace_max_size + "' (e.g. 64MiB)");
  if (!trace_output.empty()) tracing = true;
  auto cache_bytes = parse_size(cache_size);
  if (!cache_bytes) usage_error("bad --cache-size '" + cache_size + "' (examples: 16G, 512MiB)");
  auto chunk_bytes = parse_size(chunk_size);
  if (!chunk_bytes || *chunk_bytes < 64 * 1024 || *chunk_bytes > (256u << 20))
    usage_error("bad --chunk-size '" + chunk_size + "' (64KiB to 256MiB, e.g. 8MiB)");
  if (*cache_bytes < 2 * *chunk_bytes)
    usage_error("--cache-size " + cache_size + " is smaller than two chunks of " + chunk_size);
  std::optional<std::uint64_t> disk_bytes;
  if (!disk_cache.empty() || !disk_cache_size.empty()) {
    if (disk_cache.empty() || disk_cache_size.empty())
      usage_error("--disk-cache and --disk-cache-size go together (e.g. --disk-cache /nvme/valkyrie --disk-cache-size 500G)");
    auto parsed = parse_size(disk_cache_size);
    if (parsed) disk_bytes = *parsed;
    if (!disk_bytes || *disk_bytes < *chunk_bytes + 4096)
      usage_error("bad --disk-cache-size '" + disk_cache_size + "' (at least one chunk and 4 KiB, e.g. 500G)");
    disk_cache = std::filesystem::absolute(disk_cache).lexically_normal().string();  // (relative: to where the mount was started)
  }
  auto kernel_ra = parse_size(kernel_read_ahead);
  if (!kernel_ra || *kernel_ra > (256u << 20) || (*kernel_ra != 0 && *kernel_ra < 4096))
    usage_error("bad --kernel-read-ahead '" + kernel_read_ahead + "' (0, or 4KiB to 256MiB, e.g. 4MiB)");
  auto drop_behind_bytes = parse_size(drop_behind);
  if (!drop_behind_bytes || (*drop_behind_bytes != 0 && *drop_behind_bytes < (1u << 20)))
    usage_error("bad --drop-behind '" + drop_behind + "' (0, or at least 1MiB, e.g. 32MiB)");
  std::string bad_direct_io;
  auto direct_plan = cli::plan_direct_io(direct_io, direct_io_above, *drop_behind_bytes,
                                         static_cast<std::uint32_t>(*kernel_ra), bad_direct_io);
  if (!bad_direct_io.empty()) usage_error(bad_direct_io);
  std::string bad_pool;
  auto pool_plan = cli::plan_passthrough_pool(passthrough_pool, direct_io, *cache_bytes,
                                              *chunk_bytes, cache_size, bad_pool);
  if (!bad_pool.empty()) usage_error(bad_pool);
  auto uring_poll = parse_duration(fuse_uring_poll);
  if (!uring_poll || *uring_poll > std::chrono::milliseconds(1))
    usage_error("bad --fuse-uring-poll '" + fuse_uring_poll + "' (0 to 1ms, e.g. 30us)");
  auto ttl = parse_duration(metadata_ttl);
  if (!ttl) usage_error("bad --metadata-ttl '" + metadata_ttl + "' (examples: 60s, 5m)");
  // (At most 1000 h: "wait for ever" in practice, and far from the clock's overflow.)
  auto retry_for = parse_duration(retry_timeout);
  if (!retry_for || *retry_for > std::chrono::hours(1000))
    usage_error("bad --retry-timeout '" + retry_timeout +
                "' (examples: 5m, 30s, 1h; 0: no retries; at most 1000h)");
  auto metadata_retry_for = parse_duration(metadata_retry_timeout);
  if (!metadata_retry_for || *metadata_retry_for > std::chrono::hours(1000))
    usage_error("bad --metadata-retry-timeout '" + metadata_retry_timeout +
                "' (examples: 5m, 30s; 0: no retries; at most 1000h)");
  setup.retry.budget = std::chrono::duration_cast<std::chrono::milliseconds>(*retry_for);
  setup.retry.metadata_budget =
      std::chrono::duration_cast<std::chrono::milliseconds>(*metadata_retry_for);
  if (workers == 0) usage_error("--workers must be at least 1");
  unsigned lookahead_files = ~0u;
  if (lookahead != "auto") {
    char* end = nullptr;
    unsigned long n = std::strtoul(lookahead.c_str(), &end, 10);
    if (lookahead.empty() || *end != '\0' || n > 1000000) usage_error("bad --lookahead '" + lookahead + "' (auto, or a number of files)");
    lookahead_files = static_cast<unsigned>(n);
  }
  double share = 0;
  {
    char* end = nullptr;
    share = std::strtod(prefetch_share.c_str(), &end);
    if (prefetch_share.empty() || end == prefetch_share.c_str() || (*end != '\0' && std::string(end) != "%") ||
        share <= 0 || share > 100)
      usage_error("bad --prefetch-share '" + prefetch_share + "' (a percentage of --cache-size above 0, at most 100%, e.g. 50%)");
    share /= 100;
  }
  auto mode = [](const std::string& what, const std::string& text) {
    char* end = nullptr;
    unsigned long v = std::strtoul(text.c_str(), &end, 8);
    if (text.empty() || *end != '\0' || v > 07777) usage_error("bad " + what + " '" + text + "' (octal, e.g. 0444)");
    return static_cast<unsigned>(v);
  };
  unsigned fmode = mode("--file-mode", file_mode), dmode = mode("--dir-mode", dir_mode);
  if (!prefix.empty() && prefix.back() != '/') prefix += '/';
  std::string manifest_text;
  if (!manifest.empty()) {
    std::ifstream in(manifest);
    if (!in) fatal("cannot read --manifest " + manifest + ": " + std::strerror(errno));
    std::stringstream ss;
    ss << in.rdbuf();
    manifest_text = ss.str();
  }

  // The mount point: an existing, empty directory, not a live FUSE mount; a dead one is named
  // (or detached with --replace-dead-mount).
  if (auto problem = cli::prepare_mount_point(mountpoint, replace_dead_mount); !problem.empty())
    fatal(problem);

  if (cache_prefault) {
    if (app.count("--cache-backing") && cache_backing != "start")
      usage_error("--cache-prefault is --cache-backing start, not " + cache_backing);
    cache_backing = "start";
  }
  std::string refusal;
  auto backing = cli::plan_cache_backing(cache_backing, *cache_bytes, cache_size, refusal);
  if (!refusal.empty()) fatal(refusal);

  // Credentials, endpoint, and one request to see that the bucket answers.
  setup.endpoint.bucket = bucket;
  setup.credentials.anonymous = anonymous;
  setup.express = *s3::parse_express_mode(express_session);
  unsigned nthreads = threads ? threads : std::max(1u, std::thread::hardware_concurrency());
  setup.max_connections = std::max(1u, (workers + nthreads - 1) / nthreads);
  auto opts = s3::prepare_client_options(setup);
  if (!opts) {
    if (opts.error() == errc::invalid_argument) usage_error("bad --endpoint or --bucket");
    if (opts.error() == errc::no_credentials)
      fatal("no AWS credentials found (environment, ~/.aws, ECS, EC2 metadata); use --no-sign-request for public buckets");
    fatal("cannot set up S3 access: " + opts.error().message());
  }
  {
    asio::io_context ctx(1);
    auto probe_opts = *opts;
    probe_opts.retry.max_attempts = 2;
    probe_opts.timeouts.connect = std::chrono::seconds(5);
    s3::beast_client probe(ctx.get_executor(), probe_opts);
    s3::list_request req;
    req.prefix = prefix;
    req.max_keys = 1;
    auto fut = asio::co_spawn(ctx, probe.list(req), asio::use_future);
    ctx.run();
    auto r = fut.get();
    if (!r) fatal(bucket_problem(r.error(), bucket, opts->ep));
  }
  auto shared_setup = cli::prepare_shared_cache(shared_flags, *opts, setup.max_connections);

  // The manifest's keys are checked against one full listing of the prefix.
  std::shared_ptr<prefetch::predictor> order;
  std::uint64_t order_chunk_bytes = 0;  // (its size in the disk tier's chunks, with one)
  std::shared_ptr<const std::map<std::string, s3::object_info>> known_objects;
  if (!manifest.empty()) {
    asio::io_context ctx(1);
    s3::beast_client lister(ctx.get_executor(), *opts);
    auto fut = asio::co_spawn(ctx, fs::list_all(lister, prefix), asio::use_future);
    ctx.run();
    auto listed = fut.get();
    if (!listed)
      fatal("cannot list s3://" + bucket + "/" + prefix + " to check the manifest: " + listed.error().message());
    auto objects = std::make_shared<const fs::object_map>(std::move(*listed));
    auto m = fs::read_order(manifest_text, *objects, disk_cache.empty() ? 0 : *chunk_bytes,
                            pool_plan.takes());
    for (auto& p : m.problems)
      log::get("cli")->warn("manifest {} line {}: '{}': {}; skipped", manifest, p.line, p.key, p.reason);
    if (!m.predictor->has_order()) fatal("manifest " + manifest + " names no key of s3://" + bucket + "/" + prefix);
    log::get("cli")->info("manifest {}: {} entries, {} lines skipped", manifest, m.predictor->keys().size(),
                          m.problems.size());
    order = std::move(m.predictor);
    order_chunk_bytes = m.chunk_bytes;
    cli::fit_pool_to_order(pool_plan, *cache_bytes, disk_bytes.value_or(0), m);
    known_objects = objects;
  }

  // Daemonize now (before any thread exists); the parent waits until the mount is ready.
  if (!foreground) daemon_link.start();

  // auto: io_uring when the fuse module allows it (the daemon never changes that setting).
  bool use_uring = fuse_transport == "io-uring" || (fuse_transport == "auto" && fuse::kernel_offers_io_uring());
  // With io_uring, the kernel queues a request for the CPU its reader runs on and only that
  // queue's reactor can take it: reactor i is pinned to CPU i, so it runs where its readers do
  // (unpinned, waking it on another, idle CPU tripled a 4 KiB read's latency).
  // Made before everything that runs on it and destroyed after all of it (see the end of main).
  reactor_pool pool({threads, use_uring});
  std::shared_ptr<cache::chunk_cache> cache;
  try {
    cache = std::make_shared<cache::chunk_cache>(*cache_bytes - pool_plan.bytes,
                                                 static_cast<std::uint32_t>(*chunk_bytes));
  } catch (const std::exception& e) {
    fatal(std::string("cannot create the cache: ") + e.what());
  }
  // Said in the "mounted" line (a line logged before the mount is ready reaches a caller that
  // captures our output).
  std::string cache_pages = "transparent huge pages";
  if (no_cache_huge_pages)
    cache_pages = "4 KiB (--no-cache-huge-pages)";
  else if (!cache->use_huge_pages())
    cache_pages =
        std::string("4 KiB: the kernel refused huge pages (") + std::strerror(errno) + ")";
  if (backing.mode == "start")
    if (auto err = cli::back_cache_now(backing, *cache, *cache_bytes, cache_size); !err.empty())
      fatal(err);
  // Prefetches may hold at most three quarters of --workers: a reader's own fetch always finds
  // a connection instead of queueing behind read-ahead.
  cache->set_prefetch_limit(workers - std::max(1u, workers / 4));
  cache->set_prefetch_share(share);
  std::vector<std::shared_ptr<s3::object_client>> clients;
  std::vector<asio::any_io_executor> executors;
  for (unsigned i = 0; i < pool.size(); ++i) {
    clients.push_back(std::make_shared<s3::beast_client>(pool.executor(i), *opts));
    executors.push_back(pool.executor(i));
  }
  fs::options fopts;
  std::shared_ptr<tier::disk_tier> disk;
  if (disk_bytes) {
    try {
      tier::store_options sopts;
      sopts.dir = disk_cache;
      sopts.size = *disk_bytes;
      sopts.chunk_size = static_cast<std::uint32_t>(*chunk_bytes);
      auto store = tier::disk_store::open(sopts);
      // Write-back from pinned cache memory: at most half the cache (256 MiB) being written at
      // once. It must cover the ingest rate times the disk's write latency while the reactors
      // are busy with the reads (bench-disk part a on this machine: with 64 MiB, 64-113 of
      // epoch 1's 512 victims were dropped unwritten; with 256 MiB, 17-57; docs/benchmarks.md).
      const std::uint64_t write_back = std::max<std::uint64_t>(
          *chunk_bytes, std::min<std::uint64_t>(256 << 20, *cache_bytes / 2));
      disk = std::make_shared<tier::disk_tier>(store, cache, write_back);
      // With a training order, chunks go to the disk when memory evicts them (disk_tier.hpp).
      disk->start_spill(executors.front());
    } catch (const std::exception& e) {
      fatal(e.what());
    }
  }
  fopts.disk = disk;
  // The shared cache tier (--shared-cache): stores from pinned memory, at most 64 MiB at once.
  if (shared_setup)
    fopts.shared = cli::make_shared_cache(*shared_setup, pool, cache,
                                          std::max<std::uint64_t>(*chunk_bytes, std::min<std::uint64_t>(64 << 20, *cache_bytes / 8)));
  fopts.prefix = prefix;
  fopts.metadata_ttl = *ttl;
  // A sequential reader's window: 32 chunks (256 MiB of 8 MiB) once it has grown, the measured
  // optimum for one stream; what runs at once is bounded by the prefetch budget.
  fopts.max_readahead_chunks = std::max(2u, std::min(32u, cache->slots() / 2));
  fopts.lookahead_files = lookahead_files;
  fopts.bucket = bucket;
  fopts.order = order;
  fopts.order_chunk_bytes = order_chunk_bytes;
  fopts.known_objects = known_objects;
  fopts.control_files = !no_control_files;
  fopts.background = pool.background();
  fs::filesystem filesystem(fopts, clients, cache, executors);

  fuse::mount_options mopts;
  mopts.mountpoint = mountpoint;
  mopts.fsname = "valkyrie:" + bucket;
  mopts.allow_other = allow_other;
  mopts.uid = uid;
  mopts.gid = gid;
  mopts.file_mode = fmode;
  mopts.dir_mode = dmode;
  mopts.kernel_read_only = no_control_files;
  mopts.direct_io = direct_io;
  mopts.drop_behind = *drop_behind_bytes;
  mopts.direct_io_above = direct_plan.above;
  mopts.passthrough_pool = pool_plan.bytes;
  mopts.passthrough_auto = pool_plan.automatic;
  mopts.own_decoder = pool_plan.own_decoder;
  if (use_uring) mopts.transport = fuse::mount_options::transport_kind::io_uring;
  mopts.uring_poll = std::chrono::duration_cast<std::chrono::microseconds>(*uring_poll);
  mopts.kernel_read_ahead = static_cast<std::uint32_t>(*kernel_ra);
  mopts.max_readahead = std::max(mopts.max_readahead, mopts.kernel_read_ahead);  // (INIT may only lower it)
  mopts.attr_timeout = std::chrono::duration<double>(*ttl).count();
  std::unique_ptr<metrics::server> metrics_server;
  if (!no_metrics) {
    auto& reg = metrics::registry::global();
    reg.get_gauge("valkyrie_build_info", "Always 1; the labels say which build runs", {{"version", "0.1.0"}}).add();
    auto srv = metrics::server::bind(pool.executor(0), metrics_host, metrics_tcp_port, [&reg] { return reg.render(); });
    if (srv) {
      metrics_server = std::move(*srv);
    } else {
      if (metrics_addr_required) {
        std::string msg = "cannot serve metrics on " + metrics_host + ":" + std::to_string(metrics_tcp_port) +
                          ": " + srv.error().message() + " (use another --metrics-addr, or --no-metrics)";
        fatal(msg);
      }
      log::event("cli", spdlog::level::warn, "metrics are off: the default address is taken (another mount?)",
                 {{"address", metrics_host + ":" + std::to_string(metrics_tcp_port)}, {"error", srv.error().message()}});
    }
  }
  if (tracing) {
    if (trace_output.empty()) trace_output = "/tmp/valkyrie_trace_" + std::to_string(getpid()) + ".json";
    if (auto ec = trace::start({trace_output, *trace_bytes})) {
      fatal("cannot write the trace file " + trace_output + ": " + ec.message());
    }
  }

  fuse::session session(filesystem, pool, mopts);
  if (auto err = session.mount(); !err.empty()) {
    fatal(err);
  }
  session.set_on_finished([&pool] { pool.request_stop(); });
  boost::asio::signal_set signals(pool.context(0), SIGINT, SIGTERM);
  signals.async_wait([&session](const boost::system::error_code& ec, int) {
    if (ec) return;
    sd_notify(0, "STOPPING=1");
    session.unmount();
  });
  // SIGUSR2 cycles the log level (trace, debug, info, warn, error) without a restart.
  boost::asio::signal_set usr2(pool.context(0), SIGUSR2);
  std::function<void()> wait_usr2 = [&usr2, &wait_usr2] {
    usr2.async_wait([&wait_usr2](const boost::system::error_code& ec, int) {
      if (ec) return;
      log::cycle_level();
      wait_usr2();
    });
  };
  wait_usr2();
  // SIGHUP (logrotate) reopens the --log-file; without one it is ignored: a stray hangup (a
  // closed terminal, `pkill -HUP valkyrie`) must not end the daemon and leave its mount dead.
  boost::asio::signal_set hup(pool.context(0), SIGHUP);
  std::function<void()> wait_hup = [&hup, &wait_hup] {
    hup.async_wait([&wait_hup](const boost::system::error_code& ec, int) {
      if (ec) return;
      if (auto err = log::reopen())
        log::event("cli", spdlog::level::warn,
                   "cannot reopen the log file (SIGHUP); still writing the old one",
                   {{"error", err.message()}});
      wait_hup();
    });
  };
  wait_hup();
  // The background backing starts once nothing can fail the start any more: with it running
  // while exit() ran (a second daemon refused its --disk-cache), the sanitizer build left an
  // empty AddressSanitizer report file. (A skipped backing is said in the "mounted" line: a line
  // logged before the mount is ready reaches a caller that captures our output.)
  if (backing.in_background())
    cache->back_in_background(19);  // (the readers' work first: see core/memory_backer.hpp)
  // From here lines come from the reactors' threads too (FUSE_INIT's answer, at once): none of
  // them may reach a caller that captures our output (tests/cli/test_daemon_output.sh).
  daemon_link.let_go_of_stderr();
  session.start();
  if (metrics_server) metrics_server->start();
  pool.start();
  // With a manifest, the first files are fetched now, before anyone asks.
  if (order) asio::co_spawn(pool.executor(0), filesystem.warm_up_order(), asio::detached);
  // The parent returns now; the caller's stderr was let go of above, so this line and all later
  // ones go to the --log-file or syslog.
  daemon_link.ready();
  if (!use_uring && fuse_transport == "auto")
    log::event("cli", spdlog::level::info,
               "FUSE over io_uring is off in this kernel (/sys/module/fuse/parameters/enable_uring): using /dev/fuse",
               {});
  log::event(
      "cli", spdlog::level::info, "mounted",
      {{"source", "s3://" + bucket + "/" + prefix},
       {"mountpoint", mountpoint},
       {"reactors", pool.size()},
       {"cache_bytes", cache->capacity()},
       {"cache_backing", backing.describe()},
       {"cache_pages", cache_pages},
       {"chunk_bytes", *chunk_bytes},
       {"metrics",
        metrics_server ? metrics_host + ":" + std::to_string(metrics_server->port()) : "off"},
       {"trace", tracing ? trace_output : "off"},
       {"fuse_transport", use_uring ? "io-uring" : "dev-fuse"},
       {"passthrough_pool_bytes", pool_plan.bytes},
       {"direct_io", direct_plan.describe()},
       {"passthrough",
        pool_plan.off.empty() ? std::string("asked of the kernel") : "off: " + pool_plan.off}});
  // Under systemd (Type=notify) the unit becomes active only now, with the mount answering.
  sd_notifyf(0, "READY=1\nSTATUS=mounted s3://%s/%s on %s", bucket.c_str(), prefix.c_str(), mountpoint.c_str());
  pool.join();
  // Coroutines still suspended (reads in flight at SIGTERM) are destroyed now, while the cache,
  // the tiers and the clients they hold pins and sockets of exist; those go at the end of main,
  // and the reactors' contexts after them.
  pool.destroy_pending_work();
  sd_notify(0, "STOPPING=1");
  if (tracing) trace::stop();
  log::event("cli", spdlog::level::info, "unmounted", {{"mountpoint", mountpoint}});
  return 0;
}
