#include "fuse/wire.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "fuse/passthrough_abi.hpp"
#include "fuse/session.hpp"

namespace valkyrie::fuse {
namespace {

// A request decoded here: its replies are encoded as the kernel reads them.
class wire_request final : public request {
 public:
  wire_request(dispatcher& d, reply_sink& sink, const fuse_in_header& h, op_id op)
      : request(d.owner(), op, h.uid), dispatcher_(d), sink_(sink), unique_(h.unique) {}
  ~wire_request() override {
    abandon();
    if (watched_ && session_alive()) dispatcher_.unwatch(unique_);
  }

 protected:
  void hook_interrupt(std::function<void()> f) override {
    watched_ = true;
    dispatcher_.watch(unique_, std::move(f));
  }
  // (The dispatcher calls hooks under its lock: this waits for one in progress.)
  void unhook_interrupt() override {
    watched_ = false;
    dispatcher_.unwatch(unique_);
  }
  int send_err(int err) override { return finish(-err, {}); }
  void send_none() override { finish_none(); }
  int send_entry(const fuse_entry_param& e) override {
    fuse_entry_out out;
    std::memset(&out, 0, sizeof out);
    out.nodeid = e.ino;
    out.generation = e.generation;
    set_timeout(e.entry_timeout, out.entry_valid, out.entry_valid_nsec);
    set_timeout(e.attr_timeout, out.attr_valid, out.attr_valid_nsec);
    out.attr = attr_of(e.attr);
    return one(&out, sizeof out);
  }
  int send_attr(const struct stat& st, double timeout) override {
    fuse_attr_out out;
    std::memset(&out, 0, sizeof out);
    set_timeout(timeout, out.attr_valid, out.attr_valid_nsec);
    out.attr = attr_of(st);
    return one(&out, sizeof out);
  }
  int send_open(const fuse_file_info& fi, int backing_id) override {
    fuse_open_out out;
    std::memset(&out, 0, sizeof out);
    out.fh = fi.fh;
    if (fi.direct_io) out.open_flags |= FOPEN_DIRECT_IO;
    if (fi.keep_cache) out.open_flags |= FOPEN_KEEP_CACHE;
    if (fi.nonseekable) out.open_flags |= FOPEN_NONSEEKABLE;
    if (fi.cache_readdir) out.open_flags |= FOPEN_CACHE_DIR;
    if (fi.noflush) out.open_flags |= FOPEN_NOFLUSH;
    if (backing_id >= 0) {
      // The kernel refuses passthrough with any flag but these (EIO in the opener): keep_cache
      // means nothing for a file whose reads never touch its page cache.
      out.open_flags =
          (out.open_flags & passthrough_abi::fopen_allowed) | passthrough_abi::fopen_passthrough;
      passthrough_abi::set_backing_id(out, backing_id);
    }
    return one(&out, sizeof out);
  }
  int send_data(std::span<const iovec> pieces) override { return finish(0, pieces); }
  int send_write(std::size_t count) override {
    fuse_write_out out;
    std::memset(&out, 0, sizeof out);
    out.size = static_cast<std::uint32_t>(count);
    return one(&out, sizeof out);
  }
  int send_statfs(const struct statvfs& st) override {
    fuse_statfs_out out;
    std::memset(&out, 0, sizeof out);
    out.st.blocks = st.f_blocks;
    out.st.bfree = st.f_bfree;
    out.st.bavail = st.f_bavail;
    out.st.files = st.f_files;
    out.st.ffree = st.f_ffree;
    out.st.bsize = static_cast<std::uint32_t>(st.f_bsize);
    out.st.namelen = static_cast<std::uint32_t>(st.f_namemax);
    out.st.frsize = static_cast<std::uint32_t>(st.f_frsize);
    return one(&out, sizeof out);
  }
  int send_xattr(std::size_t size) override {
    fuse_getxattr_out out;
    std::memset(&out, 0, sizeof out);
    out.size = static_cast<std::uint32_t>(size);
    return one(&out, sizeof out);
  }

 private:
  static void set_timeout(double t, std::uint64_t& sec, std::uint32_t& nsec) {
    if (t < 0) t = 0;
    sec = static_cast<std::uint64_t>(t);
    nsec = static_cast<std::uint32_t>((t - static_cast<double>(sec)) * 1e9);
  }
  int one(const void* p, std::size_t n) {
    iovec v{const_cast<void*>(p), n};
    return finish(0, std::span<const iovec>(&v, 1));
  }
  int finish(int error, std::span<const iovec> payload) {
    if (watched_) {
      dispatcher_.unwatch(unique_);
      watched_ = false;
    }
    return sink_.send(unique_, error, payload);
  }
  void finish_none() {
    if (watched_) {
      dispatcher_.unwatch(unique_);
      watched_ = false;
    }
  }

  dispatcher& dispatcher_;
  reply_sink& sink_;
  std::uint64_t unique_;
  bool watched_ = false;
};

template <class T>
const T* as(std::span<const char> s) {
  return s.size() >= sizeof(T) ? reinterpret_cast<const T*>(s.data()) : nullptr;
}

// A NUL-terminated name inside `s`, or nullptr.
const char* name_in(std::span<const char> s) {
  if (s.empty() || std::memchr(s.data(), 0, s.size()) == nullptr) return nullptr;
  return s.data();
}

int to_set_of(std::uint32_t valid) {
  int to_set = 0;
  if (valid & FATTR_MODE) to_set |= FUSE_SET_ATTR_MODE;
  if (valid & FATTR_UID) to_set |= FUSE_SET_ATTR_UID;
  if (valid & FATTR_GID) to_set |= FUSE_SET_ATTR_GID;
  if (valid & FATTR_SIZE) to_set |= FUSE_SET_ATTR_SIZE;
  if (valid & FATTR_ATIME) to_set |= FUSE_SET_ATTR_ATIME;
  if (valid & FATTR_MTIME) to_set |= FUSE_SET_ATTR_MTIME;
  if (valid & FATTR_ATIME_NOW) to_set |= FUSE_SET_ATTR_ATIME_NOW;
  if (valid & FATTR_MTIME_NOW) to_set |= FUSE_SET_ATTR_MTIME_NOW;
  if (valid & FATTR_CTIME) to_set |= FUSE_SET_ATTR_CTIME;
  if (valid & FATTR_KILL_SUIDGID) to_set |= FUSE_SET_ATTR_MODE;  // a change we refuse
  return to_set;
}

}  // namespace

fuse_attr attr_of(const struct stat& st) {
  fuse_attr a;
  std::memset(&a, 0, sizeof a);
  a.ino = st.st_ino;
  a.size = static_cast<std::uint64_t>(st.st_size);
  a.blocks = static_cast<std::uint64_t>(st.st_blocks);
  a.atime = static_cast<std::uint64_t>(st.st_atim.tv_sec);
  a.mtime = static_cast<std::uint64_t>(st.st_mtim.tv_sec);
  a.ctime = static_cast<std::uint64_t>(st.st_ctim.tv_sec);
  a.atimensec = static_cast<std::uint32_t>(st.st_atim.tv_nsec);
  a.mtimensec = static_cast<std::uint32_t>(st.st_mtim.tv_nsec);
  a.ctimensec = static_cast<std::uint32_t>(st.st_ctim.tv_nsec);
  a.mode = st.st_mode;
  a.nlink = static_cast<std::uint32_t>(st.st_nlink);
  a.uid = st.st_uid;
  a.gid = st.st_gid;
  a.rdev = static_cast<std::uint32_t>(st.st_rdev);
  a.blksize = static_cast<std::uint32_t>(st.st_blksize);
  return a;
}

std::size_t op_in_size(std::uint32_t opcode) {
  switch (opcode) {
    case FUSE_FORGET:
      return sizeof(fuse_forget_in);
    case FUSE_GETATTR:
      return sizeof(fuse_getattr_in);
    case FUSE_SETATTR:
      return sizeof(fuse_setattr_in);
    case FUSE_OPEN:
    case FUSE_OPENDIR:
      return sizeof(fuse_open_in);
    case FUSE_READ:
    case FUSE_READDIR:
    case FUSE_READDIRPLUS:
      return sizeof(fuse_read_in);
    case FUSE_WRITE:
      return sizeof(fuse_write_in);
    case FUSE_RELEASE:
    case FUSE_RELEASEDIR:
      return sizeof(fuse_release_in);
    case FUSE_FLUSH:
      return sizeof(fuse_flush_in);
    case FUSE_ACCESS:
      return sizeof(fuse_access_in);
    case FUSE_GETXATTR:
    case FUSE_LISTXATTR:
      return sizeof(fuse_getxattr_in);
    case FUSE_INTERRUPT:
      return sizeof(fuse_interrupt_in);
    case FUSE_BATCH_FORGET:
      return sizeof(fuse_batch_forget_in);
    case FUSE_INIT:
      return sizeof(fuse_init_in);
    default:
      return 0;  // LOOKUP, STATFS, DESTROY, write-type and unknown ops: all payload
  }
}

bool split(std::span<const char> buf, request_parts& out) {
  if (buf.size() < sizeof(fuse_in_header)) return false;
  out.header = reinterpret_cast<const fuse_in_header*>(buf.data());
  auto len = std::min<std::size_t>(out.header->len, buf.size());
  if (len < sizeof(fuse_in_header)) return false;
  auto rest = buf.subspan(sizeof(fuse_in_header), len - sizeof(fuse_in_header));
  // INIT's struct grew (FUSE_INIT_EXT): an older kernel sends less.
  auto n = std::min(op_in_size(out.header->opcode), rest.size());
  out.op_in = rest.first(n);
  out.payload = rest.subspan(n);
  return true;
}

fuse_init_out init_reply(const fuse_init_in& in, std::size_t in_size, const mount_options& o,
                         bool over_io_uring) {
  fuse_init_out out;
  std::memset(&out, 0, sizeof out);
  out.major = FUSE_KERNEL_VERSION;
  out.minor = std::min<std::uint32_t>(in.minor, 42);
  std::uint64_t kernel = in.flags;
  if ((in.flags & FUSE_INIT_EXT) && in_size >= sizeof(fuse_init_in))
    kernel |= std::uint64_t{in.flags2} << 32;
  std::uint64_t want = FUSE_ASYNC_READ | FUSE_ATOMIC_O_TRUNC | FUSE_BIG_WRITES |
                       FUSE_AUTO_INVAL_DATA | FUSE_DO_READDIRPLUS | FUSE_READDIRPLUS_AUTO |
                       FUSE_ASYNC_DIO | FUSE_PARALLEL_DIROPS | FUSE_MAX_PAGES | FUSE_INIT_EXT;
  if (over_io_uring) want |= fuse_over_io_uring_flag;
  if (o.direct_io || o.direct_io_above) want |= direct_io_allow_mmap_flag;
  if (o.passthrough_pool > 0 && in.minor >= passthrough_abi::min_minor)
    want |= passthrough_abi::init_flag;
  want &= kernel;
  out.flags = static_cast<std::uint32_t>(want);
  out.flags2 = static_cast<std::uint32_t>(want >> 32);
  // Not capped to the kernel's offer (as libfuse does): the kernel keeps the smaller of this and
  // the mount's read-ahead, which the session has raised through sysfs by the time INIT is
  // answered.
  out.max_readahead = o.max_readahead;
  out.max_background = static_cast<std::uint16_t>(std::min(o.max_background, 0xffffu));
  out.congestion_threshold = static_cast<std::uint16_t>(out.max_background * 3 / 4);
  out.max_write = 128 << 10;  // only the order control file is written
  out.time_gran = 1;
  out.max_pages = static_cast<std::uint16_t>(std::max<std::uint32_t>(o.max_read / 4096, 1));
  // Backing files are in tmpfs (depth 0): the mount stacks one level above them.
  if (want & passthrough_abi::init_flag) passthrough_abi::set_max_stack_depth(out, 1);
  return out;
}

void dispatcher::watch(std::uint64_t unique, std::function<void()> f) {
  std::lock_guard lock(mu_);
  interrupts_[unique] = std::move(f);
}
void dispatcher::unwatch(std::uint64_t unique) {
  std::lock_guard lock(mu_);
  interrupts_.erase(unique);
}
std::size_t dispatcher::watched() const {
  std::lock_guard lock(mu_);
  return interrupts_.size();
}
void dispatcher::interrupt(std::uint64_t unique) {
  // Called under the lock, so the request cannot be answered and destroyed meanwhile; the
  // callback only posts to the request's reactor.
  std::lock_guard lock(mu_);
  auto it = interrupts_.find(unique);
  if (it == interrupts_.end()) return;  // answered already (or never asked): nothing to do
  auto f = std::move(it->second);
  interrupts_.erase(it);
  f();
}

bool dispatcher::handle(const request_parts& r, reply_sink& sink) {
  const fuse_in_header& h = *r.header;
  auto make = [&](op_id op) -> request_ptr {
    return std::make_unique<wire_request>(*this, sink, h, op);
  };
  auto bad = [&] { sink.send(h.unique, -EINVAL, {}); };
  fuse_ino_t ino = h.nodeid;
  switch (h.opcode) {
    case FUSE_INIT:
    case FUSE_DESTROY:
      return false;
    case FUSE_LOOKUP: {
      const char* name = name_in(r.payload);
      if (!name) return bad(), true;
      ops_.lookup(make(op_id::lookup), ino, name);
      return true;
    }
    case FUSE_FORGET: {
      auto* in = as<fuse_forget_in>(r.op_in);
      if (in) ops_.forget(make(op_id::forget), ino, in->nlookup);
      return true;  // no reply, ever
    }
    case FUSE_BATCH_FORGET: {
      auto* in = as<fuse_batch_forget_in>(r.op_in);
      if (!in) return true;
      std::size_t n = std::min<std::size_t>(in->count, r.payload.size() / sizeof(fuse_forget_one));
      static_assert(sizeof(fuse_forget_one) == sizeof(fuse_forget_data));
      ops_.forget_multi(make(op_id::forget), n,
                        reinterpret_cast<const fuse_forget_data*>(r.payload.data()));
      return true;
    }
    case FUSE_GETATTR:
      ops_.getattr(make(op_id::getattr), ino);
      return true;
    case FUSE_SETATTR: {
      auto* in = as<fuse_setattr_in>(r.op_in);
      if (!in) return bad(), true;
      struct stat st;
      std::memset(&st, 0, sizeof st);
      st.st_size = static_cast<off_t>(in->size);
      st.st_mode = in->mode;
      fuse_file_info fi;
      std::memset(&fi, 0, sizeof fi);
      fi.fh = in->fh;
      ops_.setattr(make(op_id::write), ino, &st, to_set_of(in->valid),
                   (in->valid & FATTR_FH) ? &fi : nullptr);
      return true;
    }
    case FUSE_OPEN:
    case FUSE_OPENDIR: {
      auto* in = as<fuse_open_in>(r.op_in);
      if (!in) return bad(), true;
      fuse_file_info fi;
      std::memset(&fi, 0, sizeof fi);
      fi.flags = static_cast<int>(in->flags);
      if (h.opcode == FUSE_OPEN)
        ops_.open(make(op_id::open), ino, &fi);
      else
        ops_.opendir(make(op_id::opendir), ino, &fi);
      return true;
    }
    case FUSE_READ:
    case FUSE_READDIR:
    case FUSE_READDIRPLUS: {
      auto* in = as<fuse_read_in>(r.op_in);
      if (!in) return bad(), true;
      fuse_file_info fi;
      std::memset(&fi, 0, sizeof fi);
      fi.fh = in->fh;
      fi.flags = static_cast<int>(in->flags);
      auto off = static_cast<off_t>(in->offset);
      if (h.opcode == FUSE_READ)
        ops_.read(make(op_id::read), ino, in->size, off, &fi);
      else if (h.opcode == FUSE_READDIR)
        ops_.readdir(make(op_id::readdir), ino, in->size, off, &fi);
      else
        ops_.readdirplus(make(op_id::readdirplus), ino, in->size, off, &fi);
      return true;
    }
    case FUSE_WRITE: {
      auto* in = as<fuse_write_in>(r.op_in);
      if (!in || r.payload.size() < in->size) return bad(), true;
      fuse_file_info fi;
      std::memset(&fi, 0, sizeof fi);
      fi.fh = in->fh;
      fi.flags = static_cast<int>(in->flags);
      ops_.write(make(op_id::write), ino, r.payload.data(), in->size,
                 static_cast<off_t>(in->offset), &fi);
      return true;
    }
    case FUSE_RELEASE:
    case FUSE_RELEASEDIR: {
      auto* in = as<fuse_release_in>(r.op_in);
      if (!in) return bad(), true;
      fuse_file_info fi;
      std::memset(&fi, 0, sizeof fi);
      fi.fh = in->fh;
      fi.flags = static_cast<int>(in->flags);
      if (h.opcode == FUSE_RELEASE)
        ops_.release(make(op_id::release), ino, &fi);
      else
        ops_.releasedir(make(op_id::releasedir), ino, &fi);
      return true;
    }
    case FUSE_FLUSH: {
      auto* in = as<fuse_flush_in>(r.op_in);
      if (!in) return bad(), true;
      fuse_file_info fi;
      std::memset(&fi, 0, sizeof fi);
      fi.fh = in->fh;
      ops_.flush(make(op_id::flush), ino, &fi);
      return true;
    }
    case FUSE_STATFS:
      ops_.statfs(make(op_id::statfs), ino);
      return true;
    case FUSE_ACCESS: {
      auto* in = as<fuse_access_in>(r.op_in);
      if (!in) return bad(), true;
      ops_.access(make(op_id::access), ino, static_cast<int>(in->mask));
      return true;
    }
    case FUSE_GETXATTR: {
      auto* in = as<fuse_getxattr_in>(r.op_in);
      const char* name = name_in(r.payload);
      if (!in || !name) return bad(), true;
      ops_.getxattr(make(op_id::getxattr), ino, name, in->size);
      return true;
    }
    case FUSE_LISTXATTR: {
      auto* in = as<fuse_getxattr_in>(r.op_in);
      if (!in) return bad(), true;
      ops_.listxattr(make(op_id::listxattr), ino, in->size);
      return true;
    }
    case FUSE_INTERRUPT: {
      if (auto* in = as<fuse_interrupt_in>(r.op_in)) interrupt(in->unique);
      return true;  // no reply
    }
    case FUSE_MKNOD:
    case FUSE_MKDIR:
    case FUSE_UNLINK:
    case FUSE_RMDIR:
    case FUSE_SYMLINK:
    case FUSE_RENAME:
    case FUSE_RENAME2:
    case FUSE_LINK:
    case FUSE_CREATE:
    case FUSE_SETXATTR:
    case FUSE_REMOVEXATTR:
    case FUSE_FALLOCATE:
    case FUSE_COPY_FILE_RANGE:
      ops_.refuse(make(op_id::write));
      return true;
    default:
      sink.send(h.unique, -ENOSYS, {});
      return true;
  }
}

}  // namespace valkyrie::fuse
