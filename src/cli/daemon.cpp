#include "cli/daemon.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <iostream>

#include "core/log.hpp"

namespace valkyrie::cli {
namespace {
[[noreturn]] void die(const std::string& msg) {
  std::cerr << "valkyrie: " << msg << "\n";
  std::exit(1);
}

void write_all(int fd, const std::string& s) {
  size_t done = 0;
  while (done < s.size()) {
    ssize_t n = ::write(fd, s.data() + done, s.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the parent is gone: nobody to tell
    done += static_cast<size_t>(n);
  }
}
}  // namespace

void daemon_link::start() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) die(std::string("pipe failed: ") + std::strerror(errno));
  pid_t pid = ::fork();
  if (pid < 0) die(std::string("fork failed: ") + std::strerror(errno));
  if (pid > 0) {
    ::close(fds[1]);
    std::string msg;
    char buf[512];
    ssize_t n;
    while ((n = ::read(fds[0], buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
      if (n > 0) msg.append(buf, static_cast<size_t>(n));
    if (msg == "ok") std::exit(0);
    die(msg.empty() ? "the daemon died before the mount was ready" : msg);
  }
  ::close(fds[0]);
  pipe_ = fds[1];
  log::hold_quiet_lines();
  // A parent killed meanwhile must not take the daemon (and its mount) down with SIGPIPE.
  std::signal(SIGPIPE, SIG_IGN);
  ::setsid();
  int null = ::open("/dev/null", O_RDWR);
  if (null >= 0) {
    ::dup2(null, 0);
    ::dup2(null, 1);
    if (null > 2) ::close(null);
  }
}

void daemon_link::fail(const std::string& why) {
  if (pipe_ < 0) die(why);
  write_all(pipe_, why);  // the parent prints it: once, on the caller's stderr
  std::exit(1);
}

void daemon_link::let_go_of_stderr() {
  if (pipe_ < 0 || stderr_released_) return;
  stderr_released_ = true;
  if (auto ec = log::detach_stderr())
    log::event("cli", spdlog::level::warn, "could not detach stderr", {{"error", ec.message()}});
}

void daemon_link::ready() {
  if (pipe_ < 0) return;
  let_go_of_stderr();
  if (::chdir("/") != 0) {
    // (the caller's directory stays busy; nothing else changes)
  }
  write_all(pipe_, "ok");
  ::close(pipe_);
  pipe_ = -1;
}

}  // namespace valkyrie::cli
