#include "s3/beast_client.hpp"

#include <openssl/ssl.h>

#include <cstdlib>
#include <cstring>

#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include "core/environment.hpp"
#include "core/errors.hpp"
#include "core/log.hpp"
#include "core/trace.hpp"
#include "s3/any_stream.hpp"
#include "s3/s3_metrics.hpp"
#include "s3/time_format.hpp"
#include "s3/uri.hpp"
#include "s3/xml.hpp"

namespace valkyrie::s3 {
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

struct beast_client::connection {
  connection(asio::any_io_executor ex, asio::ssl::context* tls) {
    if (tls) stream.emplace(secure.emplace(ex, *tls));
    else stream.emplace(plain.emplace(ex));
    // Room for a response header plus the first body bytes; the rest of a GET body bypasses
    // this buffer and lands in the caller's memory.
    buffer.reserve(64 * 1024);
  }
  beast::tcp_stream& tcp() { return secure ? beast::get_lowest_layer(*secure) : *plain; }

  std::optional<beast::tcp_stream> plain;
  std::optional<beast::ssl_stream<beast::tcp_stream>> secure;
  std::optional<any_stream> stream;  // whichever of the two is set: HTTP code is compiled once
  beast::flat_buffer buffer;
  std::chrono::steady_clock::time_point idle_since;
};

struct beast_client::request {
  s3_op op = s3_op::get;
  http::verb verb = http::verb::get;
  std::string path;
  std::vector<std::pair<std::string, std::string>> query;    // unencoded
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers, all signed
  std::string body;
  std::size_t body_limit = 1 << 20;  // for answers read as text
  // Ranged GET: [offset, offset + dest.size()); a retry resumes after the bytes already
  // received when the request is pinned to one version by If-Match.
  bool ranged = false;
  std::uint64_t offset = 0;
  bool resumable = false;
};

struct beast_client::response {
  unsigned status = 0;
  std::string etag;
  std::uint64_t content_length = 0;
  std::optional<sys_time> last_modified;
  std::string body;
};

namespace {
const auto& http_category() { return http::make_error_code(http::error::bad_version).category(); }

std::error_code map_transport(beast::error_code ec, bool in_body) {
  if (ec == beast::error::timeout) return errc::timeout;
  if (ec == asio::error::eof || ec == http::error::end_of_stream ||
      ec == http::error::partial_message || ec == asio::ssl::error::stream_truncated)
    return in_body ? errc::truncated_body : errc::connection_reset;
  if (ec == asio::error::operation_aborted) return errc::cancelled;
  if (ec.category() == http_category()) return errc::protocol_error;
  if (ec.category() == asio::error::get_ssl_category()) return errc::tls_error;
  return errc::connection_reset;
}

std::string encode_query(const std::vector<std::pair<std::string, std::string>>& q) {
  std::vector<std::pair<std::string, std::string>> sorted;
  for (auto& [k, v] : q) sorted.emplace_back(uri_encode(k, false), uri_encode(v, false));
  std::sort(sorted.begin(), sorted.end());
  std::string out;
  for (auto& [k, v] : sorted) {
    out += out.empty() ? "?" : "&";
    out += v.empty() ? k : k + "=" + v;  // "?session", as S3 documents it (signed as "session=")
  }
  return out;
}

// One request/response exchange on an open stream. The request is written, the header read
// under the first-byte timeout, then the body: for a successful GET straight into `dest`
// (after the few bytes that arrived with the header), otherwise as text.
// *got counts the body bytes written into dest; *answered says whether any response byte came.
awaitable<result<beast_client::response>> exchange(any_stream* stream, beast::tcp_stream* tcp,
                                                   beast::flat_buffer* buffer,
                                                   http::request<http::string_body>* msg,
                                                   std::span<char> dest, std::size_t body_limit,
                                                   client_timeouts timeouts, std::size_t* got,
                                                   bool* answered, bool* reusable,
                                                   std::chrono::steady_clock::time_point* header_at) {
  *reusable = false;
  tcp->expires_after(timeouts.first_byte);
  auto [wec, wn] = co_await http::async_write(*stream, *msg, use_tuple);
  if (wec) co_return map_transport(wec, false);

  http::response_parser<http::empty_body> head_parser;
  head_parser.header_limit(64 * 1024);
  head_parser.body_limit(boost::none);
  if (msg->method() == http::verb::head) head_parser.skip(true);
  auto [hec, hn] = co_await http::async_read_header(*stream, *buffer, head_parser, use_tuple);
  if (hec) {
    *answered = buffer->size() > 0 || hn > 0;
    co_return map_transport(hec, false);
  }
  *answered = true;
  *header_at = std::chrono::steady_clock::now();

  beast_client::response resp;
  auto& h = head_parser.get();
  resp.status = h.result_int();
  resp.etag = std::string(h[http::field::etag]);
  if (auto lm = h[http::field::last_modified]; !lm.empty()) resp.last_modified = parse_http_date(lm);
  if (auto cl = head_parser.content_length()) resp.content_length = *cl;

  if (msg->method() == http::verb::head) {
    *reusable = head_parser.keep_alive();
    co_return resp;
  }

  bool success = resp.status / 100 == 2;
  if (success && !dest.empty()) {
    if (!head_parser.content_length() || head_parser.chunked()) {
      co_return make_error_code(errc::protocol_error);  // S3 always sends Content-Length here
    }
    std::uint64_t length = *head_parser.content_length();
    if (length > dest.size()) co_return make_error_code(errc::protocol_error);
    // Bytes that arrived together with the header.
    std::size_t early = std::min<std::size_t>(buffer->size(), length);
    std::memcpy(dest.data(), buffer->data().data(), early);
    buffer->consume(early);
    *got = early;
    while (*got < length) {
      tcp->expires_after(timeouts.stall);
      auto [rec, n] = co_await stream->async_read_some(
          asio::buffer(dest.data() + *got, length - *got), use_tuple);
      *got += n;
      if (rec) co_return map_transport(rec, true);
    }
    *reusable = head_parser.keep_alive() && buffer->size() == 0;
    co_return resp;
  }

  // Everything else (errors, listings, PUT answers) is read as text. The header was parsed
  // without a body limit, so a Content-Length over the limit is refused here: the text parser
  // would otherwise reserve it all at once (std::bad_alloc for "Content-Length: 2^63-1", a
  // daemon killed by one answer; found by tests/fuzz/fuzz_http_response).
  if (auto cl = head_parser.content_length(); cl && *cl > body_limit)
    co_return make_error_code(errc::protocol_error);
  http::response_parser<http::string_body> text_parser(std::move(head_parser));
  text_parser.body_limit(body_limit);
  tcp->expires_after(timeouts.stall * 4);
  auto [bec, bn] = co_await http::async_read(*stream, *buffer, text_parser, use_tuple);
  if (bec) co_return map_transport(bec, true);
  resp.body = std::move(text_parser.get().body());
  *reusable = text_parser.keep_alive();
  co_return resp;
}
}  // namespace

result<std::shared_ptr<asio::ssl::context>> make_tls_context(std::string ca_bundle, bool verify) {
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
  ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                   asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                   asio::ssl::context::no_tlsv1_1);
  if (ca_bundle.empty()) ca_bundle = env_or_empty("AWS_CA_BUNDLE");
  boost::system::error_code ec;
  if (!ca_bundle.empty()) ctx->load_verify_file(ca_bundle, ec);
  else ctx->set_default_verify_paths(ec);
  if (ec) return make_error_code(errc::tls_error);
  ctx->set_verify_mode(verify ? asio::ssl::verify_peer : asio::ssl::verify_none);
  return ctx;
}

beast_client::beast_client(asio::any_io_executor ex, client_options opts)
    : ex_(ex), opts_(std::move(opts)), stats_(opts_.stats), rng_(std::random_device{}()),
      resolver_(ex) {
  if (!stats_) stats_ = std::make_shared<client_stats>();
  if (!opts_.outage) opts_.outage = std::make_shared<outage_monitor>();
  if (!opts_.credentials)
    opts_.credentials = std::make_shared<static_credentials_provider>(credentials{}, "anonymous");
  if (opts_.max_connections == 0) opts_.max_connections = 1;
}

struct beast_client::waiter {
  explicit waiter(asio::any_io_executor ex) : timer(ex, asio::steady_timer::time_point::max()) {}
  asio::steady_timer timer;            // cancelled when its turn comes
  std::unique_ptr<connection> handed;  // a released connection, now this request's
  bool may_open = false;               // or the slot of one that closed: open a new one
};

beast_client::~beast_client() {
  for (auto& w : waiters_) w->timer.cancel();
  s3_metrics::get().connections->sub(static_cast<std::int64_t>(idle_.size()));
}

awaitable<std::error_code> beast_client::connect(connection* c, std::chrono::milliseconds timeout) {
  auto now = std::chrono::steady_clock::now();
  if (resolved_.empty() || now - resolved_at_ > std::chrono::seconds(60)) {
    auto [ec, results] = co_await resolver_.async_resolve(opts_.ep.host, opts_.ep.port, use_tuple);
    if (ec) co_return make_error_code(errc::connect_failed);
    resolved_ = results;
    resolved_at_ = now;
  }
  auto& tcp_stream = c->tcp();
  tcp_stream.expires_after(timeout);
  auto [cec, ep] = co_await tcp_stream.async_connect(resolved_, use_tuple);
  if (cec) co_return make_error_code(cec == beast::error::timeout ? errc::timeout : errc::connect_failed);
  s3_metrics::get().connections->add();  // from here on, release() or the destructor takes it back
  // Nagle plus delayed ACKs would add ~40 ms to every small request.
  beast::error_code ignored;
  tcp_stream.socket().set_option(tcp::no_delay(true), ignored);
  if (c->secure) {
    if (!SSL_set_tlsext_host_name(c->secure->native_handle(), opts_.ep.host.c_str()))
      co_return make_error_code(errc::tls_error);
    c->secure->set_verify_callback(asio::ssl::host_name_verification(opts_.ep.host));
    tcp_stream.expires_after(timeout);
    auto [hec] = co_await c->secure->async_handshake(asio::ssl::stream_base::client, use_tuple);
    if (hec) co_return make_error_code(hec == beast::error::timeout ? errc::timeout : errc::tls_error);
  }
  stats_->connections_opened.fetch_add(1, std::memory_order_relaxed);
  s3_metrics::get().connections_opened->add();
  co_return std::error_code{};
}

awaitable<result<std::unique_ptr<beast_client::connection>>> beast_client::acquire(
    bool* reused, std::chrono::milliseconds connect_timeout) {
  bool may_open = false;  // a slot handed over by release(): open_ already counts it
  for (;;) {
    auto now = std::chrono::steady_clock::now();
    // Requests already waiting go first: a connection back in the pool is handed to the oldest
    // (release()), never taken by a request that came later. (Taking it was measured to starve
    // the first of a burst of prefetches for most of a second: the readers' next files.)
    while (!may_open && waiters_.empty() && !idle_.empty()) {
      // Most recently used first: the least likely to have been closed by the server.
      auto c = std::move(idle_.back());
      idle_.pop_back();
      if (now - c->idle_since > opts_.pool_idle_timeout) {
        --open_;
        s3_metrics::get().connections->sub();
        continue;
      }
      *reused = true;
      co_return c;
    }
    if (may_open || (waiters_.empty() && open_ < opts_.max_connections)) {
      if (!may_open) ++open_;
      may_open = false;
      auto c = std::make_unique<connection>(ex_, opts_.ep.tls ? opts_.tls.get() : nullptr);
      auto ec = co_await connect(c.get(), connect_timeout);
      if (ec) {
        release(nullptr, false);
        co_return ec;
      }
      *reused = false;
      co_return c;
    }
    auto w = std::make_shared<waiter>(ex_);  // (named: kept across the co_await)
    waiters_.push_back(w);
    co_await w->timer.async_wait(use_tuple);
    if (w->handed) {
      *reused = true;
      co_return std::move(w->handed);
    }
    may_open = w->may_open;  // (neither: the client is going away; try again)
  }
}

void beast_client::release(std::unique_ptr<connection> c, bool reusable) {
  const bool keep = c && reusable;
  if (!keep && c) s3_metrics::get().connections->sub();  // (null: a connect that failed)
  if (!waiters_.empty()) {
    // The oldest waiting request gets the connection, or the closed one's slot (open_ unchanged).
    auto w = std::move(waiters_.front());
    waiters_.pop_front();
    if (keep)
      w->handed = std::move(c);
    else
      w->may_open = true;
    w->timer.cancel();
    return;
  }
  if (keep) {
    c->idle_since = std::chrono::steady_clock::now();
    idle_.push_back(std::move(c));
  } else {
    --open_;
  }
}

awaitable<result<beast_client::response>> beast_client::attempt(const request* req,
                                                                std::span<char> dest,
                                                                std::size_t* got, bool* stale,
                                                                client_timeouts timeouts,
                                                                std::string* session_token) {
  *stale = false;
  // S3 Express: the session's keys, but CreateSession itself is signed with the long-term ones.
  auto session = req->op == s3_op::create_session ? nullptr : opts_.session;
  result<credentials> creds = make_error_code(errc::no_credentials);
  if (session)
    creds = co_await session->get();
  else
    creds = co_await opts_.credentials->get();
  if (!creds) co_return creds.error();
  if (session) *session_token = creds->session_token;

  http::request<http::string_body> msg{req->verb, req->path + encode_query(req->query), 11};
  msg.set(http::field::host, opts_.ep.host_header);
  msg.set(http::field::user_agent, "valkyrie-fs/0.1");
  std::string payload_hash = req->verb == http::verb::put ? sha256_hex(req->body)
                                                          : std::string(empty_payload_sha256);
  request_to_sign sig{std::string(http::to_string(req->verb)), req->path, req->query,
                      {{"host", opts_.ep.host_header}}, payload_hash};
  for (auto& [k, v] : req->headers) {
    msg.set(k, v);
    sig.headers.emplace_back(k, v);
  }
  if (!creds->anonymous()) {
    std::string date = amz_date(std::chrono::system_clock::now());
    msg.set("x-amz-date", date);
    msg.set("x-amz-content-sha256", payload_hash);
    sig.headers.emplace_back("x-amz-date", date);
    sig.headers.emplace_back("x-amz-content-sha256", payload_hash);
    if (!creds->session_token.empty()) {
      const char* header = session ? "x-amz-s3session-token" : "x-amz-security-token";
      msg.set(header, creds->session_token);
      sig.headers.emplace_back(header, creds->session_token);
    }
    msg.set(http::field::authorization,
            authorization(sig, *creds, date, opts_.ep.region, opts_.ep.signing_service));
  }
  if (req->verb == http::verb::put) msg.body() = req->body;
  msg.prepare_payload();
  msg.keep_alive(true);

  bool reused = false;
  auto conn = co_await acquire(&reused, timeouts.connect);
  if (!conn) co_return conn.error();
  auto c = std::move(*conn);
  c->buffer.clear();
  stats_->requests.fetch_add(1, std::memory_order_relaxed);
  auto& m = s3_metrics::get();
  const int op = static_cast<int>(req->op);
  m.in_flight->add();
  auto sent_at = std::chrono::steady_clock::now();
  auto header_at = sent_at;
  bool answered = false, reusable = false;
  result<response> r = co_await exchange(&*c->stream, &c->tcp(), &c->buffer, &msg, dest,
                                         req->body_limit, timeouts, got, &answered, &reusable,
                                         &header_at);
  m.in_flight->sub();
  auto done_at = std::chrono::steady_clock::now();
  m.requests(req->op, r ? r->status : 0).add();
  m.duration[op]->observe(static_cast<std::uint64_t>((done_at - sent_at).count()));
  if (answered) m.first_byte[op]->observe(static_cast<std::uint64_t>((header_at - sent_at).count()));
  m.bytes->add(*got);
  if (!r && reused && !answered && r.error() != make_error_code(errc::timeout)) *stale = true;
  stats_->bytes_received.fetch_add(*got, std::memory_order_relaxed);
  release(std::move(c), r && reusable);
  co_return r;
}

awaitable<result<beast_client::response>> beast_client::execute(request req, std::span<char> dest,
                                                                std::size_t* progress) {
  *progress = 0;
  bool refreshed_credentials = false, refreshed_session = false;
  unsigned stale_retries = 0;
  auto& m = s3_metrics::get();
  static constexpr const char* span_names[] = {"s3.GetObject", "s3.HeadObject", "s3.ListObjectsV2",
                                               "s3.PutObject", "s3.CreateSession"};
  static_assert(std::size(span_names) == static_cast<std::size_t>(s3_op::count));
  trace::span span(span_names[static_cast<int>(req.op)], "s3");
  if (span.active()) {
    span.add({"path", req.path});
    if (req.ranged) span.add({"offset", std::uint64_t{req.offset}}).add({"length", std::uint64_t{dest.size()}});
  }
  // GETs (and PUTs) wait through an outage for --retry-timeout, HEAD and LIST for
  // --metadata-retry-timeout.
  const bool metadata =
      req.op == s3_op::head || req.op == s3_op::list || req.op == s3_op::create_session;
  const std::chrono::milliseconds budget =
      metadata ? opts_.retry.metadata_budget : opts_.retry.budget;
  retry_budget retries(opts_.retry, budget);
  outage_monitor& outage = *opts_.outage;
  for (unsigned attempt_no = 1;; ++attempt_no) {
    std::span<char> remaining = dest;
    if (req.ranged) {
      if (!req.resumable) *progress = 0;
      remaining = dest.subspan(*progress);
      std::uint64_t first = req.offset + *progress;
      std::uint64_t last = req.offset + dest.size() - 1;
      req.headers.erase(std::remove_if(req.headers.begin(), req.headers.end(),
                                       [](auto& h) { return h.first == "range"; }),
                        req.headers.end());
      req.headers.emplace_back("range", "bytes=" + std::to_string(first) + "-" + std::to_string(last));
    }
    // Once failing, a server that no longer answers at all (no refusal) must not stretch the
    // wait past the budget: connect and first byte get at most what is left of it (a body
    // that flows is left alone).
    client_timeouts timeouts = opts_.timeouts;
    if (auto left = retries.remaining(std::chrono::steady_clock::now());
        left != retry_budget::clock::duration::max()) {
      auto cut = std::max(std::chrono::duration_cast<std::chrono::milliseconds>(left),
                          std::chrono::milliseconds(100));
      timeouts.connect = std::min(timeouts.connect, cut);
      timeouts.first_byte = std::min(timeouts.first_byte, cut);
    }
    std::size_t got = 0;
    bool stale = false;
    std::string session_token;
    auto r = co_await attempt(&req, remaining, &got, &stale, timeouts, &session_token);
    *progress += got;
    std::error_code ec;
    if (span.active()) span.add({"attempt", attempt_no}).add({"status", r ? r->status : 0u});
    const auto now = std::chrono::steady_clock::now();
    if (r && r->status / 100 == 2) {
      outage.answered(now);
      co_return r;
    }
    if (r) ec = error_from_response(r->status, parse_error_body(r->body));
    else ec = r.error();
    if (r && !is_retryable(ec)) outage.answered(now);  // (S3 answered, if only to say no)

    if (stale && stale_retries < 2) {
      // The server closed this pooled connection while it sat idle: not the request's fault.
      ++stale_retries;
      --attempt_no;
      stats_->stale_retries.fetch_add(1, std::memory_order_relaxed);
      m.retries("stale_connection").add();
      continue;
    }
    if (!session_token.empty() && !refreshed_session &&
        (ec == errc::expired_token || (r && r->status == 403))) {
      // Refused with an S3 Express session (expired, or revoked): once more with a new one.
      refreshed_session = true;
      opts_.session->invalidate(session_token);
      stats_->session_retries.fetch_add(1, std::memory_order_relaxed);
      m.retries("expired_session").add();
      --attempt_no;
      continue;
    }
    if (ec == errc::expired_token && !refreshed_credentials) {
      refreshed_credentials = true;
      opts_.credentials->invalidate();
      m.retries("expired_token").add();
      --attempt_no;
      continue;
    }
    if (!is_retryable(ec)) {
      if (attempt_no > 1)
        log::limited("s3", spdlog::level::warn, "gave-up", "S3 request failed after retries",
                     {{"operation", op_name(req.op)}, {"path", req.path}, {"error", ec.message()}, {"attempts", attempt_no}});
      co_return ec;
    }
    if (auto began = outage.began()) retries.count_from(*began);
    const auto decision = retries.after_failure(attempt_no, now, rng_);
    const auto since = *retries.failing_since();
    if (decision.what == retry_budget::verdict::out_of_attempts) {
      log::limited("s3", spdlog::level::warn, "gave-up", "S3 request failed after retries",
                   {{"operation", op_name(req.op)},
                    {"path", req.path},
                    {"error", ec.message()},
                    {"attempts", attempt_no}});
      co_return ec;
    }
    if (decision.what == retry_budget::verdict::out_of_time) {
      outage.gave_up(since, now, ec, op_name(req.op), req.path);
      log::event("s3", spdlog::level::debug, "S3 request gave up: retry budget spent",
                 {{"operation", op_name(req.op)},
                  {"path", req.path},
                  {"error", ec.message()},
                  {"attempts", attempt_no}});
      co_return make_error_code(errc::retries_exhausted);
    }
    outage.failing(since, now, ec, op_name(req.op), budget);
    stats_->retries.fetch_add(1, std::memory_order_relaxed);
    const char* reason = "other";
    switch (static_cast<errc>(ec.value())) {
      case errc::slow_down: stats_->retries_slow_down.fetch_add(1, std::memory_order_relaxed); reason = "slow_down"; break;
      case errc::server_error: stats_->retries_server_error.fetch_add(1, std::memory_order_relaxed); reason = "server_error"; break;
      case errc::connection_reset: stats_->retries_reset.fetch_add(1, std::memory_order_relaxed); reason = "connection_reset"; break;
      case errc::truncated_body: stats_->retries_truncated.fetch_add(1, std::memory_order_relaxed); reason = "truncated_body"; break;
      case errc::timeout: stats_->retries_timeout.fetch_add(1, std::memory_order_relaxed); reason = "timeout"; break;
      case errc::connect_failed: stats_->retries_connect.fetch_add(1, std::memory_order_relaxed); reason = "connect_failed"; break;
      default: stats_->retries_other.fetch_add(1, std::memory_order_relaxed); break;
    }
    m.retries(reason).add();
    log::event("s3", spdlog::level::debug, "retrying S3 request",
               {{"operation", op_name(req.op)}, {"path", req.path}, {"reason", reason}, {"attempt", attempt_no}});
    asio::steady_timer timer(ex_, decision.delay);
    co_await timer.async_wait(use_tuple);
  }
}

awaitable<result<object_info>> beast_client::head(std::string key) {
  request req;
  req.op = s3_op::head;
  req.verb = http::verb::head;
  req.path = opts_.ep.object_path(key);
  std::size_t progress = 0;
  auto r = co_await execute(std::move(req), {}, &progress);
  if (!r) co_return r.error();
  object_info info;
  info.key = std::move(key);
  info.size = r->content_length;
  info.etag = std::move(r->etag);
  if (r->last_modified) info.last_modified = *r->last_modified;
  co_return info;
}

awaitable<result<std::size_t>> beast_client::get(std::string key, std::uint64_t offset,
                                                 std::span<char> dest, std::string if_match) {
  if (dest.empty()) co_return std::size_t{0};
  request req;
  req.verb = http::verb::get;
  req.path = opts_.ep.object_path(key);
  req.ranged = true;
  req.offset = offset;
  req.resumable = !if_match.empty();
  if (!if_match.empty()) req.headers.emplace_back("if-match", if_match);
  std::size_t progress = 0;
  auto r = co_await execute(std::move(req), dest, &progress);
  if (!r) co_return r.error();
  co_return progress;
}

awaitable<result<list_page>> beast_client::list(list_request lr) {
  request req;
  req.op = s3_op::list;
  req.verb = http::verb::get;
  req.path = opts_.ep.base_path.empty() ? "/" : opts_.ep.base_path;
  req.query = {{"list-type", "2"}, {"encoding-type", "url"}};
  if (!lr.prefix.empty()) req.query.emplace_back("prefix", lr.prefix);
  if (!lr.delimiter.empty()) req.query.emplace_back("delimiter", lr.delimiter);
  if (!lr.continuation_token.empty()) req.query.emplace_back("continuation-token", lr.continuation_token);
  if (!lr.start_after.empty()) req.query.emplace_back("start-after", lr.start_after);
  if (lr.max_keys != 1000) req.query.emplace_back("max-keys", std::to_string(lr.max_keys));
  req.body_limit = 64 << 20;
  std::size_t progress = 0;
  auto r = co_await execute(std::move(req), {}, &progress);
  if (!r) co_return r.error();
  co_return parse_list_response(r->body);
}

awaitable<result<credentials>> beast_client::create_session(std::string mode) {
  request req;
  req.op = s3_op::create_session;
  req.verb = http::verb::get;
  req.path = opts_.ep.base_path.empty() ? "/" : opts_.ep.base_path;
  req.query = {{"session", ""}};
  req.headers.emplace_back("x-amz-create-session-mode", mode);
  req.body_limit = 64 * 1024;
  std::size_t progress = 0;
  auto r = co_await execute(std::move(req), {}, &progress);
  if (!r) co_return r.error();
  co_return parse_create_session(r->body);
}

awaitable<result<std::string>> beast_client::put(std::string key, std::string body) {
  co_return co_await put_object(std::move(key), std::move(body), false);
}

awaitable<result<std::string>> beast_client::put_object(std::string key, std::string body, bool if_none_match) {
  request req;
  req.op = s3_op::put;
  req.verb = http::verb::put;
  req.path = opts_.ep.object_path(key);
  req.body = std::move(body);
  if (if_none_match) req.headers.emplace_back("if-none-match", "*");
  std::size_t progress = 0;
  auto r = co_await execute(std::move(req), {}, &progress);
  if (!r) co_return r.error();
  co_return std::move(r->etag);
}

}  // namespace valkyrie::s3
