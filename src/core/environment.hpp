#pragma once
// Reading the process environment: AWS_* settings, HOME.
#include <cstdlib>
#include <string>

namespace valkyrie {
// The value of environment variable `name`; "" when it is unset (AWS treats empty as unset too).
inline std::string env_or_empty(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}
}  // namespace valkyrie
