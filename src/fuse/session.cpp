#define FUSE_USE_VERSION 34
#include "fuse/session.hpp"

#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <unistd.h>

#include <cstring>

#include <boost/asio/posix/stream_descriptor.hpp>

#include "core/errors.hpp"
#include "core/log.hpp"

namespace valkyrie::fuse {

const fuse_lowlevel_ops& operations();  // ops.cpp

int to_errno(std::error_code ec) {
  if (!ec) return 0;
  if (ec.category() == std::generic_category() || ec.category() == std::system_category())
    return ec.value();
  if (ec.category() != valkyrie_category()) return EIO;
  switch (static_cast<errc>(ec.value())) {
    case errc::not_found:
    case errc::no_such_bucket: return ENOENT;
    case errc::access_denied:
    case errc::signature_mismatch:
    case errc::expired_token:
    case errc::no_credentials: return EACCES;
    case errc::precondition_failed: return ESTALE;  // the object changed under an open file
    case errc::invalid_argument: return EINVAL;
    case errc::timeout: return ETIMEDOUT;
    case errc::cache_full: return ENOMEM;
    case errc::cancelled: return EINTR;
    case errc::connect_failed: return EHOSTUNREACH;
    default: return EIO;
  }
}

session::session(fs::filesystem& filesystem, reactor_pool& pool, mount_options opts)
    : fs_(filesystem), pool_(pool), opts_(std::move(opts)) {}

session::~session() {
  if (se_) {
    if (mounted_) fuse_session_unmount(se_);
    fuse_session_destroy(se_);
  }
}

std::string session::mount() {
  std::string ro = opts_.kernel_read_only ? "ro," : "";
  std::vector<std::string> args = {"valkyrie", "-o", ro + "default_permissions,fsname=" + opts_.fsname + ",subtype=valkyrie",
                                   "-o", "max_read=" + std::to_string(opts_.max_read)};
  if (opts_.allow_other) args.insert(args.end(), {"-o", "allow_other"});
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  fuse_args fargs = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  se_ = fuse_session_new(&fargs, &operations(), sizeof(fuse_lowlevel_ops), this);
  if (!se_) return "cannot create the FUSE session (bad FUSE options?)";
  if (fuse_session_mount(se_, opts_.mountpoint.c_str()) != 0)
    return "cannot mount on " + opts_.mountpoint + " (is /dev/fuse available and are you root?)";
  mounted_ = true;
  int fd = fuse_session_fd(se_);
  int flags = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  return {};
}

void session::start() {
  started_ = true;
  loops_running_ = pool_.size();
  for (unsigned i = 0; i < pool_.size(); ++i)
    asio::co_spawn(pool_.executor(i), receive_loop(this, i), asio::detached);
}

void session::unmount() {
  if (unmounting_.exchange(true) || !se_) return;
  fuse_session_exit(se_);
  // Unmounting makes every pending and future read of the fd fail with ENODEV, which ends the
  // receive loops.
  fuse_session_unmount(se_);
  mounted_ = false;
}

awaitable<void> session::receive_loop(session* self, unsigned reactor) {
  auto ex = co_await asio::this_coro::executor;
  int fd = ::dup(fuse_session_fd(self->se_));
  asio::posix::stream_descriptor readable(ex, fd);
  fuse_buf buf;
  std::memset(&buf, 0, sizeof buf);
  bool done = false;
  while (!done) {
    auto [ec] = co_await readable.async_wait(asio::posix::stream_descriptor::wait_read, use_tuple);
    if (ec) break;
    for (;;) {
      int res = fuse_session_receive_buf(self->se_, &buf);
      if (res == -EAGAIN) break;
      if (res == -EINTR) continue;
      if (res <= 0) {  // 0: unmounted (ENODEV) or session exited
        done = true;
        break;
      }
      fuse_session_process_buf(self->se_, &buf);
    }
  }
  std::free(buf.mem);
  log::get("fuse")->debug("receive loop of reactor {} ended", reactor);
  if (--self->loops_running_ == 0 && self->on_finished_) self->on_finished_();
}

}  // namespace valkyrie::fuse
