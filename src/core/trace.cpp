#include "core/trace.hpp"

#include <unistd.h>
#include <sys/syscall.h>

#include <cstdio>
#include <filesystem>
#include <mutex>

#include "core/log.hpp"

namespace valkyrie::trace {
namespace {
std::atomic<bool> on{false};
std::atomic<std::uint64_t> next_id{1};

struct writer {
  std::mutex mu;
  options opts;
  std::FILE* file = nullptr;
  std::string buffer;
  std::uint64_t written = 0;  // bytes in the current file
  bool first = true;          // no event written to the current file yet

  bool open_file() {
    file = std::fopen(opts.path.c_str(), "w");
    if (!file) return false;
    std::fputs("[\n", file);
    written = 2;
    first = true;
    return true;
  }
  void flush_locked() {
    if (file && !buffer.empty()) std::fwrite(buffer.data(), 1, buffer.size(), file);
    written += buffer.size();
    buffer.clear();
  }
  void close_locked() {
    flush_locked();
    if (file) {
      std::fputs("\n]\n", file);
      std::fclose(file);
      file = nullptr;
    }
  }
  void append(const std::string& event) {
    std::lock_guard lock(mu);
    if (!file) return;
    // ",\n" before the event and "\n]\n" at the close must fit too.
    if (written + buffer.size() + 2 + event.size() + 3 > opts.max_bytes && !first) {
      // Rotate: the full file becomes FILE.1, complete and parseable.
      close_locked();
      std::error_code ec;
      std::filesystem::rename(opts.path, opts.path + ".1", ec);
      if (!open_file()) {
        on.store(false);
        return;
      }
    }
    if (!first) buffer += ",\n";
    first = false;
    buffer += event;
    if (buffer.size() > (256u << 10)) flush_locked();
  }
};
writer& out() {
  static writer w;
  return w;
}

std::int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

long thread_id() {
  thread_local long tid = ::syscall(SYS_gettid);
  return tid;
}

void append_args(std::string& e, const std::vector<arg>& args) {
  e += ",\"args\":{";
  bool first = true;
  for (auto& a : args) {
    if (!first) e += ',';
    first = false;
    log::append_json_string(e, a.key);
    e += ':';
    if (a.quoted) log::append_json_string(e, a.value);
    else e += a.value;
  }
  e += '}';
}

std::string event_head(const char* name, const char* category, char phase, std::int64_t ts) {
  std::string e = "{\"name\":";
  log::append_json_string(e, name);
  e += ",\"cat\":";
  log::append_json_string(e, category);
  e += ",\"ph\":\"";
  e += phase;
  e += "\",\"ts\":" + std::to_string(ts) + ",\"pid\":" + std::to_string(::getpid()) +
       ",\"tid\":" + std::to_string(thread_id());
  return e;
}
}  // namespace

std::error_code start(options opts) {
  auto& w = out();
  std::lock_guard lock(w.mu);
  if (w.file) return std::make_error_code(std::errc::device_or_resource_busy);
  if (opts.max_bytes < 4096) opts.max_bytes = 4096;
  w.opts = std::move(opts);
  if (!w.open_file()) return std::error_code(errno, std::generic_category());
  on.store(true);
  return {};
}

void stop() {
  on.store(false);
  auto& w = out();
  std::lock_guard lock(w.mu);
  w.close_locked();
}

bool enabled() noexcept { return on.load(std::memory_order_relaxed); }

span::span(const char* name, const char* category) noexcept : name_(name), category_(category) {
  if (enabled()) {
    active_ = true;
    start_us_ = now_us();
  }
}

span::span(span&& o) noexcept
    : name_(o.name_), category_(o.category_), active_(o.active_), start_us_(o.start_us_),
      args_(std::move(o.args_)) {
  o.active_ = false;
}

span& span::add(arg a) {
  if (active_) args_.push_back(std::move(a));
  return *this;
}

void span::end() noexcept {
  if (!active_) return;
  active_ = false;
  if (!enabled()) return;
  try {
    std::string id = std::to_string(next_id.fetch_add(1, std::memory_order_relaxed));
    std::string e = event_head(name_, category_, 'b', start_us_) + ",\"id\":" + id;
    append_args(e, args_);
    e += "},\n" + event_head(name_, category_, 'e', std::max(start_us_, now_us())) + ",\"id\":" + id + "}";
    out().append(e);
  } catch (...) {
    // Out of memory while tracing: drop the span, never the request.
  }
}

void instant(const char* name, const char* category, std::vector<arg> args) {
  if (!enabled()) return;
  std::string e = event_head(name, category, 'i', now_us()) + ",\"s\":\"t\"";
  append_args(e, args);
  e += '}';
  out().append(e);
}

}  // namespace valkyrie::trace
