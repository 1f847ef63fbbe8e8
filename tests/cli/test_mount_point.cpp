// The mount point check without FUSE: mountinfo parsing (escapes, the topmost of stacked mounts)
// and the plain cases of prepare_mount_point. Dead and live FUSE mounts: test_dead_mount.sh.
#include <doctest/doctest.h>

#include <unistd.h>

#include <fstream>

#include "cli/mount_point.hpp"
#include "helpers.hpp"

using namespace valkyrie;

namespace {
const char* mountinfo =
    "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
    "42 22 0:39 / /mnt/data rw,nosuid,nodev,relatime shared:7 master:2 - fuse.valkyrie "
    "valkyrie:data "
    "rw,user_id=0,group_id=0\n"
    "43 42 0:40 / /mnt/data rw,nosuid - tmpfs none rw\n"
    "44 22 0:41 / /mnt/with\\040space\\134x rw - fuse.rclone remote:bucket rw\n"
    "45 22 0:42 / /mnt/data2 rw - fuse valkyrie:other rw";
}  // namespace

TEST_CASE("find_mount: the topmost entry at exactly that path, escapes undone") {
  auto m = cli::find_mount(mountinfo, "/mnt/data");
  REQUIRE(m);
  CHECK(m->fstype == "tmpfs");  // mounted over the FUSE mount: later lines are on top
  m = cli::find_mount(mountinfo, "/mnt/with space\\x");
  REQUIRE(m);
  CHECK(m->fstype == "fuse.rclone");
  CHECK(m->source == "remote:bucket");
  m = cli::find_mount(mountinfo, "/mnt/data2");
  REQUIRE(m);
  CHECK(m->fstype == "fuse");
  CHECK(m->source == "valkyrie:other");
  CHECK_FALSE(cli::find_mount(mountinfo, "/mnt"));
  CHECK_FALSE(cli::find_mount(mountinfo, "/mnt/dat"));
  CHECK_FALSE(cli::find_mount("garbage\n\n1 2 3\n", "/mnt/data"));
  CHECK(cli::find_mount(mountinfo, "/")->fstype == "ext4");
}

TEST_CASE("prepare_mount_point: missing, a file, not empty, and an empty directory made absolute") {
  test::temp_dir dir;
  auto base = dir.path().string();
  std::string p = base + "/nowhere";
  CHECK(cli::prepare_mount_point(p, false) == "mount point " + base + "/nowhere does not exist");
  { std::ofstream(base + "/file") << "x"; }
  p = base + "/file";
  CHECK(cli::prepare_mount_point(p, true) == "mount point " + base + "/file is not a directory");
  std::filesystem::create_directories(base + "/full/sub");
  p = base + "/full";
  CHECK(cli::prepare_mount_point(p, false) ==
        "mount point " + base + "/full is not empty (already mounted?)");
  std::filesystem::create_directories(base + "/empty");
  std::filesystem::create_symlink(base + "/empty", base + "/link");
  auto cwd = std::filesystem::current_path();
  std::filesystem::current_path(base);
  p = "empty/";
  CHECK(cli::prepare_mount_point(p, false) == "");
  CHECK(p == std::filesystem::canonical(base + "/empty").string());
  p = "./link";
  CHECK(cli::prepare_mount_point(p, false) == "");
  CHECK(p == std::filesystem::canonical(base + "/empty").string());  // a symbolic link is followed
  std::filesystem::current_path(cwd);
}
