#include "cli/direct_io.hpp"

#include "core/units.hpp"
#include "fuse/drop_behind.hpp"
#include "fuse/session.hpp"

namespace valkyrie::cli {

std::string direct_io_plan::describe() const {
  if (every_file) return "every file";
  return above ? "files above " + format_size(*above) : std::string("off");
}

direct_io_plan plan_direct_io(bool every_file, const std::string& above_flag,
                              std::uint64_t drop_behind_bytes, std::uint32_t kernel_read_ahead,
                              std::string& refusal) {
  direct_io_plan plan;
  plan.every_file = every_file;
  if (above_flag == "auto") {
    if (drop_behind_bytes > 0)
      plan.above = fuse::drop_behind::params::for_mount(drop_behind_bytes, kernel_read_ahead,
                                                        fuse::mount_options{}.max_read)
                       .reach();
  } else if (above_flag != "off") {
    auto above = parse_size(above_flag);
    if (!above) {
      refusal = "bad --direct-io-above '" + above_flag + "' (a size, e.g. 64MiB, auto or off)";
      return plan;
    }
    plan.above = *above;
  }
  if (every_file) plan.above.reset();  // (every file is direct: no size decides)
  return plan;
}

}  // namespace valkyrie::cli
