#include "cli/mount_point.hpp"

#include <dirent.h>
#include <limits.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "core/log.hpp"

extern char** environ;

namespace valkyrie::cli {
namespace {

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '3' && s[i + 2] >= '0' &&
        s[i + 2] <= '7' && s[i + 3] >= '0' && s[i + 3] <= '7') {
      out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::vector<std::string_view> split_spaces(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && line[i] == ' ') ++i;
    size_t start = i;
    while (i < line.size() && line[i] != ' ') ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

bool is_dead(int err) {
  return err == ENOTCONN || err == ECONNABORTED;
}
bool is_fuse(const std::string& fstype) {
  return fstype == "fuse" || fstype == "fuseblk" || fstype.rfind("fuse.", 0) == 0;
}

enum class state { usable, missing, not_directory, not_empty, dead, live_fuse, error };
struct probe_result {
  state what = state::usable;
  int err = 0;
  std::optional<mount_entry> mount;
};

std::optional<mount_entry> current_mount(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  std::stringstream text;
  text << in.rdbuf();
  return find_mount(text.str(), path);
}

// What is at `path`. opendir comes before reading: it tells a dead FUSE mount (whose cached
// attributes may still answer stat) from a live one without listing the live one's bucket.
probe_result probe(const std::string& path) {
  probe_result r;
  r.mount = current_mount(path);
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    r.err = errno;
    r.what = is_dead(r.err)                          ? state::dead
             : (r.err == ENOENT || r.err == ENOTDIR) ? state::missing
                                                     : state::error;
    return r;
  }
  if (!S_ISDIR(st.st_mode)) {
    r.what = state::not_directory;
    return r;
  }
  DIR* dir = ::opendir(path.c_str());
  if (!dir) {
    r.err = errno;
    r.what = is_dead(r.err) ? state::dead : state::error;
    return r;
  }
  if (r.mount && is_fuse(r.mount->fstype)) {
    ::closedir(dir);
    r.what = state::live_fuse;
    return r;
  }
  errno = 0;
  while (dirent* e = ::readdir(dir)) {
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) {
      r.what = state::not_empty;
      break;
    }
    errno = 0;
  }
  if (r.what == state::usable && errno != 0) {
    r.err = errno;
    r.what = is_dead(r.err) ? state::dead : state::error;
  }
  ::closedir(dir);
  return r;
}

// Runs PROGRAM -u -z PATH; its exit status, or -1 if it could not be started.
int run_fusermount(const char* program, const std::string& path) {
  std::vector<std::string> args = {program, "-u", "-z", path};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid;
  if (::posix_spawnp(&pid, program, nullptr, nullptr, argv.data(), environ) != 0) return -1;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

// Detaches the mount at `path` (lazily: the dead connection goes once nothing holds it). Empty
// on success, else why not.
std::string detach(const std::string& path) {
  if (::umount2(path.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) == 0) return {};
  int err = errno;
  if (err == EPERM) {  // not root: the setuid helper detaches this user's own FUSE mounts
    for (const char* program : {"fusermount3", "fusermount"}) {
      int rc = run_fusermount(program, path);
      if (rc == 0) return {};
      if (rc > 0) return std::string(program) + " -u -z failed (exit " + std::to_string(rc) + ")";
    }
  }
  return std::strerror(err);
}

std::string describe(const std::optional<mount_entry>& m) {
  return m ? " (" + m->fstype + " from " + m->source + ")" : "";
}

// The absolute path with its directory resolved; the last component is resolved only if it
// is a symbolic link that resolves (a dead mount cannot be).
std::string absolute_path(const std::string& given) {
  std::error_code ec;
  std::filesystem::path p = std::filesystem::absolute(given, ec).lexically_normal();
  std::string s = p.string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  p = s;
  if (s == "/") return s;
  char buf[PATH_MAX];
  std::string dir =
      ::realpath(p.parent_path().c_str(), buf) ? std::string(buf) : p.parent_path().string();
  std::string out = (dir == "/" ? "" : dir) + "/" + p.filename().string();
  struct stat st;
  if (::lstat(out.c_str(), &st) == 0 && S_ISLNK(st.st_mode) && ::realpath(out.c_str(), buf))
    out = buf;
  return out;
}

}  // namespace

std::optional<mount_entry> find_mount(std::string_view mountinfo, const std::string& path) {
  std::optional<mount_entry> found;
  size_t pos = 0;
  while (pos < mountinfo.size()) {
    size_t end = mountinfo.find('\n', pos);
    if (end == std::string_view::npos) end = mountinfo.size();
    auto fields = split_spaces(mountinfo.substr(pos, end - pos));
    pos = end + 1;
    // ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS
    if (fields.size() < 7 || unescape(fields[4]) != path) continue;
    size_t dash = 6;
    while (dash < fields.size() && fields[dash] != "-") ++dash;
    if (dash + 2 >= fields.size()) continue;
    found = mount_entry{path, unescape(fields[dash + 1]),
                        unescape(fields[dash + 2])};  // later lines are on top
  }
  return found;
}

std::string prepare_mount_point(std::string& path, bool replace_dead) {
  path = absolute_path(path);
  const std::string& p = path;
  for (int detached = 0;; ++detached) {
    auto r = probe(p);
    switch (r.what) {
      case state::usable:
        return {};
      case state::missing:
        return "mount point " + p + " does not exist";
      case state::not_directory:
        return "mount point " + p + " is not a directory";
      case state::not_empty:
        return "mount point " + p + " is not empty (already mounted?)";
      case state::error:
        return "cannot use mount point " + p + ": " + std::strerror(r.err);
      case state::live_fuse:
        return "mount point " + p + " is already mounted" + describe(r.mount) +
               " and answers; unmount it first (umount " + p + ") or choose another directory";
      case state::dead:
        break;
    }
    if (!replace_dead)
      return "mount point " + p + " is a dead FUSE mount" + describe(r.mount) +
             ": its daemon exited without unmounting (" + std::strerror(r.err) +
             "). Detach it with `fusermount3 -u -z " + p + "` (or `umount -l " + p +
             "` as root), or start valkyrie with --replace-dead-mount";
    if (detached == 8)
      return "mount point " + p + " is still a dead FUSE mount after detaching 8 of them";
    if (auto problem = detach(p); !problem.empty())
      return "cannot detach the dead FUSE mount" + describe(r.mount) + " at " + p + ": " + problem +
             " (try `fusermount3 -u -z " + p + "`, or `umount -l " + p + "` as root)";
    log::event("cli", spdlog::level::warn,
               "detached a dead FUSE mount to mount in its place (--replace-dead-mount)",
               {{"mountpoint", p},
                {"type", r.mount ? r.mount->fstype : std::string("unknown")},
                {"source", r.mount ? r.mount->source : std::string("unknown")},
                {"error", std::strerror(r.err)}});
  }
}

}  // namespace valkyrie::cli
