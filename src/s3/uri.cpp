#include "s3/uri.hpp"

namespace valkyrie::s3 {
std::string uri_encode(std::string_view in, bool keep_slash) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  out.reserve(in.size() * 3 / 2);
  for (unsigned char c : in) {
    bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '.' || c == '_' || c == '~';
    if (unreserved || (keep_slash && c == '/')) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

bool uri_decode(std::string_view in, std::string& out) {
  auto val = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  out.clear();
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out += in[i];
      continue;
    }
    if (i + 2 >= in.size()) return false;
    int hi = val(in[i + 1]), lo = val(in[i + 2]);
    if (hi < 0 || lo < 0) return false;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return true;
}

bool plausible_url(std::string_view url) {
  auto alpha = [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); };
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  auto colon = url.find("://");
  if (colon == std::string_view::npos || colon == 0 || !alpha(url[0])) return false;
  for (char c : url.substr(0, colon))
    if (!alpha(c) && !digit(c) && c != '+' && c != '-' && c != '.') return false;
  // unreserved, gen-delims, sub-delims and '%'
  static constexpr std::string_view allowed = "-._~:/?#[]@!$&'()*+,;=%";
  for (char c : url)
    if (!alpha(c) && !digit(c) && allowed.find(c) == std::string_view::npos) return false;
  return true;
}
}  // namespace valkyrie::s3
