#include "protocol.hpp"

#include <sstream>

#include <pugixml.hpp>

#include "s3/time_format.hpp"
#include "s3/uri.hpp"

namespace valkyrie::sim {
namespace http = boost::beast::http;

// The admin side: fault names and the /_sim/stats document.
std::optional<fault_kind> parse_fault_kind(std::string_view name) {
  for (int i = 1; i < fault_kinds; ++i)
    if (name == fault_names[i]) return static_cast<fault_kind>(i);
  return std::nullopt;
}

void server_counters::reset() {
  for (auto* c :
       {&get, &head, &list, &put, &other, &admin, &create_session, &auth_failures,
        &expired_sessions, &precondition_failures, &put_conflicts, &bytes_sent, &connections})
    c->store(0);
  for (auto& f : faults) f.store(0);
}

std::string server_counters::to_json() const {
  std::string s = "{\"requests\":{";
  s += "\"get\":" + std::to_string(get.load()) + ",\"head\":" + std::to_string(head.load()) +
       ",\"list\":" + std::to_string(list.load()) + ",\"put\":" + std::to_string(put.load()) +
       ",\"other\":" + std::to_string(other.load()) + ",\"admin\":" + std::to_string(admin.load()) +
       ",\"create_session\":" + std::to_string(create_session.load()) + "}";
  s += ",\"faults\":{";
  for (int i = 1; i < fault_kinds; ++i) {
    if (i > 1) s += ",";
    s += "\"" + std::string(fault_names[i]) + "\":" + std::to_string(faults[i].load());
  }
  s += "},\"auth_failures\":" + std::to_string(auth_failures.load()) +
       ",\"expired_sessions\":" + std::to_string(expired_sessions.load()) +
       ",\"precondition_failures\":" + std::to_string(precondition_failures.load()) +
       ",\"put_conflicts\":" + std::to_string(put_conflicts.load()) +
       ",\"bytes_sent\":" + std::to_string(bytes_sent.load()) +
       ",\"connections\":" + std::to_string(connections.load()) + "}";
  return s;
}

std::string query_value(const parsed_target& t, const std::string& name, bool* present) {
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
                  const std::string& resource, const std::string& region) {
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

// ListObjectsV2, or V1 (no list-type=2: Marker/NextMarker instead of continuation tokens; the
// marker is where the previous page ended, a key or a common prefix).
std::string list_xml(const std::string& bucket, const s3::list_request& lr,
                     const s3::list_page& page, bool url_encoding, bool v1) {
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
    if (!lr.start_after.empty())
      root.append_child("StartAfter").text() = enc(lr.start_after).c_str();
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

}  // namespace valkyrie::sim
