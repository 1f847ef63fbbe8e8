#include "core/units.hpp"

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "core/errors.hpp"

namespace valkyrie {
namespace {
std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Splits "12.5MiB" into 12.5 and "mib". Rejects empty numbers, signs and trailing junk.
bool split_number(std::string_view text, double& number, std::string& suffix) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
  if (text.empty() || !(std::isdigit(static_cast<unsigned char>(text.front())) || text.front() == '.'))
    return false;
  // Plain decimal only: no exponents, signs or hex.
  std::size_t len = 0;
  while (len < text.size() && (std::isdigit(static_cast<unsigned char>(text[len])) || text[len] == '.')) ++len;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + len, number);
  if (ptr != text.data() + len) return false;
  if (ec != std::errc{} || !std::isfinite(number) || number < 0) return false;
  std::string_view rest(ptr, text.data() + text.size() - ptr);
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  suffix = lower(rest);
  return true;
}
}  // namespace

result<std::uint64_t> parse_size(std::string_view text) {
  double number = 0;
  std::string suffix;
  if (!split_number(text, number, suffix)) return make_error_code(errc::invalid_argument);
  double mult = 0;
  if (suffix.empty() || suffix == "b") mult = 1;
  else if (suffix == "k" || suffix == "kb" || suffix == "kib") mult = 1024.0;
  else if (suffix == "m" || suffix == "mb" || suffix == "mib") mult = 1024.0 * 1024;
  else if (suffix == "g" || suffix == "gb" || suffix == "gib") mult = 1024.0 * 1024 * 1024;
  else if (suffix == "t" || suffix == "tb" || suffix == "tib") mult = 1024.0 * 1024 * 1024 * 1024;
  else return make_error_code(errc::invalid_argument);
  double bytes = number * mult;
  if (bytes >= 18446744073709551615.0 || bytes != std::floor(bytes))
    return make_error_code(errc::invalid_argument);
  return static_cast<std::uint64_t>(bytes);
}

result<std::chrono::nanoseconds> parse_duration(std::string_view text) {
  double number = 0;
  std::string suffix;
  if (!split_number(text, number, suffix)) return make_error_code(errc::invalid_argument);
  double ns_per = 0;
  if (suffix == "ns") ns_per = 1;
  else if (suffix == "us") ns_per = 1e3;
  else if (suffix == "ms") ns_per = 1e6;
  else if (suffix.empty() || suffix == "s") ns_per = 1e9;
  else if (suffix == "m" || suffix == "min") ns_per = 60e9;
  else if (suffix == "h") ns_per = 3600e9;
  else return make_error_code(errc::invalid_argument);
  double ns = number * ns_per;
  if (ns > 9.2e18) return make_error_code(errc::invalid_argument);
  return std::chrono::nanoseconds(static_cast<std::int64_t>(std::llround(ns)));
}

std::string format_size(std::uint64_t bytes) {
  static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 5) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  if (u == 0) std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
  else std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}
}  // namespace valkyrie
