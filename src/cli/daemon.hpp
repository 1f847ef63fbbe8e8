#pragma once
// Daemonizing (without --foreground). start() forks before any thread exists; the parent waits
// on a pipe and exits 0 once the child says the mount answers, or prints the child's one-line
// reason and exits 1 (also when the child dies first). The child starts its own session with
// stdin and stdout on /dev/null; until the mount is ready its stderr is still the caller's, so
// early warnings reach the caller. ready() then lets go of the caller before telling the parent:
// stderr goes to the --log-file, or to /dev/null with log lines going to syslog(3), and the
// working directory becomes /. So `out=$(valkyrie ...)`, or a subprocess whose output is
// captured, returns once the mount is up, and no later line reaches the caller's pipe.
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
  // The mount answers: detach from the caller's stderr and directory, then tell the parent.
  void ready();

 private:
  int pipe_ = -1;
};

}  // namespace valkyrie::cli
