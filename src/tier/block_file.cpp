#include "tier/block_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <mutex>
#include <tuple>
#include <type_traits>
#include <unordered_map>

#include <boost/asio/read_at.hpp>
#include <boost/asio/write_at.hpp>
#if defined(BOOST_ASIO_HAS_FILE)
#include <boost/asio/random_access_file.hpp>
#endif

#include "core/log.hpp"

namespace valkyrie::tier {

namespace {

std::error_code io_error() {
  return std::make_error_code(std::errc::io_error);
}

// After `done` bytes of `bufs` went in one request (readv or writev): the rest, piece by piece
// (read_at or write_at).
template <class Span>
awaitable<std::error_code> finish_pieces(block_file& f, std::uint64_t offset,
                                         std::vector<Span> bufs, std::size_t done) {
  for (auto& b : bufs) {
    if (done >= b.size()) {
      done -= b.size();
      offset += b.size();
      continue;
    }
    std::error_code ec;
    if constexpr (std::is_const_v<typename Span::element_type>)
      ec = co_await f.write_at(offset + done, b.subspan(done));
    else
      ec = co_await f.read_at(offset + done, b.subspan(done));
    if (ec) co_return ec;
    offset += b.size();
    done = 0;
  }
  co_return std::error_code();
}

class direct_file final : public block_file {
 public:
  direct_file(int fd, bool direct) : fd_(fd), direct_(direct) {}
  ~direct_file() override {
#if defined(BOOST_ASIO_HAS_FILE)
    handles_.clear();
#endif
    ::close(fd_);
  }
  bool direct() const override {
    return direct_;
  }

  awaitable<std::error_code> read_at(std::uint64_t offset, std::span<char> buf) override {
#if defined(BOOST_ASIO_HAS_FILE)
    auto* file = co_await handle();
    if (!file) co_return io_error();
    // (one request for the whole buffer, repeated only if short: asio::async_read_at would cut
    // it into 64 KiB requests, one after another, a tenth of the disk's speed measured here)
    std::size_t done = 0;
    while (done < buf.size()) {
      auto [ec, n] = co_await file->async_read_some_at(
          offset + done, asio::buffer(buf.data() + done, buf.size() - done), use_tuple);
      if (ec)
        co_return ec == asio::error::eof ? io_error()
                                         : std::error_code(ec.value(), std::system_category());
      if (n == 0) co_return io_error();
      done += n;
    }
    co_return std::error_code();
#else
    std::size_t done = 0;
    while (done < buf.size()) {
      ssize_t n =
          ::pread(fd_, buf.data() + done, buf.size() - done, static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) co_return std::error_code(errno, std::system_category());
      if (n == 0) co_return io_error();
      done += static_cast<std::size_t>(n);
    }
    co_return std::error_code();
#endif
  }

  awaitable<std::error_code> readv_at(std::uint64_t offset,
                                      std::vector<std::span<char>> bufs) override {
    co_return co_await vectored_at(offset, std::move(bufs));
  }

  awaitable<std::error_code> writev_at(std::uint64_t offset,
                                       std::vector<std::span<const char>> bufs) override {
    co_return co_await vectored_at(offset, std::move(bufs));
  }

  awaitable<std::error_code> write_at(std::uint64_t offset, std::span<const char> buf) override {
#if defined(BOOST_ASIO_HAS_FILE)
    auto* file = co_await handle();
    if (!file) co_return io_error();
    std::size_t done = 0;  // (one request for the whole buffer: see read_at)
    while (done < buf.size()) {
      auto [ec, n] = co_await file->async_write_some_at(
          offset + done, asio::buffer(buf.data() + done, buf.size() - done), use_tuple);
      if (ec) co_return std::error_code(ec.value(), std::system_category());
      if (n == 0) co_return io_error();
      done += n;
    }
    co_return std::error_code();
#else
    std::size_t done = 0;
    while (done < buf.size()) {
      ssize_t n =
          ::pwrite(fd_, buf.data() + done, buf.size() - done, static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) co_return std::error_code(errno, std::system_category());
      if (n == 0) co_return io_error();
      done += static_cast<std::size_t>(n);
    }
    co_return std::error_code();
#endif
  }

 private:
  // One readv or writev (by the span's constness) for all of `bufs`; if it came back short, the
  // rest piece by piece.
  template <class Span>
  awaitable<std::error_code> vectored_at(std::uint64_t offset, std::vector<Span> bufs) {
    constexpr bool writing = std::is_const_v<typename Span::element_type>;
    std::size_t total = 0;
    for (auto& b : bufs) total += b.size();
    std::size_t n = 0;
#if defined(BOOST_ASIO_HAS_FILE)
    auto* file = co_await handle();
    if (!file) co_return io_error();
    std::vector<std::conditional_t<writing, asio::const_buffer, asio::mutable_buffer>> seq;
    for (auto& b : bufs) seq.emplace_back(b.data(), b.size());
    boost::system::error_code ec;
    if constexpr (writing)
      std::tie(ec, n) = co_await file->async_write_some_at(offset, seq, use_tuple);
    else
      std::tie(ec, n) = co_await file->async_read_some_at(offset, seq, use_tuple);
    if (ec)
      co_return ec == asio::error::eof ? io_error()
                                       : std::error_code(ec.value(), std::system_category());
#else
    std::vector<iovec> iov;
    for (auto& b : bufs) iov.push_back({const_cast<char*>(b.data()), b.size()});
    ssize_t r;
    do {
      if constexpr (writing)
        r = ::pwritev(fd_, iov.data(), static_cast<int>(iov.size()), static_cast<off_t>(offset));
      else
        r = ::preadv(fd_, iov.data(), static_cast<int>(iov.size()), static_cast<off_t>(offset));
    } while (r < 0 && errno == EINTR);
    if (r < 0) co_return std::error_code(errno, std::system_category());
    n = static_cast<std::size_t>(r);
#endif
    if (n == total) co_return std::error_code();
    if (n == 0) co_return io_error();
    co_return co_await finish_pieces(*this, offset, std::move(bufs), n);
  }

#if defined(BOOST_ASIO_HAS_FILE)
  // This reactor's handle on the file (its own dup of the fd, on its own io_uring).
  awaitable<asio::random_access_file*> handle() {
    auto ex = co_await asio::this_coro::executor;
    auto& ctx = static_cast<asio::io_context&>(asio::query(ex, asio::execution::context));
    std::lock_guard lock(mu_);
    auto it = handles_.find(&ctx);
    if (it != handles_.end()) co_return it->second.get();
    int fd = ::fcntl(fd_, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) co_return nullptr;
    auto file = std::make_unique<asio::random_access_file>(ctx, fd);
    co_return handles_.emplace(&ctx, std::move(file)).first->second.get();
  }
  std::mutex mu_;
  std::unordered_map<asio::io_context*, std::unique_ptr<asio::random_access_file>> handles_;
#endif
  int fd_;
  bool direct_;
};

class fault_file final : public block_file {
 public:
  fault_file(std::shared_ptr<block_file> inner, std::shared_ptr<fault_plan> plan)
      : inner_(std::move(inner)), plan_(std::move(plan)) {}
  bool direct() const override { return inner_->direct(); }
  awaitable<std::error_code> read_at(std::uint64_t offset, std::span<char> buf) override {
    ++plan_->reads;
    co_await delay();
    if (int e = plan_->read_errno.load()) co_return std::error_code(e, std::system_category());
    if (plan_->short_reads.load() && buf.size() > block_align) {
      // The first half arrives, then the end of the file: what a truncated file gives.
      (void)co_await inner_->read_at(offset, buf.first(buf.size() / 2 / block_align * block_align));
      co_return io_error();
    }
    co_return co_await inner_->read_at(offset, buf);
  }
  awaitable<std::error_code> readv_at(std::uint64_t offset,
                                      std::vector<std::span<char>> bufs) override {
    // (short reads: piece by piece through read_at above, each one cut short)
    if (plan_->short_reads.load()) co_return co_await block_file::readv_at(offset, std::move(bufs));
    ++plan_->reads;
    co_await delay();
    if (int e = plan_->read_errno.load()) co_return std::error_code(e, std::system_category());
    co_return co_await inner_->readv_at(offset, std::move(bufs));
  }
  awaitable<std::error_code> writev_at(std::uint64_t offset,
                                       std::vector<std::span<const char>> bufs) override {
    ++plan_->writes;
    co_await delay();
    if (int e = plan_->write_errno.load()) co_return std::error_code(e, std::system_category());
    co_return co_await inner_->writev_at(offset, std::move(bufs));
  }
  awaitable<std::error_code> write_at(std::uint64_t offset, std::span<const char> buf) override {
    ++plan_->writes;
    co_await delay();
    if (int e = plan_->write_errno.load()) co_return std::error_code(e, std::system_category());
    co_return co_await inner_->write_at(offset, buf);
  }

 private:
  awaitable<void> delay() {
    asio::steady_timer t(co_await asio::this_coro::executor);
    while (plan_->hang.load()) {
      t.expires_after(std::chrono::milliseconds(5));
      (void)co_await t.async_wait(use_tuple);
    }
    const unsigned ms = plan_->delay_ms.load();
    if (ms == 0) co_return;
    if (!plan_->serial) {
      t.expires_after(std::chrono::milliseconds(ms));
    } else {  // (served after the operations queued before it)
      using namespace std::chrono;
      const std::int64_t now =
          duration_cast<nanoseconds>(steady_clock::now().time_since_epoch()).count();
      const std::int64_t service = duration_cast<nanoseconds>(milliseconds(ms)).count();
      std::int64_t before = plan_->busy_until_ns.load(), done = 0;
      do {
        done = std::max(before, now) + service;
      } while (!plan_->busy_until_ns.compare_exchange_weak(before, done));
      t.expires_at(steady_clock::time_point(nanoseconds(done)));
    }
    (void)co_await t.async_wait(use_tuple);
  }
  std::shared_ptr<block_file> inner_;
  std::shared_ptr<fault_plan> plan_;
};

}  // namespace

awaitable<std::error_code> block_file::writev_at(std::uint64_t offset,
                                                 std::vector<std::span<const char>> bufs) {
  co_return co_await finish_pieces(*this, offset, std::move(bufs), 0);
}

awaitable<std::error_code> block_file::readv_at(std::uint64_t offset,
                                                std::vector<std::span<char>> bufs) {
  co_return co_await finish_pieces(*this, offset, std::move(bufs), 0);
}

std::shared_ptr<block_file> open_direct_file(const std::string& path, std::uint64_t size) {
  bool direct = true;
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_DIRECT, 0600);
  if (fd < 0 && errno == EINVAL) {  // (no O_DIRECT here: tmpfs, some FUSE filesystems)
    direct = false;
    fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    log::event("tier", spdlog::level::warn,
               "the disk cache's filesystem has no O_DIRECT: data goes through the page cache",
               {{"path", path}});
  }
  if (fd < 0) throw std::system_error(errno, std::system_category(), "cannot open " + path);
  struct stat st {};
  if (::fstat(fd, &st) == 0 && static_cast<std::uint64_t>(st.st_size) > size &&
      ::ftruncate(fd, static_cast<off_t>(size)) != 0) {
    int e = errno;
    ::close(fd);
    throw std::system_error(e, std::system_category(), "cannot truncate " + path);
  }
  if (int e = ::posix_fallocate(fd, 0, static_cast<off_t>(size)); e != 0) {
    ::close(fd);
    throw std::system_error(e, std::system_category(),
                            "cannot preallocate " + std::to_string(size) + " bytes for " + path);
  }
  return std::make_shared<direct_file>(fd, direct);
}

file_opener fault_opener(std::shared_ptr<fault_plan> plan, file_opener inner) {
  return [plan, inner](const std::string& path, std::uint64_t size) -> std::shared_ptr<block_file> {
    return std::make_shared<fault_file>(inner(path, size), plan);
  };
}

}  // namespace valkyrie::tier
