#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <set>

#include "core/errors.hpp"
#include "result_printer.hpp"
#include "s3/endpoint.hpp"
#include "s3/listing.hpp"
#include "s3/time_format.hpp"
#include "s3/xml.hpp"

using namespace valkyrie;
using namespace valkyrie::s3;

TEST_CASE("ListObjectsV2 answers parse, url-encoded keys decoded") {
  std::string body = R"(<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>d%2F</Prefix>
<KeyCount>3</KeyCount><MaxKeys>2</MaxKeys><EncodingType>url</EncodingType><IsTruncated>true</IsTruncated>
<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
<Contents><Key>d/a%20b%2Bc%25~%C3%A9</Key><LastModified>2009-10-12T17:50:30.000Z</LastModified>
<ETag>&quot;fba9dede5f27731c9771645a39863328&quot;</ETag><Size>434234</Size><StorageClass>STANDARD</StorageClass></Contents>
<CommonPrefixes><Prefix>d/sub%20dir/</Prefix></CommonPrefixes></ListBucketResult>)";
  auto page = parse_list_response(body);
  REQUIRE(page);
  CHECK(page->truncated);
  CHECK(page->next_continuation_token == "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");
  REQUIRE(page->objects.size() == 1);
  CHECK(page->objects[0].key == "d/a b+c%~\xc3\xa9");
  CHECK(page->objects[0].size == 434234);
  CHECK(page->objects[0].etag == "\"fba9dede5f27731c9771645a39863328\"");
  CHECK(std::chrono::system_clock::to_time_t(page->objects[0].last_modified) == 1255369830);
  REQUIRE(page->common_prefixes.size() == 1);
  CHECK(page->common_prefixes[0] == "d/sub dir/");
}

TEST_CASE("malformed listings are protocol errors") {
  CHECK(parse_list_response("not xml").error() == errc::protocol_error);
  CHECK(parse_list_response("<Other/>").error() == errc::protocol_error);
  // Truncated without a token would loop forever.
  CHECK(parse_list_response("<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>").error() ==
        errc::protocol_error);
  CHECK(parse_list_response("<ListBucketResult><EncodingType>url</EncodingType><Contents><Key>%zz</Key>"
                            "</Contents></ListBucketResult>")
            .error() == errc::protocol_error);
}

TEST_CASE("S3 errors map to precise codes") {
  auto e = parse_error_body(
      "<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>");
  CHECK(e.code == "NoSuchKey");
  CHECK(error_from_response(404, e) == errc::not_found);
  CHECK(error_from_response(404, parse_error_body("<Error><Code>NoSuchBucket</Code></Error>")) == errc::no_such_bucket);
  CHECK(error_from_response(403, parse_error_body("<Error><Code>SignatureDoesNotMatch</Code></Error>")) ==
        errc::signature_mismatch);
  CHECK(error_from_response(403, parse_error_body("<Error><Code>InvalidAccessKeyId</Code></Error>")) ==
        errc::access_denied);
  CHECK(error_from_response(400, parse_error_body("<Error><Code>ExpiredToken</Code></Error>")) == errc::expired_token);
  CHECK(error_from_response(503, parse_error_body("<Error><Code>SlowDown</Code></Error>")) == errc::slow_down);
  CHECK(error_from_response(500, parse_error_body("<Error><Code>InternalError</Code></Error>")) == errc::server_error);
  CHECK(error_from_response(412, {}) == errc::precondition_failed);
  CHECK(error_from_response(416, {}) == errc::invalid_range);
  CHECK(error_from_response(404, {}) == errc::not_found);  // HEAD has no body
  CHECK(error_from_response(403, {}) == errc::access_denied);
  CHECK(error_from_response(301, parse_error_body("<Error><Code>PermanentRedirect</Code></Error>")) ==
        errc::wrong_region);
  CHECK(error_from_response(400, parse_error_body("<Error><Code>AuthorizationHeaderMalformed</Code>"
                                                  "<Region>eu-west-1</Region></Error>")) == errc::wrong_region);
}

TEST_CASE("dates in both S3 formats") {
  auto t = parse_iso8601("2026-11-26T05:41:27.250Z");
  REQUIRE(t);
  CHECK(format_iso8601(*t) == "2026-11-26T05:41:27.250Z");
  auto h = parse_http_date("Thu, 26 Nov 2026 05:41:27 GMT");
  REQUIRE(h);
  CHECK(format_http_date(*h) == "Thu, 26 Nov 2026 05:41:27 GMT");
  CHECK_FALSE(parse_iso8601("yesterday"));
  // system_clock's nanoseconds end in 2262: later dates are refused, not overflowed (found by
  // tests/fuzz/fuzz_dates, undefined behaviour before).
  CHECK(parse_iso8601("2262-01-01T00:00:00Z"));
  CHECK_FALSE(parse_iso8601("9999-12-31T23:59:59.999Z"));
  CHECK_FALSE(parse_http_date("Fri, 31 Dec 9999 23:59:59 GMT"));
}

namespace {
// Brute-force ListObjectsV2: every key under the prefix, rolled up at the delimiter, sorted,
// deduplicated; the reference the paginated answers must add up to.
std::vector<std::string> reference(const std::map<std::string, object_info>& m, const std::string& prefix,
                                   const std::string& delimiter) {
  std::set<std::string> items;
  for (auto& [k, v] : m) {
    if (k.compare(0, prefix.size(), prefix) != 0) continue;
    auto pos = delimiter.empty() ? std::string::npos : k.find(delimiter, prefix.size());
    items.insert(pos == std::string::npos ? k : k.substr(0, pos + delimiter.size()));
  }
  return {items.begin(), items.end()};
}
}  // namespace

TEST_CASE("pagination adds up to the brute-force listing for every page size") {
  std::mt19937 rng(3);
  std::map<std::string, object_info> m;
  const char* parts[] = {"a", "b", "a/", "b/", "c/d/", "x", "y/", "%", " ", "~"};
  for (int i = 0; i < 400; ++i) {
    std::string k;
    int n = 1 + rng() % 5;
    for (int j = 0; j < n; ++j) k += parts[rng() % 10];
    m[k].key = k;
  }
  for (std::string prefix : {"", "a", "a/", "c/", "zzz"}) {
    for (std::string delimiter : {"", "/"}) {
      auto expected = reference(m, prefix, delimiter);
      for (unsigned page_size : {1u, 2u, 7u, 1000u}) {
        list_request req{prefix, delimiter, "", "", page_size};
        std::vector<std::string> got;
        for (int guard = 0; guard < 10000; ++guard) {
          auto page = paginate(m, req);
          CHECK(page.objects.size() + page.common_prefixes.size() <= page_size);
          for (auto& o : page.objects) got.push_back(o.key);
          for (auto& p : page.common_prefixes) got.push_back(p);
          if (!page.truncated) break;
          req.continuation_token = page.next_continuation_token;
        }
        std::sort(got.begin(), got.end());
        INFO("prefix '" << prefix << "' delimiter '" << delimiter << "' page " << page_size);
        CHECK(got == expected);
      }
    }
  }
}

TEST_CASE("endpoints: AWS, custom, path and virtual-hosted styles") {
  unsetenv("AWS_ENDPOINT_URL");
  unsetenv("AWS_REGION");
  unsetenv("AWS_DEFAULT_REGION");
  auto aws = resolve_endpoint({"my-bucket", "eu-west-1", "", false});
  REQUIRE(aws);
  CHECK(aws->tls);
  CHECK(aws->host == "my-bucket.s3.eu-west-1.amazonaws.com");
  CHECK(aws->port == "443");
  CHECK(aws->base_path.empty());
  CHECK(aws->object_path("a b/c+d") == "/a%20b/c%2Bd");

  auto dotted = resolve_endpoint({"my.bucket", "eu-west-1", "", false});
  CHECK(dotted->path_style);  // dots would break the TLS wildcard
  CHECK(dotted->host == "s3.eu-west-1.amazonaws.com");
  CHECK(dotted->object_path("k") == "/my.bucket/k");

  auto local = resolve_endpoint({"b1", "", "http://127.0.0.1:9000", false});
  REQUIRE(local);
  CHECK_FALSE(local->tls);
  CHECK(local->region == "us-east-1");
  CHECK(local->path_style);
  CHECK(local->host_header == "127.0.0.1:9000");
  CHECK(local->object_path("x") == "/b1/x");

  // An empty port is the scheme's default (RFC 3986), not port "" (found by tests/fuzz/fuzz_sigv4).
  auto empty_port = resolve_endpoint({"b1", "", "http://127.0.0.1:/", false});
  REQUIRE(empty_port);
  CHECK(empty_port->port == "80");
  CHECK(empty_port->host_header == "127.0.0.1");

  auto vhost = resolve_endpoint({"data", "", "https://s3.example.com", false});
  CHECK(vhost->host == "data.s3.example.com");
  CHECK(vhost->host_header == "data.s3.example.com");
  auto forced = resolve_endpoint({"data", "", "https://s3.example.com:8443/", true});
  CHECK(forced->host == "s3.example.com");
  CHECK(forced->host_header == "s3.example.com:8443");
  CHECK(forced->object_path("k") == "/data/k");

  setenv("AWS_REGION", "ap-south-1", 1);
  setenv("AWS_ENDPOINT_URL", "http://localhost:4566", 1);
  auto from_env = resolve_endpoint({"b", "", "", false});
  CHECK(from_env->region == "ap-south-1");
  CHECK(from_env->host == "localhost");
  unsetenv("AWS_REGION");
  unsetenv("AWS_ENDPOINT_URL");

  CHECK(resolve_endpoint({"b", "", "ftp://x", false}).error() == errc::invalid_argument);
  CHECK(resolve_endpoint({"b", "", "not a url", false}).error() == errc::invalid_argument);
  // Boost.URL 1.81 aborts on these (an assertion); they are refused before it parses them
  // (found by tests/fuzz/fuzz_sigv4).
  CHECK(resolve_endpoint({"b", "", "http: ", false}).error() == errc::invalid_argument);
  CHECK(resolve_endpoint({"b", "", "http:?", false}).error() == errc::invalid_argument);
  CHECK(resolve_endpoint({"b", "", "https:[", false}).error() == errc::invalid_argument);
  CHECK(resolve_endpoint({"b", "", "http://host/a b", false}).error() == errc::invalid_argument);
  CHECK(resolve_endpoint({"b", "", "http://[::1]:9000/base", false}));
  CHECK(resolve_endpoint({"", "", "", false}).error() == errc::invalid_argument);
}
