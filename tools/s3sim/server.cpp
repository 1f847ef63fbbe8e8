#include "server.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <pugixml.hpp>

#include "../common/synthetic.hpp"
#include "core/log.hpp"
#include "core/units.hpp"
#include "s3/time_format.hpp"
#include "s3/uri.hpp"

namespace valkyrie::sim {
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using clock = std::chrono::steady_clock;

std::optional<fault_kind> parse_fault_kind(std::string_view name) {
  for (int i = 1; i < fault_kinds; ++i)
    if (name == fault_names[i]) return static_cast<fault_kind>(i);
  return std::nullopt;
}

void server_counters::reset() {
  for (auto* c : {&get, &head, &list, &put, &other, &admin, &auth_failures, &precondition_failures,
                  &bytes_sent, &connections})
    c->store(0);
  for (auto& f : faults) f.store(0);
}

std::string server_counters::to_json() const {
  std::string s = "{\"requests\":{";
  s += "\"get\":" + std::to_string(get.load()) + ",\"head\":" + std::to_string(head.load()) +
       ",\"list\":" + std::to_string(list.load()) + ",\"put\":" + std::to_string(put.load()) +
       ",\"other\":" + std::to_string(other.load()) + ",\"admin\":" + std::to_string(admin.load()) + "}";
  s += ",\"faults\":{";
  for (int i = 1; i < fault_kinds; ++i) {
    if (i > 1) s += ",";
    s += "\"" + std::string(fault_names[i]) + "\":" + std::to_string(faults[i].load());
  }
  s += "},\"auth_failures\":" + std::to_string(auth_failures.load()) +
       ",\"precondition_failures\":" + std::to_string(precondition_failures.load()) +
       ",\"bytes_sent\":" + std::to_string(bytes_sent.load()) +
       ",\"connections\":" + std::to_string(connections.load()) + "}";
  return s;
}

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
  // Credentials the server accepts: --credentials, plus any added through the admin API. Like
  // STS, a rotation leaves the older sets valid until their own expiration.
  mutable std::mutex credentials_mu;
  std::vector<s3::credentials> accepted;

  state(server_options o, store& s, server_counters& c)
      : opts(std::move(o)), objects(s), counters(c), total(opts.total_bandwidth),
        rng(opts.fault_seed), stall_time(opts.stall_time) {
    std::copy(std::begin(opts.fault_probability), std::end(opts.fault_probability), probability);
    if (opts.credentials) accepted.push_back(*opts.credentials);
  }

  std::optional<s3::credentials> credentials_for(const std::string& access_key_id) const {
    std::lock_guard lock(credentials_mu);
    for (auto& c : accepted)
      if (c.access_key_id == access_key_id) return c;
    return std::nullopt;
  }

  // Faults apply to object GETs; throttling and 500s also to HEAD and LIST.
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
using request_t = http::request<http::string_body>;

struct parsed_target {
  std::string bucket, key;
  std::vector<std::pair<std::string, std::string>> query;  // decoded
  std::string raw_path;
  bool ok = true;
};

std::string query_value(const parsed_target& t, const std::string& name, bool* present = nullptr) {
  for (auto& [k, v] : t.query)
    if (k == name) {
      if (present) *present = true;
      return v;
    }
  if (present) *present = false;
  return {};
}

parsed_target parse_target(std::string_view target, std::string_view host, const store& objects) {
  parsed_target t;
  auto q = target.find('?');
  t.raw_path = std::string(target.substr(0, q));
  if (q != std::string_view::npos) {
    std::string_view rest = target.substr(q + 1);
    while (!rest.empty()) {
      auto amp = rest.find('&');
      std::string_view part = rest.substr(0, amp);
      rest = amp == std::string_view::npos ? std::string_view{} : rest.substr(amp + 1);
      if (part.empty()) continue;
      auto eq = part.find('=');
      std::string k, v;
      if (!s3::uri_decode(part.substr(0, eq), k)) t.ok = false;
      if (eq != std::string_view::npos && !s3::uri_decode(part.substr(eq + 1), v)) t.ok = false;
      t.query.emplace_back(std::move(k), std::move(v));
    }
  }
  std::string path;
  if (!s3::uri_decode(t.raw_path, path)) t.ok = false;
  // Virtual-hosted style: the first label of Host names an existing bucket.
  std::string h(host.substr(0, host.find(':')));
  auto dot = h.find('.');
  if (dot != std::string::npos && objects.has_bucket(h.substr(0, dot))) {
    t.bucket = h.substr(0, dot);
    t.key = path.size() > 1 ? path.substr(1) : "";
    return t;
  }
  if (path.size() > 1) {
    auto slash = path.find('/', 1);
    t.bucket = path.substr(1, slash == std::string::npos ? std::string::npos : slash - 1);
    if (slash != std::string::npos) t.key = path.substr(slash + 1);
  }
  return t;
}

struct reply {
  http::response<http::string_body> msg;
};

reply make_reply(unsigned status, std::string body, std::string content_type) {
  reply r;
  r.msg.result(status);
  r.msg.version(11);
  r.msg.set(http::field::server, "valkyrie-s3sim");
  if (!content_type.empty()) r.msg.set(http::field::content_type, content_type);
  r.msg.body() = std::move(body);
  r.msg.prepare_payload();
  return r;
}

reply error_reply(unsigned status, const std::string& code, const std::string& message,
                  const std::string& resource, const std::string& region = {}) {
  pugi::xml_document doc;
  auto decl = doc.append_child(pugi::node_declaration);
  decl.append_attribute("version") = "1.0";
  decl.append_attribute("encoding") = "UTF-8";
  auto e = doc.append_child("Error");
  e.append_child("Code").text() = code.c_str();
  e.append_child("Message").text() = message.c_str();
  e.append_child("Resource").text() = resource.c_str();
  if (!region.empty()) e.append_child("Region").text() = region.c_str();
  e.append_child("RequestId").text() = "valkyrie-s3sim";
  std::ostringstream out;
  doc.save(out, "", pugi::format_raw);
  return make_reply(status, out.str(), "application/xml");
}

// Returns an error reply when the request's SigV4 signature does not verify.
std::optional<reply> check_signature(const server::state& st, const request_t& req,
                                     const parsed_target& t) {
  auto auth = req[http::field::authorization];
  if (auth.empty())
    return error_reply(403, "AccessDenied", "Anonymous access is forbidden", t.raw_path);
  auto parsed = s3::parse_authorization(auth);
  if (!parsed)
    return error_reply(400, "AuthorizationHeaderMalformed", "The authorization header is malformed",
                       t.raw_path);
  auto known = st.credentials_for(parsed->access_key_id);
  if (!known)
    return error_reply(403, "InvalidAccessKeyId",
                       "The AWS Access Key Id you provided does not exist in our records.", t.raw_path);
  const s3::credentials& creds = *known;
  if (parsed->region != st.opts.region)
    return error_reply(400, "AuthorizationHeaderMalformed",
                       "the region '" + parsed->region + "' is wrong; expecting '" + st.opts.region + "'",
                       t.raw_path, st.opts.region);
  if (!creds.session_token.empty() && req["x-amz-security-token"] != creds.session_token)
    return error_reply(403, "InvalidToken", "The provided token is malformed or otherwise invalid.",
                       t.raw_path);
  if (creds.expiration && std::chrono::system_clock::now() >= *creds.expiration)
    return error_reply(400, "ExpiredToken", "The provided token has expired.", t.raw_path);
  std::string date(req["x-amz-date"]);
  auto when = s3::parse_iso8601(date.size() == 16 ? date.substr(0, 4) + "-" + date.substr(4, 2) + "-" +
                                                        date.substr(6, 5) + ":" + date.substr(11, 2) +
                                                        ":" + date.substr(13, 3)
                                                  : std::string());
  if (!when || date.substr(0, 8) != parsed->date ||
      std::chrono::abs(std::chrono::system_clock::now() - *when) > std::chrono::minutes(15))
    return error_reply(403, "RequestTimeTooSkewed",
                       "The difference between the request time and the current time is too large.",
                       t.raw_path);
  s3::request_to_sign sig;
  sig.method = std::string(req.method_string());
  sig.canonical_uri = t.raw_path;
  sig.query = t.query;
  for (auto& name : parsed->signed_headers) {
    auto it = req.find(name);
    if (it == req.end())
      return error_reply(403, "SignatureDoesNotMatch", "A signed header is missing", t.raw_path);
    sig.headers.emplace_back(name, std::string(it->value()));
  }
  sig.payload_hash = std::string(req["x-amz-content-sha256"]);
  if (sig.payload_hash.empty())
    return error_reply(400, "InvalidRequest", "Missing x-amz-content-sha256", t.raw_path);
  if (sig.payload_hash != s3::unsigned_payload && sig.payload_hash != s3::sha256_hex(req.body()))
    return error_reply(400, "XAmzContentSHA256Mismatch",
                       "The provided 'x-amz-content-sha256' header does not match what was computed.",
                       t.raw_path);
  std::string sts = s3::string_to_sign(s3::canonical_request(sig), date, parsed->region, parsed->service);
  std::string expected = s3::signature(creds.secret_access_key, sts, date, parsed->region, parsed->service);
  if (!s3::equal_constant_time(expected, parsed->signature))
    return error_reply(403, "SignatureDoesNotMatch",
                       "The request signature we calculated does not match the signature you provided.",
                       t.raw_path);
  return std::nullopt;
}

// ListObjectsV2, or V1 (no list-type=2: Marker/NextMarker instead of continuation tokens; the
// marker is where the previous page ended, a key or a common prefix).
std::string list_xml(const std::string& bucket, const s3::list_request& lr, const s3::list_page& page,
                     bool url_encoding, bool v1 = false) {
  auto enc = [url_encoding](const std::string& s) {
    return url_encoding ? s3::uri_encode(s, true) : s;
  };
  pugi::xml_document doc;
  auto decl = doc.append_child(pugi::node_declaration);
  decl.append_attribute("version") = "1.0";
  decl.append_attribute("encoding") = "UTF-8";
  auto root = doc.append_child("ListBucketResult");
  root.append_attribute("xmlns") = "http://s3.amazonaws.com/doc/2006-03-01/";
  root.append_child("Name").text() = bucket.c_str();
  root.append_child("Prefix").text() = enc(lr.prefix).c_str();
  if (!lr.delimiter.empty()) root.append_child("Delimiter").text() = enc(lr.delimiter).c_str();
  root.append_child("MaxKeys").text() = lr.max_keys;
  if (url_encoding) root.append_child("EncodingType").text() = "url";
  if (v1) {
    root.append_child("Marker").text() = enc(lr.start_after).c_str();
    root.append_child("IsTruncated").text() = page.truncated ? "true" : "false";
    if (page.truncated) {
      std::string last = page.objects.empty() ? "" : page.objects.back().key;
      if (!page.common_prefixes.empty()) last = std::max(last, page.common_prefixes.back());
      root.append_child("NextMarker").text() = enc(last).c_str();
    }
  } else {
    root.append_child("KeyCount").text() =
        static_cast<unsigned>(page.objects.size() + page.common_prefixes.size());
    root.append_child("IsTruncated").text() = page.truncated ? "true" : "false";
    if (!lr.continuation_token.empty())
      root.append_child("ContinuationToken").text() = lr.continuation_token.c_str();
    if (page.truncated)
      root.append_child("NextContinuationToken").text() = page.next_continuation_token.c_str();
    if (!lr.start_after.empty()) root.append_child("StartAfter").text() = enc(lr.start_after).c_str();
  }
  for (auto& o : page.objects) {
    auto c = root.append_child("Contents");
    c.append_child("Key").text() = enc(o.key).c_str();
    c.append_child("LastModified").text() = s3::format_iso8601(o.last_modified).c_str();
    c.append_child("ETag").text() = o.etag.c_str();
    c.append_child("Size").text() = static_cast<unsigned long long>(o.size);
    c.append_child("StorageClass").text() = "STANDARD";
  }
  for (auto& p : page.common_prefixes)
    root.append_child("CommonPrefixes").append_child("Prefix").text() = enc(p).c_str();
  std::ostringstream out;
  doc.save(out, "", pugi::format_raw);
  return out.str();
}

// Parses a Range header against an object of `size` bytes. nullopt: serve the whole object.
// Sets *unsatisfiable for ranges that start past the end.
std::optional<std::pair<std::uint64_t, std::uint64_t>> parse_range(std::string_view h,
                                                                   std::uint64_t size,
                                                                   bool* unsatisfiable) {
  *unsatisfiable = false;
  if (h.substr(0, 6) != "bytes=") return std::nullopt;
  h.remove_prefix(6);
  if (h.find(',') != std::string_view::npos) return std::nullopt;  // S3 ignores multi-ranges
  auto dash = h.find('-');
  if (dash == std::string_view::npos) return std::nullopt;
  auto num = [](std::string_view s, std::uint64_t& v) {
    if (s.empty()) return false;
    v = 0;
    for (char c : s) {
      if (c < '0' || c > '9') return false;
      v = v * 10 + static_cast<std::uint64_t>(c - '0');
    }
    return true;
  };
  std::uint64_t a = 0, b = 0;
  bool has_a = num(h.substr(0, dash), a), has_b = num(h.substr(dash + 1), b);
  if (!has_a && !has_b) return std::nullopt;
  if (!has_a) {  // suffix: the last b bytes
    if (b == 0) {
      *unsatisfiable = true;
      return std::nullopt;
    }
    b = std::min(b, size);
    return std::make_pair(size - b, size - 1);
  }
  if (has_b && b < a) return std::nullopt;  // invalid: whole object, as S3 does
  if (a >= size) {
    *unsatisfiable = true;
    return std::nullopt;
  }
  if (!has_b || b >= size) b = size - 1;
  return std::make_pair(a, b);
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
    std::lock_guard lock(st.credentials_mu);
    st.accepted.push_back(c);
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

template <class Stream>
awaitable<bool> send(Stream* stream, beast::tcp_stream* tcp, asio::const_buffer buf) {
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

// Serves the body bytes [first, last] of an object, paced by the link model, with a mid-body
// fault if one was picked. Returns false when the connection must be closed.
template <class Stream>
awaitable<bool> send_object(server::state* st, Stream* stream, beast::tcp_stream* tcp,
                            const stored_object* obj, std::uint64_t first, std::uint64_t last,
                            fault_kind fault, std::vector<char>* buffer, clock::time_point* conn_next) {
  std::uint64_t length = last + 1 - first;
  std::uint64_t fault_at = fault == fault_kind::none ? length : length / 2;
  bool shaped = st->opts.conn_bandwidth > 0 || st->opts.total_bandwidth > 0;
  std::size_t chunk = shaped ? 128 * 1024 : buffer->size();
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
    if (shaped) {
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

template <class Stream>
awaitable<void> serve(std::shared_ptr<server::state> st, Stream* stream, beast::tcp_stream* tcp) {
  beast::flat_buffer buffer;
  buffer.reserve(64 * 1024);
  std::vector<char> body(1 << 20);
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
    } else if (st->opts.credentials) {
      answer = check_signature(*st, req, t);
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
        if (!st->objects.has_bucket(t.bucket)) {
          answer = error_reply(404, "NoSuchBucket", "The specified bucket does not exist", t.raw_path);
        } else {
          std::string etag = st->objects.put(t.bucket, t.key, std::move(req.body()));
          answer = make_reply(200, "", "");
          answer->msg.set(http::field::etag, etag);
        }
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
        if (!co_await send_object(st.get(), stream, tcp, object, first, last, fault, &body, &conn_next))
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
    co_await serve(st, &stream, &tcp_layer);
    tcp_layer.expires_after(std::chrono::seconds(2));
    co_await stream.async_shutdown(use_tuple);
  } else {
    beast::tcp_stream stream(std::move(socket));
    co_await serve(st, &stream, &stream);
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
  auto bound = acceptor->local_endpoint();
  asio::co_spawn(ctx, accept_loop(state_, acceptor, &pool_), asio::detached);
  return bound;
}

}  // namespace valkyrie::sim
