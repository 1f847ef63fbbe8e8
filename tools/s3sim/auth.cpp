#include "auth.hpp"

#include "s3/endpoint.hpp"
#include "s3/time_format.hpp"

namespace valkyrie::sim {
namespace http = boost::beast::http;

authenticator::authenticator(std::string region, std::optional<s3::credentials> credentials,
                             std::chrono::nanoseconds session_lifetime,
                             std::atomic<std::uint64_t>* expired)
    : region_(std::move(region)),
      enabled_(credentials.has_value()),
      session_lifetime_(session_lifetime),
      expired_(expired) {
  if (credentials) accepted_.push_back(std::move(*credentials));
}

void authenticator::accept(s3::credentials c) {
  std::lock_guard lock(mu_);
  accepted_.push_back(std::move(c));
}

std::optional<s3::credentials> authenticator::long_term(const std::string& access_key_id) const {
  std::lock_guard lock(mu_);
  for (auto& c : accepted_)
    if (c.access_key_id == access_key_id) return c;
  return std::nullopt;
}

// Date, payload hash and signature of a request whose key id and secret are known.
std::optional<reply> authenticator::verify(const request_t& req, const parsed_target& t,
                                           const s3::parsed_authorization& auth,
                                           const std::string& secret) const {
  std::string date(req["x-amz-date"]);
  auto when = s3::parse_iso8601(
      date.size() == 16 ? date.substr(0, 4) + "-" + date.substr(4, 2) + "-" + date.substr(6, 5) +
                              ":" + date.substr(11, 2) + ":" + date.substr(13, 3)
                        : std::string());
  if (!when || date.substr(0, 8) != auth.date ||
      std::chrono::abs(std::chrono::system_clock::now() - *when) > std::chrono::minutes(15))
    return error_reply(403, "RequestTimeTooSkewed",
                       "The difference between the request time and the current time is too large.",
                       t.raw_path);
  s3::request_to_sign sig;
  sig.method = std::string(req.method_string());
  sig.canonical_uri = t.raw_path;
  sig.query = t.query;
  for (auto& name : auth.signed_headers) {
    auto it = req.find(name);
    if (it == req.end())
      return error_reply(403, "SignatureDoesNotMatch", "A signed header is missing", t.raw_path);
    sig.headers.emplace_back(name, std::string(it->value()));
  }
  sig.payload_hash = std::string(req["x-amz-content-sha256"]);
  if (sig.payload_hash.empty())
    return error_reply(400, "InvalidRequest", "Missing x-amz-content-sha256", t.raw_path);
  if (sig.payload_hash != s3::unsigned_payload && sig.payload_hash != s3::sha256_hex(req.body()))
    return error_reply(
        400, "XAmzContentSHA256Mismatch",
        "The provided 'x-amz-content-sha256' header does not match what was computed.", t.raw_path);
  std::string sts = s3::string_to_sign(s3::canonical_request(sig), date, auth.region, auth.service);
  std::string expected = s3::signature(secret, sts, date, auth.region, auth.service);
  if (!s3::equal_constant_time(expected, auth.signature))
    return error_reply(
        403, "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided.",
        t.raw_path);
  return std::nullopt;
}

std::optional<reply> authenticator::check_session(const request_t& req, const parsed_target& t,
                                                  const s3::parsed_authorization& auth) const {
  std::string token(req["x-amz-s3session-token"]);
  if (token.empty())
    return error_reply(
        403, "AccessDenied",
        req.find("x-amz-security-token") != req.end()
            ? "Directory buckets take x-amz-s3session-token, not x-amz-security-token"
            : "x-amz-s3session-token is missing: use CreateSession",
        t.raw_path);
  std::optional<session> s;
  {
    std::lock_guard lock(mu_);
    if (auto it = sessions_.find(token); it != sessions_.end()) s = it->second;
  }
  if (!s || s->bucket != t.bucket)
    return error_reply(403, "AccessDenied", "The session token is not valid for this bucket",
                       t.raw_path);
  if (std::chrono::system_clock::now() >= s->expiration) {
    expired_->fetch_add(1);
    return error_reply(403, "ExpiredToken", "The provided token has expired.", t.raw_path);
  }
  if (auth.service != "s3express")
    return error_reply(403, "SignatureDoesNotMatch",
                       "Credential should be scoped to correct service: 's3express'", t.raw_path);
  if (auth.access_key_id != s->access_key_id)
    return error_reply(403, "InvalidAccessKeyId", "The access key id is not the session's",
                       t.raw_path);
  bool token_signed = false;
  for (auto& h : auth.signed_headers) token_signed = token_signed || h == "x-amz-s3session-token";
  if (!token_signed)
    return error_reply(403, "AccessDenied", "x-amz-s3session-token must be signed", t.raw_path);
  return verify(req, t, auth, s->secret);
}

std::optional<reply> authenticator::check(const request_t& req, const parsed_target& t) const {
  if (!enabled_) return std::nullopt;
  auto header = req[http::field::authorization];
  if (header.empty())
    return error_reply(403, "AccessDenied", "Anonymous access is forbidden", t.raw_path);
  auto auth = s3::parse_authorization(header);
  if (!auth)
    return error_reply(400, "AuthorizationHeaderMalformed", "The authorization header is malformed",
                       t.raw_path);
  if (auth->region != region_)
    return error_reply(400, "AuthorizationHeaderMalformed",
                       "the region '" + auth->region + "' is wrong; expecting '" + region_ + "'",
                       t.raw_path, region_);
  const bool directory = s3::is_directory_bucket(t.bucket);
  if (directory && auth->service != "s3express")
    return error_reply(403, "SignatureDoesNotMatch",
                       "Credential should be scoped to correct service: 's3express'", t.raw_path);
  bool session_query = false;
  query_value(t, "session", &session_query);
  const bool bucket_level = t.key.empty();
  const bool iam_request = (req.method() == http::verb::get && bucket_level && session_query) ||
                           (req.method() == http::verb::head && bucket_level);
  // Sessions are required on directory buckets and accepted on the others (--express-session on).
  if (!iam_request && (directory || req.find("x-amz-s3session-token") != req.end()))
    return check_session(req, t, *auth);

  auto known = long_term(auth->access_key_id);
  if (!known)
    return error_reply(403, "InvalidAccessKeyId",
                       "The AWS Access Key Id you provided does not exist in our records.",
                       t.raw_path);
  const s3::credentials& creds = *known;
  if (!creds.session_token.empty() && req["x-amz-security-token"] != creds.session_token)
    return error_reply(403, "InvalidToken", "The provided token is malformed or otherwise invalid.",
                       t.raw_path);
  if (creds.expiration && std::chrono::system_clock::now() >= *creds.expiration)
    return error_reply(400, "ExpiredToken", "The provided token has expired.", t.raw_path);
  return verify(req, t, *auth, creds.secret_access_key);
}

std::string authenticator::random_text(std::size_t n, const char* alphabet) {
  std::string out(n, ' ');
  std::size_t size = std::char_traits<char>::length(alphabet);
  for (auto& c : out) c = alphabet[std::uniform_int_distribution<std::size_t>(0, size - 1)(rng_)];
  return out;
}

reply authenticator::create_session(const std::string& bucket) {
  static constexpr const char* upper = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  static constexpr const char* any =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  session s;
  s.bucket = bucket;
  s.expiration = std::chrono::system_clock::now() +
                 std::chrono::duration_cast<std::chrono::system_clock::duration>(session_lifetime_);
  std::string token;
  {
    std::lock_guard lock(mu_);
    s.access_key_id = "ASIASIM" + random_text(13, upper);
    s.secret = random_text(40, any);
    token = random_text(96, any);
    // Sessions expired for over a minute are forgotten (later uses get AccessDenied).
    auto now = std::chrono::system_clock::now();
    std::erase_if(sessions_,
                  [now](auto& kv) { return kv.second.expiration + std::chrono::minutes(1) < now; });
    sessions_[token] = s;
  }
  std::string xml =
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<CreateSessionResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Credentials>"
      "<SessionToken>" +
      token +
      "</SessionToken>"
      "<SecretAccessKey>" +
      s.secret +
      "</SecretAccessKey>"
      "<AccessKeyId>" +
      s.access_key_id +
      "</AccessKeyId>"
      "<Expiration>" +
      s3::format_iso8601(s.expiration) +
      "</Expiration>"
      "</Credentials></CreateSessionResult>";
  return make_reply(200, std::move(xml), "application/xml");
}

}  // namespace valkyrie::sim
