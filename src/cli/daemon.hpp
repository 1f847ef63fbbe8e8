#pragma once
// Daemonizing (without --foreground). start() forks before any thread exists; the parent waits
// on a pipe and exits 0 once the child says the mount answers, or prints the child's one-line
// reason and exits 1 (also when the child dies first). The child starts its own session with
// stdin and stdout on /dev/null; until the mount is ready its stderr is still the caller's, so
// early warnings reach the caller (lines below warn are held meanwhile: log::hold_quiet_lines).
// let_go_of_stderr() is called before the reactors start (their first lines, FUSE_INIT's, are
// logged from their own threads at once): stderr goes to the
// --log-file, or to /dev/null with log lines going to syslog(3); a failure after it still reaches
// the caller through the pipe. ready() then makes the working directory / and tells the parent.
// So `out=$(valkyrie ...)`, or a subprocess whose output is captured, returns once the mount is
// up, and no later line reaches the caller's pipe.
#include <string>

namespace valkyrie::cli {

class daemon_link {
 public:
  // Forks. Returns in the child; the parent exits with the outcome and never returns.
  void start();
  // True in the child until ready().
  bool waiting_parent() const { return pipe_ >= 0; }
  // The child cannot mount: the parent prints "valkyrie: WHY" and exits 1; so does the child.
  [[noreturn]] void fail(const std::string& why);
  // Log lines stop going to the caller's stderr (idempotent; nothing outside a daemon).
  void let_go_of_stderr();
  // The mount answers: detach from the caller's stderr and directory, then tell the parent.
  void ready();

 private:
  int pipe_ = -1;
  bool stderr_released_ = false;
};

}  // namespace valkyrie::cli
