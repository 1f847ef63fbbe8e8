#pragma once
// An open directory as readdir and readdirplus page through it, and the attributes the kernel
// is shown (modes and owner from the mount options).
//
// Offsets: 1 and 2 are "." and "..", entry i of the listing is at offset i + 3; each entry
// carries the offset of the next, and a page resumes at the offset the kernel passes back.
// Offsets index one listing: the stream takes the directory's listing at offset 0 (opendir,
// rewinddir) and pages through that snapshot until the next offset 0, so a refresh of the
// listing in between (--metadata-ttl) cannot shift them: no entry is repeated or skipped.
// readdirplus: every entry handed out (never "." or "..") counts one kernel lookup, which the
// kernel's FORGET later gives back; entries that do not fit the page are not counted.
// Threading: the kernel sends one readdir of an open directory at a time; the stream may be
// paged from any reactor.
#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 34
#endif
#include <fuse_lowlevel.h>
#include <sys/stat.h>

#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "fs/filesystem.hpp"
#include "fuse/session.hpp"

namespace valkyrie::fuse {

struct stat stat_of(const mount_options& o, const fs::attributes& a);
fuse_entry_param entry_of(const mount_options& o, const fs::attributes& a);

class dir_stream {
 public:
  dir_stream(fs::filesystem& filesystem, const mount_options& opts, fs::ino_t ino)
      : fs_(filesystem), opts_(opts), ino_(ino) {}

  // One reply of at most `size` bytes from offset `off`, in the kernel's dirent format
  // (fuse_direntplus records when `plus`). Empty at the end of the directory.
  // `proceed`, when given, is asked once the listing is at hand and before any lookup is
  // counted: false (the caller was interrupted) ends the page with operation_aborted, counting
  // nothing.
  awaitable<result<std::vector<char>>> page(off_t off, std::size_t size, bool plus,
                                            std::function<bool()> proceed = {});

 private:
  fs::filesystem& fs_;
  const mount_options& opts_;
  const fs::ino_t ino_;
  std::mutex mu_;
  std::shared_ptr<const fs::dir_listing> snapshot_;  // what offsets > 0 index
};

}  // namespace valkyrie::fuse
