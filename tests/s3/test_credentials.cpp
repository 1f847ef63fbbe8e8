#include <doctest/doctest.h>

#include <fstream>

#include "core/errors.hpp"
#include "helpers.hpp"
#include "http_server.hpp"
#include "s3/credentials.hpp"
#include "s3/time_format.hpp"

using namespace valkyrie;
using namespace valkyrie::s3;

namespace {
// Each test starts from an environment with no credential source at all.
struct clean_env {
  clean_env() {
    for (const char* v : {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                          "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                          "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN",
                          "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "AWS_EC2_METADATA_SERVICE_ENDPOINT"})
      unsetenv(v);
    setenv("HOME", dir.path().c_str(), 1);
    // Never reach for the real 169.254.169.254 from a test.
    setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
  }
  test::temp_dir dir;
};

std::string credentials_json(const std::string& id, std::chrono::system_clock::time_point expiration) {
  return R"({"Code":"Success","Type":"AWS-HMAC","AccessKeyId":")" + id +
         R"(","SecretAccessKey":"secret-)" + id + R"(","Token":"token-)" + id + R"(","Expiration":")" +
         format_iso8601(expiration) + "\"}";
}
}  // namespace

TEST_CASE("no source at all: no_credentials") {
  clean_env env;
  auto p = test::run(resolve_credentials({}));
  CHECK(p.error() == errc::no_credentials);
}

TEST_CASE("anonymous access signs nothing") {
  clean_env env;
  auto p = test::run(resolve_credentials({.anonymous = true}));
  REQUIRE(p);
  CHECK((*p)->source() == "anonymous");
  CHECK(test::run((*p)->get())->anonymous());
}

TEST_CASE("environment comes first") {
  clean_env env;
  setenv("AWS_ACCESS_KEY_ID", "AKENV", 1);
  setenv("AWS_SECRET_ACCESS_KEY", "SKENV", 1);
  setenv("AWS_SESSION_TOKEN", "TOKENV", 1);
  std::ofstream(env.dir.path() / "credentials") << "[default]\naws_access_key_id = AKFILE\naws_secret_access_key = x\n";
  setenv("AWS_SHARED_CREDENTIALS_FILE", (env.dir.path() / "credentials").c_str(), 1);
  auto p = test::run(resolve_credentials({}));
  REQUIRE(p);
  CHECK((*p)->source() == "environment");
  auto c = test::run((*p)->get());
  CHECK(c->access_key_id == "AKENV");
  CHECK(c->secret_access_key == "SKENV");
  CHECK(c->session_token == "TOKENV");
}

TEST_CASE("shared credentials and config files, profiles") {
  clean_env env;
  std::filesystem::create_directories(env.dir.path() / ".aws");
  std::ofstream(env.dir.path() / ".aws/credentials")
      << "# comment\n[default]\naws_access_key_id = AKDEFAULT\naws_secret_access_key = SKDEFAULT\n\n"
         "[work]\n  aws_access_key_id=AKWORK\naws_secret_access_key=SKWORK\naws_session_token = TOKWORK\n";
  std::ofstream(env.dir.path() / ".aws/config")
      << "[default]\nregion = eu-west-1\n[profile cfg]\naws_access_key_id = AKCFG\naws_secret_access_key = SKCFG\n";
  auto p = test::run(resolve_credentials({}));
  REQUIRE(p);
  CHECK((*p)->source() == "profile default");
  CHECK(test::run((*p)->get())->access_key_id == "AKDEFAULT");

  setenv("AWS_PROFILE", "work", 1);
  auto work = test::run(resolve_credentials({}));
  REQUIRE(work);
  auto wc = test::run((*work)->get());
  CHECK(wc->access_key_id == "AKWORK");
  CHECK(wc->session_token == "TOKWORK");

  // A profile only in the config file ("[profile NAME]").
  auto cfg = test::run(resolve_credentials({.profile = "cfg"}));
  REQUIRE(cfg);
  CHECK(test::run((*cfg)->get())->access_key_id == "AKCFG");

  // Explicit file locations.
  std::ofstream(env.dir.path() / "other") << "[default]\naws_access_key_id=AKOTHER\naws_secret_access_key=SK\n";
  unsetenv("AWS_PROFILE");
  setenv("AWS_SHARED_CREDENTIALS_FILE", (env.dir.path() / "other").c_str(), 1);
  CHECK(test::run((*test::run(resolve_credentials({})))->get())->access_key_id == "AKOTHER");

  CHECK(test::run(resolve_credentials({.profile = "missing"})).error() == errc::no_credentials);
}

TEST_CASE("EC2 IMDSv2: token, role, credentials") {
  clean_env env;
  std::atomic<int> served{0};
  std::string token_seen;
  test::http_server imds([&](const test::http_server::request& req) -> std::pair<unsigned, std::string> {
    std::string target(req.target());
    if (req.method() == boost::beast::http::verb::put && target == "/latest/api/token") {
      if (req["X-aws-ec2-metadata-token-ttl-seconds"].empty()) return {400, ""};
      return {200, "imds-session-token"};
    }
    if (req["X-aws-ec2-metadata-token"] != "imds-session-token") return {401, ""};  // IMDSv2 only
    if (target == "/latest/meta-data/iam/security-credentials/") return {200, "my-role\n"};
    if (target == "/latest/meta-data/iam/security-credentials/my-role") {
      ++served;
      return {200, credentials_json("AKIMDS" + std::to_string(served.load()),
                                    std::chrono::system_clock::now() + std::chrono::hours(6))};
    }
    return {404, ""};
  });
  setenv("AWS_EC2_METADATA_DISABLED", "false", 1);
  setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.url().c_str(), 1);
  auto p = test::run(resolve_credentials({}));
  REQUIRE(p);
  CHECK((*p)->source() == "imds");
  auto c = test::run((*p)->get());
  CHECK(c->access_key_id == "AKIMDS1");
  CHECK(c->secret_access_key == "secret-AKIMDS1");
  CHECK(c->session_token == "token-AKIMDS1");
  CHECK(c->expiration.has_value());
  // Valid for hours: no further fetch.
  test::run((*p)->get());
  CHECK(served == 1);
}

TEST_CASE("ECS container credentials with an authorization token") {
  clean_env env;
  test::http_server ecs([&](const test::http_server::request& req) -> std::pair<unsigned, std::string> {
    if (req[boost::beast::http::field::authorization] != "Bearer abc") return {403, ""};
    if (req.target() != "/v2/credentials/123") return {404, ""};
    return {200, credentials_json("AKECS", std::chrono::system_clock::now() + std::chrono::hours(1))};
  });
  setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", (ecs.url() + "/v2/credentials/123").c_str(), 1);
  std::ofstream(env.dir.path() / "token") << "Bearer abc\n";
  setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", (env.dir.path() / "token").c_str(), 1);
  auto p = test::run(resolve_credentials({}));
  REQUIRE(p);
  CHECK((*p)->source() == "ecs");
  CHECK(test::run((*p)->get())->access_key_id == "AKECS");

  // A wrong token is refused by the endpoint: no credentials, and no secret in the message.
  std::ofstream(env.dir.path() / "token") << "Bearer wrong\n";
  auto bad = test::run(resolve_credentials({}));
  CHECK(bad.error() == errc::no_credentials);
}

TEST_CASE("temporary credentials are refreshed ahead of expiry without stalling readers") {
  clean_env env;
  std::atomic<int> served{0};
  // Each document expires 3 s after it is served; with refresh_ahead = 2 s, a get() 1.5 s later
  // is inside the refresh window: it must return the current credentials at once and start a
  // background refresh.
  test::http_server ecs([&](const test::http_server::request&) -> std::pair<unsigned, std::string> {
    ++served;
    return {200, credentials_json("AKGEN" + std::to_string(served.load()),
                                  std::chrono::system_clock::now() + std::chrono::seconds(3))};
  });
  setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", (ecs.url() + "/creds").c_str(), 1);
  auto p = test::run(resolve_credentials({.refresh_ahead = std::chrono::seconds(2)}));
  REQUIRE(p);
  auto provider = *p;

  asio::io_context ctx(1);
  std::vector<std::string> ids;
  asio::co_spawn(ctx, [](std::shared_ptr<credentials_provider> prov, std::vector<std::string>* out) -> awaitable<void> {
    auto first = co_await prov->get();
    out->push_back(first->access_key_id);
    // (The scenario: 1.5 s pass, which puts the credentials inside the refresh window.)
    asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(1500));
    co_await t.async_wait(use_tuple);
    auto before = std::chrono::steady_clock::now();
    auto second = co_await prov->get();  // inside the window: current ones, no wait
    out->push_back(second->access_key_id);
    CHECK(std::chrono::steady_clock::now() - before < std::chrono::milliseconds(100));
    // Until the background refresh has landed (fetch_count counts fetches that returned).
    for (auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10); prov->fetch_count() < 2;) {
      REQUIRE(std::chrono::steady_clock::now() < give_up);
      t.expires_after(std::chrono::milliseconds(1));
      co_await t.async_wait(use_tuple);
    }
    auto third = co_await prov->get();
    out->push_back(third->access_key_id);
    // After invalidate() (the server said ExpiredToken) the next get() fetches anew.
    prov->invalidate();
    auto fourth = co_await prov->get();
    out->push_back(fourth->access_key_id);
  }(provider, &ids), asio::detached);
  ctx.run();
  REQUIRE(ids.size() == 4);
  CHECK(ids[0] == "AKGEN1");
  CHECK(ids[1] == "AKGEN1");
  CHECK(ids[2] == "AKGEN2");
  CHECK(ids[3] == "AKGEN3");
  CHECK(provider->fetch_count() == 3);
}

TEST_CASE("credential documents are validated") {
  CHECK(parse_credentials_json("{").error() == errc::protocol_error);
  CHECK(parse_credentials_json(R"({"AccessKeyId":"A"})").error() == errc::protocol_error);
  // Present but empty: no usable credentials either (found by tests/fuzz/fuzz_credentials_json).
  CHECK(parse_credentials_json(R"({"AccessKeyId":"","SecretAccessKey":"B"})").error() ==
        errc::protocol_error);
  CHECK(parse_credentials_json(R"({"AccessKeyId":"A","SecretAccessKey":""})").error() ==
        errc::protocol_error);
  CHECK(parse_credentials_json(R"({"Code":"Failure","AccessKeyId":"A","SecretAccessKey":"B"})").error() ==
        errc::access_denied);
  CHECK(parse_credentials_json(R"({"AccessKeyId":"A","SecretAccessKey":"B","Expiration":"soon"})").error() ==
        errc::protocol_error);
  auto ok = parse_credentials_json(R"({"AccessKeyId":"A","SecretAccessKey":"B"})");
  REQUIRE(ok);
  CHECK_FALSE(ok->expiration.has_value());
}
