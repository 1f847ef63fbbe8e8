#pragma once
// The kernel's FUSE passthrough ABI (protocol 7.40, Linux >= 6.9), carried here because Debian
// 12's <linux/fuse.h> (7.38) predates it. Layouts as in the kernel's uapi header; the sizes are
// checked below.
#include <linux/fuse.h>
#include <sys/ioctl.h>

#include <cstdint>

namespace valkyrie::fuse::passthrough_abi {

constexpr std::uint64_t init_flag = 1ull << 37;  // FUSE_PASSTHROUGH (flags2 bit 5)
constexpr std::uint32_t min_minor = 40;
constexpr std::uint32_t fopen_passthrough = 1u << 7;  // FOPEN_PASSTHROUGH
// FOPEN_PASSTHROUGH_MASK: the only open flags the kernel takes with FOPEN_PASSTHROUGH.
constexpr std::uint32_t fopen_allowed =
    fopen_passthrough | FOPEN_DIRECT_IO | FOPEN_PARALLEL_DIRECT_WRITES | FOPEN_NOFLUSH;

// FUSE_DEV_IOC_BACKING_OPEN's argument.
struct backing_map {
  std::int32_t fd;
  std::uint32_t flags;
  std::uint64_t padding;
};
static_assert(sizeof(backing_map) == 16);
constexpr unsigned long ioc_backing_open = _IOW(229, 1, backing_map);
constexpr unsigned long ioc_backing_close = _IOW(229, 2, std::uint32_t);

// fuse_init_out (7.40): max_stack_depth is where 7.38 has unused[0].
inline void set_max_stack_depth(fuse_init_out& out, std::uint32_t depth) {
  out.unused[0] = depth;
}
static_assert(sizeof(fuse_init_out) == 64);
// fuse_open_out (7.40): backing_id is where 7.38 has padding.
inline void set_backing_id(fuse_open_out& out, std::int32_t id) {
  out.padding = static_cast<std::uint32_t>(id);
}
static_assert(sizeof(fuse_open_out) == 16);

}  // namespace valkyrie::fuse::passthrough_abi
