// The Beast client against s3rver (npm, pinned in package.json): a third-party S3 implementation
// with its own XML, error and keep-alive behaviour. Skipped (exit 77) when it is not installed.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <set>

#include "../../tools/common/synthetic.hpp"
#include "client_env.hpp"
#include "core/errors.hpp"

using namespace valkyrie;
using namespace valkyrie::s3;

namespace {
const credentials s3rver_keys{"S3RVER", "S3RVER", "", {}};

class s3rver {
 public:
  s3rver() {
    proc_ = std::make_unique<test::child>(
        std::vector<std::string>{"node", test::env_or("S3RVER"), "-d", dir_.path().string(), "-a", "127.0.0.1",
                                 "-p", "0", "--silent", "--configure-bucket", "b"},
        std::vector<std::string>{"NODE_OPTIONS=--openssl-legacy-provider"});
    std::string line = proc_->wait_for_line("listening on ");
    url_ = "http://" + line.substr(line.find("listening on ") + 13);
  }
  const std::string& url() const { return url_; }

 private:
  test::temp_dir dir_;
  std::unique_ptr<test::child> proc_;
  std::string url_;
};

std::string pattern(const std::string& key, std::size_t size) {
  std::string s(size, '\0');
  synthetic::fill(synthetic::seed_for("b", key), 0, std::span<char>(s));
  return s;
}

// Runs up to `width` coroutines over the keys at once on the calling context.
awaitable<void> put_all(beast_client* c, std::vector<std::string> keys, int width) {
  auto ex = co_await asio::this_coro::executor;
  std::size_t next = 0;
  int running = 0;
  auto worker = [](beast_client* c, std::vector<std::string>* ks, std::size_t* next, int* running) -> awaitable<void> {
    while (*next < ks->size()) {
      std::string k = (*ks)[(*next)++];
      auto r = co_await c->put(k, k);
      if (!r) FAIL("put " << k << ": " << r.error().message());
    }
    --*running;
  };
  for (int w = 0; w < width; ++w) {
    ++running;
    asio::co_spawn(ex, worker(c, &keys, &next, &running), asio::detached);
  }
  while (running > 0) {
    asio::steady_timer t(ex, std::chrono::milliseconds(5));
    co_await t.async_wait(use_tuple);
  }
}
}  // namespace

TEST_CASE("s3rver: PUT, HEAD, ranged GETs at odd offsets and the last byte, 404") {
  s3rver server;
  test::client_env env(server.url(), "b", s3rver_keys);
  const std::size_t size = (3u << 20) + 17;
  auto etag = env.run(env.client->put("data/big object+1.bin", pattern("data/big object+1.bin", size)));
  REQUIRE(etag);
  auto info = env.run(env.client->head("data/big object+1.bin"));
  REQUIRE(info);
  CHECK(info->size == size);
  CHECK(info->etag == *etag);
  auto seed = synthetic::seed_for("b", "data/big object+1.bin");
  for (std::uint64_t offset : std::vector<std::uint64_t>{0, 1, 4095, (1u << 20) + 1, size - 1}) {
    std::vector<char> buf(std::min<std::uint64_t>(1234567, size - offset + 10));
    auto n = env.run(env.client->get("data/big object+1.bin", offset, std::span<char>(buf), *etag));
    REQUIRE(n);
    CHECK(*n == std::min<std::uint64_t>(buf.size(), size - offset));
    CHECK(synthetic::first_mismatch(seed, offset, std::span<const char>(buf.data(), *n)) == *n);
  }
  char b[4];
  CHECK(env.run(env.client->head("nope")).error() == errc::not_found);
  CHECK(env.run(env.client->get("nope", 0, std::span<char>(b, 4), "")).error() == errc::not_found);
  test::client_env other(server.url(), "nobucket", s3rver_keys);
  CHECK(other.run(other.client->list({})).error() == errc::no_such_bucket);
}

TEST_CASE("s3rver: a listing of 2,500 odd keys with pages, prefixes and delimiters") {
  s3rver server;
  test::client_env env(server.url(), "b", s3rver_keys);
  const std::vector<std::string> dirs = {"plain/", "with space/", "plus+sign/", "per%cent/", "tilde~/",
                                         "\xc3\xa9t\xc3\xa9/"};
  const std::vector<std::string> names = {"f", "a b", "a+b", "50%", "~x", "\xe6\x97\xa5\xe6\x9c\xac", "semi;colon"};
  std::set<std::string> keys;
  for (int i = 0; keys.size() < 2500; ++i)
    keys.insert(dirs[i % dirs.size()] + names[(i / 6) % names.size()] + "-" + std::to_string(i));
  std::vector<std::string> all(keys.begin(), keys.end());
  env.run(put_all(env.client.get(), all, 16));

  int pages = 0;
  CHECK(test::list_all(env, {}, &pages) == all);
  CHECK(pages == 3);

  auto root = env.run(env.client->list({"", "/", "", "", 1000}));
  REQUIRE(root);
  CHECK(root->objects.empty());
  CHECK(std::set<std::string>(root->common_prefixes.begin(), root->common_prefixes.end()) ==
        std::set<std::string>(dirs.begin(), dirs.end()));
  auto odd = env.run(env.client->list({"per%cent/", "/", "", "", 1000}));
  REQUIRE(odd);
  CHECK(odd->objects.size() ==
        static_cast<std::size_t>(std::count_if(all.begin(), all.end(), [](auto& k) { return k.rfind("per%cent/", 0) == 0; })));
}

TEST_CASE("s3rver: a connection it dropped after 5 s idle is retried transparently") {
  s3rver server;
  test::client_env env(server.url(), "b", s3rver_keys, [](client_options& o) {
    o.pool_idle_timeout = std::chrono::seconds(30);  // keep it pooled past s3rver's 5 s
  });
  REQUIRE(env.run(env.client->put("k", "value")));
  std::this_thread::sleep_for(std::chrono::milliseconds(7000));  // (the scenario: idle past s3rver's 5 s)
  std::vector<char> buf(5);
  CHECK(env.run(env.client->get("k", 0, std::span<char>(buf), "")).value() == 5);
  CHECK(std::string(buf.data(), 5) == "value");
  INFO("connections " << env.stats->connections_opened.load() << " retries " << env.stats->retries.load());
  CHECK(env.stats->stale_retries.load() == 1);
}

int main(int argc, char** argv) {
  std::string s3rver_bin = test::env_or("S3RVER");
  if (s3rver_bin.empty() || access(s3rver_bin.c_str(), X_OK) != 0) {
    std::fprintf(stderr, "s3rver not installed (npm ci at the source root): skipped\n");
    return 77;
  }
  doctest::Context ctx(argc, argv);
  return ctx.run();
}
