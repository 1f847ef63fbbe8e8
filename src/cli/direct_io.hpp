#pragma once
// --direct-io and --direct-io-above (docs/usage.md): which files are opened with FOPEN_DIRECT_IO.
// `auto` is drop-behind's reach (fuse::drop_behind::params::reach): the files whose page-cache
// pages drop-behind would free behind their reader anyway. Start-up only, on the main thread.
#include <cstdint>
#include <optional>
#include <string>

namespace valkyrie::cli {

struct direct_io_plan {
  bool every_file = false;             // --direct-io
  std::optional<std::uint64_t> above;  // files larger than this (unset: none by their size)
  // What the "mounted" line says: "every file", "files above 40.0 MiB" or "off".
  std::string describe() const;
};

// The plan for --direct-io `every_file` and --direct-io-above `above_flag` (a size, auto or off),
// on a mount with --drop-behind `drop_behind_bytes` and --kernel-read-ahead `kernel_read_ahead`;
// a bad value: `refusal` set (the message for a usage error).
direct_io_plan plan_direct_io(bool every_file, const std::string& above_flag,
                              std::uint64_t drop_behind_bytes, std::uint32_t kernel_read_ahead,
                              std::string& refusal);

}  // namespace valkyrie::cli
