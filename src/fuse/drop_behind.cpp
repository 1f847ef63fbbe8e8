#include "fuse/drop_behind.hpp"

#include <linux/fuse.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "core/log.hpp"
#include "core/metrics.hpp"

namespace valkyrie::fuse {
namespace {

constexpr std::uint64_t page = 4096;
// Notifications waiting for the thread; past this many (a thread stuck on pages being read),
// new ones are left out: dropping is an economy, never owed.
constexpr std::size_t max_queued = 1024;

metrics::counter& dropped_bytes() {
  static auto& c = metrics::registry::global().get_counter(
      "valkyrie_page_cache_dropped_bytes_total",
      "Bytes of files read in sequence dropped from the kernel's page cache behind their readers "
      "(--drop-behind)");
  return c;
}

}  // namespace

drop_behind::params drop_behind::params::for_mount(std::uint64_t keep_bytes,
                                                   std::uint32_t kernel_read_ahead,
                                                   std::uint32_t max_read) {
  params p;
  p.keep = std::max<std::uint64_t>(keep_bytes, 2ull * kernel_read_ahead);
  p.step = std::max<std::uint64_t>(p.keep / 4, 1 << 20);
  p.slack = std::max<std::uint64_t>(p.keep / 2, 4ull * max_read);
  return p;
}

std::optional<drop_behind::range> drop_behind::stream::advance(std::uint64_t offset,
                                                               std::uint64_t size,
                                                               const params& p) {
  std::lock_guard lock(mu_);
  std::uint64_t end = offset + size;
  // A read continues the stream from what is still cached up to a little past its front (the
  // kernel's read-ahead requests arrive in any order); anything else starts a new one there.
  if (!started_ || offset < dropped_ || offset > front_ + p.slack) {
    started_ = true;
    dropped_ = offset / page * page;
    front_ = end;
    return std::nullopt;
  }
  if (end > front_) front_ = end;
  if (front_ < dropped_ + p.keep + p.step) return std::nullopt;
  std::uint64_t to = (front_ - p.keep) / page * page;
  range r{dropped_, to - dropped_};
  dropped_ = to;
  return r;
}

drop_behind::drop_behind(int dev_fuse_fd, params p)
    : params_(p), queue_(std::make_shared<queue>()) {
  queue_->fd = ::dup(dev_fuse_fd);
  dropped_bytes();  // (registered before the first scrape)
  thread_ = std::thread(run, queue_);
}

drop_behind::~drop_behind() {
  stop();
  bool finished;
  {
    std::unique_lock lock(queue_->mu);
    finished =
        queue_->wake.wait_for(lock, std::chrono::seconds(2), [this] { return queue_->finished; });
  }
  if (finished)
    thread_.join();
  else
    thread_.detach();
}

void drop_behind::on_read(stream& s, std::uint64_t ino, std::uint64_t offset, std::uint64_t size) {
  auto r = s.advance(offset, size, params_);
  if (!r) return;
  {
    std::lock_guard lock(queue_->mu);
    if (queue_->stopping || queue_->drops.size() >= max_queued) return;
    queue_->drops.push_back({ino, *r});
  }
  queue_->wake.notify_one();
}

void drop_behind::stop() {
  {
    std::lock_guard lock(queue_->mu);
    queue_->stopping = true;
  }
  queue_->wake.notify_all();  // (the destructor may wait on it too)
}

void drop_behind::run(std::shared_ptr<queue> q) {
  for (;;) {
    drop d;
    {
      std::unique_lock lock(q->mu);
      q->wake.wait(lock, [&q] { return q->stopping || !q->drops.empty(); });
      if (q->stopping) break;
      d = q->drops.front();
      q->drops.pop_front();
    }
    fuse_out_header header{};
    fuse_notify_inval_inode_out body{};
    header.len = sizeof header + sizeof body;
    header.error = FUSE_NOTIFY_INVAL_INODE;
    body.ino = d.ino;
    body.off = static_cast<std::int64_t>(d.pages.offset);
    body.len = static_cast<std::int64_t>(d.pages.length);
    iovec iov[2] = {{&header, sizeof header}, {&body, sizeof body}};
    // The kernel drops the pages inside this call; it waits for any of them still being read.
    ssize_t n = ::writev(q->fd, iov, 2);
    if (n == static_cast<ssize_t>(header.len)) {
      dropped_bytes().add(d.pages.length);
    } else if (n < 0 && errno == ENODEV) {
      break;                                // the connection has ended
    } else if (n < 0 && errno != ENOENT) {  // (ENOENT: the kernel has already forgotten the file)
      log::get("fuse")->debug("dropping pages of inode {} behind its reader failed: errno {}",
                              d.ino, errno);
    }
  }
  ::close(q->fd);
  {
    std::lock_guard lock(q->mu);
    q->finished = true;
  }
  q->wake.notify_all();
}

}  // namespace valkyrie::fuse
