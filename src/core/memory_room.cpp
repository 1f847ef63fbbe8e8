#include "core/memory_room.hpp"

#include <charconv>
#include <fstream>
#include <sstream>

namespace valkyrie {
namespace {
std::optional<std::string> slurp(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::optional<std::uint64_t> number(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  std::uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || end == text.data()) return std::nullopt;
  return v;
}

// The value of the line "NAME<sep>VALUE" in a key/value file.
std::optional<std::uint64_t> field(std::string_view text, std::string_view name) {
  std::size_t at = 0;
  while (at < text.size()) {
    std::size_t end = text.find('\n', at);
    std::string_view line = text.substr(at, end == std::string_view::npos ? std::string_view::npos : end - at);
    if (line.size() > name.size() && line.substr(0, name.size()) == name &&
        (line[name.size()] == ' ' || line[name.size()] == ':'))
      return number(line.substr(name.size() + 1));
    if (end == std::string_view::npos) break;
    at = end + 1;
  }
  return std::nullopt;
}

// The process's cgroup path for a controller line ("0::/a/b" for v2, "4:memory:/a/b" for v1).
std::optional<std::string> cgroup_path(std::string_view proc_cgroup, std::string_view controller) {
  std::istringstream in{std::string(proc_cgroup)};
  for (std::string line; std::getline(in, line);) {
    auto first = line.find(':'), second = line.find(':', first + 1);
    if (first == std::string::npos || second == std::string::npos) continue;
    if (std::string_view(line).substr(first + 1, second - first - 1) == controller) return line.substr(second + 1);
  }
  return std::nullopt;
}
}  // namespace

std::optional<std::uint64_t> meminfo_available(std::string_view meminfo) {
  auto kib = field(meminfo, "MemAvailable");
  if (!kib) return std::nullopt;
  return *kib * 1024;
}

std::optional<std::uint64_t> cgroup_room(std::string_view limit, std::string_view usage, std::string_view stat) {
  auto cap = number(limit);
  auto used = number(usage);
  // "max" (v2), or v1's "no limit" (a page-rounded 2^63 - 1).
  if (!cap || !used || *cap >= (std::uint64_t{1} << 62)) return std::nullopt;
  std::uint64_t file = field(stat, "file").value_or(field(stat, "total_cache").value_or(field(stat, "cache").value_or(0)));
  std::uint64_t held = *used > file ? *used - file : 0;
  return *cap > held ? *cap - held : 0;
}

std::optional<memory_room> available_memory() {
  auto meminfo = slurp("/proc/meminfo");
  if (!meminfo) return std::nullopt;
  auto avail = meminfo_available(*meminfo);
  if (!avail) return std::nullopt;
  memory_room room{*avail, "MemAvailable"};
  auto groups = slurp("/proc/self/cgroup").value_or("");
  std::optional<std::uint64_t> limited;
  if (auto v1 = cgroup_path(groups, "memory")) {
    for (std::string dir : {"/sys/fs/cgroup/memory" + *v1, std::string("/sys/fs/cgroup/memory")}) {
      auto limit = slurp(dir + "/memory.limit_in_bytes");
      if (!limit) continue;
      limited = cgroup_room(*limit, slurp(dir + "/memory.usage_in_bytes").value_or(""),
                            slurp(dir + "/memory.stat").value_or(""));
      break;
    }
  } else if (auto v2 = cgroup_path(groups, "")) {
    std::string dir = "/sys/fs/cgroup" + *v2;
    if (auto limit = slurp(dir + "/memory.max"))
      limited = cgroup_room(*limit, slurp(dir + "/memory.current").value_or(""), slurp(dir + "/memory.stat").value_or(""));
  }
  if (limited && *limited < room.bytes) room = {*limited, "the memory cgroup's limit"};
  return room;
}

}  // namespace valkyrie
