#pragma once
// A beast_client on a private io_context, for integration tests against a real server.
#include <future>

#include <boost/asio/use_future.hpp>

#include "helpers.hpp"
#include "s3/beast_client.hpp"
#include "s3/http_fetch.hpp"

namespace valkyrie::test {

struct client_env {
  client_env(std::string url, std::string bucket, s3::credentials creds,
             std::function<void(s3::client_options&)> tweak = {}) {
    auto ep = s3::resolve_endpoint({bucket, "us-east-1", url, false});
    if (!ep) throw std::runtime_error("bad endpoint " + url);
    opts.ep = *ep;
    opts.credentials = std::make_shared<s3::static_credentials_provider>(creds, "test");
    opts.stats = stats;
    opts.retry.base_delay = std::chrono::milliseconds(5);
    opts.retry.max_delay = std::chrono::milliseconds(50);
    if (tweak) tweak(opts);
    client = std::make_unique<s3::beast_client>(ctx.get_executor(), opts);
  }
  template <class T>
  T run(awaitable<T> a) {
    auto f = asio::co_spawn(ctx, std::move(a), asio::use_future);
    ctx.restart();
    ctx.run();
    return f.get();
  }

  asio::io_context ctx{1};
  std::shared_ptr<s3::client_stats> stats = std::make_shared<s3::client_stats>();
  s3::client_options opts;
  std::unique_ptr<s3::beast_client> client;
};

// Every key of a listing, following continuation tokens; *pages counts the requests.
inline std::vector<std::string> list_all(client_env& env, s3::list_request req, int* pages = nullptr) {
  std::vector<std::string> keys;
  for (int n = 1;; ++n) {
    auto page = env.run(env.client->list(req));
    if (!page) throw std::system_error(page.error());
    for (auto& o : page->objects) keys.push_back(o.key);
    if (pages) *pages = n;
    if (!page->truncated) return keys;
    req.continuation_token = page->next_continuation_token;
  }
}

// Calls the simulator's admin API (/_sim/...) and returns the body.
inline std::string sim_admin(const std::string& url, const std::string& method, const std::string& path) {
  auto r = run(s3::http_fetch(method, url + path, {}, std::chrono::seconds(5)));
  if (!r || r->status != 200) throw std::runtime_error("admin call failed: " + path);
  return r->body;
}

// A counter from /_sim/stats, e.g. stat(json, "\"list\"").
inline std::uint64_t stat(const std::string& json, const std::string& name) {
  auto p = json.find("\"" + name + "\":");
  if (p == std::string::npos) throw std::runtime_error("no stat " + name);
  return std::strtoull(json.c_str() + p + name.size() + 3, nullptr, 10);
}

}  // namespace valkyrie::test
