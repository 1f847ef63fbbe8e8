#pragma once
// The mount point, checked before anything is mounted: an existing, empty directory with no
// FUSE mount on it. A FUSE mount whose daemon died without unmounting (stat or opendir answer
// ENOTCONN, "Transport endpoint is not connected"; stat may still answer from cached attributes
// for a while) is named as such, with how to clear it; with replace_dead it is detached
// (umount2 MNT_DETACH as root, else `fusermount3 -u -z`) and the new mount takes its place. A
// live FUSE mount is never detached: "already mounted". Another live filesystem mounted on an
// empty directory (a container's volume, a bind mount) may be mounted over, as before.
#include <optional>
#include <string>
#include <string_view>

namespace valkyrie::cli {

struct mount_entry {
  std::string mount_point, fstype, source;
};

// The topmost entry mounted exactly at `path` (absolute, no trailing slash) in the text of a
// /proc/self/mountinfo; its octal escapes (\040 for a space, ...) are undone.
std::optional<mount_entry> find_mount(std::string_view mountinfo, const std::string& path);

// Empty if `path` may be mounted on, after detaching dead FUSE mounts there when
// `replace_dead` (one log line each); otherwise the one-line reason. `path` becomes absolute
// (its directory resolved, its last component kept: a dead mount cannot be resolved).
std::string prepare_mount_point(std::string& path, bool replace_dead);

}  // namespace valkyrie::cli
