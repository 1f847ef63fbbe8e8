// Fuzz target: the command line's and config file's sizes and durations (src/core/units.*).
// Invariants: a duration is never negative; a size formats without overflowing its buffer.
#include "core/units.hpp"
#include "fuzz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto s = valkyrie::parse_size(text)) (void)valkyrie::format_size(*s);
  if (auto d = valkyrie::parse_duration(text)) FUZZ_CHECK(d->count() >= 0, text);
  std::uint64_t raw = 0;
  for (std::size_t i = 0; i < size && i < 8; ++i) raw = raw << 8 | data[i];
  FUZZ_CHECK(!valkyrie::format_size(raw).empty(), text);
  return 0;
}
