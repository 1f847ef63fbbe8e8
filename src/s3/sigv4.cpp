#include "s3/sigv4.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <cctype>
#include <ctime>

#include "s3/time_format.hpp"
#include "s3/uri.hpp"

namespace valkyrie::s3 {
namespace {
std::string hex(const unsigned char* p, std::size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string out(n * 2, '0');
  for (std::size_t i = 0; i < n; ++i) {
    out[2 * i] = digits[p[i] >> 4];
    out[2 * i + 1] = digits[p[i] & 15];
  }
  return out;
}

std::string hmac(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len);
  return std::string(reinterpret_cast<char*>(out), len);
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Trim both ends and collapse inner runs of spaces, as SigV4 requires of header values.
std::string trim_value(std::string_view v) {
  std::string out;
  bool space = false;
  for (char c : v) {
    if (c == ' ' || c == '\t') {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> sorted_headers(const request_to_sign& req) {
  std::vector<std::pair<std::string, std::string>> h;
  for (auto& [k, v] : req.headers) h.emplace_back(lower(k), trim_value(v));
  std::sort(h.begin(), h.end());
  return h;
}
}  // namespace

std::string sha256_hex(std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), out, &len, EVP_sha256(), nullptr);
  return hex(out, len);
}

std::string signed_headers(const request_to_sign& req) {
  std::string out;
  for (auto& [k, v] : sorted_headers(req)) {
    if (!out.empty()) out += ';';
    out += k;
  }
  return out;
}

std::string canonical_request(const request_to_sign& req) {
  std::string out = req.method + "\n" + (req.canonical_uri.empty() ? "/" : req.canonical_uri) + "\n";
  std::vector<std::pair<std::string, std::string>> q;
  for (auto& [k, v] : req.query) q.emplace_back(uri_encode(k, false), uri_encode(v, false));
  std::sort(q.begin(), q.end());
  for (std::size_t i = 0; i < q.size(); ++i) {
    if (i) out += '&';
    out += q[i].first + "=" + q[i].second;
  }
  out += '\n';
  auto h = sorted_headers(req);
  for (auto& [k, v] : h) out += k + ":" + v + "\n";
  out += '\n';
  out += signed_headers(req);
  out += '\n';
  out += req.payload_hash;
  return out;
}

std::string string_to_sign(std::string_view canonical, std::string_view date,
                           std::string_view region, std::string_view service) {
  std::string out = "AWS4-HMAC-SHA256\n";
  out += date;
  out += '\n';
  out += std::string(date.substr(0, 8)) + "/" + std::string(region) + "/" + std::string(service) +
         "/aws4_request\n";
  out += sha256_hex(canonical);
  return out;
}

namespace {
// The signing key depends only on the secret, the day, the region and the service, so each
// thread keeps the last one it derived: four HMACs (~5 us here, in the daemon and again in the
// simulator that checks it) once per day instead of per request. Both are wiped when replaced
// and at thread exit.
struct signing_key_cache {
  std::string secret, day, region, service, key;
  void wipe() {
    OPENSSL_cleanse(secret.data(), secret.size());
    OPENSSL_cleanse(key.data(), key.size());
  }
  ~signing_key_cache() { wipe(); }
};

const std::string& signing_key(std::string_view secret, std::string_view day,
                               std::string_view region, std::string_view service) {
  thread_local signing_key_cache cache;
  if (!cache.key.empty() && cache.secret == secret && cache.day == day && cache.region == region &&
      cache.service == service)
    return cache.key;
  cache.wipe();
  std::string k = hmac("AWS4" + std::string(secret), day);
  k = hmac(k, region);
  k = hmac(k, service);
  cache.key = hmac(k, "aws4_request");
  OPENSSL_cleanse(k.data(), k.size());
  cache.secret = secret;
  cache.day = day;
  cache.region = region;
  cache.service = service;
  return cache.key;
}
}  // namespace

std::string signature(std::string_view secret, std::string_view sts, std::string_view date,
                      std::string_view region, std::string_view service) {
  std::string sig = hmac(signing_key(secret, date.substr(0, 8), region, service), sts);
  return hex(reinterpret_cast<const unsigned char*>(sig.data()), sig.size());
}

std::string authorization(const request_to_sign& req, const credentials& creds,
                          std::string_view date, std::string_view region, std::string_view service) {
  std::string sts = string_to_sign(canonical_request(req), date, region, service);
  std::string out = "AWS4-HMAC-SHA256 Credential=" + creds.access_key_id + "/" +
                    std::string(date.substr(0, 8)) + "/" + std::string(region) + "/" +
                    std::string(service) + "/aws4_request, SignedHeaders=" + signed_headers(req) +
                    ", Signature=" + signature(creds.secret_access_key, sts, date, region, service);
  return out;
}

std::string amz_date(std::chrono::system_clock::time_point t) { return format_utc(t, "%Y%m%dT%H%M%SZ"); }

std::optional<parsed_authorization> parse_authorization(std::string_view h) {
  constexpr std::string_view algo = "AWS4-HMAC-SHA256 ";
  if (h.substr(0, algo.size()) != algo) return std::nullopt;
  h.remove_prefix(algo.size());
  parsed_authorization out;
  bool have_cred = false, have_headers = false, have_sig = false;
  while (!h.empty()) {
    while (!h.empty() && (h.front() == ' ' || h.front() == ',')) h.remove_prefix(1);
    auto end = h.find(',');
    std::string_view part = h.substr(0, end);
    h = end == std::string_view::npos ? std::string_view{} : h.substr(end);
    auto eq = part.find('=');
    if (eq == std::string_view::npos) return std::nullopt;
    auto name = part.substr(0, eq), value = part.substr(eq + 1);
    if (name == "Credential") {
      // AKID/DATE/REGION/SERVICE/aws4_request
      std::vector<std::string> f;
      std::size_t start = 0;
      for (std::size_t i = 0; i <= value.size(); ++i)
        if (i == value.size() || value[i] == '/') {
          f.emplace_back(value.substr(start, i - start));
          start = i + 1;
        }
      if (f.size() != 5 || f[4] != "aws4_request") return std::nullopt;
      out.access_key_id = f[0];
      out.date = f[1];
      out.region = f[2];
      out.service = f[3];
      have_cred = true;
    } else if (name == "SignedHeaders") {
      std::size_t start = 0;
      for (std::size_t i = 0; i <= value.size(); ++i)
        if (i == value.size() || value[i] == ';') {
          out.signed_headers.emplace_back(value.substr(start, i - start));
          start = i + 1;
        }
      have_headers = true;
    } else if (name == "Signature") {
      out.signature = value;
      have_sig = true;
    }
  }
  if (!have_cred || !have_headers || !have_sig) return std::nullopt;
  return out;
}

bool equal_constant_time(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}
}  // namespace valkyrie::s3
