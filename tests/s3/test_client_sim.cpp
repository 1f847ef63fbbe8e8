// The Beast client against valkyrie-s3sim, which verifies every SigV4 signature, honours
// If-Match and injects faults on request.
#include <doctest/doctest.h>

#include <set>

#include "../../tools/common/synthetic.hpp"
#include "client_env.hpp"
#include "core/errors.hpp"

using namespace valkyrie;
using namespace valkyrie::s3;

namespace test_client_sim {
const credentials good{"AKIDSIM", "sim/secret+key", "", {}};
constexpr std::uint64_t obj_size = 20 * 1024 * 1024 + 5;

// Reads [offset, offset+len) and checks every byte against the synthetic pattern.
void check_range(test::client_env& env, const std::string& key, std::uint64_t offset, std::size_t len,
                 std::size_t expect) {
  std::vector<char> buf(len);
  auto etag = env.run(env.client->head(key))->etag;
  auto n = env.run(env.client->get(key, offset, std::span<char>(buf), etag));
  REQUIRE(n);
  CHECK(*n == expect);
  auto seed = synthetic::seed_for("syn", key);
  CHECK(synthetic::first_mismatch(seed, offset, std::span<const char>(buf.data(), *n)) == *n);
}

TEST_CASE("ranged GETs at odd offsets, the last byte, HEAD") {
  test::simulator sim({"--credentials", "AKIDSIM:sim/secret+key", "--synthetic", "syn:2:20MiB",
                       "--synthetic", "syn:1:5:odd/"});
  test::client_env env(sim.url(), "syn", good);
  // 20 MiB + 5 is not what --synthetic made; use the real size from HEAD.
  auto info = env.run(env.client->head("shard_000001.tar"));
  REQUIRE(info);
  CHECK(info->size == 20u << 20);
  CHECK(info->etag.size() > 2);
  const std::uint64_t size = info->size;
  for (std::uint64_t offset : std::vector<std::uint64_t>{0, 1, 4095, 4097, (8ull << 20) - 1, size - 1}) {
    for (std::size_t len : {1ul, 7ul, (1ul << 20) + 3}) {
      INFO("offset " << offset << " len " << len);
      check_range(env, "shard_000001.tar", offset, len, std::min<std::uint64_t>(len, size - offset));
    }
  }
  // Past the end: a short read; at the end: invalid range.
  check_range(env, "shard_000000.tar", size - 3, 100, 3);
  char b[4];
  CHECK(env.run(env.client->get("shard_000000.tar", size, std::span<char>(b, 4), "")).error() == errc::invalid_range);
  // A whole small object.
  check_range(env, "odd/shard_000000.tar", 0, 5, 5);
  (void)obj_size;
}

TEST_CASE("precise errors: 404 key, 404 bucket, 403 wrong secret, 403 unknown key id") {
  test::simulator sim({"--credentials", "AKIDSIM:sim/secret+key", "--synthetic", "syn:1:1MiB"});
  test::client_env env(sim.url(), "syn", good);
  char b[16];
  CHECK(env.run(env.client->head("missing")).error() == errc::not_found);
  CHECK(env.run(env.client->get("missing", 0, std::span<char>(b, 16), "")).error() == errc::not_found);
  test::client_env no_bucket(sim.url(), "nobucket", good);
  CHECK(no_bucket.run(no_bucket.client->list({})).error() == errc::no_such_bucket);

  test::client_env wrong_secret(sim.url(), "syn", {"AKIDSIM", "not-the-secret", "", {}});
  CHECK(wrong_secret.run(wrong_secret.client->get("shard_000000.tar", 0, std::span<char>(b, 16), "")).error() ==
        errc::signature_mismatch);
  CHECK(wrong_secret.run(wrong_secret.client->list({})).error() == errc::signature_mismatch);
  // Never retried: one request each.
  CHECK(wrong_secret.stats->requests == 2);
  test::client_env wrong_id(sim.url(), "syn", {"AKIDOTHER", "sim/secret+key", "", {}});
  CHECK(wrong_id.run(wrong_id.client->list({})).error() == errc::access_denied);
  test::client_env anonymous(sim.url(), "syn", {});
  CHECK(anonymous.run(anonymous.client->list({})).error() == errc::access_denied);
}

TEST_CASE("a listing of 2,500 odd keys, paged, with prefixes and delimiters") {
  test::simulator sim({"--credentials", "AKIDSIM:sim/secret+key", "--bucket", "tree"});
  test::client_env env(sim.url(), "tree", good);
  const std::vector<std::string> dirs = {"plain/", "with space/", "plus+sign/", "per%cent/", "tilde~/",
                                         "\xc3\xa9t\xc3\xa9/", "deep/a/b/c/"};
  const std::vector<std::string> names = {"f", "a b", "a+b", "50%", "~x", "\xe6\x97\xa5\xe6\x9c\xac",
                                          "q?x=1&y", "semi;colon", "hash#", "emoji\xf0\x9f\x98\x80"};
  std::set<std::string> keys;
  for (int i = 0; keys.size() < 2500; ++i)
    keys.insert(dirs[i % dirs.size()] + names[(i / 7) % names.size()] + "-" + std::to_string(i));
  // Upload with 16 PUTs in flight.
  std::vector<std::string> all(keys.begin(), keys.end());
  env.run([](beast_client* c, std::vector<std::string>* ks) -> awaitable<void> {
    std::size_t next = 0;
    auto ex = co_await asio::this_coro::executor;
    std::vector<std::future<void>> done;
    auto worker = [](beast_client* c, std::vector<std::string>* ks, std::size_t* next) -> awaitable<void> {
      while (*next < ks->size()) {
        std::string k = (*ks)[(*next)++];
        auto r = co_await c->put(k, "content of " + k);
        if (!r) throw std::runtime_error("put failed: " + k + ": " + r.error().message());
      }
    };
    for (int w = 0; w < 16; ++w) done.push_back(asio::co_spawn(ex, worker(c, ks, &next), asio::use_future));
    // Let the workers run on this same context.
    while (!done.empty()) {
      asio::steady_timer t(ex, std::chrono::milliseconds(5));
      co_await t.async_wait(use_tuple);
      std::erase_if(done, [](auto& f) { return f.wait_for(std::chrono::seconds(0)) == std::future_status::ready; });
    }
  }(env.client.get(), &all));

  // Flat listing: pages of 1000 (and of 333) add up to exactly the keys, in order.
  for (unsigned page_size : {1000u, 333u}) {
    list_request req;
    req.max_keys = page_size;
    int pages = 0;
    CHECK(test::list_all(env, req, &pages) == all);
    CHECK(pages == static_cast<int>((2500 + page_size - 1) / page_size));
  }
  // Delimited listing of the root: the directories only.
  auto root = env.run(env.client->list({"", "/", "", "", 1000}));
  REQUIRE(root);
  CHECK(root->objects.empty());
  std::set<std::string> top;
  for (auto& d : dirs) top.insert(d.substr(0, d.find('/') + 1));
  CHECK(std::set<std::string>(root->common_prefixes.begin(), root->common_prefixes.end()) == top);
  // One directory with odd characters, and the sizes of what is inside.
  auto plus = env.run(env.client->list({"plus+sign/", "/", "", "", 1000}));
  REQUIRE(plus);
  std::size_t expected = std::count_if(all.begin(), all.end(), [](auto& k) { return k.rfind("plus+sign/", 0) == 0; });
  CHECK(plus->objects.size() == expected);
  for (auto& o : plus->objects) CHECK(o.size == std::string("content of " + o.key).size());
  // start-after.
  auto after = env.run(env.client->list({"", "", "", all[2000], 1000}));
  REQUIRE(after);
  CHECK(after->objects.size() == 499);
  CHECK(after->objects.front().key == all[2001]);
  // Bytes of an odd key read back exactly.
  std::string k = all[1234];
  std::vector<char> buf(100);
  auto n = env.run(env.client->get(k, 0, std::span<char>(buf), ""));
  REQUIRE(n);
  CHECK(std::string(buf.data(), *n) == "content of " + k);
}

TEST_CASE("every fault kind is retried to byte-exact results") {
  test::simulator sim({"--credentials", "AKIDSIM:sim/secret+key", "--synthetic", "syn:1:16MiB"});
  test::client_env env(sim.url(), "syn", good, [](client_options& o) {
    o.timeouts.stall = std::chrono::milliseconds(300);
  });
  test::sim_admin(sim.url(), "POST", "/_sim/faults?stall_time=3s");
  struct expectation {
    const char* kind;
    std::atomic<std::uint64_t> client_stats::*counter;
  };
  const expectation kinds[] = {{"slowdown", &client_stats::retries_slow_down},
                               {"error500", &client_stats::retries_server_error},
                               {"reset", &client_stats::retries_reset},
                               {"truncate", &client_stats::retries_truncated},
                               {"stall", &client_stats::retries_timeout}};
  auto etag = env.run(env.client->head("shard_000000.tar"))->etag;
  auto seed = synthetic::seed_for("syn", "shard_000000.tar");
  for (auto& k : kinds) {
    INFO(k.kind);
    test::sim_admin(sim.url(), "POST", std::string("/_sim/faults/next?count=2&kind=") + k.kind);
    std::uint64_t before = (*env.stats.*k.counter).load();
    std::vector<char> buf(4 << 20);
    auto n = env.run(env.client->get("shard_000000.tar", 1000, std::span<char>(buf), etag));
    REQUIRE(n);
    CHECK(*n == buf.size());
    CHECK(synthetic::first_mismatch(seed, 1000, std::span<const char>(buf)) == buf.size());
    CHECK((*env.stats.*k.counter).load() == before + 2);
    auto stats = test::sim_admin(sim.url(), "GET", "/_sim/stats");
    CHECK(test::stat(stats, k.kind) == 2);
  }
  // Time decides, not a count of attempts: ten 500s in a row (more than the six attempts there
  // once were) are ridden out within the budget.
  test::sim_admin(sim.url(), "POST", "/_sim/faults/next?count=10&kind=error500");
  std::vector<char> buf(1024);
  CHECK(env.run(env.client->get("shard_000000.tar", 0, std::span<char>(buf), etag)).value() ==
        buf.size());
  CHECK(test::stat(test::sim_admin(sim.url(), "GET", "/_sim/stats"), "error500") == 12);
}

TEST_CASE("If-Match: an overwritten object is a precondition error, never mixed bytes") {
  test::simulator sim({"--credentials", "AKIDSIM:sim/secret+key", "--bucket", "b"});
  test::client_env env(sim.url(), "b", good);
  auto v1 = env.run(env.client->put("obj", std::string(1000, 'a')));
  REQUIRE(v1);
  std::vector<char> buf(500);
  CHECK(env.run(env.client->get("obj", 0, std::span<char>(buf), *v1)).value() == 500);
  auto v2 = env.run(env.client->put("obj", std::string(1000, 'b')));
  REQUIRE(v2);
  CHECK(*v2 != *v1);
  CHECK(env.run(env.client->get("obj", 500, std::span<char>(buf), *v1)).error() == errc::precondition_failed);
  CHECK(env.run(env.client->get("obj", 500, std::span<char>(buf), *v2)).value() == 500);
  CHECK(buf[0] == 'b');
}

TEST_CASE("a stale pooled connection is retried on a fresh one, transparently") {
  test::simulator sim({"--credentials", "AKIDSIM:sim/secret+key", "--synthetic", "syn:1:1MiB",
                       "--keepalive-timeout", "200ms"});
  test::client_env env(sim.url(), "syn", good);
  CHECK(env.run(env.client->head("shard_000000.tar")));
  // (The scenario: the connection idles past the server's 200 ms keep-alive and is closed.)
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  std::vector<char> buf(1000);
  CHECK(env.run(env.client->get("shard_000000.tar", 0, std::span<char>(buf), "")).value() == 1000);
  CHECK(env.stats->stale_retries == 1);
  CHECK(env.stats->retries == 0);
}

TEST_CASE("connections are bounded per client and reused") {
  test::simulator sim({"--credentials", "AKIDSIM:sim/secret+key", "--synthetic", "syn:1:8MiB"});
  test::client_env env(sim.url(), "syn", good, [](client_options& o) { o.max_connections = 2; });
  env.run([](beast_client* c) -> awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    std::vector<std::vector<char>> bufs(8, std::vector<char>(1 << 20));
    std::atomic<int> done{0};
    for (int i = 0; i < 8; ++i)
      asio::co_spawn(ex, [](beast_client* c, std::vector<char>* b, int i, std::atomic<int>* d) -> awaitable<void> {
        auto r = co_await c->get("shard_000000.tar", static_cast<std::uint64_t>(i) << 20, std::span<char>(*b), "");
        CHECK(r.value() == b->size());
        ++*d;
      }(c, &bufs[i], i, &done), asio::detached);
    while (done < 8) {
      asio::steady_timer t(ex, std::chrono::milliseconds(2));
      co_await t.async_wait(use_tuple);
    }
  }(env.client.get()));
  CHECK(env.stats->connections_opened == 2);
  CHECK(env.client->open_connections() == 2);
  // The server saw the client's two connections plus the one of this admin call.
  CHECK(test::stat(test::sim_admin(sim.url(), "GET", "/_sim/stats"), "connections") == 3);
}

TEST_CASE("a connection given back goes to the request that waited for it, not to a later one") {
  // One connection. A holds it, B waits; when A's GET ends, A at once sends another (A2). A
  // connection returned to the pool must be B's: had A2 taken it (the waiter woken only to find
  // the pool empty and queue again at the back), a stream of new requests would starve B.
  test::simulator sim({"--credentials", "AKIDSIM:sim/secret+key", "--synthetic", "syn:1:4MiB"});
  test::client_env env(sim.url(), "syn", good, [](client_options& o) { o.max_connections = 1; });
  std::vector<std::string> finished;
  env.run([](beast_client* c, std::vector<std::string>* finished) -> awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    auto one = [](beast_client* c, std::vector<std::string>* finished, std::string name,
                  bool again) -> awaitable<void> {
      std::vector<char> buf(1 << 20);
      auto r = co_await c->get("shard_000000.tar", 0, std::span<char>(buf), "");
      CHECK(r.value() == buf.size());
      finished->push_back(name);
      if (!again) co_return;
      // (no yield between the end of the first GET and this one)
      r = co_await c->get("shard_000000.tar", 1 << 20, std::span<char>(buf), "");
      CHECK(r.value() == buf.size());
      finished->push_back(name + "2");
    };
    asio::co_spawn(ex, one(c, finished, "A", true), asio::detached);
    asio::co_spawn(ex, one(c, finished, "B", false), asio::detached);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (finished->size() < 3 && std::chrono::steady_clock::now() < deadline) {
      asio::steady_timer t(ex, std::chrono::milliseconds(2));
      co_await t.async_wait(use_tuple);
    }
  }(env.client.get(), &finished));
  CHECK(finished == std::vector<std::string>{"A", "B", "A2"});
  CHECK(env.stats->connections_opened == 1);
}

TEST_CASE("https with a self-signed certificate trusted through a CA bundle") {
  test::temp_dir dir;
  int status = 0;
  test::shell("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost -addext "
              "subjectAltName=DNS:localhost -keyout " + (dir.path() / "key.pem").string() + " -out " +
              (dir.path() / "cert.pem").string() + " 2>/dev/null", &status);
  REQUIRE(status == 0);
  test::simulator sim({"--credentials", "AKIDSIM:sim/secret+key", "--synthetic", "syn:1:3MiB", "--tls-cert",
                       (dir.path() / "cert.pem").string(), "--tls-key", (dir.path() / "key.pem").string()});
  REQUIRE(sim.url().rfind("https://", 0) == 0);
  std::string url = "https://localhost:" + sim.port();
  auto trusted = make_tls_context((dir.path() / "cert.pem").string(), true);
  REQUIRE(trusted);
  test::client_env env(url, "syn", good, [&](client_options& o) { o.tls = *trusted; });
  std::vector<char> buf(3 << 20);
  auto n = env.run(env.client->get("shard_000000.tar", 0, std::span<char>(buf), ""));
  REQUIRE(n);
  CHECK(*n == buf.size());
  CHECK(synthetic::first_mismatch(synthetic::seed_for("syn", "shard_000000.tar"), 0, std::span<const char>(buf)) ==
        buf.size());

  // Verification is on by default: a bundle that does not hold this certificate is refused.
  auto other = make_tls_context("/etc/ssl/certs/ca-certificates.crt", true);
  REQUIRE(other);
  test::client_env untrusted(url, "syn", good, [&](client_options& o) { o.tls = *other; });
  CHECK(untrusted.run(untrusted.client->head("shard_000000.tar")).error() == errc::tls_error);
  // And the certificate must name the host: 127.0.0.1 is not "localhost".
  test::client_env wrong_name("https://127.0.0.1:" + sim.port(), "syn", good, [&](client_options& o) { o.tls = *trusted; });
  CHECK(wrong_name.run(wrong_name.client->head("shard_000000.tar")).error() == errc::tls_error);
}

TEST_CASE("PUT with If-None-Match: * stores once; the second is a 412, not retried, counted by the sim") {
  test::simulator sim({"--credentials", "AKIDSIM:sim/secret+key", "--bucket", "b"});
  test::client_env env(sim.url(), "b", good);
  auto first = env.run(env.client->put_object("chunk", std::string(1000, 'a'), true));
  REQUIRE(first);
  const auto before = env.stats->requests.load();
  auto second = env.run(env.client->put_object("chunk", std::string(1000, 'b'), true));
  REQUIRE(!second);
  CHECK(second.error() == errc::precondition_failed);
  CHECK(env.stats->requests.load() == before + 1);  // one attempt: a 412 is never retried
  // The first write stands.
  std::vector<char> buf(1000);
  CHECK(env.run(env.client->get("chunk", 0, std::span<char>(buf), "")).value() == 1000);
  CHECK(buf[999] == 'a');
  auto stats = test::sim_admin(sim.url(), "GET", "/_sim/stats");
  CHECK(test::stat(stats, "put_conflicts") == 1);
  CHECK(test::stat(stats, "put") == 2);
  // Without the header a PUT overwrites, as before.
  CHECK(env.run(env.client->put_object("chunk", std::string(1000, 'c'), false)));
  CHECK(env.run(env.client->get("chunk", 0, std::span<char>(buf), "")).value() == 1000);
  CHECK(buf[0] == 'c');
}
}  // namespace test_client_sim
