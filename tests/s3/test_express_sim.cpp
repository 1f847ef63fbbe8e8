// S3 Express One Zone session authentication against valkyrie-s3sim, which answers CreateSession
// for buckets named *--x-s3 and refuses their object requests unless they carry a live session's
// token and are signed with its secret for the service s3express.
#include <doctest/doctest.h>

#include <thread>

#include "client_env.hpp"
#include "core/errors.hpp"

using namespace valkyrie;
using namespace valkyrie::s3;
using namespace std::chrono_literals;

namespace test_express_sim {
const credentials good{"AKIDSIM", "sim/secret+key", "", {}};
const std::string bucket = "cache--use1-az4--x-s3";

std::vector<std::string> sim_args(const std::string& lifetime) {
  return {"--credentials", "AKIDSIM:sim/secret+key", "--bucket", bucket, "--bucket",
          "plain",         "--session-lifetime",     lifetime};
}

std::uint64_t sim_stat(const test::simulator& sim, const std::string& name) {
  return test::stat(test::sim_admin(sim.url(), "GET", "/_sim/stats"), name);
}

auto with_session(std::optional<session_timing> timing = std::nullopt) {
  return [timing](client_options& o) { o.session = make_express_session(o, timing); };
}

std::string read_all(test::client_env& env, const std::string& key, std::size_t size) {
  std::string buf(size, '\0');
  auto n = env.run(env.client->get(key, 0, std::span<char>(buf.data(), size), ""));
  if (!n) return "error: " + n.error().message();
  buf.resize(*n);
  return buf;
}

TEST_CASE("a directory bucket: PUT, GET, HEAD, LIST and If-None-Match through one session") {
  test::simulator sim(sim_args("300s"));
  test::client_env env(sim.url(), bucket, good, with_session());
  auto etag = env.run(env.client->put_object("a/one", "first body", true));
  REQUIRE(etag);
  CHECK(env.run(env.client->put_object("a/one", "other body", true)).error() ==
        errc::precondition_failed);
  CHECK(read_all(env, "a/one", 100) == "first body");
  auto info = env.run(env.client->head("a/one"));
  REQUIRE(info);
  CHECK(info->size == 10);
  auto page = env.run(env.client->list({"a/", "", "", "", 1000}));
  REQUIRE(page);
  REQUIRE(page->objects.size() == 1);
  CHECK(page->objects[0].key == "a/one");
  CHECK(sim_stat(sim, "create_session") == 1);
  CHECK(sim_stat(sim, "auth_failures") == 0);
  CHECK(env.stats->session_retries == 0);
}

TEST_CASE(
    "a directory bucket refuses requests without a session, signed for s3, or another bucket's") {
  auto args = sim_args("300s");
  args.insert(args.end(), {"--bucket", "other--use1-az4--x-s3"});
  test::simulator sim(args);
  // Long-term credentials only (the client before sessions, or --express-session off).
  test::client_env plain_sigv4(sim.url(), bucket, good);
  CHECK(plain_sigv4.run(plain_sigv4.client->head("x")).error() == errc::access_denied);
  CHECK(read_all(plain_sigv4, "x", 10) == "error: access denied");
  // Signed for the service s3: CreateSession itself is refused.
  test::client_env wrong_service(sim.url(), bucket, good, [](client_options& o) {
    o.ep.signing_service = "s3";
    o.session = make_express_session(o);
  });
  CHECK(wrong_service.run(wrong_service.client->put_object("x", "y", false)).error() ==
        errc::signature_mismatch);
  CHECK(sim_stat(sim, "create_session") == 0);
  // Another bucket's session: refused, a new session (of that other bucket) refused again, and
  // the caller gets the 403.
  test::client_env other_bucket(sim.url(), bucket, good, [&](client_options& o) {
    test::client_env other(sim.url(), "other--use1-az4--x-s3", good);
    o.session = make_express_session(other.opts);
  });
  CHECK(other_bucket.run(other_bucket.client->put_object("x", "y", false)).error() ==
        errc::access_denied);
  CHECK(other_bucket.stats->session_retries == 1);
  CHECK(sim_stat(sim, "create_session") == 2);
  // The other buckets keep plain SigV4.
  test::client_env other(sim.url(), "plain", good);
  CHECK(other.run(other.client->put_object("x", "y", false)));
  CHECK(read_all(other, "x", 10) == "y");
}

TEST_CASE("sessions expire during a run and are refreshed ahead: no request is refused") {
  test::simulator sim(sim_args("1500ms"));
  auto session = [&] {
    test::client_env setup(sim.url(), bucket, good);
    return make_express_session(setup.opts);
  }();
  test::client_env env(sim.url(), bucket, good, [&](client_options& o) { o.session = session; });
  REQUIRE(env.run(env.client->put_object("k", "body of k", false)));
  // Time passing is the scenario: requests for 4 s, over two and a half session lifetimes.
  const auto until = std::chrono::steady_clock::now() + 4s;
  unsigned reads = 0;
  while (std::chrono::steady_clock::now() < until) {
    REQUIRE(read_all(env, "k", 100) == "body of k");
    ++reads;
    asio::steady_timer t(env.ctx, 20ms);
    env.run(
        [](asio::steady_timer* t) -> awaitable<void> { co_await t->async_wait(use_tuple); }(&t));
  }
  INFO("reads " << reads);
  // Refreshed at 80% of 1.5 s: a new session every ~1.2 s while requests flow.
  CHECK(sim_stat(sim, "create_session") >= 3);
  CHECK(sim_stat(sim, "expired_sessions") == 0);
  CHECK(sim_stat(sim, "auth_failures") == 0);
  CHECK(env.stats->session_retries == 0);
  // Only the first request waited for a CreateSession: the others were made behind the
  // current session.
  CHECK(session->wait_count() == 1);
}

TEST_CASE("an expired session's 403 is answered with a new session and the request sent again") {
  test::simulator sim(sim_args("1s"));
  // A client that does not look at the expiration (used past its end): the server's 403 is
  // what makes it refresh.
  session_timing careless;
  careless.refresh_at = careless.stop_using_at = 100;
  test::client_env env(sim.url(), bucket, good, with_session(careless));
  REQUIRE(env.run(env.client->put_object("k", "body of k", false)));
  CHECK(sim_stat(sim, "create_session") == 1);
  // Time passing is the scenario: the session's 1 s runs out.
  std::this_thread::sleep_for(1200ms);
  CHECK(read_all(env, "k", 100) == "body of k");
  CHECK(sim_stat(sim, "expired_sessions") == 1);
  CHECK(sim_stat(sim, "create_session") == 2);
  CHECK(env.stats->session_retries == 1);
  // Each request gets its own one retry: the next expiry is handled the same way.
  std::this_thread::sleep_for(1200ms);
  CHECK(read_all(env, "k", 100) == "body of k");
  CHECK(sim_stat(sim, "expired_sessions") == 2);
  CHECK(env.stats->session_retries == 2);
}

TEST_CASE("the clients of several reactors share one session: one CreateSession for them all") {
  test::simulator sim(sim_args("300s"));
  auto session_opts = [&] {
    test::client_env setup(sim.url(), bucket, good);
    return setup.opts;
  }();
  session_opts.session = make_express_session(session_opts);
  {
    test::client_env writer(sim.url(), bucket, good, [&](client_options& o) { o = session_opts; });
    REQUIRE(writer.run(writer.client->put_object("k", std::string(4096, 'x'), false)));
  }
  test::sim_admin(sim.url(), "POST", "/_sim/reset-stats");
  session_opts.session = make_express_session(session_opts);  // a fresh one: none yet
  constexpr int reactors = 4, per_reactor = 8;
  std::vector<std::unique_ptr<test::client_env>> envs;
  for (int i = 0; i < reactors; ++i)
    envs.push_back(std::make_unique<test::client_env>(
        sim.url(), bucket, good, [&](client_options& o) { o = session_opts; }));
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (auto& e : envs)
    threads.emplace_back([&ok, env = e.get()] {
      std::vector<std::future<result<std::size_t>>> gets;
      std::vector<std::string> bufs(per_reactor, std::string(4096, '\0'));
      for (int i = 0; i < per_reactor; ++i)
        gets.push_back(asio::co_spawn(
            env->ctx, env->client->get("k", 0, std::span<char>(bufs[i].data(), 4096), ""),
            asio::use_future));
      env->ctx.run();
      for (int i = 0; i < per_reactor; ++i)
        if (auto n = gets[i].get(); n && *n == 4096 && bufs[i] == std::string(4096, 'x')) ++ok;
    });
  for (auto& t : threads) t.join();
  CHECK(ok == reactors * per_reactor);
  CHECK(sim_stat(sim, "create_session") == 1);
  CHECK(sim_stat(sim, "get") == reactors * per_reactor);
}
}  // namespace test_express_sim
