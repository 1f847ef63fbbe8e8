#pragma once
// Helpers for the fuzz targets (tests/fuzz/fuzz_*.cpp). Each target exports
// LLVMFuzzerTestOneInput, so it links with driver.cpp (GCC, the sanitizer build, CI) or with
// clang's libFuzzer (-Dlibfuzzer=true); see docs/testing.md.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace valkyrie::fuzz {

// An invariant of the code under test failed: report it and abort, so that the driver (or
// libFuzzer) keeps the input as a crash.
[[noreturn]] inline void violated(const char* what, std::string_view detail, const char* file,
                                  int line) {
  std::fprintf(stderr, "%s:%d: fuzz invariant violated: %s [%.*s]\n", file, line, what,
               static_cast<int>(detail.size() > 200 ? 200 : detail.size()), detail.data());
  std::abort();
}
#define FUZZ_CHECK(cond, detail) \
  ((cond) ? (void)0 : ::valkyrie::fuzz::violated(#cond, (detail), __FILE__, __LINE__))

// Cuts one input into fields: take() returns the bytes up to the next separator byte (or the
// rest), so the seed corpus stays readable text (fields on separate lines, say).
class fields {
 public:
  fields(const std::uint8_t* data, std::size_t size)
      : rest_(reinterpret_cast<const char*>(data), size) {}
  std::string_view take(char separator = '\n') {
    auto pos = rest_.find(separator);
    std::string_view out = rest_.substr(0, pos);
    rest_ = pos == std::string_view::npos ? std::string_view{} : rest_.substr(pos + 1);
    return out;
  }
  // One byte as a small number (0 when nothing is left).
  unsigned byte() {
    if (rest_.empty()) return 0;
    unsigned b = static_cast<unsigned char>(rest_.front());
    rest_.remove_prefix(1);
    return b;
  }
  std::string_view rest() const { return rest_; }
  bool empty() const { return rest_.empty(); }

 private:
  std::string_view rest_;
};

}  // namespace valkyrie::fuzz
