// Fuzz target: what SigV4 and the request path make of odd object keys, query values, header
// values and endpoint URLs (src/s3/uri.*, sigv4.*, endpoint.*). Input lines: key, endpoint URL,
// bucket, then query "name=value" and header "name:value" lines. Invariants:
//  - uri_encode writes only unreserved characters, '%XX' escapes (upper-case hex) and, in paths,
//    '/'; uri_decode undoes it exactly;
//  - an object path is the base path, '/', then the encoded key;
//  - the canonical request has its fixed shape (method, path, query, one line per header, blank
//    line, signed headers, payload hash);
//  - the Authorization header parses back (parse_authorization, the simulator's verifier) to the
//    same key id, scope and signed headers, with a 64-hex-digit signature.
#include <algorithm>
#include <string>
#include <vector>

#include "fuzz.hpp"
#include "s3/endpoint.hpp"
#include "s3/sigv4.hpp"
#include "s3/uri.hpp"

namespace {
using namespace valkyrie::s3;

bool hex_upper(char c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}
bool unreserved(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

void check_encoding(std::string_view raw) {
  for (bool keep_slash : {true, false}) {
    std::string enc = uri_encode(raw, keep_slash);
    for (std::size_t i = 0; i < enc.size(); ++i) {
      char c = enc[i];
      if (c == '%') {
        FUZZ_CHECK(i + 2 < enc.size() && hex_upper(enc[i + 1]) && hex_upper(enc[i + 2]), enc);
        i += 2;
      } else {
        FUZZ_CHECK(unreserved(c) || (keep_slash && c == '/'), enc);
      }
    }
    std::string dec;
    FUZZ_CHECK(uri_decode(enc, dec) && dec == raw, enc);
  }
  std::string dec;
  if (uri_decode(raw, dec)) {
    std::string again;
    FUZZ_CHECK(uri_decode(uri_encode(dec, false), again) && again == dec, raw);
  }
}

std::size_t count_lines(const std::string& s) {
  return static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n'));
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  valkyrie::fuzz::fields in(data, size);
  std::string key(in.take()), url(in.take()), bucket(in.take());
  check_encoding(key);

  endpoint ep;
  ep.region = "us-east-1";
  ep.host = ep.host_header = "example.com";
  endpoint_options eo;
  eo.bucket = bucket.empty() ? "bucket" : bucket;
  eo.endpoint_url = url;
  eo.region = "eu-west-1";
  if (auto r = resolve_endpoint(eo)) {
    ep = *r;
    FUZZ_CHECK(!ep.host.empty() && !ep.port.empty(), url);
    FUZZ_CHECK(ep.host_header.find_first_of("\r\n ") == std::string::npos, ep.host_header);
  }
  std::string path = ep.object_path(key);
  FUZZ_CHECK(path == ep.base_path + "/" + uri_encode(key, true), path);

  request_to_sign req;
  req.method = "GET";
  req.canonical_uri = path;
  req.headers.emplace_back("host", ep.host_header);
  while (!in.empty()) {
    std::string line(in.take());
    if (auto colon = line.find(':'); colon != std::string::npos && colon > 0) {
      // Header names are tokens, and values never hold line breaks (Beast refuses them).
      std::string name = line.substr(0, colon), value = line.substr(colon + 1);
      if (name.find_first_of(" \t\r\n:;,") == std::string::npos &&
          value.find_first_of("\r\n") == std::string::npos)
        req.headers.emplace_back(name, value);
    } else {
      auto eq = line.find('=');
      req.query.emplace_back(line.substr(0, eq),
                             eq == std::string::npos ? "" : line.substr(eq + 1));
    }
  }
  std::string canonical = canonical_request(req);
  // method, path, query, one per header, blank, signed headers, then the hash (no newline).
  FUZZ_CHECK(count_lines(canonical) == 3 + req.headers.size() + 2, canonical);
  FUZZ_CHECK(canonical.substr(canonical.size() - req.payload_hash.size()) == req.payload_hash,
             canonical);

  credentials creds;
  creds.access_key_id = "AKIDEXAMPLE";
  creds.secret_access_key = std::string(key);
  std::string auth = authorization(req, creds, "20260101T000000Z", ep.region);
  auto parsed = parse_authorization(auth);
  FUZZ_CHECK(parsed.has_value(), auth);
  FUZZ_CHECK(parsed->access_key_id == creds.access_key_id && parsed->date == "20260101" &&
                 parsed->region == ep.region && parsed->service == "s3",
             auth);
  std::string joined;
  for (auto& h : parsed->signed_headers) joined += (joined.empty() ? "" : ";") + h;
  FUZZ_CHECK(joined == signed_headers(req), auth);
  FUZZ_CHECK(
      parsed->signature.size() == 64 &&
          std::all_of(parsed->signature.begin(), parsed->signature.end(),
                      [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }),
      auth);
  // The verifier's parser on arbitrary text.
  (void)parse_authorization(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
