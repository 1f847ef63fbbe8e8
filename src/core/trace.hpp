#pragma once
// trace: spans written as Chrome trace events (JSON, loads in Perfetto and chrome://tracing).
//
// Owns: the trace file. Off by default; when off, a span costs one relaxed atomic load.
// Threading: any thread. A span is written whole when it ends, as an async begin/end pair
// ("b"/"e" with a unique id), so spans of interleaved coroutines on one thread never
// mis-nest and a file never holds half a span. Lines go through a buffer under one mutex.
// Invariants: the file is a complete JSON array once closed; it never grows past max_bytes: it
// is then closed and renamed to FILE.1 (replacing an older one) and a new FILE is started, so at
// most two files of max_bytes exist.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace valkyrie::trace {

struct options {
  std::string path;
  std::uint64_t max_bytes = 64ull << 20;
};

// Opens the file; an error (cannot create it) is returned, tracing stays off.
std::error_code start(options opts);
// Writes what is buffered and closes the JSON array. Tracing is off afterwards.
void stop();
bool enabled() noexcept;

// An argument of a span: number or string.
struct arg {
  arg(std::string_view k, std::string_view v) : key(k), value(v), quoted(true) {}
  arg(std::string_view k, const char* v) : key(k), value(v), quoted(true) {}
  arg(std::string_view k, const std::string& v) : key(k), value(v), quoted(true) {}
  arg(std::string_view k, std::uint64_t v) : key(k), value(std::to_string(v)), quoted(false) {}
  arg(std::string_view k, std::int64_t v) : key(k), value(std::to_string(v)), quoted(false) {}
  arg(std::string_view k, unsigned v) : key(k), value(std::to_string(v)), quoted(false) {}
  arg(std::string_view k, int v) : key(k), value(std::to_string(v)), quoted(false) {}
  std::string key, value;
  bool quoted;
};

// A timed operation: begins at construction, written at end() or destruction.
// Names used: fuse.<op>, s3.<op>, cache.fill, prefetch.* (see docs/metrics.md).
class span {
 public:
  span(const char* name, const char* category) noexcept;
  ~span() { end(); }
  span(span&& o) noexcept;
  span& operator=(span&&) = delete;
  span(const span&) = delete;
  // Adds an argument (shown in Perfetto's details pane); no-op when tracing is off.
  span& add(arg a);
  void end() noexcept;
  bool active() const noexcept { return active_; }

 private:
  const char* name_;
  const char* category_;
  bool active_ = false;
  std::int64_t start_us_ = 0;
  std::vector<arg> args_;
};

// A point in time (a decision): written at once.
void instant(const char* name, const char* category, std::vector<arg> args = {});

}  // namespace valkyrie::trace
