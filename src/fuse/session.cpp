#define FUSE_USE_VERSION 34
#include "fuse/session.hpp"

#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <boost/asio/posix/stream_descriptor.hpp>

#include "core/errors.hpp"
#include "core/log.hpp"
#include "fuse/passthrough.hpp"
#include "fuse/passthrough_fill.hpp"
#include "fuse/uring_transport.hpp"

namespace valkyrie::fuse {

const fuse_lowlevel_ops& operations();  // libfuse_transport.cpp

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
    case errc::timeout:
    case errc::retries_exhausted:
      return ETIMEDOUT;  // S3 failed for the whole --retry-timeout
    case errc::cache_full: return ENOMEM;
    case errc::cancelled: return EINTR;
    case errc::connect_failed: return EHOSTUNREACH;
    default: return EIO;
  }
}

namespace {
// A mountinfo field with its octal escapes (\040 for a space) undone.
std::string unescape_mountinfo(const std::string& field) {
  std::string out;
  for (std::size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      int v = 0;
      bool octal = true;
      for (std::size_t k = 1; k <= 3; ++k) {
        char c = field[i + k];
        if (c < '0' || c > '7') octal = false;
        v = v * 8 + (c - '0');
      }
      if (octal) {
        out += static_cast<char>(v);
        i += 3;
        continue;
      }
    }
    out += field[i];
  }
  return out;
}

// "MAJOR:MINOR" of the newest mount on `path` (canonical), from /proc/self/mountinfo: a stat of
// the mount point would wait for this very session to answer.
std::string mounted_device(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line, found;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string id, parent, device, root, point;
    if (fields >> id >> parent >> device >> root >> point && unescape_mountinfo(point) == path) found = device;
  }
  return found;
}

// The kernel starts every FUSE mount's read-ahead at 128 KiB, and the INIT reply's
// max_readahead can only lower it: a sequential buffered reader then reaches the daemon as
// 128 KiB requests, eight times as many as max_read allows. Root may raise it through sysfs.
std::string set_kernel_read_ahead(const std::string& canonical_mountpoint, std::uint32_t bytes) {
  std::string device = mounted_device(canonical_mountpoint);
  if (device.empty()) return "the mount is not in /proc/self/mountinfo";
  std::string path = "/sys/class/bdi/" + device + "/read_ahead_kb";
  std::ofstream out(path);
  out << bytes / 1024 << '\n';
  out.close();
  if (!out) return "cannot write " + path + ": " + std::strerror(errno);
  return {};
}
}  // namespace

session::session(fs::filesystem& filesystem, reactor_pool& pool, mount_options opts)
    : fs_(filesystem), pool_(pool), opts_(std::move(opts)) {}

session::~session() {
  *alive_ = false;
  uring_.reset();
  drop_behind_.reset();
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
  // fuse_session_new's option parsing may have replaced argv with a copy of its own; the
  // session keeps nothing of it.
  fuse_opt_free_args(&fargs);
  if (!se_) return "cannot create the FUSE session (bad FUSE options?)";
  std::error_code ec;
  // (Before mounting: resolving the path afterwards would ask this very session.)
  std::string canonical = std::filesystem::weakly_canonical(opts_.mountpoint, ec).string();
  if (fuse_session_mount(se_, opts_.mountpoint.c_str()) != 0)
    return "cannot mount on " + opts_.mountpoint + " (is /dev/fuse available and are you root?)";
  mounted_ = true;
  if (opts_.kernel_read_ahead > 0) {
    auto problem = set_kernel_read_ahead(canonical.empty() ? opts_.mountpoint : canonical, opts_.kernel_read_ahead);
    if (!problem.empty())
      log::event("fuse", spdlog::level::warn, "kernel read-ahead left at its default (128 KiB requests)",
                 {{"reason", problem}, {"wanted_bytes", std::uint64_t{opts_.kernel_read_ahead}}});
  }
  int fd = fuse_session_fd(se_);
  int flags = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  return {};
}

void session::start() {
  started_ = true;
  loops_running_ = pool_.size();
  if (opts_.drop_behind > 0 && !opts_.direct_io) {
    drop_behind_ = std::make_unique<drop_behind>(
        fuse_session_fd(se_),
        drop_behind::params::for_mount(opts_.drop_behind, opts_.kernel_read_ahead, opts_.max_read));
  }
  if (opts_.passthrough_pool > 0) {
    // (Before the reactors run: the prefetches call it from any of them.)
    fs_.set_on_whole_prefetch([this](cache::version_ref object, asio::any_io_executor ex) {
      if (auto* pt = passthrough())
        asio::co_spawn(ex, prepare_backing(this, pt, std::move(object)), asio::detached);
    });
  }
  // (libfuse 3.14 cannot ask for shared mmap of direct files: direct I/O needs the own decoder)
  if (opts_.transport == mount_options::transport_kind::io_uring || opts_.passthrough_pool > 0 ||
      opts_.own_decoder || opts_.direct_io || opts_.direct_io_above) {
    const bool rings = opts_.transport == mount_options::transport_kind::io_uring;
    uring_ = std::make_unique<uring_transport>(*this, fuse_session_fd(se_), rings,
                                               [this] { loop_ended(); });
    uring_->start();
    return;
  }
  receivers_.assign(pool_.size(), nullptr);
  for (unsigned i = 0; i < pool_.size(); ++i)
    asio::co_spawn(pool_.executor(i), receive_loop(this, i), asio::detached);
}

void session::enable_passthrough() {
  if (passthrough_owner_ || !se_) return;
  passthrough_owner_ = std::make_unique<passthrough_files>(
      dev_fuse_backing(fuse_session_fd(se_)), opts_.passthrough_pool, opts_.passthrough_min);
  passthrough_.store(passthrough_owner_.get(), std::memory_order_release);
}

void session::unmount() {
  if (unmounting_.exchange(true) || !se_) return;
  fuse_session_exit(se_);
  // libfuse closes the session's fd and detaches the mount (lazily: files still open keep it
  // alive). The connection ends when the last fd of the device is closed: the receive loops
  // close their dups, so that requests still waiting for a reply are aborted by the kernel
  // (their replies could no longer be sent: the session's fd is gone) and every reader of the
  // detached mount gets an error instead of waiting forever, holding the mount and this daemon.
  fuse_session_unmount(se_);
  mounted_ = false;
  if (drop_behind_) drop_behind_->stop();  // (its fd too keeps the connection)
  if (uring_) return uring_->stop();  // its own dups of the fd, and its rings
  for (unsigned i = 0; i < receivers_.size(); ++i)
    pool_.post(i, [this, i] {
      if (!receivers_[i]) return;
      boost::system::error_code ec;
      receivers_[i]->close(ec);  // the loop's wait ends (operation_aborted)
    });
}

awaitable<void> session::receive_loop(session* self, unsigned reactor) {
  auto ex = co_await asio::this_coro::executor;
  int fd = ::dup(fuse_session_fd(self->se_));
  asio::posix::stream_descriptor readable(ex, fd);
  self->receivers_[reactor] = &readable;
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
  self->receivers_[reactor] = nullptr;
  log::get("fuse")->debug("receive loop of reactor {} ended", reactor);
  self->loop_ended();
}

void session::loop_ended() {
  if (--loops_running_ == 0 && on_finished_) on_finished_();
}

}  // namespace valkyrie::fuse
