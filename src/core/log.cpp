#include "core/log.hpp"

#include <unistd.h>

#include <mutex>
#include <unordered_map>
#include <vector>

#include <spdlog/details/log_msg.h>
#include <spdlog/formatter.h>
#include <spdlog/sinks/stdout_sinks.h>

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

struct registry {
  std::mutex mu;
  spdlog::sink_ptr sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
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
  l->flush_on(spdlog::level::trace);  // stderr: one write per line, nothing lost on a crash
  r.loggers.emplace(component, l);
  return l;
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
