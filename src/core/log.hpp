#pragma once
// Logging: spdlog loggers per component ("s3", "fuse", ...) sharing one stderr sink, so a line
// names where it came from. Messages carry their facts as key=value fields after the text.
// Secrets (secret keys, session tokens, signatures) are never passed to a logger.
#include <memory>
#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

namespace valkyrie::log {
// Sets the level of every logger ("trace", "debug", "info", "warn", "error", "off").
// Returns false for an unknown level name.
bool set_level(std::string_view level);
std::shared_ptr<spdlog::logger> get(const std::string& component);
}  // namespace valkyrie::log
