// S3 Express One Zone sessions without a simulator: directory bucket names and endpoints, the
// CreateSessionResult document, what beast_client puts on the wire with a session, and
// express_session's timing (refresh ahead of expiry, one CreateSession in flight, failures held
// off, invalidation) on a fake clock.
#include <doctest/doctest.h>

#include <mutex>
#include <set>
#include <thread>

#include "client_env.hpp"
#include "core/errors.hpp"
#include "helpers.hpp"
#include "http_server.hpp"
#include "s3/express_session.hpp"
#include "s3/time_format.hpp"

using namespace valkyrie;
using namespace valkyrie::s3;
using namespace std::chrono_literals;

TEST_CASE("directory bucket names, zones and the zonal endpoint") {
  CHECK(is_directory_bucket("data--usw2-az1--x-s3"));
  CHECK_FALSE(is_directory_bucket("data"));
  CHECK_FALSE(is_directory_bucket("--x-s3"));
  CHECK(directory_bucket_zone("data--usw2-az1--x-s3") == "usw2-az1");
  CHECK(directory_bucket_zone("a--b--use1-az4--x-s3") == "use1-az4");
  CHECK(directory_bucket_zone("data--x-s3") == "");
  CHECK(directory_bucket_zone("data") == "");

  auto ep = resolve_endpoint({"data--usw2-az1--x-s3", "us-west-2", "", false});
  REQUIRE(ep);
  CHECK(ep->host == "data--usw2-az1--x-s3.s3express-usw2-az1.us-west-2.amazonaws.com");
  CHECK(ep->tls);
  CHECK(ep->base_path == "");
  CHECK(ep->signing_service == "s3express");
  auto plain = resolve_endpoint({"data", "us-west-2", "", false});
  REQUIRE(plain);
  CHECK(plain->signing_service == "s3");
  CHECK(plain->host == "data.s3.us-west-2.amazonaws.com");
  // Without a zone there is no zonal endpoint to guess (an explicit URL still works).
  CHECK(resolve_endpoint({"data--x-s3", "us-west-2", "", false}).error() == errc::invalid_argument);
  auto local =
      resolve_endpoint({"cache--use1-az4--x-s3", "us-east-1", "http://127.0.0.1:9000", false});
  REQUIRE(local);
  CHECK(local->path_style);
  CHECK(local->signing_service == "s3express");
}

TEST_CASE("CreateSessionResult parsing") {
  const std::string doc =
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CreateSessionResult "
      "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Credentials><SessionToken>TOKEN+/=</"
      "SessionToken><SecretAccessKey>SECRET/x</SecretAccessKey><AccessKeyId>ASIAEXAMPLE</"
      "AccessKeyId><Expiration>2026-11-29T00:17:38Z</Expiration></Credentials></"
      "CreateSessionResult>";
  auto c = parse_create_session(doc);
  REQUIRE(c);
  CHECK(c->access_key_id == "ASIAEXAMPLE");
  CHECK(c->secret_access_key == "SECRET/x");
  CHECK(c->session_token == "TOKEN+/=");
  REQUIRE(c->expiration);
  CHECK(format_iso8601(*c->expiration) == "2026-11-29T00:17:38.000Z");
  auto without = [&](const std::string& element) {
    std::string d = doc;
    auto a = d.find("<" + element + ">");
    auto b = d.find("</" + element + ">");
    return d.erase(a, b + element.size() + 3 - a);
  };
  CHECK(parse_create_session(without("SessionToken")).error() == errc::protocol_error);
  CHECK(parse_create_session(without("SecretAccessKey")).error() == errc::protocol_error);
  CHECK(parse_create_session(without("Expiration")).error() == errc::protocol_error);
  CHECK(parse_create_session("<Error><Code>AccessDenied</Code></Error>").error() ==
        errc::protocol_error);
  CHECK(parse_create_session("not xml <").error() == errc::protocol_error);
}

namespace {
std::string create_session_xml(const std::string& akid, const std::string& secret,
                               const std::string& token,
                               std::chrono::system_clock::time_point expires) {
  return "<CreateSessionResult><Credentials><SessionToken>" + token +
         "</SessionToken><SecretAccessKey>" + secret + "</SecretAccessKey><AccessKeyId>" + akid +
         "</AccessKeyId><Expiration>" + format_iso8601(expires) +
         "</Expiration></Credentials></CreateSessionResult>";
}
}  // namespace

TEST_CASE(
    "with a session, requests are signed with its keys for s3express and carry "
    "x-amz-s3session-token") {
  std::mutex mu;
  std::vector<test::http_server::request> seen;
  test::http_server server(
      [&](const test::http_server::request& req) -> std::pair<unsigned, std::string> {
        std::lock_guard lock(mu);
        seen.push_back(req);
        if (req.target().ends_with("?session"))
          return {200, create_session_xml("ASIASESSION", "session/secret",
                                          "TOKEN+/=", std::chrono::system_clock::now() + 300s)};
        return {200, "0123456789"};
      });
  const credentials long_term{"AKIDLONG", "long/secret", "", {}};
  test::client_env env(server.url(), "cache--use1-az4--x-s3", long_term,
                       [](client_options& o) { o.session = make_express_session(o); });
  std::vector<char> buf(10);
  auto n = env.run(env.client->get("dir/key 1", 0, std::span<char>(buf), ""));
  REQUIRE(n);
  CHECK(*n == 10);
  std::lock_guard lock(mu);
  REQUIRE(seen.size() == 2);

  // CreateSession: the long-term keys, service s3express, ReadWrite, no session token.
  auto& create = seen[0];
  CHECK(create.method_string() == "GET");
  CHECK(create.target() == "/cache--use1-az4--x-s3?session");
  CHECK(create["x-amz-create-session-mode"] == "ReadWrite");
  CHECK(create.find("x-amz-s3session-token") == create.end());
  CHECK(create.find("x-amz-security-token") == create.end());
  auto create_auth = parse_authorization(create[boost::beast::http::field::authorization]);
  REQUIRE(create_auth);
  CHECK(create_auth->access_key_id == "AKIDLONG");
  CHECK(create_auth->service == "s3express");
  CHECK(create_auth->region == "us-east-1");
  CHECK(std::find(create_auth->signed_headers.begin(), create_auth->signed_headers.end(),
                  "x-amz-create-session-mode") != create_auth->signed_headers.end());

  // The GET: the session's key id, the token in x-amz-s3session-token (signed), never
  // x-amz-security-token, and a signature made with the session's secret.
  auto& get = seen[1];
  CHECK(get["x-amz-s3session-token"] == "TOKEN+/=");
  CHECK(get.find("x-amz-security-token") == get.end());
  auto auth = parse_authorization(get[boost::beast::http::field::authorization]);
  REQUIRE(auth);
  CHECK(auth->access_key_id == "ASIASESSION");
  CHECK(auth->service == "s3express");
  CHECK(auth->signed_headers == std::vector<std::string>{"host", "range", "x-amz-content-sha256",
                                                         "x-amz-date", "x-amz-s3session-token"});
  request_to_sign sig;
  sig.method = "GET";
  sig.canonical_uri = "/cache--use1-az4--x-s3/dir/key%201";
  for (auto& h : auth->signed_headers) sig.headers.emplace_back(h, std::string(get[h]));
  CHECK(canonical_request(sig) ==
        "GET\n/cache--use1-az4--x-s3/dir/key%201\n\nhost:" + std::string(get["host"]) +
            "\nrange:bytes=0-9\nx-amz-content-sha256:" + std::string(empty_payload_sha256) +
            "\nx-amz-date:" + std::string(get["x-amz-date"]) +
            "\nx-amz-s3session-token:TOKEN+/=\n\nhost;range;x-amz-content-sha256;x-amz-date;"
            "x-amz-s3session-token\n" +
            std::string(empty_payload_sha256));
  std::string date(get["x-amz-date"]);
  auto sts = string_to_sign(canonical_request(sig), date, "us-east-1", "s3express");
  CHECK(auth->signature == signature("session/secret", sts, date, "us-east-1", "s3express"));
  CHECK(auth->signature != signature("long/secret", sts, date, "us-east-1", "s3express"));
}

namespace {
// A CreateSession stand-in: numbered sessions expiring `lifetime` after the fake clock's now,
// after `delay` (real time) or failing with `fail`.
struct fake_service {
  std::mutex mu;
  std::chrono::system_clock::time_point now = std::chrono::system_clock::from_time_t(1800000000);
  std::chrono::seconds lifetime{100};
  std::chrono::milliseconds delay{0};
  std::error_code fail;
  unsigned made = 0;
  std::chrono::system_clock::time_point clock() {
    std::lock_guard lock(mu);
    return now;
  }
  void advance(std::chrono::seconds s) {
    std::lock_guard lock(mu);
    now += s;
  }
};

awaitable<result<credentials>> fake_create(fake_service* f) {
  if (f->delay.count() > 0) {
    asio::steady_timer t(co_await asio::this_coro::executor, f->delay);
    co_await t.async_wait(use_tuple);
  }
  std::lock_guard lock(f->mu);
  if (f->fail) co_return f->fail;
  ++f->made;
  credentials c{"ASIA" + std::to_string(f->made), "secret", "token-" + std::to_string(f->made), {}};
  c.expiration = f->now + f->lifetime;
  co_return c;
}

std::shared_ptr<express_session> fake_session(fake_service* f, session_timing timing = {}) {
  return std::make_shared<express_session>([f]() { return fake_create(f); }, "test", timing,
                                           [f]() { return f->clock(); });
}

std::string token_of(asio::io_context& ctx, std::shared_ptr<express_session> s) {
  auto fut = asio::co_spawn(ctx, s->get(), asio::use_future);
  ctx.restart();
  ctx.run();  // (until background refreshes are done too)
  auto r = fut.get();
  return r ? r->session_token : "error: " + r.error().message();
}
}  // namespace

TEST_CASE("sessions are refreshed ahead of expiry while the current one keeps serving") {
  fake_service f;  // lifetime 100 s: refresh from 80 s, stop using at 90 s
  auto s = fake_session(&f);
  asio::io_context ctx(1);
  CHECK(token_of(ctx, s) == "token-1");
  f.advance(79s);
  CHECK(token_of(ctx, s) == "token-1");
  CHECK(s->create_count() == 1);
  // Past 80%: the current session answers at once and one CreateSession starts behind it.
  f.advance(2s);
  CHECK(token_of(ctx, s) == "token-1");
  CHECK(s->create_count() == 2);
  CHECK(token_of(ctx, s) == "token-2");  // created at 81 s: good until 171 s
  CHECK(s->create_count() == 2);
  // Nobody asked during the refresh window: past 90% of its life, requests wait for a new one.
  f.advance(91s);
  f.delay = 50ms;
  CHECK(token_of(ctx, s) == "token-3");
  CHECK(s->create_count() == 3);
  CHECK(s->max_concurrent_creates() == 1);
}

TEST_CASE("one CreateSession in flight for many requests on several threads, waiters woken") {
  fake_service f;
  f.delay = 200ms;
  session_timing timing;
  timing.wait_timeout = 20s;
  auto s = fake_session(&f, timing);
  constexpr int threads = 4, per_thread = 25;
  std::vector<std::unique_ptr<asio::io_context>> ctxs;
  std::vector<std::future<result<credentials>>> results;
  for (int t = 0; t < threads; ++t) {
    ctxs.push_back(std::make_unique<asio::io_context>(1));
    for (int i = 0; i < per_thread; ++i)
      results.push_back(asio::co_spawn(*ctxs.back(), s->get(), asio::use_future));
  }
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> runners;
  for (auto& c : ctxs) runners.emplace_back([&c] { c->run(); });
  for (auto& r : runners) r.join();
  const auto took = std::chrono::steady_clock::now() - start;
  std::set<std::string> tokens;
  for (auto& r : results) {
    auto c = r.get();
    REQUIRE(c);
    tokens.insert(c->session_token);
  }
  CHECK(tokens == std::set<std::string>{"token-1"});
  CHECK(s->create_count() == 1);
  CHECK(s->max_concurrent_creates() == 1);
  // Woken when the CreateSession ended, not at their 20 s deadline.
  CHECK(took < 5s);
}

TEST_CASE("a failed CreateSession is not repeated at once; the next one after the hold-off") {
  fake_service f;
  f.fail = make_error_code(errc::access_denied);
  auto s = fake_session(&f);
  asio::io_context ctx(1);
  auto get = [&] {
    auto fut = asio::co_spawn(ctx, s->get(), asio::use_future);
    ctx.restart();
    ctx.run();
    return fut.get();
  };
  CHECK(get().error() == errc::access_denied);
  CHECK(get().error() == errc::access_denied);
  CHECK(s->create_count() == 1);
  f.advance(2s);  // past the 1 s hold-off
  f.fail = {};
  auto ok = get();
  REQUIRE(ok);
  CHECK(ok->session_token == "token-1");
  CHECK(s->create_count() == 2);
}

TEST_CASE("invalidate drops only the session that was refused") {
  fake_service f;
  auto s = fake_session(&f);
  asio::io_context ctx(1);
  CHECK(token_of(ctx, s) == "token-1");
  s->invalidate("token-0");  // an older session's late 403
  CHECK(token_of(ctx, s) == "token-1");
  CHECK(s->create_count() == 1);
  s->invalidate("token-1");
  s->invalidate("token-1");  // a second 403 of the same burst
  CHECK(token_of(ctx, s) == "token-2");
  CHECK(s->create_count() == 2);
}
