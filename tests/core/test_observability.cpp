// Metrics (registry, exposition, the HTTP endpoint), structured logs, the log file and the trace
// writer.
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <simdjson.h>

#include "core/log.hpp"
#include "core/metrics.hpp"
#include "core/metrics_server.hpp"
#include "core/trace.hpp"
#include "helpers.hpp"
#include "trace_check.hpp"

using namespace valkyrie;

namespace {
std::string file_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string line_of(const std::string& text, const std::string& start) {
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);)
    if (l.rfind(start, 0) == 0) return l;
  return "";
}
}  // namespace

TEST_CASE("counters summed over threads; the exposition names type and help once per family") {
  metrics::registry reg;
  auto& a = reg.get_counter("t_requests_total", "Requests.", {{"op", "get"}});
  auto& b = reg.get_counter("t_requests_total", "Requests.", {{"op", "head"}});
  CHECK(&reg.get_counter("t_requests_total", "Requests.", {{"op", "get"}}) == &a);
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&a] {
      for (int i = 0; i < 10000; ++i) a.add();
    });
  for (auto& t : threads) t.join();
  b.add(3);
  CHECK(a.value() == 80000);
  auto text = reg.render();
  CHECK(text.find("# HELP t_requests_total Requests.\n# TYPE t_requests_total counter\n") != std::string::npos);
  CHECK(line_of(text, "t_requests_total{op=\"get\"}") == "t_requests_total{op=\"get\"} 80000");
  CHECK(line_of(text, "t_requests_total{op=\"head\"}") == "t_requests_total{op=\"head\"} 3");
  CHECK_THROWS_AS(reg.get_gauge("t_requests_total", "x"), std::logic_error);
}

TEST_CASE("gauges go up and down across threads; scaled counters and computed gauges") {
  metrics::registry reg;
  auto& g = reg.get_gauge("t_in_flight", "In flight.");
  std::thread up([&g] {
    for (int i = 0; i < 1000; ++i) g.add();
  });
  up.join();
  for (int i = 0; i < 400; ++i) g.sub();
  CHECK(g.value() == 600);
  reg.get_counter("t_wait_seconds_total", "Waiting.", {}, 1e-9).add(1500000000);
  reg.computed_gauge("t_ratio", "A ratio.", [] { return 0.25; });
  auto text = reg.render();
  CHECK(line_of(text, "t_wait_seconds_total") == "t_wait_seconds_total 1.5");
  CHECK(line_of(text, "t_ratio") == "t_ratio 0.25");
  CHECK(line_of(text, "t_in_flight") == "t_in_flight 600");
}

TEST_CASE("histogram buckets are cumulative, with _sum and _count") {
  metrics::registry reg;
  auto& h = reg.get_histogram("t_latency_seconds", "Latency.", {0.001, 0.01, 0.1}, 1e-9, {{"op", "read"}});
  h.observe_seconds(0.0005);
  h.observe_seconds(0.005);
  h.observe_seconds(0.005);
  h.observe_seconds(5);
  auto s = h.read();
  CHECK(s.count == 4);
  CHECK(s.cumulative == std::vector<std::uint64_t>{1, 3, 3, 4});
  CHECK(s.sum == doctest::Approx(5.0105).epsilon(1e-6));
  auto text = reg.render();
  CHECK(line_of(text, "t_latency_seconds_bucket{op=\"read\",le=\"0.01\"}") ==
        "t_latency_seconds_bucket{op=\"read\",le=\"0.01\"} 3");
  CHECK(line_of(text, "t_latency_seconds_bucket{op=\"read\",le=\"+Inf\"}") ==
        "t_latency_seconds_bucket{op=\"read\",le=\"+Inf\"} 4");
  CHECK(line_of(text, "t_latency_seconds_count{op=\"read\"}") == "t_latency_seconds_count{op=\"read\"} 4");
}

TEST_CASE("label values are escaped") {
  metrics::registry reg;
  reg.get_counter("t_odd_total", "Odd.", {{"key", "a\"b\\c\nd"}}).add();
  CHECK(reg.render().find("t_odd_total{key=\"a\\\"b\\\\c\\nd\"} 1") != std::string::npos);
}

TEST_CASE("the metrics server answers GET /metrics and 404 elsewhere") {
  asio::io_context ctx(1);
  metrics::registry reg;
  reg.get_counter("t_served_total", "Served.").add(7);
  auto srv = metrics::server::bind(ctx.get_executor(), "127.0.0.1", 0, [&reg] { return reg.render(); });
  REQUIRE(srv);
  (*srv)->start();
  std::thread t([&ctx] { ctx.run_for(std::chrono::seconds(5)); });
  namespace http = boost::beast::http;
  auto fetch = [&](const std::string& target) {
    asio::io_context c;
    asio::ip::tcp::socket sock(c);
    sock.connect({asio::ip::make_address("127.0.0.1"), (*srv)->port()});
    http::request<http::empty_body> req{http::verb::get, target, 11};
    req.set(http::field::host, "localhost");
    http::write(sock, req);
    boost::beast::flat_buffer buf;
    http::response<http::string_body> res;
    http::read(sock, buf, res);
    return res;
  };
  auto ok = fetch("/metrics");
  CHECK(ok.result_int() == 200);
  CHECK(std::string(ok[http::field::content_type]).find("version=0.0.4") != std::string::npos);
  CHECK(ok.body().find("t_served_total 7") != std::string::npos);
  CHECK(fetch("/nothing").result_int() == 404);
  // Let the context run until the accept loop has seen its acceptor closed (run_for returns
  // once no work is left) instead of stopping it: an accept still pending in a closed acceptor
  // when the io_context is destroyed is freed after the socket service by Boost 1.81's io_uring
  // backend (chriskohlhoff/asio#1235), a use after free the sanitizer build caught here.
  (*srv)->stop();
  t.join();
  std::string host;
  unsigned short port = 0;
  CHECK(metrics::parse_listen_address("127.0.0.1:9090", host, port));
  CHECK((host == "127.0.0.1" && port == 9090));
  CHECK(metrics::parse_listen_address("[::1]:0", host, port));
  CHECK(host == "::1");
  CHECK_FALSE(metrics::parse_listen_address("localhost", host, port));
  CHECK_FALSE(metrics::parse_listen_address("1.2.3.4:99999", host, port));
  CHECK_FALSE(metrics::parse_listen_address("nohost:80", host, port));
}

TEST_CASE("trace files are balanced JSON and rotate at their size limit") {
  test::temp_dir dir;
  std::string path = (dir.path() / "trace.json").string();
  REQUIRE_FALSE(trace::start({path, 64 * 1024}));
  CHECK(trace::enabled());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([t] {
      for (int i = 0; i < 500; ++i) {
        trace::span outer("test.outer", "test");
        outer.add({"thread", t}).add({"text", "quote \" and \\ and \n"});
        trace::span inner("test.inner", "test");
        if (i % 100 == 0) trace::instant("test.decision", "test", {{"i", i}});
      }
    });
  for (auto& t : threads) t.join();
  trace::stop();
  CHECK_FALSE(trace::enabled());
  auto current = test::check_trace(path);
  auto rotated = test::check_trace(path + ".1");
  INFO(current.error, " / ", rotated.error);
  CHECK(current.error.empty());
  CHECK(rotated.error.empty());
  CHECK(std::filesystem::file_size(path) <= 64 * 1024);
  CHECK(std::filesystem::file_size(path + ".1") <= 64 * 1024);
  CHECK(current.names.count("test.inner"));
  // Off again: spans cost nothing and write nothing.
  trace::span ignored("test.off", "test");
  CHECK_FALSE(ignored.active());
}

TEST_CASE("log lines are JSON objects with time, level, component, msg and fields") {
  test::temp_dir dir;
  std::string path = (dir.path() / "log.txt").string();
  int saved = dup(2);
  FILE* f = std::fopen(path.c_str(), "w");
  dup2(fileno(f), 2);
  log::set_level("debug");
  log::event("test", spdlog::level::info, "read \"done\"", {{"key", "a/b\tc"}, {"bytes", 42}, {"ok", true}});
  for (int i = 0; i < 20; ++i) log::limited("test", spdlog::level::warn, "same", "repeated warning");
  log::get("test")->debug("plain {}", 1);
  std::fflush(stderr);
  dup2(saved, 2);
  close(saved);
  std::fclose(f);
  log::set_level("info");

  std::ifstream in(path);
  simdjson::dom::parser parser;
  int lines = 0, repeated = 0;
  for (std::string l; std::getline(in, l);) {
    ++lines;
    simdjson::dom::element e;
    REQUIRE_MESSAGE(!parser.parse(l).get(e), l);
    std::string_view time, level, component, msg;
    REQUIRE(!e["time"].get(time));
    REQUIRE(!e["level"].get(level));
    REQUIRE(!e["component"].get(component));
    REQUIRE(!e["msg"].get(msg));
    CHECK(component == "test");
    if (msg == "read \"done\"") {
      CHECK(std::string_view(e["key"]) == "a/b\tc");
      CHECK(int64_t(e["bytes"]) == 42);
      CHECK(bool(e["ok"]));
      CHECK(level == "info");
    }
    if (msg == "repeated warning") ++repeated;
  }
  CHECK(repeated == 5);  // the burst; the rest is suppressed and counted
  CHECK(lines == 7);
}

TEST_CASE(
    "a daemon holding its caller's stderr keeps lines below warn, and writes them first where "
    "lines go next") {
  test::temp_dir dir;
  std::string caller = (dir.path() / "caller.txt").string(),
              path = (dir.path() / "valkyrie.log").string();
  int saved = dup(2);
  FILE* f = std::fopen(caller.c_str(), "w");
  dup2(fileno(f), 2);
  log::hold_quiet_lines();
  log::event("test", spdlog::level::info, "held one");
  log::event("test", spdlog::level::warn, "a warning reaches the caller");
  log::event("test", spdlog::level::info, "held two");
  REQUIRE(!log::to_file(path));  // (a daemon's --log-file is opened before it forks; here after)
  log::event("test", spdlog::level::info, "into the file");
  REQUIRE(!log::detach_stderr());
  log::event("test", spdlog::level::info, "after letting go");
  std::fflush(stderr);
  dup2(saved, 2);
  close(saved);
  std::fclose(f);
  log::to_stderr();
  std::string to_caller = file_text(caller), in_file = file_text(path);
  CHECK(to_caller.find("a warning reaches the caller") != std::string::npos);
  CHECK(to_caller.find("held") == std::string::npos);
  CHECK(std::count(to_caller.begin(), to_caller.end(), '\n') == 1);
  auto at = [&](const char* msg) { return in_file.find(msg); };
  REQUIRE(at("held one") != std::string::npos);
  CHECK(at("held one") < at("held two"));
  CHECK(at("held two") < at("into the file"));
  CHECK(at("into the file") < at("after letting go"));
  CHECK(at("after letting go") != std::string::npos);
  CHECK(in_file.find("a warning reaches the caller") == std::string::npos);
}

TEST_CASE("a log file is appended to, and reopened under its name after it was moved (SIGHUP)") {
  test::temp_dir dir;
  std::string path = (dir.path() / "valkyrie.log").string();
  { std::ofstream(path) << "an earlier line\n"; }
  REQUIRE(!log::to_file(path));
  log::event("test", spdlog::level::warn, "first", {{"n", 1}});
  std::filesystem::rename(path, path + ".1");  // what logrotate does
  log::event("test", spdlog::level::warn, "second, still in the moved file");
  REQUIRE(!log::reopen());
  log::event("test", spdlog::level::warn, "third, in a new file");
  log::to_stderr();
  std::string moved = file_text(path + ".1"), fresh = file_text(path);
  CHECK(moved.rfind("an earlier line\n", 0) == 0);  // appended, not truncated
  CHECK(moved.find("\"msg\":\"first\"") != std::string::npos);
  CHECK(moved.find("second, still in the moved file") != std::string::npos);
  CHECK(moved.find("third") == std::string::npos);
  CHECK(fresh.find("third, in a new file") != std::string::npos);
  CHECK(std::count(fresh.begin(), fresh.end(), '\n') == 1);
  // A file that cannot be opened is an error, and lines keep going where they went.
  CHECK(log::to_file((dir.path() / "no/such/dir/x.log").string()) ==
        std::errc::no_such_file_or_directory);
}
