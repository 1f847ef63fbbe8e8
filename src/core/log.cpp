#include "core/log.hpp"

#include <fcntl.h>
#include <syslog.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <spdlog/details/log_msg.h>
#include <spdlog/formatter.h>
#include <spdlog/sinks/base_sink.h>

namespace valkyrie::log {
namespace {
// Fields of the line being written on this thread (set by event() around the synchronous sink
// call, read by the formatter).
thread_local const std::vector<field>* current_fields = nullptr;

// Makes `fields` the current line's fields for the lifetime of the guard.
struct fields_scope {
  explicit fields_scope(const std::vector<field>& f) { current_fields = &f; }
  ~fields_scope() { current_fields = nullptr; }
};

void append_time(std::string& out, spdlog::log_clock::time_point t) {
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(us / 1000000);
  std::tm tm;
  gmtime_r(&secs, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(us % 1000000));
  out += buf;
}

class line_formatter final : public spdlog::formatter {
 public:
  explicit line_formatter(log::format f) : f_(f) {}
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    std::string out;
    auto lv = spdlog::level::to_string_view(msg.level);
    std::string_view level(lv.data(), lv.size());
    std::string_view text(msg.payload.data(), msg.payload.size());
    if (f_ == log::format::json) {
      out += "{\"time\":\"";
      append_time(out, msg.time);
      out += "\",\"level\":\"";
      out += level;
      out += "\",\"component\":";
      append_json_string(out, std::string_view(msg.logger_name.data(), msg.logger_name.size()));
      out += ",\"msg\":";
      append_json_string(out, text);
      if (current_fields)
        for (auto& fl : *current_fields) {
          out += ',';
          append_json_string(out, fl.key);
          out += ':';
          if (fl.quoted) append_json_string(out, fl.value);
          else out += fl.value;
        }
      out += "}\n";
    } else {
      append_time(out, msg.time);
      out += ' ';
      out += level;
      out += " [";
      out.append(msg.logger_name.data(), msg.logger_name.size());
      out += "] ";
      out += text;
      if (current_fields)
        for (auto& fl : *current_fields) {
          out += ' ' + fl.key + '=';
          if (fl.quoted && (fl.value.empty() || fl.value.find_first_of(" \"=") != std::string::npos))
            append_json_string(out, fl.value);
          else out += fl.value;
        }
      out += '\n';
    }
    dest.append(out.data(), out.data() + out.size());
  }
  std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<line_formatter>(f_); }

 private:
  log::format f_;
};

// Writes each formatted line with one write(2) to a file descriptor (stderr, fd 2, until told
// otherwise), or hands it to syslog(3). The destination changes under the sink's lock.
class line_sink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  // A new destination takes the lines held so far first, so they keep their order.
  void set_fd(int fd) {
    std::lock_guard lock(mutex_);
    fd_ = fd;
    syslog_ = false;
    if (fd_ != 2) write_held();
  }
  void set_syslog() {
    std::lock_guard lock(mutex_);
    if (!syslog_) openlog("valkyrie", LOG_PID | LOG_NDELAY, LOG_DAEMON);
    syslog_ = true;
    write_held();
  }
  void hold_quiet_lines(bool on) {
    std::lock_guard lock(mutex_);
    holding_ = on;
    if (!on) write_held();
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t buf;
    formatter_->format(msg, buf);
    if (holding_ && !syslog_ && fd_ == 2 && msg.level < spdlog::level::warn) {
      if (held_.size() < max_held)
        held_.emplace_back(msg.level, std::string(buf.data(), buf.size()));
      return;
    }
    write_line(msg.level, buf.data(), buf.size());
  }
  void flush_() override {}

 private:
  static int priority(spdlog::level::level_enum l) {
    switch (l) {
      case spdlog::level::trace:
      case spdlog::level::debug:
        return LOG_DEBUG;
      case spdlog::level::info:
        return LOG_INFO;
      case spdlog::level::warn:
        return LOG_WARNING;
      case spdlog::level::err:
        return LOG_ERR;
      default:
        return LOG_CRIT;
    }
  }
  void write_held() {
    for (auto& [lvl, line] : held_) write_line(lvl, line.data(), line.size());
    held_.clear();
    held_.shrink_to_fit();
  }
  void write_line(spdlog::level::level_enum lvl, const char* p, size_t left) {
    if (syslog_) {
      if (left > 0 && p[left - 1] == '\n') --left;
      ::syslog(priority(lvl), "%.*s", static_cast<int>(left), p);
      return;
    }
    while (left > 0) {
      ssize_t w = ::write(fd_, p, left);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return;  // nowhere to report it
      p += w;
      left -= static_cast<size_t>(w);
    }
  }

  // Lines held until the caller's stderr is let go of: a start-up's handful, bounded anyway.
  static constexpr size_t max_held = 1000;
  int fd_ = 2;
  bool syslog_ = false;
  bool holding_ = false;
  std::vector<std::pair<spdlog::level::level_enum, std::string>> held_;
};

struct registry {
  std::mutex mu;
  std::shared_ptr<line_sink> sink = std::make_shared<line_sink>();
  std::string file_path;  // --log-file, absolute
  int file_fd = -1;
  bool stderr_is_file = false;  // fd 2 was pointed at the log file (detach_stderr)
  spdlog::level::level_enum level = spdlog::level::info;
  std::unordered_map<std::string, std::shared_ptr<spdlog::logger>> loggers;
  registry() { sink->set_formatter(std::make_unique<line_formatter>(format::json)); }
};
registry& reg() {
  static registry r;
  return r;
}

struct limit_state {
  std::chrono::steady_clock::time_point window_start{};
  unsigned in_window = 0;
  std::uint64_t suppressed = 0;
};
std::mutex limits_mu;
std::unordered_map<std::string, limit_state> limits;
}  // namespace

void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);  // UTF-8 passes through; invalid bytes are the key's own
        }
    }
  }
  out += '"';
}

bool set_level(std::string_view level) {
  auto lvl = spdlog::level::from_str(std::string(level));
  if (lvl == spdlog::level::off && level != "off") return false;
  if (lvl == spdlog::level::critical && level != "critical") return false;
  auto& r = reg();
  std::lock_guard lock(r.mu);
  r.level = lvl;
  for (auto& [_, l] : r.loggers) l->set_level(lvl);
  return true;
}

spdlog::level::level_enum level() {
  auto& r = reg();
  std::lock_guard lock(r.mu);
  return r.level;
}

std::string cycle_level() {
  using spdlog::level::level_enum;
  level_enum next;
  switch (level()) {
    case level_enum::trace: next = level_enum::debug; break;
    case level_enum::debug: next = level_enum::info; break;
    case level_enum::info: next = level_enum::warn; break;
    case level_enum::warn: next = level_enum::err; break;
    default: next = level_enum::trace; break;
  }
  std::string name(spdlog::level::to_string_view(next).data(), spdlog::level::to_string_view(next).size());
  set_level(name);
  // Announced straight to the sink: the new level may be above warn.
  std::vector<field> fields{{"level_now", name}};
  fields_scope scope(fields);
  spdlog::details::log_msg msg("log", spdlog::level::warn, "log level changed (SIGUSR2)");
  reg().sink->log(msg);
  reg().sink->flush();
  return name;
}

void set_format(format f) { reg().sink->set_formatter(std::make_unique<line_formatter>(f)); }

bool set_format(std::string_view name) {
  if (name == "json") set_format(format::json);
  else if (name == "text") set_format(format::text);
  else return false;
  return true;
}

std::shared_ptr<spdlog::logger> get(const std::string& component) {
  auto& r = reg();
  std::lock_guard lock(r.mu);
  auto it = r.loggers.find(component);
  if (it != r.loggers.end()) return it->second;
  auto l = std::make_shared<spdlog::logger>(component, r.sink);
  l->set_level(r.level);
  l->flush_on(spdlog::level::trace);  // one write(2) per line: nothing lost on a crash
  r.loggers.emplace(component, l);
  return l;
}

namespace {
int open_log(const std::string& path) {
  return ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}
}  // namespace

std::error_code to_file(const std::string& path) {
  std::error_code ec;
  auto abs = std::filesystem::absolute(path, ec).string();
  if (ec) return ec;
  int fd = open_log(abs);
  if (fd < 0) return {errno, std::generic_category()};
  auto& r = reg();
  std::lock_guard lock(r.mu);
  int old = r.file_fd;
  r.sink->set_fd(fd);
  r.file_fd = fd;
  r.file_path = abs;
  if (old >= 0) ::close(old);
  return {};
}

void to_stderr() {
  auto& r = reg();
  std::lock_guard lock(r.mu);
  r.sink->set_fd(2);
  r.sink->hold_quiet_lines(false);
  if (r.file_fd >= 0) ::close(r.file_fd);
  r.file_fd = -1;
  r.file_path.clear();
  r.stderr_is_file = false;
}

std::error_code reopen() {
  auto& r = reg();
  std::lock_guard lock(r.mu);
  if (r.file_fd < 0) return {};
  int fd = open_log(r.file_path);
  if (fd < 0) return {errno, std::generic_category()};
  // dup2 replaces the descriptor in one step: a line being written goes to one file or the other.
  if (::dup2(fd, r.file_fd) < 0 || (r.stderr_is_file && ::dup2(fd, 2) < 0)) {
    std::error_code ec(errno, std::generic_category());
    ::close(fd);
    return ec;
  }
  ::fcntl(r.file_fd, F_SETFD, FD_CLOEXEC);  // (dup2 clears it)
  ::close(fd);
  return {};
}

void hold_quiet_lines() {
  reg().sink->hold_quiet_lines(true);
}

std::error_code detach_stderr() {
  auto& r = reg();
  std::lock_guard lock(r.mu);
  if (r.file_fd >= 0) {
    if (::dup2(r.file_fd, 2) < 0) return {errno, std::generic_category()};
    r.stderr_is_file = true;
    return {};
  }
  int null = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (null < 0) {
    std::error_code ec(errno, std::generic_category());
    r.sink->hold_quiet_lines(false);
    return ec;
  }
  r.sink->set_syslog();  // (the lines held go there first)
  int rc = ::dup2(null, 2);
  std::error_code ec(rc < 0 ? errno : 0, std::generic_category());
  ::close(null);
  return ec;
}

void event(const std::string& component, spdlog::level::level_enum lvl, std::string_view msg,
           std::initializer_list<field> fields) {
  auto l = get(component);
  if (!l->should_log(lvl)) return;
  std::vector<field> copy(fields);
  fields_scope scope(copy);
  l->log(lvl, "{}", msg);
}

void limited(const std::string& component, spdlog::level::level_enum lvl, std::string_view key,
             std::string_view msg, std::initializer_list<field> fields, unsigned burst,
             std::chrono::seconds period) {
  auto l = get(component);
  if (!l->should_log(lvl)) return;
  std::uint64_t suppressed = 0;
  {
    std::lock_guard lock(limits_mu);
    if (limits.size() > 10000) limits.clear();  // bounded, whatever the keys
    auto& st = limits[component + '\0' + std::string(key)];
    auto now = std::chrono::steady_clock::now();
    if (now - st.window_start >= period) {
      st.window_start = now;
      st.in_window = 0;
    }
    if (st.in_window >= burst) {
      ++st.suppressed;
      return;
    }
    ++st.in_window;
    suppressed = st.suppressed;
    st.suppressed = 0;
  }
  std::vector<field> copy(fields);
  if (suppressed) copy.emplace_back("suppressed", suppressed);
  fields_scope scope(copy);
  l->log(lvl, "{}", msg);
}

}  // namespace valkyrie::log
