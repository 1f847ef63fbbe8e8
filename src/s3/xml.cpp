#include "s3/xml.hpp"

#include <pugixml.hpp>

#include "core/errors.hpp"
#include "s3/time_format.hpp"
#include "s3/uri.hpp"

namespace valkyrie::s3 {

result<list_page> parse_list_response(std::string_view body) {
  pugi::xml_document doc;
  if (!doc.load_buffer(body.data(), body.size())) return make_error_code(errc::protocol_error);
  auto root = doc.child("ListBucketResult");
  if (!root) return make_error_code(errc::protocol_error);
  bool url = std::string_view(root.child_value("EncodingType")) == "url";
  auto text = [url](const char* raw, std::string& out) {
    if (!url) {
      out = raw;
      return true;
    }
    return uri_decode(raw, out);
  };
  list_page page;
  page.truncated = std::string_view(root.child_value("IsTruncated")) == "true";
  page.next_continuation_token = root.child_value("NextContinuationToken");
  for (auto c : root.children("Contents")) {
    object_info o;
    if (!text(c.child_value("Key"), o.key)) return make_error_code(errc::protocol_error);
    o.size = std::strtoull(c.child_value("Size"), nullptr, 10);
    o.etag = c.child_value("ETag");
    if (auto t = parse_iso8601(c.child_value("LastModified"))) o.last_modified = *t;
    page.objects.push_back(std::move(o));
  }
  for (auto p : root.children("CommonPrefixes")) {
    std::string prefix;
    if (!text(p.child_value("Prefix"), prefix)) return make_error_code(errc::protocol_error);
    page.common_prefixes.push_back(std::move(prefix));
  }
  if (page.truncated && page.next_continuation_token.empty())
    return make_error_code(errc::protocol_error);
  return page;
}

s3_error_body parse_error_body(std::string_view body) {
  s3_error_body e;
  pugi::xml_document doc;
  if (!doc.load_buffer(body.data(), body.size())) return e;
  auto root = doc.child("Error");
  e.code = root.child_value("Code");
  e.message = root.child_value("Message");
  e.region = root.child_value("Region");
  return e;
}

std::error_code error_from_response(unsigned status, const s3_error_body& err) {
  const std::string& c = err.code;
  if (c == "NoSuchKey") return errc::not_found;
  if (c == "NoSuchBucket") return errc::no_such_bucket;
  if (c == "SignatureDoesNotMatch") return errc::signature_mismatch;
  if (c == "ExpiredToken" || c == "TokenRefreshRequired") return errc::expired_token;
  if (c == "AccessDenied" || c == "InvalidAccessKeyId" || c == "InvalidToken" ||
      c == "AllAccessDisabled")
    return errc::access_denied;
  if (c == "SlowDown" || c == "RequestLimitExceeded") return errc::slow_down;
  if (c == "PermanentRedirect" || c == "AuthorizationHeaderMalformed" ||
      c == "IllegalLocationConstraintException")
    return errc::wrong_region;
  if (c == "PreconditionFailed" || status == 412) return errc::precondition_failed;
  if (c == "InvalidRange" || status == 416) return errc::invalid_range;
  if (status == 404) return errc::not_found;  // HEAD answers carry no body
  if (status == 403) return errc::access_denied;
  if (status == 301 || status == 307) return errc::wrong_region;
  if (status == 503) return errc::slow_down;
  if (status >= 500) return errc::server_error;
  return errc::bad_request;
}
}  // namespace valkyrie::s3
