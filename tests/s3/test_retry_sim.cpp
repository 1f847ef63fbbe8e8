// The retry budget against valkyrie-s3sim: S3 failing (every request a 500, or the server gone
// and its port refusing) for longer than the budget fails with retries_exhausted after about the
// budget, HEAD and LIST after their own; a shorter outage is ridden out byte-exact; answers that
// would come back the same (403, 404, 412) are not retried at all.
#include <doctest/doctest.h>

#include <optional>
#include <thread>

#include "../../tools/common/synthetic.hpp"
#include "client_env.hpp"
#include "core/errors.hpp"

using namespace valkyrie;
using namespace valkyrie::s3;
using namespace std::chrono_literals;

namespace test_retry_sim {
const credentials good{"AKIDSIM", "sim/secret+key", "", {}};
const std::vector<std::string> sim_args{"--credentials", "AKIDSIM:sim/secret+key", "--synthetic",
                                        "syn:1:4MiB"};
const std::string key = "shard_000000.tar";

double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Waits (polling, 5 s at most) until `ready` holds; false if it never did.
template <class F>
bool wait_until(F ready) {
  for (auto end = std::chrono::steady_clock::now() + 5s; std::chrono::steady_clock::now() < end;) {
    if (ready()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return ready();
}

bool exact(const std::vector<char>& buf, std::uint64_t offset) {
  return synthetic::first_mismatch(synthetic::seed_for("syn", key), offset,
                                   std::span<const char>(buf)) == buf.size();
}

TEST_CASE(
    "S3 failing for longer than the budget: retries_exhausted after about the budget, HEAD and "
    "LIST after theirs") {
  test::simulator sim(sim_args);
  // (Each client has an outage monitor of its own here: the daemon shares one.)
  test::client_env env(sim.url(), "syn", good, [](client_options& o) { o.retry.budget = 1000ms; });
  test::client_env meta(sim.url(), "syn", good,
                        [](client_options& o) { o.retry.metadata_budget = 400ms; });
  auto etag = env.run(env.client->head(key))->etag;
  test::sim_admin(sim.url(), "POST", "/_sim/faults?error500=1");
  std::vector<char> buf(1 << 20);

  auto t0 = std::chrono::steady_clock::now();
  auto got = env.run(env.client->get(key, 0, std::span<char>(buf), etag));
  double took = since(t0);
  CHECK(got.error() == errc::retries_exhausted);
  CHECK(took >= 1.0);
  CHECK(took < 1.25);
  CHECK(env.stats->retries_server_error > 5);  // retried all along, not given up early

  t0 = std::chrono::steady_clock::now();
  CHECK(meta.run(meta.client->head(key)).error() == errc::retries_exhausted);
  took = since(t0);
  CHECK(took >= 0.4);
  CHECK(took < 0.65);

  // The outage has outlasted the budget: a new request fails after one attempt, not a second
  // budget (the kernel asks again for a page its read-ahead could not get).
  std::uint64_t before = env.stats->requests;
  t0 = std::chrono::steady_clock::now();
  CHECK(env.run(env.client->get(key, 0, std::span<char>(buf), etag)).error() ==
        errc::retries_exhausted);
  CHECK(since(t0) < 0.2);
  CHECK(env.stats->requests == before + 1);
  CHECK(meta.run(meta.client->list({})).error() == errc::retries_exhausted);

  // The first answer ends the outage; the next one is waited out for a whole budget again.
  test::sim_admin(sim.url(), "POST", "/_sim/faults");
  CHECK(env.run(env.client->get(key, 0, std::span<char>(buf), etag)).value() == buf.size());
  CHECK(exact(buf, 0));
  test::sim_admin(sim.url(), "POST", "/_sim/faults?error500=1");
  t0 = std::chrono::steady_clock::now();
  CHECK(env.run(env.client->get(key, 0, std::span<char>(buf), etag)).error() ==
        errc::retries_exhausted);
  CHECK(since(t0) >= 1.0);
}

TEST_CASE(
    "an outage shorter than the budget is ridden out: 500s for a while, then the server gone and "
    "back on its port") {
  std::optional<test::simulator> sim(std::in_place, sim_args);
  const std::string port = sim->port();
  test::client_env env(sim->url(), "syn", good, [](client_options& o) { o.retry.budget = 10s; });
  auto etag = env.run(env.client->head(key))->etag;
  std::vector<char> buf(1 << 20);

  // Every request fails until the server has refused 20 of them; then it answers again.
  test::sim_admin(sim->url(), "POST", "/_sim/faults?error500=1");
  std::thread heal([&] {
    wait_until([&] {
      return test::stat(test::sim_admin(sim->url(), "GET", "/_sim/stats"), "error500") >= 20;
    });
    test::sim_admin(sim->url(), "POST", "/_sim/faults");
  });
  auto got = env.run(env.client->get(key, 1 << 20, std::span<char>(buf), etag));
  heal.join();
  REQUIRE(got);
  CHECK(*got == buf.size());
  CHECK(exact(buf, 1 << 20));
  CHECK(env.stats->retries_server_error >= 20);

  // The server gone (connections refused) until the client has been refused five times, then a
  // new one on the same port with the same objects (and ETags).
  sim->stop();
  std::thread restart([&] {
    wait_until([&] { return env.stats->retries_connect >= 5; });
    sim.emplace(sim_args, "127.0.0.1:" + port);
  });
  auto t0 = std::chrono::steady_clock::now();
  got = env.run(env.client->get(key, 2 << 20, std::span<char>(buf), etag));
  restart.join();
  REQUIRE(got);
  CHECK(*got == buf.size());
  CHECK(exact(buf, 2 << 20));
  CHECK(env.stats->retries_connect >= 5);
  CHECK(since(t0) < 10);
}

TEST_CASE(
    "the server gone for longer than the budget: retries_exhausted, not EHOSTUNREACH after a few "
    "attempts") {
  std::optional<test::simulator> sim(std::in_place, sim_args);
  test::client_env env(sim->url(), "syn", good, [](client_options& o) { o.retry.budget = 1500ms; });
  auto etag = env.run(env.client->head(key))->etag;
  sim->stop();
  std::vector<char> buf(4096);
  auto t0 = std::chrono::steady_clock::now();
  CHECK(env.run(env.client->get(key, 0, std::span<char>(buf), etag)).error() ==
        errc::retries_exhausted);
  double took = since(t0);
  CHECK(took >= 1.5);
  CHECK(took < 1.8);
  CHECK(env.stats->retries_connect > 6);  // more than the old bound of six attempts
}

TEST_CASE("403, 404 and 412 are answered at once, never retried, whatever the budget") {
  test::simulator sim(sim_args);
  test::client_env env(sim.url(), "syn", good);  // the default budget: 5 minutes
  test::client_env wrong_secret(sim.url(), "syn", {"AKIDSIM", "not-the-secret", "", {}});
  std::vector<char> buf(4096);
  auto t0 = std::chrono::steady_clock::now();
  CHECK(env.run(env.client->head("missing")).error() == errc::not_found);
  CHECK(env.run(env.client->get("missing", 0, std::span<char>(buf), "")).error() ==
        errc::not_found);
  CHECK(env.run(env.client->get(key, 0, std::span<char>(buf), "\"not-the-etag\"")).error() ==
        errc::precondition_failed);
  CHECK(wrong_secret.run(wrong_secret.client->get(key, 0, std::span<char>(buf), "")).error() ==
        errc::signature_mismatch);
  CHECK(wrong_secret.run(wrong_secret.client->head(key)).error() ==
        errc::access_denied);  // (a HEAD has no body to say why)
  CHECK(since(t0) < 1.0);
  CHECK(env.stats->requests == 3);
  CHECK(env.stats->retries == 0);
  CHECK(wrong_secret.stats->requests == 2);
  CHECK(wrong_secret.stats->retries == 0);
}
}  // namespace test_retry_sim
