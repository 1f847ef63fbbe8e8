#pragma once
// The kernel's FUSE over io_uring ABI (protocol 7.42, Linux >= 6.14), carried here because
// Debian 12's <linux/fuse.h> (7.38) predates it. Layouts as in the kernel's uapi header; the
// sizes are checked below.
#include <linux/fuse.h>

#include <cstdint>

namespace valkyrie::fuse::uring_abi {

constexpr std::size_t header_area = 128;  // FUSE_URING_IN_OUT_HEADER_SZ, FUSE_URING_OP_IN_OUT_SZ

// In the header: the request's commit id and the payload size, both ways.
struct ent_in_out {
  std::uint64_t flags;
  std::uint64_t commit_id;   // the request's unique id: what COMMIT_AND_FETCH names
  std::uint32_t payload_sz;  // bytes used in the payload buffer
  std::uint32_t padding;
  std::uint64_t reserved;
};

// iov[0] of a ring entry.
struct req_header {
  char in_out[header_area];  // fuse_in_header in, fuse_out_header out
  char op_in[header_area];   // the op's own struct (fuse_read_in, ...)
  ent_in_out ring_ent_in_out;
};

enum cmd : std::uint32_t { cmd_invalid = 0, cmd_register = 1, cmd_commit_and_fetch = 2 };

// In the SQE128's command area (80 bytes).
struct cmd_req {
  std::uint64_t flags;
  std::uint64_t commit_id;  // COMMIT_AND_FETCH: the request answered
  std::uint16_t qid;        // the queue (a CPU index)
  std::uint8_t padding[6];
};

static_assert(sizeof(ent_in_out) == 32);
static_assert(sizeof(req_header) == 288);
static_assert(sizeof(cmd_req) == 24 && sizeof(cmd_req) <= 80);
static_assert(sizeof(fuse_in_header) <= header_area && sizeof(fuse_out_header) <= header_area);

constexpr std::uint64_t init_flag = 1ull << 41;  // FUSE_OVER_IO_URING (flags2 bit 9)
constexpr std::uint32_t min_minor = 42;

}  // namespace valkyrie::fuse::uring_abi
