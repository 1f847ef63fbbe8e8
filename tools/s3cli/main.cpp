// valkyrie-s3: a small S3 client on the project's stack (list, head, get with parallel ranged
// GETs, put). It is the demo of the S3 layer and the tool its benchmarks use.
#include <sys/mman.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <future>
#include <iostream>
#include <sstream>

#include <CLI/CLI.hpp>
#include <boost/asio/use_future.hpp>

#include "../common/synthetic.hpp"
#include "core/errors.hpp"
#include "core/log.hpp"
#include "core/reactor_pool.hpp"
#include "core/units.hpp"
#include "s3/client_setup.hpp"
#include "s3/time_format.hpp"

using namespace valkyrie;

namespace {
struct get_job {
  std::vector<std::unique_ptr<s3::beast_client>>* clients;
  std::string key, etag;
  std::uint64_t size = 0, part = 0, parts = 0;
  char* data = nullptr;
  std::atomic<std::uint64_t> next{0};
  std::atomic<std::uint64_t> done_bytes{0};
  std::mutex mu;
  std::error_code first_error;
};

awaitable<void> get_worker(get_job* job, unsigned reactor) {
  auto& client = *(*job->clients)[reactor];
  for (;;) {
    std::uint64_t i = job->next.fetch_add(1);
    if (i >= job->parts) co_return;
    std::uint64_t offset = i * job->part;
    std::size_t len = static_cast<std::size_t>(std::min(job->part, job->size - offset));
    auto r = co_await client.get(job->key, offset, std::span<char>(job->data + offset, len), job->etag);
    if (!r || *r != len) {
      std::lock_guard lock(job->mu);
      if (!job->first_error) job->first_error = r ? make_error_code(errc::truncated_body) : r.error();
      co_return;
    }
    job->done_bytes.fetch_add(len);
  }
}

// Runs `make(reactor)` on reactor 0 and waits for its result.
template <class T>
T run_on(reactor_pool& pool, unsigned reactor, awaitable<T> a) {
  return asio::co_spawn(pool.executor(reactor), std::move(a), asio::use_future).get();
}

int fail(const std::string& what, std::error_code ec) {
  std::cerr << "valkyrie-s3: " << what << ": " << ec.message() << "\n";
  return 1;
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"valkyrie-s3: list, inspect and fetch S3 objects with parallel ranged GETs"};
  app.require_subcommand(1);
  s3::client_setup setup;
  std::string log_level = "warn", connect_timeout = "5s", first_byte_timeout = "10s", stall_timeout = "5s";
  unsigned threads = 0;
  bool anonymous = false, no_verify = false, json = false;
  app.add_option("--bucket", setup.endpoint.bucket, "bucket name")->required();
  app.add_option("--endpoint", setup.endpoint.endpoint_url, "endpoint URL (default: AWS_ENDPOINT_URL or AWS)");
  app.add_option("--region", setup.endpoint.region, "region (default: AWS_REGION, AWS_DEFAULT_REGION, us-east-1)");
  app.add_flag("--force-path-style", setup.endpoint.force_path_style, "path-style addressing");
  app.add_flag("--no-sign-request", anonymous, "anonymous access");
  app.add_option("--profile", setup.credentials.profile, "shared-file profile (default: AWS_PROFILE)");
  app.add_option("--ca-bundle", setup.ca_bundle, "PEM bundle of trusted CAs (default: AWS_CA_BUNDLE)");
  app.add_flag("--no-verify-tls", no_verify, "do not verify server certificates (unsafe)");
  app.add_option("--threads", threads, "reactor threads (default: cores)");
  app.add_option("--max-connections", setup.max_connections, "connections per reactor");
  app.add_option("--connect-timeout", connect_timeout, "connect timeout");
  app.add_option("--first-byte-timeout", first_byte_timeout, "first-byte timeout");
  app.add_option("--stall-timeout", stall_timeout, "stalled-body timeout");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error");
  app.add_flag("--json", json, "print results as one JSON object");

  auto* ls = app.add_subcommand("ls", "list keys (ListObjectsV2, all pages)");
  std::string prefix, delimiter;
  ls->add_option("--prefix", prefix, "key prefix");
  ls->add_option("--delimiter", delimiter, "roll keys up into common prefixes at this delimiter");

  auto* head = app.add_subcommand("head", "show an object's size, ETag and modification time");
  std::string key;
  head->add_option("key", key, "object key")->required();

  auto* get = app.add_subcommand("get", "fetch an object with parallel ranged GETs");
  std::string output, part_size = "8MiB";
  unsigned parallel = 16;
  bool verify_synthetic = false;
  get->add_option("key", key, "object key")->required();
  get->add_option("-o,--output", output, "write the object to this file");
  get->add_option("--parallel", parallel, "ranged GETs in flight");
  get->add_option("--part-size", part_size, "bytes per ranged GET (0: the whole object in one GET)");
  get->add_flag("--verify-synthetic", verify_synthetic,
                "check every byte against valkyrie-s3sim's synthetic content");

  auto* put = app.add_subcommand("put", "upload a file as an object (single PUT)");
  std::string input;
  put->add_option("key", key, "object key")->required();
  put->add_option("file", input, "file to upload")->required()->check(CLI::ExistingFile);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (!log::set_level(log_level)) {
    std::cerr << "valkyrie-s3: unknown log level '" << log_level << "'\n";
    return 2;
  }
  auto duration = [](const std::string& what, const std::string& text) {
    auto d = parse_duration(text);
    if (!d) {
      std::cerr << "valkyrie-s3: bad duration for " << what << ": '" << text << "'\n";
      std::exit(2);
    }
    return std::chrono::duration_cast<std::chrono::milliseconds>(*d);
  };
  setup.timeouts.connect = duration("--connect-timeout", connect_timeout);
  setup.timeouts.first_byte = duration("--first-byte-timeout", first_byte_timeout);
  setup.timeouts.stall = duration("--stall-timeout", stall_timeout);
  setup.credentials.anonymous = anonymous;
  setup.verify_tls = !no_verify;
  auto part = parse_size(part_size);
  if (!part) {
    std::cerr << "valkyrie-s3: bad --part-size '" << part_size << "'\n";
    return 2;
  }

  auto opts = s3::prepare_client_options(setup);
  if (!opts) {
    if (opts.error() == errc::invalid_argument) {
      std::cerr << "valkyrie-s3: bad endpoint or bucket (endpoint must be http[s]://host[:port])\n";
      return 2;
    }
    return fail("cannot set up the S3 client", opts.error());
  }

  reactor_pool pool({threads, false});
  std::vector<std::unique_ptr<s3::beast_client>> clients;
  for (unsigned i = 0; i < pool.size(); ++i)
    clients.push_back(std::make_unique<s3::beast_client>(pool.executor(i), *opts));
  pool.start();
  struct stopper {
    reactor_pool& p;
    std::vector<std::unique_ptr<s3::beast_client>>& c;
    ~stopper() {
      p.stop();
      c.clear();
    }
  } stop_at_exit{pool, clients};

  if (*ls) {
    s3::list_request req;
    req.prefix = prefix;
    req.delimiter = delimiter;
    std::uint64_t objects = 0, prefixes = 0, pages = 0;
    for (;;) {
      auto page = run_on(pool, 0, clients[0]->list(req));
      if (!page) return fail("list", page.error());
      ++pages;
      for (auto& p : page->common_prefixes) {
        ++prefixes;
        if (!json) std::printf("%30s  %s\n", "PRE", p.c_str());
      }
      for (auto& o : page->objects) {
        ++objects;
        if (!json)
          std::printf("%s %12llu  %s\n", s3::format_iso8601(o.last_modified).c_str(),
                      static_cast<unsigned long long>(o.size), o.key.c_str());
      }
      if (!page->truncated) break;
      req.continuation_token = page->next_continuation_token;
    }
    if (json) std::printf("{\"objects\":%llu,\"prefixes\":%llu,\"pages\":%llu}\n",
                          static_cast<unsigned long long>(objects), static_cast<unsigned long long>(prefixes),
                          static_cast<unsigned long long>(pages));
    return 0;
  }

  if (*head) {
    auto info = run_on(pool, 0, clients[0]->head(key));
    if (!info) return fail("head " + key, info.error());
    std::printf("key: %s\nsize: %llu\netag: %s\nlast-modified: %s\n", info->key.c_str(),
                static_cast<unsigned long long>(info->size), info->etag.c_str(),
                s3::format_iso8601(info->last_modified).c_str());
    return 0;
  }

  if (*put) {
    std::ifstream in(input, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    auto etag = run_on(pool, 0, clients[0]->put(key, ss.str()));
    if (!etag) return fail("put " + key, etag.error());
    std::printf("%s\n", etag->c_str());
    return 0;
  }

  // get
  auto info = run_on(pool, 0, clients[0]->head(key));
  if (!info) return fail("head " + key, info.error());
  get_job job;
  job.clients = &clients;
  job.key = key;
  job.etag = info->etag;
  job.size = info->size;
  job.part = *part == 0 ? std::max<std::uint64_t>(info->size, 1) : *part;
  job.parts = (info->size + job.part - 1) / job.part;
  void* mem = nullptr;
  if (info->size > 0) {
    mem = ::mmap(nullptr, info->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) return fail("allocate", std::error_code(errno, std::generic_category()));
    // Touch the pages first so that page faults do not count as network time.
    std::memset(mem, 0, info->size);
  }
  job.data = static_cast<char*>(mem);
  parallel = std::max(1u, parallel);
  auto start = std::chrono::steady_clock::now();
  std::vector<std::future<void>> workers;
  for (unsigned w = 0; w < parallel; ++w) {
    unsigned r = w % pool.size();
    workers.push_back(asio::co_spawn(pool.executor(r), get_worker(&job, r), asio::use_future));
  }
  for (auto& w : workers) w.get();
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (job.first_error) return fail("get " + key, job.first_error);
  bool verified = false;
  if (verify_synthetic) {
    auto seed = synthetic::seed_for(setup.endpoint.bucket, key);
    auto bad = synthetic::first_mismatch(seed, 0, std::span<const char>(job.data, job.size));
    if (bad != job.size) {
      std::cerr << "valkyrie-s3: content differs from the synthetic pattern at byte " << bad << "\n";
      return 3;
    }
    verified = true;
  }
  if (!output.empty()) {
    std::ofstream out(output, std::ios::binary);
    out.write(job.data, static_cast<std::streamsize>(job.size));
    if (!out) return fail("write " + output, std::error_code(errno, std::generic_category()));
  }
  double mbps = seconds > 0 ? job.size / seconds / 1e6 : 0;
  auto& st = *opts->stats;
  if (json) {
    std::printf("{\"key\":\"%s\",\"bytes\":%llu,\"seconds\":%.6f,\"mb_per_s\":%.1f,\"parallel\":%u,"
                "\"part_size\":%llu,\"requests\":%llu,\"retries\":%llu,\"connections\":%llu,"
                "\"verified\":%s}\n",
                key.c_str(), static_cast<unsigned long long>(job.size), seconds, mbps, parallel,
                static_cast<unsigned long long>(job.part),
                static_cast<unsigned long long>(st.requests.load()),
                static_cast<unsigned long long>(st.retries.load()),
                static_cast<unsigned long long>(st.connections_opened.load()), verified ? "true" : "false");
  } else {
    std::printf("%s: %s in %.3f s = %.1f MB/s (%u parallel GETs of %s, %llu requests, %llu retries)%s\n",
                key.c_str(), format_size(job.size).c_str(), seconds, mbps, parallel,
                format_size(job.part).c_str(), static_cast<unsigned long long>(st.requests.load()),
                static_cast<unsigned long long>(st.retries.load()),
                verified ? ", every byte verified" : "");
  }
  if (mem) ::munmap(mem, info->size);
  return 0;
}
