#pragma once
// The two date formats S3 speaks: ISO 8601 in XML ("2026-11-26T05:41:27.000Z") and RFC 7231 in
// HTTP headers ("Thu, 26 Nov 2026 05:41:27 GMT").
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace valkyrie::s3 {
using sys_time = std::chrono::system_clock::time_point;
std::optional<sys_time> parse_iso8601(std::string_view s);
std::optional<sys_time> parse_http_date(std::string_view s);
std::string format_iso8601(sys_time t);
std::string format_http_date(sys_time t);
// strftime of t in UTC (whole seconds).
std::string format_utc(sys_time t, const char* strftime_format);
}  // namespace valkyrie::s3
