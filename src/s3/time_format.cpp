#include "s3/time_format.hpp"

#include <cstdint>
#include <ctime>
#include <limits>

namespace valkyrie::s3 {
namespace {
std::optional<sys_time> parse_with(std::string_view s, const char* fmt, std::string_view* rest) {
  std::string text(s);
  std::tm tm{};
  const char* end = strptime(text.c_str(), fmt, &tm);
  if (!end) return std::nullopt;
  if (rest) *rest = s.substr(static_cast<std::size_t>(end - text.c_str()));
  // system_clock counts nanoseconds in 64 bits (years 1678 to 2262): a date outside that range
  // (a server's "9999-12-31") is no date rather than an overflow. One second of margin for the
  // fraction parse_iso8601 adds.
  constexpr std::time_t limit = std::numeric_limits<std::int64_t>::max() / 1000000000 - 1;
  std::time_t t = timegm(&tm);
  if (t < -limit || t > limit) return std::nullopt;
  return std::chrono::system_clock::from_time_t(t);
}
}  // namespace

std::optional<sys_time> parse_iso8601(std::string_view s) {
  std::string_view rest;
  auto t = parse_with(s, "%Y-%m-%dT%H:%M:%S", &rest);
  if (!t) return t;
  // Optional fraction, then 'Z'.
  if (!rest.empty() && rest.front() == '.') {
    std::size_t i = 1;
    long long frac = 0, scale = 1;
    while (i < rest.size() && rest[i] >= '0' && rest[i] <= '9') {
      if (scale < 1000000000) {
        frac = frac * 10 + (rest[i] - '0');
        scale *= 10;
      }
      ++i;
    }
    *t += std::chrono::nanoseconds(frac * (1000000000 / scale));
    rest.remove_prefix(i);
  }
  if (rest != "Z" && !rest.empty()) return std::nullopt;
  return t;
}

std::optional<sys_time> parse_http_date(std::string_view s) {
  return parse_with(s, "%a, %d %b %Y %H:%M:%S GMT", nullptr);
}

std::string format_utc(sys_time t, const char* strftime_format) {
  std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[64];
  std::size_t n = std::strftime(buf, sizeof buf, strftime_format, &tm);
  return std::string(buf, n);
}

std::string format_iso8601(sys_time t) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count() % 1000;
  char frac[8];
  std::snprintf(frac, sizeof frac, ".%03dZ", static_cast<int>(ms < 0 ? 0 : ms));
  return format_utc(t, "%Y-%m-%dT%H:%M:%S") + frac;
}

std::string format_http_date(sys_time t) { return format_utc(t, "%a, %d %b %Y %H:%M:%S GMT"); }
}  // namespace valkyrie::s3
