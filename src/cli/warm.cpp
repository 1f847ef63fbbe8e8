// `valkyrie warm MOUNT [ORDER_FILE]`: fills a running mount's disk tier before a job starts.
//
// Writes "#!warm" and the order (one key per line, relative to the mount; none: every file, in
// listing order) to MOUNT/.valkyrie/order; the daemon fetches those chunks from S3 to its disk
// tier, in that order, up to the tier's size, without touching its memory cache or the training
// order in force (fs/warm.cpp). Progress is the order file's "# warm:" line, polled here: a
// progress bar on a terminal, a plain line every 5 s otherwise. Exit 0 when done, 1 on an error
// (no valkyrie mount, no disk tier, chunks that failed), 2 on bad usage.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>

namespace {

struct progress {
  std::string state;
  unsigned long long done = 0, planned = 0, done_bytes = 0, planned_bytes = 0, written = 0,
                     present = 0, failed = 0;
};

std::optional<std::string> slurp(const std::string& path) {
  std::ifstream f(path);
  if (!f) return std::nullopt;
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

std::string line_starting(const std::string& text, const std::string& prefix) {
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);)
    if (l.rfind(prefix, 0) == 0) return l;
  return {};
}

std::optional<progress> parse(const std::string& line) {
  // "# warm: running, D of P chunks, B of T bytes, W written, A already there, F failed"
  progress p;
  char state[32] = {};
  if (std::sscanf(line.c_str(),
                  "# warm: %31[a-z], %llu of %llu chunks, %llu of %llu bytes, %llu written, %llu "
                  "already there, %llu failed",
                  state, &p.done, &p.planned, &p.done_bytes, &p.planned_bytes, &p.written,
                  &p.present, &p.failed) != 8)
    return std::nullopt;
  p.state = state;
  return p;
}

std::string gib(unsigned long long b) {
  char s[32];
  std::snprintf(s, sizeof s, "%.2f GiB", static_cast<double>(b) / (1ull << 30));
  return s;
}

}  // namespace

int warm_main(int argc, char** argv) {
  if (argc < 2 || argc > 3 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::cerr
        << "usage: valkyrie warm MOUNT [ORDER_FILE]\n"
           "  fills MOUNT's disk tier (--disk-cache) from S3 in the order of ORDER_FILE (one key\n"
           "  per line, relative to the mount; '-': stdin), or every file in listing order,\n"
           "  up to the tier's size\n";
    return argc == 2 ? 0 : 2;
  }
  const std::string mount = argv[1];
  const std::string control = mount + "/.valkyrie/order";
  auto current = slurp(control);
  if (!current) {
    std::cerr
        << "valkyrie warm: " << mount
        << " is not a valkyrie mount (no .valkyrie/order; or it runs with --no-control-files)\n";
    return 1;
  }
  if (line_starting(*current, "# disk tier:") == "# disk tier: none") {
    std::cerr << "valkyrie warm: " << mount
              << " has no disk tier: mount it with --disk-cache DIR --disk-cache-size SIZE\n";
    return 1;
  }
  std::string text = "#!warm\n";
  if (argc == 3) {
    std::optional<std::string> order;
    if (std::string(argv[2]) == "-") {
      std::stringstream s;
      s << std::cin.rdbuf();
      order = s.str();
    } else {
      order = slurp(argv[2]);
    }
    if (!order) {
      std::cerr << "valkyrie warm: cannot read " << argv[2] << ": " << std::strerror(errno) << "\n";
      return 1;
    }
    text += *order;
  }
  {
    std::FILE* f = std::fopen(control.c_str(), "w");
    if (!f) {
      std::cerr << "valkyrie warm: cannot write " << control << ": " << std::strerror(errno)
                << "\n";
      return 1;
    }
    const bool wrote = std::fwrite(text.data(), 1, text.size(), f) == text.size();
    const int closed = std::fclose(f);  // (the daemon answers at close)
    if (!wrote || closed != 0) {
      const int e = errno;
      std::cerr << "valkyrie warm: " << mount << " refused the warm-up: "
                << (e == EINVAL    ? "no line of the order names a file of the mount"
                    : e == ENOTSUP ? "it has no disk tier"
                                   : std::strerror(e))
                << "\n";
      return 1;
    }
  }
  const bool tty = ::isatty(STDERR_FILENO);
  const auto start = std::chrono::steady_clock::now();
  auto last_line = start - std::chrono::seconds(10);
  for (;;) {
    auto now_text = slurp(control);
    std::optional<progress> p;
    if (now_text) p = parse(line_starting(*now_text, "# warm:"));
    if (!p) {
      std::cerr << "valkyrie warm: lost the mount's progress (unmounted?)\n";
      return 1;
    }
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double rate = secs > 0 ? static_cast<double>(p->done_bytes) / secs / (1 << 20) : 0;
    const double frac = p->planned_bytes ? static_cast<double>(p->done_bytes) /
                                               static_cast<double>(p->planned_bytes)
                                         : 1;
    const bool over = p->state != "running";
    if (tty) {
      const int width = 30, filled = static_cast<int>(frac * width);
      std::fprintf(stderr, "\r[%s%s] %3.0f%% %s of %s, %.0f MiB/s ",
                   std::string(filled, '#').c_str(), std::string(width - filled, '.').c_str(),
                   frac * 100, gib(p->done_bytes).c_str(), gib(p->planned_bytes).c_str(), rate);
      if (over) std::fprintf(stderr, "\n");
    } else if (over || std::chrono::steady_clock::now() - last_line >= std::chrono::seconds(5)) {
      last_line = std::chrono::steady_clock::now();
      std::fprintf(stderr, "warm: %llu of %llu chunks, %s of %s (%.0f%%), %.0f MiB/s\n", p->done,
                   p->planned, gib(p->done_bytes).c_str(), gib(p->planned_bytes).c_str(),
                   frac * 100, rate);
    }
    if (over) {
      std::fprintf(stderr, "warm %s: %llu chunks written, %llu already on the disk, %llu failed\n",
                   p->state.c_str(), p->written, p->present, p->failed);
      return p->state == "done" && p->failed == 0 ? 0 : 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}
