#include "s3/listing.hpp"

#include <algorithm>

namespace valkyrie::s3 {
namespace {
// Continuation tokens are opaque to clients; ours is the hex of the last key or common prefix
// returned, which makes them stable across server restarts.
std::string to_hex(const std::string& s) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  out.reserve(s.size() * 2);
  for (unsigned char c : s) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}
std::string from_hex(const std::string& s) {
  std::string out;
  auto val = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  for (std::size_t i = 0; i + 1 < s.size(); i += 2) {
    int hi = val(s[i]), lo = val(s[i + 1]);
    if (hi < 0 || lo < 0) return {};
    out += static_cast<char>(hi * 16 + lo);
  }
  return out;
}
}  // namespace

list_page paginate(const std::map<std::string, object_info>& objects, const list_request& request) {
  list_page page;
  unsigned max_keys = std::min(request.max_keys, 1000u);
  // Everything <= `after` was returned already (or skipped by start-after).
  std::string after = request.start_after;
  if (!request.continuation_token.empty()) after = std::max(after, from_hex(request.continuation_token));
  auto it = objects.lower_bound(std::max(request.prefix, after));
  std::string last_item;
  unsigned count = 0;
  for (; it != objects.end(); ++it) {
    const std::string& key = it->first;
    if (key.compare(0, request.prefix.size(), request.prefix) != 0) break;
    if (!after.empty() && key <= after) continue;
    std::string item;
    bool is_prefix = false;
    if (!request.delimiter.empty()) {
      auto pos = key.find(request.delimiter, request.prefix.size());
      if (pos != std::string::npos) {
        item = key.substr(0, pos + request.delimiter.size());
        is_prefix = true;
      }
    }
    if (is_prefix) {
      // A common prefix returned earlier (this page or a previous one) covers this key.
      if (item == last_item || (!after.empty() && item <= after && key.compare(0, item.size(), item) == 0 &&
                                after.compare(0, item.size(), item) == 0))
        continue;
    }
    if (count == max_keys) {
      page.truncated = true;
      break;
    }
    if (is_prefix) {
      page.common_prefixes.push_back(item);
      last_item = item;
    } else {
      page.objects.push_back(it->second);
      last_item = key;
    }
    ++count;
  }
  if (page.truncated) page.next_continuation_token = to_hex(last_item);
  return page;
}
}  // namespace valkyrie::s3
