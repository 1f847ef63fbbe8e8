#pragma once
// Logging: spdlog loggers per component ("s3", "fuse", ...) sharing one sink: stderr (journald
// picks stderr up under systemd), or a --log-file, or, for a daemon detached from its caller
// without a log file, syslog(3) (journald again where systemd runs). Each line is one JSON
// object by default:
//   {"time":"2026-11-26T08:00:00.123456Z","level":"warn","component":"s3","msg":"...", "attempt":2}
// or, with the text format, "TIME LEVEL [component] msg key=value ...".
// Facts go into fields (log::event) rather than into the message, so they can be queried.
// Secrets (secret keys, session tokens, signatures) are never passed to a logger.
// Threading: any thread; the sink serialises lines.
#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>

#include <system_error>

#include <spdlog/spdlog.h>

namespace valkyrie::log {

enum class format { json, text };
// Sets the level of every logger ("trace", "debug", "info", "warn", "error", "off").
// Returns false for an unknown level name.
bool set_level(std::string_view level);
spdlog::level::level_enum level();
// The next level in trace -> debug -> info -> warn -> error -> trace (for SIGUSR2); announced
// in the log whatever the level. Returns its name.
std::string cycle_level();
void set_format(format f);
// "json" or "text"; false for anything else.
bool set_format(std::string_view name);
std::shared_ptr<spdlog::logger> get(const std::string& component);

// Lines are appended to `path` from now on (created 0640 if missing); an error if it cannot be
// opened. Relative paths are taken from the current directory now.
std::error_code to_file(const std::string& path);
// Lines go to stderr again, the log file is closed and nothing is held any more (tests).
void to_stderr();
// For SIGHUP after logrotate moved the file: opens `path` again and writes there (stderr too,
// once detached). Nothing without to_file. On an error the old file is kept.
std::error_code reopen();
// A daemon that still writes to its caller's stderr (it answers once the mount is ready): lines
// below warn bound for stderr are kept (up to 1,000) instead, so that a caller capturing our
// output gets none of them (`out=$(valkyrie ...)`); warnings and errors still reach it at once.
// The kept lines go first to where lines go next (a to_file(), or syslog at detach_stderr());
// a start that fails before that drops them (the caller gets the reason).
void hold_quiet_lines();
// A daemon letting go of its caller's stderr: fd 2 becomes the log file, or /dev/null with the
// lines going to syslog(3) (ident "valkyrie", facility daemon) when there is no log file (the
// lines held by hold_quiet_lines() go there first).
std::error_code detach_stderr();

// One structured field: strings are quoted, numbers and booleans are not.
struct field {
  field(std::string_view k, std::string_view v) : key(k), value(v), quoted(true) {}
  field(std::string_view k, const std::string& v) : key(k), value(v), quoted(true) {}
  field(std::string_view k, const char* v) : key(k), value(v), quoted(true) {}
  field(std::string_view k, bool v) : key(k), value(v ? "true" : "false"), quoted(false) {}
  template <class T, std::enable_if_t<std::is_arithmetic_v<T> && !std::is_same_v<T, bool>, int> = 0>
  field(std::string_view k, T v) : key(k), value(fmt::format("{}", v)), quoted(false) {}
  std::string key, value;
  bool quoted;
};

// A line with fields: log::event("s3", spdlog::level::warn, "GET failed", {{"key", k}, {"status", 503}}).
void event(const std::string& component, spdlog::level::level_enum lvl, std::string_view msg,
           std::initializer_list<field> fields = {});
// The same, at most `burst` lines per `key` every `period`; the next line after a quiet spell
// carries "suppressed": N, how many were dropped. For warnings that can repeat per request.
void limited(const std::string& component, spdlog::level::level_enum lvl, std::string_view key,
             std::string_view msg, std::initializer_list<field> fields = {}, unsigned burst = 5,
             std::chrono::seconds period = std::chrono::seconds(10));

// JSON string escaping (quotes included), shared with the trace writer.
void append_json_string(std::string& out, std::string_view s);

}  // namespace valkyrie::log
