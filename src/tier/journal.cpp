#include "tier/journal.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <utility>

#include "tier/crc32c.hpp"

#if defined(BOOST_ASIO_HAS_FILE)
#include <boost/asio/random_access_file.hpp>
#include <boost/asio/write_at.hpp>
#endif

namespace valkyrie::tier {

namespace {

constexpr std::string_view journal_magic = "VKYJRN02";
constexpr std::uint32_t max_payload = 1 << 16;

template <class T>
void put(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out.append(b, sizeof(T));
}
void put_string(std::string& out, const std::string& s) {
  put<std::uint16_t>(out, static_cast<std::uint16_t>(s.size()));
  out += s;
}

struct reader {
  std::string_view in;
  bool ok = true;
  template <class T>
  T get() {
    T v{};
    if (in.size() < sizeof(T)) {
      ok = false;
      return v;
    }
    std::memcpy(&v, in.data(), sizeof(T));
    in.remove_prefix(sizeof(T));
    return v;
  }
  std::string get_string() {
    auto n = get<std::uint16_t>();
    if (!ok || in.size() < n) {
      ok = false;
      return {};
    }
    std::string s(in.substr(0, n));
    in.remove_prefix(n);
    return s;
  }
};

void frame(std::string& out, const std::string& payload) {
  put<std::uint32_t>(out, static_cast<std::uint32_t>(payload.size()));
  put<std::uint32_t>(out, crc32c(payload.data(), payload.size()));
  out += payload;
}

std::error_code write_all(int fd, std::string_view s) {
  while (!s.empty()) {
    ssize_t n = ::write(fd, s.data(), s.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return {errno, std::system_category()};
    s.remove_prefix(static_cast<std::size_t>(n));
  }
  return {};
}

}  // namespace

void encode_insert(std::string& out, std::uint32_t slot, std::uint32_t offset, bool packed,
                   const slot_record& r) {
  std::string p;
  put<std::uint8_t>(p, static_cast<std::uint8_t>(record_type::insert));
  put<std::uint32_t>(p, slot);
  put<std::uint32_t>(p, offset);
  put<std::uint8_t>(p, packed ? 1 : 0);
  put<std::uint64_t>(p, r.seq);
  put<std::uint32_t>(p, r.length);
  put<std::uint32_t>(p, r.crc);
  put<std::uint32_t>(p, r.id.chunk_size);
  put<std::uint64_t>(p, r.id.index);
  put<std::uint64_t>(p, r.id.object->size);
  put_string(p, r.id.object->bucket);
  put_string(p, r.id.object->key);
  put_string(p, r.id.object->etag);
  frame(out, p);
}

void encode_remove(std::string& out, std::uint32_t slot) {
  std::string p;
  put<std::uint8_t>(p, static_cast<std::uint8_t>(record_type::remove));
  put<std::uint32_t>(p, slot);
  frame(out, p);
}

void encode_remove_member(std::string& out, std::uint32_t slot, std::uint32_t offset) {
  std::string p;
  put<std::uint8_t>(p, static_cast<std::uint8_t>(record_type::remove_member));
  put<std::uint32_t>(p, slot);
  put<std::uint32_t>(p, offset);
  frame(out, p);
}

std::size_t decode_record(std::string_view in, journal_record& out) {
  if (in.size() < 8) return 0;
  std::uint32_t len, crc;
  std::memcpy(&len, in.data(), 4);
  std::memcpy(&crc, in.data() + 4, 4);
  if (len == 0 || len > max_payload || in.size() - 8 < len) return 0;
  if (crc32c(in.data() + 8, len) != crc) return 0;
  reader r{in.substr(8, len)};
  auto type = r.get<std::uint8_t>();
  out.slot = r.get<std::uint32_t>();
  if (type == static_cast<std::uint8_t>(record_type::remove)) {
    out.type = record_type::remove;
    return r.ok && r.in.empty() ? 8 + len : 0;
  }
  if (type == static_cast<std::uint8_t>(record_type::remove_member)) {
    out.type = record_type::remove_member;
    out.offset = r.get<std::uint32_t>();
    return r.ok && r.in.empty() ? 8 + len : 0;
  }
  if (type != static_cast<std::uint8_t>(record_type::insert)) return 0;
  out.type = record_type::insert;
  out.offset = r.get<std::uint32_t>();
  const auto packed = r.get<std::uint8_t>();
  if (packed > 1) return 0;
  out.packed = packed == 1;
  out.rec.seq = r.get<std::uint64_t>();
  out.rec.length = r.get<std::uint32_t>();
  out.rec.crc = r.get<std::uint32_t>();
  out.rec.id.chunk_size = r.get<std::uint32_t>();
  out.rec.id.index = r.get<std::uint64_t>();
  auto size = r.get<std::uint64_t>();
  auto bucket = r.get_string();
  auto key = r.get_string();
  auto etag = r.get_string();
  if (!r.ok || !r.in.empty()) return 0;
  out.rec.id.object = cache::make_version(std::move(bucket), std::move(key), std::move(etag), size);
  return 8 + len;
}

journal::journal(journal&& o) noexcept {
  *this = std::move(o);
}
journal& journal::operator=(journal&& o) noexcept {
  std::swap(path_, o.path_);
  std::swap(fd_, o.fd_);
  std::swap(bytes_, o.bytes_);
  std::swap(appended_, o.appended_);
  std::swap(rewriting_, o.rewriting_);
  std::swap(tail_, o.tail_);
  std::swap(tail_records_, o.tail_records_);
  return *this;
}
journal::~journal() {
  if (fd_ >= 0) ::close(fd_);
}

journal journal::open(const std::string& path,
                      const std::function<void(const journal_record&)>& apply,
                      replay_stats& stats) {
  auto started = std::chrono::steady_clock::now();
  journal j;
  j.path_ = path;
  j.fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (j.fd_ < 0) throw std::system_error(errno, std::system_category(), "cannot open " + path);
  ::unlink(j.checkpoint_path().c_str());  // (a background checkpoint a kill -9 cut short)
  struct stat st {};
  if (::fstat(j.fd_, &st) != 0)
    throw std::system_error(errno, std::system_category(), "cannot stat " + path);
  // The whole journal in one sequential read.
  std::string all(static_cast<std::size_t>(st.st_size), '\0');
  std::size_t got = 0;
  while (got < all.size()) {
    ssize_t n = ::pread(j.fd_, all.data() + got, all.size() - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw std::system_error(errno, std::system_category(), "cannot read " + path);
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  all.resize(got);
  std::size_t good = 0;
  if (all.size() >= journal_magic.size() &&
      std::string_view(all).substr(0, journal_magic.size()) == journal_magic) {
    good = journal_magic.size();
    journal_record rec;
    for (;;) {
      std::size_t n = decode_record(std::string_view(all).substr(good), rec);
      if (n == 0) break;
      apply(rec);
      ++stats.records;
      good += n;
    }
  }
  stats.torn_bytes = all.size() > good ? all.size() - good : 0;
  if (good == 0) {  // new, or not a journal: start it
    if (::ftruncate(j.fd_, 0) != 0 || write_all(j.fd_, journal_magic))
      throw std::system_error(errno, std::system_category(), "cannot write " + path);
    good = journal_magic.size();
  } else if (stats.torn_bytes > 0 && ::ftruncate(j.fd_, static_cast<off_t>(good)) != 0) {
    throw std::system_error(errno, std::system_category(), "cannot truncate " + path);
  }
  if (::lseek(j.fd_, static_cast<off_t>(good), SEEK_SET) < 0)
    throw std::system_error(errno, std::system_category(), "cannot seek " + path);
  j.bytes_ = good;
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return j;
}

std::error_code journal::append(std::string_view framed) {
  const off_t at = ::lseek(fd_, 0, SEEK_CUR);
  if (auto ec = write_all(fd_, framed)) {
    // (a record cut short, by ENOSPC say, would end the replay there: later appends must
    // follow the last good one)
    if (at >= 0 && ::ftruncate(fd_, at) == 0) ::lseek(fd_, at, SEEK_SET);
    return ec;
  }
  bytes_ += framed.size();
  ++appended_;
  if (rewriting_) {
    tail_ += framed;
    ++tail_records_;
  }
  return {};
}

std::error_code journal::sync() {
  return ::fdatasync(fd_) == 0 ? std::error_code() : std::error_code(errno, std::system_category());
}

std::error_code journal::rewrite(std::string_view framed) {
  if (rewriting_) {  // (a checkpoint being written in the background: stale now)
    ::unlink(checkpoint_path().c_str());
    abort_rewrite();
  }
  const std::string tmp = path_ + ".new";
  int fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return {errno, std::system_category()};
  std::error_code ec = write_all(fd, journal_magic);
  if (!ec) ec = write_all(fd, framed);
  if (!ec && ::fsync(fd) != 0) ec = {errno, std::system_category()};
  if (!ec && ::rename(tmp.c_str(), path_.c_str()) != 0) ec = {errno, std::system_category()};
  if (ec) {
    ::close(fd);
    ::unlink(tmp.c_str());
    return ec;
  }
  ::close(fd_);
  fd_ = fd;
  ::lseek(fd_, 0, SEEK_END);
  bytes_ = journal_magic.size() + framed.size();
  appended_ = 0;
  return {};
}

void journal::begin_rewrite() {
  rewriting_ = true;
  tail_.clear();
  tail_records_ = 0;
}

void journal::abort_rewrite() {
  rewriting_ = false;
  tail_.clear();
  tail_.shrink_to_fit();
  tail_records_ = 0;
}

awaitable<std::error_code> journal::write_rewrite(std::string framed) const {
  // (path_ does not change after open; not rewrite()'s temporary, which may replace the journal
  // meanwhile)
  const std::string tmp = checkpoint_path();
  framed.insert(0, journal_magic);
#if defined(BOOST_ASIO_HAS_FILE)
  // O_SYNC: the write completes when it is on the disk (no fsync to wait for afterwards), and
  // it completes on this reactor's io_uring, which goes on serving others meanwhile.
  std::error_code ec;
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_SYNC, 0600);
  if (fd < 0) ec = {errno, std::system_category()};
  if (!ec) {
    asio::random_access_file file(co_await asio::this_coro::executor, fd);  // (owns fd)
    auto [wec, n] = co_await asio::async_write_at(file, 0, asio::buffer(framed), use_tuple);
    if (wec)
      ec = wec;
    else if (n != framed.size())
      ec = std::make_error_code(std::errc::io_error);
  }
  if (ec) ::unlink(tmp.c_str());
  co_return ec;
#else
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) co_return std::error_code(errno, std::system_category());
  std::error_code ec = write_all(fd, framed);
  if (!ec && ::fsync(fd) != 0) ec = {errno, std::system_category()};
  ::close(fd);
  if (ec) ::unlink(tmp.c_str());
  co_return ec;
#endif
}

std::error_code journal::finish_rewrite() {
  const std::string tmp = checkpoint_path();
  if (!rewriting_) return {};  // (rewrite() replaced the journal meanwhile and removed this)
  std::error_code ec;
  int fd = ::open(tmp.c_str(), O_RDWR | O_CLOEXEC);
  const off_t end = fd < 0 ? -1 : ::lseek(fd, 0, SEEK_END);
  if (fd < 0 || end < 0) ec = {errno, std::system_category()};
  // (the records appended meanwhile: in the page cache, as every append is)
  if (!ec) ec = write_all(fd, tail_);
  if (!ec && ::rename(tmp.c_str(), path_.c_str()) != 0) ec = {errno, std::system_category()};
  if (ec) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    abort_rewrite();
    return ec;
  }
  ::close(fd_);
  fd_ = fd;
  bytes_ = static_cast<std::uint64_t>(end) + tail_.size();
  appended_ = tail_records_;
  abort_rewrite();
  return {};
}

}  // namespace valkyrie::tier
