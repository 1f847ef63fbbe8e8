// valkyrie-passthrough-probe: how fast a file reads through FUSE passthrough (Linux >= 6.9) against
// the same bytes through FUSE's page cache and from tmpfs, on this kernel. A measurement tool for
// the read path's design (docs/benchmarks.md), not part of the daemon.
//
// It mounts a minimal FUSE filesystem on MOUNTPOINT speaking the kernel ABI directly (Debian 12's
// headers predate passthrough; the newer fields come from src/fuse/passthrough_abi.hpp). Its
// files hold the same SIZE MiB, kept in one file of /dev/shm:
//   cached            READs answered from the tmpfs file's mapping (writev to /dev/fuse), without
//                     FOPEN_KEEP_CACHE, so every open starts with an empty page cache: the path
//                     of the daemon's reads from its chunk cache today;
//   passthrough       opened with FOPEN_PASSTHROUGH on the tmpfs file (one backing id for all
//                     opens): the kernel reads the backing file itself;
//   passthrough_each  the same, with a backing id registered at each open, closed at release.
// It checks each file's bytes once; then, ROUNDS times alternating, reads the page-cache file, the
// passthrough file and the tmpfs file itself (the bound) whole with a 1 MiB buffer, printing each
// read's time and the server thread's CPU per GiB; then times open + close of each file.
// Usage: valkyrie-passthrough-probe MOUNTPOINT [SIZE_MIB=64] [ROUNDS=10]   (root, /dev/fuse)
// Exit: 0 measured; 77 when the kernel refuses passthrough or /dev/fuse is missing; 1 on errors.
#include <fcntl.h>
#include <linux/fuse.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "fuse/passthrough_abi.hpp"

namespace {

namespace abi = valkyrie::fuse::passthrough_abi;  // the 7.40 additions, as the daemon carries them

// passthrough_each: a backing id registered at every open and closed at its release: what an
// open costs when nothing is kept per object.
constexpr std::uint64_t root_ino = 1, cached_ino = 2, passthrough_ino = 3, passthrough_each_ino = 4;

struct server {
  int dev = -1, backing_fd = -1;
  const char* data = nullptr;
  std::uint64_t size = 0;
  int backing_id = -1;  // registered at the first passthrough open
  bool passthrough_granted = false;
  std::atomic<bool> init_done{false}, stop{false};
  std::vector<char> buf = std::vector<char>(FUSE_MIN_READ_BUFFER + (2 << 20));

  void reply(std::uint64_t unique, int error, const void* arg = nullptr, std::size_t n = 0) {
    fuse_out_header h{static_cast<std::uint32_t>(sizeof h + n), -error, unique};
    iovec iov[2] = {{&h, sizeof h}, {const_cast<void*>(arg), n}};
    if (writev(dev, iov, n ? 2 : 1) < 0 && errno != ENOENT) std::perror("writev /dev/fuse");
  }
  fuse_attr attr_of(std::uint64_t ino) const {
    fuse_attr a{};
    a.ino = ino;
    a.nlink = 1;
    a.blksize = 4096;
    if (ino == root_ino) {
      a.mode = S_IFDIR | 0555;
      a.nlink = 2;
    } else {
      a.mode = S_IFREG | 0444;
      a.size = size;
      a.blocks = (size + 511) / 512;
    }
    return a;
  }
  void serve() {
    while (!stop.load()) {
      ssize_t n = read(dev, buf.data(), buf.size());
      if (n < 0) {
        if (errno == EINTR || errno == ENOENT || errno == EAGAIN) continue;
        if (errno != ENODEV) std::perror("read /dev/fuse");
        return;
      }
      auto* in = reinterpret_cast<fuse_in_header*>(buf.data());
      const char* arg = buf.data() + sizeof *in;
      switch (in->opcode) {
        case FUSE_INIT: {
          auto* i = reinterpret_cast<const fuse_init_in*>(arg);
          std::uint64_t kernel = i->flags;
          if (i->flags & FUSE_INIT_EXT) kernel |= std::uint64_t{i->flags2} << 32;
          std::uint64_t want =
              (FUSE_ASYNC_READ | FUSE_MAX_PAGES | FUSE_INIT_EXT | abi::init_flag) & kernel;
          passthrough_granted = want & abi::init_flag;
          fuse_init_out o{};
          o.major = FUSE_KERNEL_VERSION;
          o.minor = std::min<std::uint32_t>(i->minor, abi::min_minor);
          o.max_readahead = i->max_readahead;
          o.flags = static_cast<std::uint32_t>(want);
          o.flags2 = static_cast<std::uint32_t>(want >> 32);
          o.max_background = 64;
          o.congestion_threshold = 48;
          o.max_write = 1 << 20;
          o.time_gran = 1;
          o.max_pages = 256;
          abi::set_max_stack_depth(o, 1);
          reply(in->unique, 0, &o, sizeof o);
          init_done = true;
          break;
        }
        case FUSE_LOOKUP: {
          std::string name(arg);
          std::uint64_t ino = name == "cached"             ? cached_ino
                              : name == "passthrough"      ? passthrough_ino
                              : name == "passthrough_each" ? passthrough_each_ino
                                                           : 0;
          if (in->nodeid != root_ino || !ino) {
            reply(in->unique, ENOENT);
            break;
          }
          fuse_entry_out e{};
          e.nodeid = ino;
          e.entry_valid = e.attr_valid = 3600;
          e.attr = attr_of(ino);
          reply(in->unique, 0, &e, sizeof e);
          break;
        }
        case FUSE_GETATTR: {
          fuse_attr_out a{};
          a.attr_valid = 3600;
          a.attr = attr_of(in->nodeid);
          reply(in->unique, 0, &a, sizeof a);
          break;
        }
        case FUSE_OPEN: {
          fuse_open_out o{};
          int id = -1;
          if (in->nodeid == passthrough_ino || in->nodeid == passthrough_each_ino) {
            abi::backing_map m{backing_fd, 0, 0};
            if (in->nodeid == passthrough_each_ino)
              id = ioctl(dev, abi::ioc_backing_open, &m);
            else if (backing_id < 0)
              id = backing_id = ioctl(dev, abi::ioc_backing_open, &m);
            else
              id = backing_id;
            if (id < 0) {
              std::perror("FUSE_DEV_IOC_BACKING_OPEN");
              reply(in->unique, EOPNOTSUPP);
              break;
            }
            o.open_flags = abi::fopen_passthrough;
            abi::set_backing_id(o, id);
          }
          // The opener looks the id up after this reply, so it may be closed only at RELEASE.
          if (in->nodeid == passthrough_each_ino) o.fh = static_cast<std::uint32_t>(id);
          reply(in->unique, 0, &o, sizeof o);
          break;
        }
        case FUSE_READ: {
          auto* r = reinterpret_cast<const fuse_read_in*>(arg);
          std::uint64_t off = std::min<std::uint64_t>(r->offset, size);
          std::uint64_t len = std::min<std::uint64_t>(r->size, size - off);
          reply(in->unique, 0, data + off, len);
          break;
        }
        case FUSE_FORGET:
        case FUSE_BATCH_FORGET:
          break;  // no reply
        case FUSE_RELEASE: {
          auto* r = reinterpret_cast<const fuse_release_in*>(arg);
          std::uint32_t closing = static_cast<std::uint32_t>(r->fh);
          if (in->nodeid == passthrough_each_ino &&
              ioctl(dev, abi::ioc_backing_close, &closing) != 0)
            std::perror("FUSE_DEV_IOC_BACKING_CLOSE");
          reply(in->unique, 0);
          break;
        }
        case FUSE_FLUSH:
        case FUSE_OPENDIR:
        case FUSE_RELEASEDIR:
          reply(in->unique, 0);
          break;
        case FUSE_STATFS: {
          fuse_statfs_out s{};
          s.st.bsize = s.st.frsize = 4096;
          s.st.namelen = 255;
          reply(in->unique, 0, &s, sizeof s);
          break;
        }
        case FUSE_DESTROY:
          reply(in->unique, 0);
          return;
        default:
          reply(in->unique, ENOSYS);
      }
    }
  }
};

// Reads `path` whole with a 1 MiB buffer; returns milliseconds, or -1 (and says why).
double read_whole(const std::string& path, std::uint64_t size, std::vector<char>& b) {
  auto t0 = std::chrono::steady_clock::now();
  int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) {
    std::perror(path.c_str());
    return -1;
  }
  std::uint64_t got = 0;
  for (ssize_t n; (n = read(fd, b.data(), b.size())) > 0;) got += n;
  close(fd);
  if (got != size) {
    std::fprintf(stderr, "%s: read %llu of %llu bytes\n", path.c_str(), (unsigned long long)got,
                 (unsigned long long)size);
    return -1;
  }
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// Whether `path` holds exactly the `size` bytes at `want`.
bool same_bytes(const std::string& path, const char* want, std::uint64_t size,
                std::vector<char>& b) {
  int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) return std::perror(path.c_str()), false;
  std::uint64_t at = 0;
  bool same = true;
  for (ssize_t n; same && (n = read(fd, b.data(), b.size())) > 0; at += n)
    same = at + n <= size && std::memcmp(b.data(), want + at, n) == 0;
  close(fd);
  if (!same || at != size) std::fprintf(stderr, "%s: bytes differ from the source\n", path.c_str());
  return same && at == size;
}

// Microseconds per open + close of `path`, the median of `n`.
double open_close_us(const std::string& path, int n) {
  std::vector<double> us;
  for (int i = 0; i < n; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    int fd = open(path.c_str(), O_RDONLY);
    if (fd < 0) return std::perror(path.c_str()), -1;
    close(fd);
    us.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(us.begin(), us.end());
  return us[us.size() / 2];
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MOUNTPOINT [SIZE_MIB=64] [ROUNDS=10]\n", argv[0]);
    return 1;
  }
  std::string mnt = argv[1];
  std::uint64_t size = (argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 64) << 20;
  int rounds = argc > 3 ? std::atoi(argv[3]) : 10;
  if (size == 0 || rounds < 1) {
    std::fprintf(stderr, "SIZE_MIB and ROUNDS must be positive\n");
    return 1;
  }

  server s;
  s.size = size;
  // The bytes, in a file of /dev/shm: the tmpfs bound (a job's local copy), the page-cache file's
  // source (its mapping) and the passthrough file's backing file, all three the same pages.
  std::string shm = "/dev/shm/valkyrie-probe-" + std::to_string(getpid());
  s.backing_fd = open(shm.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (s.backing_fd < 0) return std::perror(shm.c_str()), 1;
  unlink(shm.c_str());  // read back through /proc/self/fd: nothing is left behind, whatever happens
  std::string tmpfs = "/proc/self/fd/" + std::to_string(s.backing_fd);
  {
    std::vector<char> chunk(1 << 20);
    bool written = true;
    for (std::uint64_t at = 0; at < size && written; at += chunk.size()) {
      for (std::size_t i = 0; i < chunk.size(); i += 8) {
        std::uint64_t v = (at + i) * 0x9e3779b97f4a7c15ull;
        std::memcpy(chunk.data() + i, &v, 8);
      }
      std::size_t n = std::min<std::uint64_t>(chunk.size(), size - at);
      written = write(s.backing_fd, chunk.data(), n) == static_cast<ssize_t>(n);
    }
    if (!written) return std::perror(shm.c_str()), 1;
  }
  void* map = mmap(nullptr, size, PROT_READ, MAP_SHARED, s.backing_fd, 0);
  if (map == MAP_FAILED) return std::perror("mmap"), 1;
  s.data = static_cast<const char*>(map);

  s.dev = open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (s.dev < 0) return std::perror("/dev/fuse"), 77;
  std::string opts = "fd=" + std::to_string(s.dev) +
                     ",rootmode=40000,user_id=0,group_id=0,max_read=" + std::to_string(1 << 20);
  if (mount("valkyrie-probe", mnt.c_str(), "fuse.valkyrie-probe", MS_RDONLY | MS_NOSUID | MS_NODEV,
            opts.c_str()) != 0)
    return std::perror(("mount " + mnt).c_str()), 1;
  std::thread t([&] { s.serve(); });
  auto unmount = [&] {
    s.stop = true;
    umount2(mnt.c_str(), MNT_DETACH);
    close(s.dev);  // wakes the server's read with ENODEV
    t.join();
  };

  std::vector<char> b(1 << 20);
  struct stat st {};
  if (stat((mnt + "/cached").c_str(), &st) != 0) {  // waits for INIT
    std::perror("stat");
    unmount();
    return 1;
  }
  // As the daemon does: kernel read-ahead raised from 128 KiB so the page-cache file is read in
  // 1 MiB requests.
  struct stat mst {};
  if (stat(mnt.c_str(), &mst) == 0) {
    std::string ra = "/sys/class/bdi/" + std::to_string(major(mst.st_dev)) + ":" +
                     std::to_string(minor(mst.st_dev)) + "/read_ahead_kb";
    if (FILE* f = std::fopen(ra.c_str(), "w")) {
      std::fputs("1024\n", f);
      std::fclose(f);
    }
  }
  std::printf("kernel granted passthrough: %s\n", s.passthrough_granted ? "yes" : "no");
  if (!s.passthrough_granted) {
    unmount();
    return 77;
  }
  std::vector<double> ms_tmpfs, ms_cached, ms_pass;
  double cpu_cached = 0, cpu_pass = 0;
  // The server's CPU: its thread's clock.
  clockid_t server_clock{};
  pthread_getcpuclockid(t.native_handle(), &server_clock);
  auto server_cpu = [&] {
    timespec ts{};
    clock_gettime(server_clock, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
  };
  bool ok = same_bytes(mnt + "/cached", s.data, size, b) &&
            same_bytes(mnt + "/passthrough", s.data, size, b) &&
            same_bytes(mnt + "/passthrough_each", s.data, size, b);
  for (int r = 0; r < rounds && ok; ++r) {
    double a0 = server_cpu();
    double m = read_whole(mnt + "/cached", size, b);
    double a1 = server_cpu();
    double p = read_whole(mnt + "/passthrough", size, b);
    double a2 = server_cpu();
    cpu_cached += a1 - a0, cpu_pass += a2 - a1;
    double f = read_whole(tmpfs, size, b);
    ok = m >= 0 && p >= 0 && f >= 0;
    ms_cached.push_back(m), ms_pass.push_back(p), ms_tmpfs.push_back(f);
    std::printf(
        "round %2d: tmpfs %6.2f ms   FUSE page cache %6.2f ms   FUSE passthrough %6.2f ms\n", r + 1,
        f, m, p);
  }
  double open_cached = -1, open_pass = -1, open_each = -1;
  for (int r = 0; r < 3 && ok; ++r) {  // alternating, the last round's figures kept
    open_cached = open_close_us(mnt + "/cached", 2000);
    open_pass = open_close_us(mnt + "/passthrough", 2000);
    open_each = open_close_us(mnt + "/passthrough_each", 2000);
    ok = open_cached >= 0 && open_pass >= 0 && open_each >= 0;
  }
  unmount();
  if (!ok) return 1;
  std::printf(
      "open + close, median of 2,000: page cache %.1f us, passthrough %.1f us, passthrough "
      "with a backing id per open %.1f us\n",
      open_cached, open_pass, open_each);
  double gib = double(size) * rounds / (1ull << 30);
  std::printf(
      "median of %d reads of %llu MiB: tmpfs %.2f ms, FUSE page cache %.2f ms (%.2f x), "
      "FUSE passthrough %.2f ms (%.2f x)\n",
      rounds, (unsigned long long)(size >> 20), median(ms_tmpfs), median(ms_cached),
      median(ms_cached) / median(ms_tmpfs), median(ms_pass), median(ms_pass) / median(ms_tmpfs));
  std::printf("server CPU per GiB read: page cache %.3f s, passthrough %.3f s\n", cpu_cached / gib,
              cpu_pass / gib);
  return 0;
}
