#pragma once
// Human-readable sizes ("16G", "512MiB", "64MiB") and durations ("30ms", "10s", "2m").
// Sizes use binary multiples: K, KB, KiB all mean 1024 (as dd, fio and the flags' users expect).
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/result.hpp"

namespace valkyrie {
result<std::uint64_t> parse_size(std::string_view text);
result<std::chrono::nanoseconds> parse_duration(std::string_view text);
std::string format_size(std::uint64_t bytes);
}  // namespace valkyrie
