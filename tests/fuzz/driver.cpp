// A bounded, deterministic fuzz driver for the targets in tests/fuzz/ (each exports
// LLVMFuzzerTestOneInput): it builds with GCC, so the targets run in the normal and the sanitizer
// build and in CI. (clang's libFuzzer, with coverage feedback, is the tool for long runs; see
// docs/testing.md.)
//
//   fuzz_NAME [--seconds S] [--runs N] [--seed N] [--max-len N] [--regressions DIR]...
//             [--corpus DIR]... [--dict FILE] [--artifacts DIR] [FILE...]
//
// First every file under --regressions (inputs that once crashed: always replayed), then every
// file under --corpus, then mutations of those (libFuzzer-style byte edits, splices, dictionary
// tokens, odd numbers) until S seconds or N runs are used up; the same seed gives the same
// sequence of inputs. With FILE arguments only those files run. An input that crashes (a
// sanitizer report, an abort, a signal) is written to --artifacts as crash-NAME-HASH, to be
// kept as a regression input once the bug is fixed.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "fuzz.hpp"

#if defined(__SANITIZE_ADDRESS__)
#define VALKYRIE_FUZZ_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define VALKYRIE_FUZZ_ASAN 1
#endif
#endif
#ifdef VALKYRIE_FUZZ_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

extern "C" __attribute__((weak)) int LLVMFuzzerInitialize(int* argc, char*** argv);

// Sanitizer defaults for a driver run by hand (ASAN_OPTIONS / UBSAN_OPTIONS override them): a
// report aborts, so that the SIGABRT handler below saves the input. (GCC links UBSan as its own
// runtime, which does not call the death callback ASan's runtime keeps.)
extern "C" const char* __asan_default_options() {
  return "abort_on_error=1";
}
extern "C" const char* __ubsan_default_options() {
  return "abort_on_error=1:halt_on_error=1:print_stacktrace=1";
}

namespace {
namespace fs = std::filesystem;

// ---- crash artifacts ----
// The input being run, for the death handlers (which may only use async-signal-safe calls).
const char* current_data = nullptr;
std::size_t current_size = 0;
char artifact_path[4096];
volatile sig_atomic_t artifact_written = 0;

std::uint64_t fnv1a(const std::string& s) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

void write_artifact() {
  if (artifact_written || !current_data) return;
  artifact_written = 1;
  int fd = ::open(artifact_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return;
  std::size_t off = 0;
  while (off < current_size) {
    ssize_t n = ::write(fd, current_data + off, current_size - off);
    if (n <= 0) break;
    off += static_cast<std::size_t>(n);
  }
  ::close(fd);
  const char msg[] = "fuzz driver: the crashing input is in ";
  (void)!::write(2, msg, sizeof msg - 1);
  (void)!::write(2, artifact_path, std::strlen(artifact_path));
  (void)!::write(2, "\n", 1);
}

void on_fatal_signal(int sig) {
  write_artifact();
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

void install_death_handlers() {
#ifdef VALKYRIE_FUZZ_ASAN
  // ASan (and UBSan in the same runtime) report, then call this before aborting.
  __sanitizer_set_death_callback(write_artifact);
  const int signals[] = {SIGABRT};  // ASan handles the others itself
#else
  const int signals[] = {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL};
#endif
  for (int sig : signals) ::signal(sig, on_fatal_signal);
}

std::string artifacts_dir = ".";
std::string target_name = "fuzz";

void run_one(const std::string& input) {
  // Named by content, so the same crash found twice is one file.
  std::snprintf(artifact_path, sizeof artifact_path, "%s/crash-%s-%016llx", artifacts_dir.c_str(),
                target_name.c_str(), static_cast<unsigned long long>(fnv1a(input)));
  // A copy of exactly `size` bytes on the heap: ASan sees reads past the end.
  std::unique_ptr<std::uint8_t[]> copy(new std::uint8_t[input.size()]);
  std::memcpy(copy.get(), input.data(), input.size());
  current_data = reinterpret_cast<const char*>(copy.get());
  current_size = input.size();
  LLVMFuzzerTestOneInput(copy.get(), input.size());
  current_data = nullptr;
}

// ---- inputs ----
std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<fs::path> files_under(const std::string& dir) {
  std::vector<fs::path> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (auto& e : fs::recursive_directory_iterator(dir, ec))
    if (e.is_regular_file() && e.path().filename().string()[0] != '.') out.push_back(e.path());
  std::sort(out.begin(), out.end());  // a stable order: the run is reproducible
  return out;
}

// libFuzzer's dictionary format: one "token" per line (optionally name="token"), with \\, \"
// and \xNN escapes; '#' comments.
std::vector<std::string> read_dict(const std::string& path) {
  std::vector<std::string> out;
  std::ifstream in(path);
  if (!in) {
    std::fprintf(stderr, "fuzz driver: cannot read the dictionary %s\n", path.c_str());
    std::exit(2);
  }
  std::string line;
  while (std::getline(in, line)) {
    auto first = line.find('"'), last = line.rfind('"');
    if (line.empty() || line[0] == '#' || first == std::string::npos || last <= first) continue;
    std::string token;
    for (std::size_t i = first + 1; i < last; ++i) {
      if (line[i] == '\\' && i + 1 < last) {
        if (line[i + 1] == 'x' && i + 3 < last) {
          token += static_cast<char>(std::stoi(line.substr(i + 2, 2), nullptr, 16));
          i += 3;
        } else {
          token += line[++i];
        }
      } else {
        token += line[i];
      }
    }
    if (!token.empty()) out.push_back(token);
  }
  return out;
}

// ---- mutations ----
class mutator {
 public:
  mutator(std::uint64_t seed, std::size_t max_len, std::vector<std::string> dict)
      : rng_(seed), max_len_(max_len), dict_(std::move(dict)) {}

  std::string next(const std::vector<std::string>& pool) {
    std::string s = pool[pick(pool.size())];
    for (unsigned n = 1 + pick(5); n > 0; --n) mutate(s, pool);
    if (s.size() > max_len_) s.resize(max_len_);
    return s;
  }
  std::size_t pick(std::size_t n) { return n ? static_cast<std::size_t>(rng_() % n) : 0; }

 private:
  char random_byte() {
    // Mostly the bytes parsers care about, sometimes anything.
    static const char special[] = "\0\r\n\t %&<>\"'\\/=;:,.-+#[]{}0159aZ\x7f\x80\xff";
    return pick(2) ? special[pick(sizeof special - 1)] : static_cast<char>(rng_());
  }

  void mutate(std::string& s, const std::vector<std::string>& pool) {
    static const char* numbers[] = {"0",
                                    "-1",
                                    "1",
                                    "255",
                                    "256",
                                    "65535",
                                    "4294967295",
                                    "4294967296",
                                    "2147483648",
                                    "9223372036854775807",
                                    "9223372036854775808",
                                    "18446744073709551615",
                                    "18446744073709551616",
                                    "99999999999999999999999999",
                                    "1e308",
                                    "0.0000001",
                                    "-0",
                                    "00000000000000000001"};
    std::size_t pos = pick(s.size() + 1);
    switch (pick(12)) {
      case 0:  // erase a run
        if (!s.empty())
          s.erase(std::min(pos, s.size() - 1), 1 + pick(std::min<std::size_t>(16, s.size())));
        break;
      case 1:  // insert bytes
        for (std::size_t n = 1 + pick(8); n > 0; --n)
          s.insert(s.begin() + static_cast<long>(pos), random_byte());
        break;
      case 2:  // change a byte
        if (!s.empty()) s[pick(s.size())] = random_byte();
        break;
      case 3:  // flip a bit
        if (!s.empty()) s[pick(s.size())] ^= static_cast<char>(1u << pick(8));
        break;
      case 4: {  // duplicate a run somewhere else
        if (s.empty()) break;
        std::size_t from = pick(s.size()),
                    len = 1 + pick(std::min<std::size_t>(64, s.size() - from));
        s.insert(pos, s.substr(from, len));
        break;
      }
      case 5: {  // splice in part of another input
        const std::string& other = pool[pick(pool.size())];
        if (other.empty()) break;
        std::size_t from = pick(other.size()), len = 1 + pick(other.size() - from);
        if (pick(2))
          s.insert(pos, other.substr(from, len));
        else
          s = s.substr(0, pos) + other.substr(from);
        break;
      }
      case 6:
      case 7:  // a dictionary token, inserted or written over
        if (dict_.empty()) break;
        if (pick(2))
          s.insert(pos, dict_[pick(dict_.size())]);
        else
          s.replace(pos, dict_[pick(dict_.size())].size(), dict_[pick(dict_.size())]);
        break;
      case 8: {  // replace a run of digits with an odd number
        auto d = s.find_first_of("0123456789", pos);
        if (d == std::string::npos) d = s.find_first_of("0123456789");
        if (d == std::string::npos) {
          s.insert(pos, numbers[pick(std::size(numbers))]);
          break;
        }
        auto e = s.find_first_not_of("0123456789", d);
        s.replace(d, (e == std::string::npos ? s.size() : e) - d,
                  numbers[pick(std::size(numbers))]);
        break;
      }
      case 9:  // truncate
        s.resize(pos);
        break;
      case 10:  // swap two bytes
        if (s.size() > 1) std::swap(s[pick(s.size())], s[pick(s.size())]);
        break;
      case 11: {  // repeat a byte many times (long names, deep nesting)
        char c = s.empty() ? random_byte() : s[pick(s.size())];
        s.insert(pos, 1 + pick(pick(2) ? 64 : 2048), c);
        break;
      }
    }
  }

  std::mt19937_64 rng_;
  std::size_t max_len_;
  std::vector<std::string> dict_;
};

[[noreturn]] void usage(const char* msg) {
  std::fprintf(
      stderr,
      "fuzz driver: %s\nusage: %s [--seconds S] [--runs N] [--seed N] [--max-len N] "
      "[--regressions DIR]... [--corpus DIR]... [--dict FILE] [--artifacts DIR] [FILE...]\n",
      msg, target_name.c_str());
  std::exit(2);
}
}  // namespace

int main(int argc, char** argv) {
  target_name = fs::path(argv[0]).filename().string();
  if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
  double seconds = 0;
  unsigned long long runs = 0, seed = 1;
  std::size_t max_len = 4096;
  std::vector<std::string> regression_dirs, corpus_dirs, files;
  std::string dict_path;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(("missing value for " + a).c_str());
      return argv[++i];
    };
    try {
      if (a == "--seconds")
        seconds = std::stod(value());
      else if (a == "--runs")
        runs = std::stoull(value());
      else if (a == "--seed")
        seed = std::stoull(value());
      else if (a == "--max-len")
        max_len = std::stoull(value());
      else if (a == "--regressions")
        regression_dirs.push_back(value());
      else if (a == "--corpus")
        corpus_dirs.push_back(value());
      else if (a == "--dict")
        dict_path = value();
      else if (a == "--artifacts")
        artifacts_dir = value();
      else if (a.rfind("--", 0) == 0)
        usage(("unknown option " + a).c_str());
      else
        files.push_back(a);
    } catch (const std::logic_error&) {
      usage(("bad value for " + a).c_str());
    }
  }
  if (const char* s = std::getenv("VALKYRIE_FUZZ_SECONDS"); s && *s) seconds = std::atof(s);
  if (const char* s = std::getenv("VALKYRIE_FUZZ_SEED"); s && *s)
    seed = std::strtoull(s, nullptr, 10);
  install_death_handlers();

  if (!files.empty()) {
    artifact_written = 1;  // the input is a file already
    for (auto& f : files) {
      std::error_code ec;
      if (!fs::is_regular_file(f, ec)) usage(("not a file: " + f).c_str());
      run_one(read_file(f));
    }
    std::printf("%s: ran %zu given inputs\n", target_name.c_str(), files.size());
    return 0;
  }

  std::vector<std::string> pool{std::string()};
  std::size_t regressions = 0, corpus = 0;
  for (auto& d : regression_dirs)
    for (auto& p : files_under(d)) {
      pool.push_back(read_file(p));
      run_one(pool.back());
      ++regressions;
    }
  for (auto& d : corpus_dirs)
    for (auto& p : files_under(d)) {
      pool.push_back(read_file(p));
      run_one(pool.back());
      ++corpus;
    }
  run_one(std::string());

  mutator m(seed, max_len, dict_path.empty() ? std::vector<std::string>{} : read_dict(dict_path));
  const std::size_t initial = pool.size();
  auto start = std::chrono::steady_clock::now();
  auto deadline = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                              std::chrono::duration<double>(seconds));
  unsigned long long done = 0;
  while ((seconds > 0 || runs > 0) && (runs == 0 || done < runs) &&
         (seconds <= 0 || std::chrono::steady_clock::now() < deadline)) {
    std::string input = m.next(pool);
    run_one(input);
    ++done;
    // Without coverage feedback, keep some mutants as bases for deeper mutation chains; the
    // seed inputs always stay.
    if (m.pick(8) == 0) {
      if (pool.size() < initial + 256)
        pool.push_back(std::move(input));
      else
        pool[initial + m.pick(256)] = std::move(input);
    }
  }
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf(
      "%s: %zu regression + %zu corpus inputs replayed; %llu mutated runs in %.1f s (seed %llu)\n",
      target_name.c_str(), regressions, corpus, done, took, seed);
  return 0;
}
