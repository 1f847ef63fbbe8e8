// Fuzz target: the dates S3 sends (src/s3/time_format.*): ISO 8601 in listings
// (LastModified) and RFC 7231 in headers (Last-Modified). Invariants: no overflow for any year
// (system_clock's nanoseconds end in 2262); a parsed ISO 8601 time after 1970 formats back to a
// string that parses to the same millisecond.
#include <chrono>

#include "fuzz.hpp"
#include "s3/time_format.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace valkyrie::s3;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto t = parse_iso8601(text)) {
    using namespace std::chrono;
    auto ms = floor<milliseconds>(*t);
    if (ms.time_since_epoch().count() >= 0) {
      auto back = parse_iso8601(format_iso8601(*t));
      FUZZ_CHECK(back && floor<milliseconds>(*back) == ms, format_iso8601(*t));
    }
  }
  if (auto t = parse_http_date(text)) (void)format_http_date(*t);
  return 0;
}
