#pragma once
// The FUSE wire protocol, decoded and encoded here (not by libfuse) for the transports that read
// the kernel's requests themselves: FUSE over io_uring, whose INIT reply libfuse 3.14 cannot
// write, and whose requests arrive split into a header, the op's own struct and a payload.
//
// A request arrives as its fuse_in_header, the op's fixed struct ("op_in": fuse_read_in, ...)
// and the rest ("payload": a name, written bytes, BATCH_FORGET's entries). From /dev/fuse they
// are one buffer, cut by split(); from a ring entry they are the entry's three areas.
// dispatcher::handle decodes the request and calls the op (an op_table: ops.hpp's functions in
// the daemon, stubs in the tests) with a wire_request whose replies are encoded here and handed
// to the request's reply_sink (the /dev/fuse fd, or the ring entry it arrived in).
// Ops this read-only filesystem does not have get ENOSYS, write-type ops EROFS (through the ops,
// which let the order control file through). INIT is the transport's (see init_reply).
// INTERRUPT: a request that asked for it (request::on_interrupt) is found by its unique id.
// Threading: handle() runs on the reactor the request arrived on; the interrupt table is locked.
#include <linux/fuse.h>

#include <cstdint>
#include <mutex>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "fuse/ops.hpp"

namespace valkyrie::fuse {

struct mount_options;

// Where a request's reply goes. `error` is 0 or a negative errno; `payload` follows the
// fuse_out_header. Returns 0 or a negative errno (the reply was not taken: ENOENT when the
// request was interrupted meanwhile).
class reply_sink {
 public:
  virtual ~reply_sink() = default;
  virtual int send(std::uint64_t unique, int error, std::span<const iovec> payload) = 0;
};

// The ops a dispatcher calls (ops.hpp's in the daemon).
struct op_table {
  decltype(&op_lookup) lookup = op_lookup;
  decltype(&op_forget) forget = op_forget;
  decltype(&op_forget_multi) forget_multi = op_forget_multi;
  decltype(&op_getattr) getattr = op_getattr;
  decltype(&op_setattr) setattr = op_setattr;
  decltype(&op_opendir) opendir = op_opendir;
  decltype(&op_readdir) readdir = op_readdir;
  decltype(&op_readdirplus) readdirplus = op_readdirplus;
  decltype(&op_releasedir) releasedir = op_releasedir;
  decltype(&op_open) open = op_open;
  decltype(&op_read) read = op_read;
  decltype(&op_write) write = op_write;
  decltype(&op_release) release = op_release;
  decltype(&op_flush) flush = op_flush;
  decltype(&op_statfs) statfs = op_statfs;
  decltype(&op_access) access = op_access;
  decltype(&op_getxattr) getxattr = op_getxattr;
  decltype(&op_listxattr) listxattr = op_listxattr;
  decltype(&refuse_write) refuse = refuse_write;
};

// The size of an opcode's fixed struct in front of its payload (0: none, or an unknown op).
std::size_t op_in_size(std::uint32_t opcode);

// A request from /dev/fuse (one buffer) cut into its parts; false when it is too short.
struct request_parts {
  const fuse_in_header* header = nullptr;
  std::span<const char> op_in, payload;
};
bool split(std::span<const char> buf, request_parts& out);

// The INIT reply for the kernel's INIT: our flags (ASYNC_READ, READDIRPLUS, ATOMIC_O_TRUNC, ...,
// FUSE_OVER_IO_URING when `over_io_uring`, FUSE_PASSTHROUGH with max_stack_depth 1 when
// o.passthrough_pool, FUSE_DIRECT_IO_ALLOW_MMAP with o.direct_io or o.direct_io_above) masked by
// the kernel's, the sizes from `o`.
// Protocol minor: the kernel's, at most 42 (FUSE over io_uring needs 42, passthrough 40).
fuse_init_out init_reply(const fuse_init_in& in, std::size_t in_size, const mount_options& o,
                         bool over_io_uring);
constexpr std::uint64_t fuse_over_io_uring_flag = 1ull << 41;  // flags2 bit 9 (7.42)
// FUSE_DIRECT_IO_ALLOW_MMAP (7.39; Debian 12's header has 7.38): files opened with
// FOPEN_DIRECT_IO may still be mapped shared (the kernel then caches their mapped pages).
constexpr std::uint64_t direct_io_allow_mmap_flag = 1ull << 36;  // flags2 bit 4

class dispatcher {
 public:
  explicit dispatcher(session& s, op_table ops = {}) : session_(s), ops_(ops) {}

  // Decodes one request and calls its op (or answers it: ENOSYS, bad input EINVAL/EIO) through
  // `sink`. INIT and DESTROY are not handled here (the transport's; false is returned).
  bool handle(const request_parts& req, reply_sink& sink);

  // Interrupts: called by wire_request.
  void watch(std::uint64_t unique, std::function<void()> f);
  void unwatch(std::uint64_t unique);
  std::size_t watched() const;

  session& owner() const { return session_; }

 private:
  void interrupt(std::uint64_t unique);

  session& session_;
  op_table ops_;
  mutable std::mutex mu_;
  std::unordered_map<std::uint64_t, std::function<void()>> interrupts_;
};

// fuse_attr of a stat, and the other reply structs (shared with the tests).
fuse_attr attr_of(const struct stat& st);

}  // namespace valkyrie::fuse
