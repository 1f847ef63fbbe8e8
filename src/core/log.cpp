#include "core/log.hpp"

#include <mutex>
#include <unordered_map>

#include <spdlog/sinks/stdout_color_sinks.h>

namespace valkyrie::log {
namespace {
struct registry {
  std::mutex mu;
  spdlog::sink_ptr sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  spdlog::level::level_enum level = spdlog::level::info;
  std::unordered_map<std::string, std::shared_ptr<spdlog::logger>> loggers;
};
registry& reg() {
  static registry r;
  return r;
}
}  // namespace

bool set_level(std::string_view level) {
  auto lvl = spdlog::level::from_str(std::string(level));
  if (lvl == spdlog::level::off && level != "off") return false;
  auto& r = reg();
  std::lock_guard lock(r.mu);
  r.level = lvl;
  for (auto& [_, l] : r.loggers) l->set_level(lvl);
  return true;
}

std::shared_ptr<spdlog::logger> get(const std::string& component) {
  auto& r = reg();
  std::lock_guard lock(r.mu);
  auto it = r.loggers.find(component);
  if (it != r.loggers.end()) return it->second;
  auto l = std::make_shared<spdlog::logger>(component, r.sink);
  l->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%l%$ [%n] %v", spdlog::pattern_time_type::utc);
  l->set_level(r.level);
  r.loggers.emplace(component, l);
  return l;
}
}  // namespace valkyrie::log
