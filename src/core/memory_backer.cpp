#include "core/memory_backer.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>

namespace valkyrie {

memory_backer::memory_backer(std::vector<std::span<char>> ranges, std::size_t step, int nice,
                             metrics::gauge* progress)
    : ranges_(std::move(ranges)),
      step_(std::max<std::size_t>(step, 4096)),
      nice_(nice),
      progress_(progress) {
  for (auto r : ranges_) total_ += r.size();
  thread_ = std::thread([this] { run(); });
}

memory_backer::~memory_backer() {
  stop_.store(true, std::memory_order_relaxed);
  thread_.join();
  if (progress_) progress_->sub(static_cast<std::int64_t>(backed_.load()));
}

void memory_backer::run() {
  // A nice of its own (Linux: per thread): the readers' work comes first, and this uses what
  // they leave (measured with 8 small-object readers: nice 19 a little ahead of 10, and of 0).
  ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), nice_);
  const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  bool more = true;
  for (std::size_t at = 0; more && !stop_.load(std::memory_order_relaxed); at += step_) {
    more = false;
    for (auto r : ranges_) {  // one step of each range in turn
      if (at >= r.size()) continue;
      more = true;
      const std::size_t n = std::min(step_, r.size() - at);
      for (std::size_t p = 0; p < n; p += page)
        __atomic_fetch_add(r.data() + at + p, char{0}, __ATOMIC_RELAXED);
      backed_.fetch_add(n, std::memory_order_relaxed);
      if (progress_) progress_->add(static_cast<std::int64_t>(n));
      if (stop_.load(std::memory_order_relaxed)) break;
    }
  }
  finished_.store(true, std::memory_order_release);
}

}  // namespace valkyrie
