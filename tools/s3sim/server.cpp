#include "server.hpp"

#include "auth.hpp"
#include "protocol.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include "../common/synthetic.hpp"
#include "core/log.hpp"
#include "core/units.hpp"
#include "s3/any_stream.hpp"
#include "s3/time_format.hpp"

namespace valkyrie::sim {
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using clock = std::chrono::steady_clock;

// A link that was busy until just now may catch up on the time its sender lost waking up late
// (timer and scheduling jitter), as a token bucket with a small burst does; an idle link may not
// bank more than this.
constexpr std::chrono::milliseconds pacing_slack{2};

// The total-bandwidth link shared by all connections: a virtual clock of when the link is free.
class link_pacer {
 public:
  explicit link_pacer(double rate) : rate_(rate) {}
  // Reserves `bytes` on the link; returns when they will have crossed it.
  clock::time_point reserve(std::size_t bytes) {
    if (rate_ <= 0) return clock::now();
    std::lock_guard lock(mu_);
    auto start = std::max(clock::now() - pacing_slack, next_);
    next_ = start + std::chrono::nanoseconds(static_cast<std::int64_t>(bytes / rate_ * 1e9));
    return next_;
  }

 private:
  double rate_;
  std::mutex mu_;
  clock::time_point next_{};
};

struct server::state {
  server_options opts;
  store& objects;
  server_counters& counters;
  link_pacer total;
  std::mutex fault_mu;
  std::mt19937_64 rng;
  double probability[fault_kinds];
  std::chrono::nanoseconds stall_time;
  std::deque<fault_kind> scheduled;
  authenticator auth;

  state(server_options o, store& s, server_counters& c)
      : opts(std::move(o)),
        objects(s),
        counters(c),
        total(opts.total_bandwidth),
        rng(opts.fault_seed),
        stall_time(opts.stall_time),
        auth(opts.region, opts.credentials, opts.session_lifetime, &c.expired_sessions) {
    std::copy(std::begin(opts.fault_probability), std::end(opts.fault_probability), probability);
  }

  // Faults apply to object GETs; throttling and 500s also to HEAD, LIST and PUT.
  fault_kind pick_fault(bool object_get) {
    std::lock_guard lock(fault_mu);
    if (!scheduled.empty()) {
      auto k = scheduled.front();
      if (object_get || k == fault_kind::slowdown || k == fault_kind::error500) {
        scheduled.pop_front();
        return k;
      }
    }
    for (int i = 1; i < fault_kinds; ++i) {
      auto k = static_cast<fault_kind>(i);
      if (!object_get && k != fault_kind::slowdown && k != fault_kind::error500) continue;
      if (probability[i] > 0 && std::uniform_real_distribution<double>(0, 1)(rng) < probability[i])
        return k;
    }
    return fault_kind::none;
  }
};

namespace {
bool has_query(const parsed_target& t, const std::string& name) {
  bool present = false;
  query_value(t, name, &present);
  return present;
}

reply admin(server::state& st, const request_t& req, const parsed_target& t) {
  st.counters.admin.fetch_add(1);
  std::string path = t.raw_path;
  if (path == "/_sim/stats") return make_reply(200, st.counters.to_json(), "application/json");
  if (req.method() != http::verb::post) return error_reply(405, "MethodNotAllowed", "use POST", path);
  if (path == "/_sim/reset-stats") {
    st.counters.reset();
    return make_reply(200, "{}", "application/json");
  }
  if (path == "/_sim/faults") {
    std::lock_guard lock(st.fault_mu);
    for (int i = 1; i < fault_kinds; ++i) st.probability[i] = 0;
    for (auto& [k, v] : t.query) {
      if (k == "stall_time") {
        auto d = parse_duration(v);
        if (!d) return error_reply(400, "InvalidArgument", "bad stall_time", path);
        st.stall_time = *d;
        continue;
      }
      auto kind = parse_fault_kind(k);
      char* end = nullptr;
      double p = std::strtod(v.c_str(), &end);
      if (!kind || end == v.c_str() || p < 0 || p > 1)
        return error_reply(400, "InvalidArgument", "unknown fault or bad probability: " + k, path);
      st.probability[static_cast<int>(*kind)] = p;
    }
    return make_reply(200, "{}", "application/json");
  }
  if (path == "/_sim/credentials") {
    // Adds an accepted set: ?akid=A&secret=S[&token=T][&expires_in=30s].
    s3::credentials c;
    c.access_key_id = query_value(t, "akid");
    c.secret_access_key = query_value(t, "secret");
    c.session_token = query_value(t, "token");
    std::string ttl = query_value(t, "expires_in");
    if (c.access_key_id.empty() || c.secret_access_key.empty())
      return error_reply(400, "InvalidArgument", "akid and secret are required", path);
    if (!ttl.empty()) {
      auto d = parse_duration(ttl);
      if (!d) return error_reply(400, "InvalidArgument", "bad expires_in", path);
      c.expiration = std::chrono::system_clock::now() +
                     std::chrono::duration_cast<std::chrono::system_clock::duration>(*d);
    }
    st.auth.accept(c);
    return make_reply(200, "{}", "application/json");
  }
  if (path == "/_sim/faults/next") {
    auto kind = parse_fault_kind(query_value(t, "kind"));
    std::string count_text = query_value(t, "count");
    unsigned count = count_text.empty() ? 1 : static_cast<unsigned>(std::strtoul(count_text.c_str(), nullptr, 10));
    if (!kind) return error_reply(400, "InvalidArgument", "unknown fault kind", path);
    std::lock_guard lock(st.fault_mu);
    for (unsigned i = 0; i < count; ++i) st.scheduled.push_back(*kind);
    return make_reply(200, "{}", "application/json");
  }
  return error_reply(404, "NotFound", "no such admin endpoint", path);
}

awaitable<bool> send(s3::any_stream* stream, beast::tcp_stream* tcp, asio::const_buffer buf) {
  tcp->expires_after(std::chrono::seconds(60));
  auto [ec, n] = co_await asio::async_write(*stream, buf, use_tuple);
  co_return !ec;
}

void abort_connection(beast::tcp_stream* tcp) {
  // SO_LINGER 0: close() sends RST, as a crashed peer or a middlebox would.
  linger l{1, 0};
  ::setsockopt(tcp->socket().native_handle(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
  beast::error_code ignored;
  tcp->socket().close(ignored);
}

// Whether bodies go through the link model (per-connection or total bandwidth).
bool shaped(const server_options& o) { return o.conn_bandwidth > 0 || o.total_bandwidth > 0; }

// Body bytes sent at once: 1 MiB, or 128 KiB behind the link model (the pacing's step).
std::size_t send_size(const server_options& o) { return shaped(o) ? 128 * 1024 : 1 << 20; }

// Serves the body bytes [first, last] of an object, paced by the link model, with a mid-body
// fault if one was picked. Returns false when the connection must be closed.
awaitable<bool> send_object(server::state* st, s3::any_stream* stream, beast::tcp_stream* tcp,
                            const stored_object* obj, std::uint64_t first, std::uint64_t last,
                            fault_kind fault, std::vector<char>* buffer, clock::time_point* conn_next) {
  std::uint64_t length = last + 1 - first;
  std::uint64_t fault_at = fault == fault_kind::none ? length : length / 2;
  const std::size_t chunk = buffer->size();  // (send_size)
  int fd = -1;
  if (obj->source == stored_object::kind::file) {
    fd = ::open(obj->path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) co_return false;
  }
  struct closer {
    int fd;
    ~closer() {
      if (fd >= 0) ::close(fd);
    }
  } close_fd{fd};
  std::uint64_t sent = 0;
  bool flip_next = false;  // a corrupt fault: flip the next byte sent
  while (sent < length) {
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(chunk, length - sent));
    if (sent < fault_at) n = static_cast<std::size_t>(std::min<std::uint64_t>(n, fault_at - sent));
    if (sent == fault_at) {
      st->counters.faults[static_cast<int>(fault)].fetch_add(1);
      if (fault == fault_kind::reset) {
        abort_connection(tcp);
        co_return false;
      }
      if (fault == fault_kind::truncate) {
        beast::error_code ignored;
        tcp->socket().shutdown(tcp::socket::shutdown_send, ignored);
        tcp->socket().close(ignored);
        co_return false;
      }
      if (fault == fault_kind::corrupt) {
        flip_next = true;
        fault = fault_kind::none;
        fault_at = length;
        continue;
      }
      if (fault == fault_kind::stall) {
        std::chrono::nanoseconds stall;
        {
          std::lock_guard lock(st->fault_mu);
          stall = st->stall_time;
        }
        asio::steady_timer t(tcp->get_executor(), stall);
        co_await t.async_wait(use_tuple);
        fault = fault_kind::none;
        fault_at = length;
        continue;
      }
    }
    std::uint64_t pos = first + sent;
    std::span<char> out(buffer->data(), n);
    switch (obj->source) {
      case stored_object::kind::synthetic:
        synthetic::fill(obj->seed, pos, out);
        break;
      case stored_object::kind::memory:
        std::memcpy(out.data(), obj->data->data() + pos, n);
        break;
      case stored_object::kind::file: {
        ssize_t r = ::pread(fd, out.data(), n, static_cast<off_t>(pos));
        if (r != static_cast<ssize_t>(n)) co_return false;
        break;
      }
    }
    if (flip_next && n > 0) {
      out[0] = static_cast<char>(out[0] ^ 0xff);
      flip_next = false;
    }
    if (shaped(st->opts)) {
      auto now = clock::now();
      auto done = now;
      if (st->opts.conn_bandwidth > 0) {
        *conn_next = std::max(now - pacing_slack, *conn_next) +
                     std::chrono::nanoseconds(static_cast<std::int64_t>(n / st->opts.conn_bandwidth * 1e9));
        done = *conn_next;
      }
      done = std::max(done, st->total.reserve(n));
      if (done > now) {
        asio::steady_timer t(tcp->get_executor(), done);
        co_await t.async_wait(use_tuple);
      }
    }
    if (!co_await send(stream, tcp, asio::buffer(out.data(), n))) co_return false;
    st->counters.bytes_sent.fetch_add(n, std::memory_order_relaxed);
    sent += n;
  }
  co_return true;
}

// A connection's buffer for the body bytes it sends, taken from its reactor's spares at the
// first body and given back when the connection ends. A new 1 MiB buffer per connection was
// fresh memory to clear, which this project's VM makes slow: a mount's first 192 GETs (a client
// filling its pool) took 579 ms at the median, 259 ms with this and the accepts in one turn.
class body_buffer {
 public:
  ~body_buffer() {
    if (!bytes_.empty()) spares().push_back(std::move(bytes_));
  }
  // `size`: the most a send takes at once (the same for every connection of a server).
  std::vector<char>* get(std::size_t size) {
    if (bytes_.empty()) {
      if (auto& free = spares(); !free.empty()) {
        bytes_ = std::move(free.back());
        free.pop_back();
      }
      bytes_.resize(size);
    }
    return &bytes_;
  }

 private:
  static std::vector<std::vector<char>>& spares() {
    thread_local std::vector<std::vector<char>> free;  // (a connection stays on its reactor)
    return free;
  }
  std::vector<char> bytes_;
};

// One connection's requests, in turn, over `stream` (plain or TLS); `tcp` is its lowest layer,
// for timeouts and faults.
awaitable<void> serve(std::shared_ptr<server::state> st, s3::any_stream* stream, beast::tcp_stream* tcp) {
  beast::flat_buffer buffer;
  buffer.reserve(64 * 1024);
  body_buffer body;
  clock::time_point conn_next{};
  for (;;) {
    tcp->expires_after(st->opts.keepalive_timeout);
    http::request_parser<http::string_body> parser;
    parser.body_limit(std::uint64_t{4} << 30);
    parser.header_limit(64 * 1024);
    auto [hec, hn] = co_await http::async_read_header(*stream, buffer, parser, use_tuple);
    if (hec) co_return;
    if (beast::iequals(parser.get()[http::field::expect], "100-continue")) {
      http::response<http::empty_body> cont{http::status::continue_, 11};
      auto [cec, cn] = co_await http::async_write(*stream, cont, use_tuple);
      if (cec) co_return;
    }
    tcp->expires_after(std::chrono::seconds(120));
    auto [rec, rn] = co_await http::async_read(*stream, buffer, parser, use_tuple);
    if (rec) co_return;
    request_t req = parser.release();
    bool keep_alive = req.keep_alive();
    log::get("s3sim")->debug("request {} {} range={}", std::string(req.method_string()), std::string(req.target()),
                             std::string(req[http::field::range]));
    auto t = parse_target(req.target(), req[http::field::host], st->objects);

    std::optional<reply> answer;
    const bool is_admin = t.raw_path.rfind("/_sim/", 0) == 0;
    if (!t.ok) {
      answer = error_reply(400, "InvalidURI", "Couldn't parse the specified URI.", t.raw_path);
    } else if (is_admin) {
      answer = admin(*st, req, t);
    } else {
      answer = st->auth.check(req, t);
      if (answer) st->counters.auth_failures.fetch_add(1);
    }

    const stored_object* object = nullptr;
    std::optional<stored_object> found;
    std::uint64_t first = 0, last = 0;
    bool partial = false;
    fault_kind fault = fault_kind::none;

    if (!answer) {
      const auto verb = req.method();
      const bool get_or_head = verb == http::verb::get || verb == http::verb::head;
      if (t.bucket.empty()) {
        st->counters.other.fetch_add(1);
        answer = error_reply(501, "NotImplemented", "ListBuckets is not implemented", t.raw_path);
      } else if (verb == http::verb::put && t.key.empty()) {
        st->counters.other.fetch_add(1);
        st->objects.create_bucket(t.bucket);
        answer = make_reply(200, "", "");
      } else if (verb == http::verb::put) {
        st->counters.put.fetch_add(1);
        fault = st->pick_fault(false);
        // If-None-Match: * (S3's conditional write): 412 when the key exists.
        const bool if_none_match = req[http::field::if_none_match] == "*";
        if (!st->objects.has_bucket(t.bucket)) {
          answer = error_reply(404, "NoSuchBucket", "The specified bucket does not exist", t.raw_path);
        } else if (fault == fault_kind::slowdown || fault == fault_kind::error500) {
          st->counters.faults[static_cast<int>(fault)].fetch_add(1);
          answer = fault == fault_kind::slowdown
                       ? error_reply(503, "SlowDown", "Please reduce your request rate.", t.raw_path)
                       : error_reply(500, "InternalError", "We encountered an internal error.", t.raw_path);
        } else {
          std::optional<std::string> etag = if_none_match
                                                ? st->objects.put_if_absent(t.bucket, t.key, std::move(req.body()))
                                                : st->objects.put(t.bucket, t.key, std::move(req.body()));
          if (etag) {
            answer = make_reply(200, "", "");
            answer->msg.set(http::field::etag, *etag);
          } else {
            st->counters.precondition_failures.fetch_add(1);
            st->counters.put_conflicts.fetch_add(1);
            answer = error_reply(412, "PreconditionFailed",
                                 "At least one of the pre-conditions you specified did not hold", t.raw_path);
          }
        }
        fault = fault_kind::none;  // (a PUT's answer is text: no body faults)
      } else if (verb == http::verb::get && t.key.empty() && has_query(t, "session")) {
        // S3 Express CreateSession (authenticated above with long-term credentials).
        st->counters.create_session.fetch_add(1);
        answer = st->objects.has_bucket(t.bucket)
                     ? st->auth.create_session(t.bucket)
                     : error_reply(404, "NoSuchBucket", "The specified bucket does not exist",
                                   t.raw_path);
      } else if (!get_or_head) {
        st->counters.other.fetch_add(1);
        answer = error_reply(405, "MethodNotAllowed", "The specified method is not allowed", t.raw_path);
      } else if (t.key.empty()) {
        // Bucket-level GET (ListObjectsV2) or HEAD.
        (verb == http::verb::get ? st->counters.list : st->counters.head).fetch_add(1);
        fault = st->pick_fault(false);
        if (!st->objects.has_bucket(t.bucket)) {
          answer = error_reply(404, "NoSuchBucket", "The specified bucket does not exist", t.raw_path);
        } else if (fault == fault_kind::slowdown || fault == fault_kind::error500) {
          st->counters.faults[static_cast<int>(fault)].fetch_add(1);
          answer = fault == fault_kind::slowdown
                       ? error_reply(503, "SlowDown", "Please reduce your request rate.", t.raw_path)
                       : error_reply(500, "InternalError", "We encountered an internal error.", t.raw_path);
        } else if (verb == http::verb::head) {
          answer = make_reply(200, "", "");
        } else {
          s3::list_request lr;
          lr.prefix = query_value(t, "prefix");
          lr.delimiter = query_value(t, "delimiter");
          const bool v1 = query_value(t, "list-type") != "2";
          if (v1) {
            lr.start_after = query_value(t, "marker");
          } else {
            lr.continuation_token = query_value(t, "continuation-token");
            lr.start_after = query_value(t, "start-after");
          }
          bool has_max = false;
          std::string mk = query_value(t, "max-keys", &has_max);
          lr.max_keys = has_max ? static_cast<unsigned>(std::strtoul(mk.c_str(), nullptr, 10)) : 1000;
          auto page = st->objects.list(t.bucket, lr);
          answer = make_reply(200, list_xml(t.bucket, lr, *page, query_value(t, "encoding-type") == "url", v1),
                              "application/xml");
        }
      } else {
        (verb == http::verb::get ? st->counters.get : st->counters.head).fetch_add(1);
        fault = st->pick_fault(verb == http::verb::get);
        found = st->objects.find(t.bucket, t.key);
        std::string if_match(req[http::field::if_match]);
        if (!found) {
          answer = st->objects.has_bucket(t.bucket)
                       ? error_reply(404, "NoSuchKey", "The specified key does not exist.", t.raw_path)
                       : error_reply(404, "NoSuchBucket", "The specified bucket does not exist", t.raw_path);
          if (verb == http::verb::head) answer->msg.body().clear();
        } else if (!if_match.empty() && if_match != "*" && if_match != found->info.etag &&
                   "\"" + if_match + "\"" != found->info.etag) {
          st->counters.precondition_failures.fetch_add(1);
          answer = error_reply(412, "PreconditionFailed",
                               "At least one of the pre-conditions you specified did not hold", t.raw_path);
        } else if (fault == fault_kind::slowdown || fault == fault_kind::error500) {
          st->counters.faults[static_cast<int>(fault)].fetch_add(1);
          answer = fault == fault_kind::slowdown
                       ? error_reply(503, "SlowDown", "Please reduce your request rate.", t.raw_path)
                       : error_reply(500, "InternalError", "We encountered an internal error.", t.raw_path);
        } else {
          object = &*found;
          std::uint64_t size = object->info.size;
          bool unsatisfiable = false;
          auto range = verb == http::verb::get ? parse_range(req[http::field::range], size, &unsatisfiable)
                                               : std::nullopt;
          if (unsatisfiable) {
            answer = error_reply(416, "InvalidRange", "The requested range is not satisfiable", t.raw_path);
            object = nullptr;
          } else if (range) {
            partial = true;
            first = range->first;
            last = range->second;
          } else {
            first = 0;
            last = size == 0 ? 0 : size - 1;
          }
        }
      }
    }

    if (st->opts.first_byte_latency.count() > 0 && !is_admin) {
      asio::steady_timer timer(tcp->get_executor(), st->opts.first_byte_latency);
      co_await timer.async_wait(use_tuple);
    }

    if (object) {
      std::uint64_t length = object->info.size == 0 ? 0 : last + 1 - first;
      http::response<http::empty_body> head{partial ? http::status::partial_content : http::status::ok, 11};
      head.set(http::field::server, "valkyrie-s3sim");
      head.set(http::field::etag, object->info.etag);
      head.set(http::field::last_modified, s3::format_http_date(object->info.last_modified));
      head.set(http::field::accept_ranges, "bytes");
      head.set(http::field::content_type, "application/octet-stream");
      head.content_length(req.method() == http::verb::head ? object->info.size : length);
      if (partial)
        head.set(http::field::content_range, "bytes " + std::to_string(first) + "-" +
                                                 std::to_string(last) + "/" +
                                                 std::to_string(object->info.size));
      head.keep_alive(keep_alive);
      http::response_serializer<http::empty_body> sr(head);
      tcp->expires_after(std::chrono::seconds(60));
      auto [wec, wn] = co_await http::async_write_header(*stream, sr, use_tuple);
      if (wec) co_return;
      if (req.method() == http::verb::get && length > 0) {
        if (!co_await send_object(st.get(), stream, tcp, object, first, last, fault, body.get(send_size(st->opts)), &conn_next))
          co_return;
      }
    } else {
      answer->msg.keep_alive(keep_alive);
      if (req.method() == http::verb::head) {
        // A HEAD answer carries the length of the body it would have had, but no body.
        auto len = answer->msg.body().size();
        answer->msg.body().clear();
        answer->msg.content_length(len);
        http::response_serializer<http::string_body> sr(answer->msg);
        sr.split(true);
        auto [wec, wn] = co_await http::async_write_header(*stream, sr, use_tuple);
        if (wec) co_return;
      } else {
        tcp->expires_after(std::chrono::seconds(60));
        auto [wec, wn] = co_await http::async_write(*stream, answer->msg, use_tuple);
        if (wec) co_return;
      }
    }
    if (!keep_alive) {
      beast::error_code ignored;
      tcp->socket().shutdown(tcp::socket::shutdown_send, ignored);
      co_return;
    }
  }
}

awaitable<void> session(std::shared_ptr<server::state> st, tcp::socket socket) {
  st->counters.connections.fetch_add(1);
  beast::error_code ignored;
  socket.set_option(tcp::no_delay(true), ignored);
  if (st->opts.tls) {
    beast::ssl_stream<beast::tcp_stream> stream(std::move(socket), *st->opts.tls);
    auto& tcp_layer = beast::get_lowest_layer(stream);
    tcp_layer.expires_after(std::chrono::seconds(10));
    auto [hec] = co_await stream.async_handshake(asio::ssl::stream_base::server, use_tuple);
    if (hec) co_return;
    s3::any_stream any(stream);
    co_await serve(st, &any, &tcp_layer);
    tcp_layer.expires_after(std::chrono::seconds(2));
    co_await stream.async_shutdown(use_tuple);
  } else {
    beast::tcp_stream stream(std::move(socket));
    s3::any_stream any(stream);
    co_await serve(st, &any, &stream);
  }
}

awaitable<void> accept_loop(std::shared_ptr<server::state> st, std::shared_ptr<tcp::acceptor> acceptor,
                            reactor_pool* pool) {
  unsigned next = 0;
  for (;;) {
    unsigned target = next++ % pool->size();
    auto [ec, socket] = co_await acceptor->async_accept(pool->context(target), use_tuple);
    if (ec) {
      if (ec == asio::error::operation_aborted) co_return;
      log::get("s3sim")->warn("accept failed: {}", ec.message());
      asio::steady_timer t(acceptor->get_executor(), std::chrono::milliseconds(10));
      co_await t.async_wait(use_tuple);
      continue;
    }
    asio::co_spawn(pool->executor(target), session(st, std::move(socket)), asio::detached);
    // The connections already waiting are taken in the same turn, not one per turn of a
    // reactor busy serving bodies (a client filling its pool opens hundreds at once; S3 takes
    // connections in parallel).
    for (;;) {
      target = next++ % pool->size();
      tcp::socket more(pool->context(target));
      beast::error_code aec;
      acceptor->accept(more, aec);  // (non-blocking acceptor: would_block when none is waiting)
      if (aec) {
        --next;
        break;
      }
      asio::co_spawn(pool->executor(target), session(st, std::move(more)), asio::detached);
    }
  }
}
}  // namespace

server::server(reactor_pool& pool, store& objects, server_options opts)
    : pool_(pool), state_(std::make_shared<state>(std::move(opts), objects, counters_)) {}

tcp::endpoint server::listen(const std::string& host, const std::string& port) {
  auto& ctx = pool_.context(0);
  tcp::resolver resolver(ctx);
  auto results = resolver.resolve(host, port);
  auto acceptor = std::make_shared<tcp::acceptor>(ctx);
  auto ep = results.begin()->endpoint();
  acceptor->open(ep.protocol());
  acceptor->set_option(tcp::acceptor::reuse_address(true));
  acceptor->bind(ep);
  acceptor->listen(asio::socket_base::max_listen_connections);
  acceptor->non_blocking(true);
  auto bound = acceptor->local_endpoint();
  asio::co_spawn(ctx, accept_loop(state_, acceptor, &pool_), asio::detached);
  return bound;
}

}  // namespace valkyrie::sim
