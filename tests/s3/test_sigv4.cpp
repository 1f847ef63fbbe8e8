#include <doctest/doctest.h>

#include <algorithm>
#include <fstream>
#include <random>
#include <sstream>

#include "helpers.hpp"
#include "s3/sigv4.hpp"
#include "s3/uri.hpp"

using namespace valkyrie;
using namespace valkyrie::s3;

namespace {
const credentials aws_example{"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "", {}};
const std::string example_date = "20130524T000000Z";
std::string signature_of(const std::string& header) {
  return header.substr(header.find("Signature=") + 10);
}
}  // namespace

// The examples of AWS's "Signature Calculations for the Authorization Header" page of the S3
// API reference (sig-v4-header-based-auth).
TEST_CASE("AWS example: GET object with a Range header") {
  request_to_sign req;
  req.method = "GET";
  req.canonical_uri = "/test.txt";
  req.headers = {{"Host", "examplebucket.s3.amazonaws.com"},
                 {"Range", "bytes=0-9"},
                 {"x-amz-content-sha256", std::string(empty_payload_sha256)},
                 {"x-amz-date", example_date}};
  CHECK(canonical_request(req) ==
        "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n"
        "x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
        "x-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\n"
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(string_to_sign(canonical_request(req), example_date, "us-east-1", "s3") ==
        "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
        "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
  CHECK(authorization(req, aws_example, example_date, "us-east-1") ==
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

TEST_CASE("AWS example: GET bucket lifecycle (empty query value)") {
  request_to_sign req;
  req.method = "GET";
  req.canonical_uri = "/";
  req.query = {{"lifecycle", ""}};
  req.headers = {{"Host", "examplebucket.s3.amazonaws.com"},
                 {"x-amz-content-sha256", std::string(empty_payload_sha256)},
                 {"x-amz-date", example_date}};
  CHECK(signature_of(authorization(req, aws_example, example_date, "us-east-1")) ==
        "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
}

TEST_CASE("AWS example: list objects (sorted, encoded query)") {
  request_to_sign req;
  req.method = "GET";
  req.canonical_uri = "/";
  req.query = {{"prefix", "J"}, {"max-keys", "2"}};
  req.headers = {{"Host", "examplebucket.s3.amazonaws.com"},
                 {"x-amz-content-sha256", std::string(empty_payload_sha256)},
                 {"x-amz-date", example_date}};
  CHECK(canonical_request(req).substr(0, 29) == "GET\n/\nmax-keys=2&prefix=J\nhos");
  CHECK(signature_of(authorization(req, aws_example, example_date, "us-east-1")) ==
        "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}

TEST_CASE("a signature follows the secret, day, region and service it is given, each time") {
  // signature() keeps the last signing key derived per thread: whichever of its inputs changes,
  // the next signature must be the one computed from scratch (the AWS example's, known above).
  const std::string sts =
      "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
      "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972";
  const std::string expected = "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41";
  const std::string secret = aws_example.secret_access_key;
  CHECK(signature(secret, sts, example_date, "us-east-1", "s3") == expected);
  CHECK(signature(secret, sts, example_date, "us-east-1", "s3") == expected);
  // Each input changed once, and the example again after it.
  const std::string others[][4] = {{secret + "x", "20130524T000000Z", "us-east-1", "s3"},
                                   {secret, "20130525T000000Z", "us-east-1", "s3"},
                                   {secret, "20130524T000000Z", "eu-west-1", "s3"},
                                   {secret, "20130524T000000Z", "us-east-1", "s3express"}};
  std::vector<std::string> seen{expected};
  for (auto& o : others) {
    const std::string sig = signature(o[0], sts, o[1], o[2], o[3]);
    CHECK(std::find(seen.begin(), seen.end(), sig) == seen.end());  // (a key of its own)
    seen.push_back(sig);
    CHECK(signature(o[0], sts, o[1], o[2], o[3]) == sig);
    CHECK(signature(secret, sts, example_date, "us-east-1", "s3") == expected);
  }
  // Only the day of the date enters the key: another time of the same day signs alike.
  CHECK(signature(secret, sts, "20130524T235959Z", "us-east-1", "s3") == expected);
}

TEST_CASE("URI encoding follows S3's rules") {
  CHECK(uri_encode("a b+c%d~e_f.g-h/i", true) == "a%20b%2Bc%25d~e_f.g-h/i");
  CHECK(uri_encode("a/b", false) == "a%2Fb");
  CHECK(uri_encode("\xc3\xa9", true) == "%C3%A9");
  std::string out;
  CHECK(uri_decode("a%20b%2Bc%c3%A9+", out));
  CHECK(out == "a b+c\xc3\xa9+");
  CHECK_FALSE(uri_decode("bad%2", out));
  CHECK_FALSE(uri_decode("bad%zz", out));
}

TEST_CASE("Authorization header parsing round-trips") {
  request_to_sign req;
  req.method = "GET";
  req.canonical_uri = "/x";
  req.headers = {{"host", "h"}, {"x-amz-date", example_date}};
  auto header = authorization(req, aws_example, example_date, "eu-west-1");
  auto p = parse_authorization(header);
  REQUIRE(p);
  CHECK(p->access_key_id == "AKIAIOSFODNN7EXAMPLE");
  CHECK(p->date == "20130524");
  CHECK(p->region == "eu-west-1");
  CHECK(p->service == "s3");
  CHECK(p->signed_headers == std::vector<std::string>{"host", "x-amz-date"});
  CHECK(p->signature.size() == 64);
  CHECK_FALSE(parse_authorization("AWS AKID:sig"));
  CHECK_FALSE(parse_authorization("AWS4-HMAC-SHA256 Credential=a/b/c, Signature=x"));
}

namespace {
std::string hex(const std::string& s) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out += d[c >> 4];
    out += d[c & 15];
  }
  return out;
}
}  // namespace

// Compares with botocore, signing the same random requests: odd keys (spaces, +, %, ~, unicode,
// reserved characters), ranges, If-Match, session tokens and list queries.
TEST_CASE("signatures match botocore on random requests") {
  int status = 0;
  test::shell("/usr/bin/python3 -c 'import botocore' 2>/dev/null", &status);
  if (status != 0) {
    MESSAGE("python3-botocore is not installed: skipped");
    return;
  }
  std::mt19937 rng(7);
  const std::vector<std::string> pieces = {"a",  "Z",   "0",   " ",  "+",  "%",   "~",  "-",  "_",
                                           ".",  "/",   "!",   "*",  "'",  "(",   ")",  ";",  ":",
                                           "@",  "&",   "=",   "$",  ",",  "?",   "#",  "[",  "]",
                                           "\xc3\xa9", "\xe6\x97\xa5", "\xf0\x9f\x98\x80", "dir/", "x y"};
  auto random_string = [&](int max_len) {
    std::string s;
    int n = 1 + static_cast<int>(rng() % max_len);
    for (int i = 0; i < n; ++i) s += pieces[rng() % pieces.size()];
    return s;
  };
  std::ostringstream input;
  std::vector<std::string> ours;
  for (int i = 0; i < 200; ++i) {
    std::string host = "bucket-" + std::to_string(i % 3) + ".s3.eu-central-1.amazonaws.com";
    std::string key = random_string(12);
    std::vector<std::pair<std::string, std::string>> query, headers;
    if (i % 4 == 1) {
      query = {{"list-type", "2"}, {"prefix", random_string(6)}, {"delimiter", "/"}};
      if (i % 8 == 1) query.emplace_back("continuation-token", random_string(10));
      key.clear();
    }
    if (i % 3 == 0) headers.emplace_back("range", "bytes=" + std::to_string(i) + "-" + std::to_string(i * 1000 + 7));
    if (i % 5 == 0) headers.emplace_back("if-match", "\"" + hex(random_string(4)) + "\"");
    std::string token = i % 2 ? "FwoGZXIvYXdzE" + std::to_string(i) + "/tok+en=" : "";
    std::string date = "2026112" + std::to_string(i % 10) + "T0" + std::to_string(i % 10) + "1530Z";
    credentials creds{"AKIDEXAMPLE" + std::to_string(i), "secret/" + random_string(5), token, {}};

    request_to_sign req;
    req.method = "GET";
    req.canonical_uri = "/" + uri_encode(key, true);
    req.query = query;
    req.headers = {{"host", host}, {"x-amz-date", date},
                   {"x-amz-content-sha256", std::string(empty_payload_sha256)}};
    if (!token.empty()) req.headers.emplace_back("x-amz-security-token", token);
    for (auto& h : headers) req.headers.push_back(h);
    ours.push_back(authorization(req, creds, date, "eu-central-1"));

    auto join = [](const std::vector<std::pair<std::string, std::string>>& kv) {
      std::string s;
      for (auto& [k, v] : kv) s += (s.empty() ? "" : "&") + hex(k) + "=" + hex(v);
      return s;
    };
    input << "GET\t" << hex(host) << "\t" << hex(key) << "\t" << join(query) << "\t" << join(headers)
          << "\t" << hex(creds.access_key_id) << "\t" << hex(creds.secret_access_key) << "\t"
          << hex(token) << "\t" << hex(date) << "\t" << hex("eu-central-1") << "\n";
  }
  test::temp_dir dir;
  std::string in_path = (dir.path() / "requests.tsv").string();
  {
    std::ofstream f(in_path);
    f << input.str();
  }
  std::string script = test::env_or("SOURCE_ROOT", ".") + "/tests/s3/botocore_sign.py";
  std::string out = test::shell("/usr/bin/python3 " + script + " < " + in_path, &status);
  REQUIRE(status == 0);
  std::istringstream lines(out);
  std::string line;
  std::size_t i = 0;
  while (std::getline(lines, line)) {
    REQUIRE(i < ours.size());
    // botocore separates the three parts with ", " as we do.
    CHECK_MESSAGE(line == ours[i], "request " << i);
    ++i;
  }
  CHECK(i == ours.size());
}

// S3 Express session requests (what beast_client signs with an express_session): the session's
// keys, the service s3express, the token in x-amz-s3session-token; compared with botocore's
// S3ExpressAuth (or, in botocores without it, its SigV4 with that header set).
TEST_CASE("S3 Express session signatures match botocore") {
  int status = 0;
  test::shell("/usr/bin/python3 -c 'import botocore' 2>/dev/null", &status);
  if (status != 0) {
    MESSAGE("python3-botocore is not installed: skipped");
    return;
  }
  std::mt19937 rng(11);
  const std::vector<std::string> pieces = {"a", "Z", "0", " ",        "+",    "%",  "~",
                                           "/", "=", "&", "\xc3\xa9", "dir/", "x y"};
  auto random_string = [&](int max_len) {
    std::string s;
    int n = 1 + static_cast<int>(rng() % max_len);
    for (int i = 0; i < n; ++i) s += pieces[rng() % pieces.size()];
    return s;
  };
  std::ostringstream input;
  std::vector<std::string> ours;
  for (int i = 0; i < 60; ++i) {
    std::string host = "cache--use1-az4--x-s3.s3express-use1-az4.us-east-1.amazonaws.com";
    std::string key = random_string(10);
    std::vector<std::pair<std::string, std::string>> query, headers;
    if (i % 5 == 1) {
      query = {{"list-type", "2"}, {"prefix", random_string(6)}};
      key.clear();
    }
    if (i % 2 == 0) headers.emplace_back("range", "bytes=0-" + std::to_string(i * 4096 + 1));
    if (i % 7 == 0) headers.emplace_back("if-none-match", "*");
    // Session tokens and secrets are base64: '+', '/' and '='.
    std::string token = "AgAAA" + std::to_string(i) + "+session/token==";
    std::string date =
        "2026112" + std::to_string(8 + i % 2) + "T1" + std::to_string(i % 10) + "0000Z";
    credentials creds{"ASIASESSION" + std::to_string(i), "sess+ion/" + random_string(5), token, {}};
    request_to_sign req;
    req.method = "GET";
    req.canonical_uri = "/" + uri_encode(key, true);
    req.query = query;
    req.headers = {{"host", host},
                   {"x-amz-date", date},
                   {"x-amz-content-sha256", std::string(empty_payload_sha256)},
                   {"x-amz-s3session-token", token}};
    for (auto& h : headers) req.headers.push_back(h);
    ours.push_back(authorization(req, creds, date, "us-east-1", "s3express"));
    auto join = [](const std::vector<std::pair<std::string, std::string>>& kv) {
      std::string s;
      for (auto& [k, v] : kv) s += (s.empty() ? "" : "&") + hex(k) + "=" + hex(v);
      return s;
    };
    input << "GET\t" << hex(host) << "\t" << hex(key) << "\t" << join(query) << "\t"
          << join(headers) << "\t" << hex(creds.access_key_id) << "\t"
          << hex(creds.secret_access_key) << "\t" << hex(token) << "\t" << hex(date) << "\t"
          << hex("us-east-1") << "\t" << hex("s3express") << "\n";
  }
  test::temp_dir dir;
  std::string in_path = (dir.path() / "requests.tsv").string();
  {
    std::ofstream f(in_path);
    f << input.str();
  }
  std::string script = test::env_or("SOURCE_ROOT", ".") + "/tests/s3/botocore_sign.py";
  std::string out = test::shell("/usr/bin/python3 " + script + " < " + in_path, &status);
  REQUIRE(status == 0);
  std::istringstream lines(out);
  std::string line;
  std::size_t i = 0;
  while (std::getline(lines, line)) {
    REQUIRE(i < ours.size());
    CHECK_MESSAGE(line == ours[i], "request " << i);
    CHECK(line.find("/us-east-1/s3express/aws4_request") != std::string::npos);
    CHECK(line.find("x-amz-s3session-token") != std::string::npos);
    ++i;
  }
  CHECK(i == ours.size());
}
