#pragma once
// Test helpers: run a coroutine to completion, start a server process and read its first line,
// make temporary directories. Servers are killed when their handle goes out of scope, so a
// failing test never leaves one behind.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <future>
#include <stdexcept>
#include <string>
#include <vector>

#include <boost/asio/use_future.hpp>

#include "core/asio.hpp"
#include "result_printer.hpp"

extern char** environ;

namespace valkyrie::test {

// Runs an awaitable on a private single-threaded io_context until it completes.
template <class T>
T run(awaitable<T> a) {
  asio::io_context ctx(1);
  auto fut = asio::co_spawn(ctx, std::move(a), asio::use_future);
  ctx.run();
  return fut.get();
}

inline std::string env_or(const char* name, const std::string& fallback = {}) {
  const char* v = std::getenv(name);
  return v ? v : fallback;
}

class temp_dir {
 public:
  temp_dir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "valkyrie-test-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// A child process whose stdout we read line by line; SIGTERM (then SIGKILL) on destruction.
class child {
 public:
  explicit child(std::vector<std::string> argv, std::vector<std::string> extra_env = {}) {
    int fds[2];
    if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    std::vector<std::string> env_strings;
    for (char** e = environ; *e; ++e) env_strings.emplace_back(*e);
    for (auto& e : extra_env) env_strings.push_back(e);
    std::vector<char*> envp;
    for (auto& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
    int rc = posix_spawnp(&pid_, args[0], &fa, nullptr, args.data(), envp.data());
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (rc != 0) {
      close(fds[0]);
      throw std::runtime_error("cannot start " + argv[0]);
    }
    out_ = fdopen(fds[0], "r");
  }
  ~child() { stop(); }
  child(const child&) = delete;
  child& operator=(const child&) = delete;

  // Reads lines until one contains `marker`; returns it (throws at EOF).
  std::string wait_for_line(const std::string& marker) {
    char buf[4096];
    while (std::fgets(buf, sizeof buf, out_)) {
      std::string line(buf);
      if (line.find(marker) != std::string::npos) {
        while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
        return line;
      }
    }
    throw std::runtime_error("process ended before printing '" + marker + "'");
  }

  void stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    for (int i = 0; i < 50; ++i) {
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        break;
      }
      usleep(100 * 1000);
    }
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
    if (out_) {
      std::fclose(out_);
      out_ = nullptr;
    }
  }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  FILE* out_ = nullptr;
};

// valkyrie-s3sim started with extra arguments; url() is its http(s)://host:port. `listen` picks
// the address (a fixed port: a server that comes back where it was).
class simulator {
 public:
  explicit simulator(std::vector<std::string> args, std::string listen = "127.0.0.1:0") {
    std::vector<std::string> argv{env_or("VALKYRIE_S3SIM", "valkyrie-s3sim"), "--listen", listen,
                                  "--threads", "2"};
    argv.insert(argv.end(), args.begin(), args.end());
    proc_ = std::make_unique<child>(argv);
    std::string line = proc_->wait_for_line("listening on ");
    url_ = line.substr(line.find("listening on ") + 13);
  }
  const std::string& url() const { return url_; }
  std::string port() const { return url_.substr(url_.rfind(':') + 1); }
  // Ends the server now (SIGTERM): its port refuses connections from here on.
  void stop() { proc_->stop(); }

 private:
  std::unique_ptr<child> proc_;
  std::string url_;
};

// Runs a shell command, returns its stdout (and its exit status through *status).
inline std::string shell(const std::string& cmd, int* status = nullptr) {
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) throw std::runtime_error("popen failed");
  std::string out;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int rc = pclose(p);
  if (status) *status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  return out;
}

}  // namespace valkyrie::test
