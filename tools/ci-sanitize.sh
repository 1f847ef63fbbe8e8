#!/usr/bin/env bash
# The sanitizer pass of CI (.ci/run), also for running by hand: builds BUILD_DIR (default
# build-asan) with AddressSanitizer + UndefinedBehaviorSanitizer (any undefined behaviour
# aborts: -fno-sanitize-recover) and runs the whole test suite there, fuzz suite included.
# Every test runs under tests/support/sanitize-wrap.sh (the build's default test setup), which
# fails it on any report from any process it started. Extra arguments go to `meson test`
# (e.g. `tools/ci-sanitize.sh build-asan --suite fuzz`). See docs/testing.md.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build-asan}
shift || true

# A unity build (each target's sources compiled as one file): the sanitizers make code generation
# the bulk of the time, and every test file otherwise generates Asio's and doctest's templates
# again (docs/testing.md has the figures).
if [[ ! -f $dir/build.ninja ]]; then
  meson setup "$dir" --wrap-mode=nodownload -Db_sanitize=address,undefined -Db_lundef=false \
    -Dcpp_args=-fno-sanitize-recover=undefined -Dcpp_link_args=-fno-sanitize-recover=undefined \
    -Dunity=on -Dunity_size=1000
fi
meson compile -C "$dir"

# LeakSanitizer stops the process's threads with ptrace at exit. Where that is not allowed (some
# containers), every process would end with "LeakSanitizer has encountered a fatal error": check
# once with a known leak, and run without leak detection there, saying so.
probe_dir=$(mktemp -d)
trap 'rm -rf "$probe_dir"' EXIT
cat >"$probe_dir/leak.cpp" <<'CPP'
#include <cstdlib>
__attribute__((noinline)) void leak() { void* volatile p = std::malloc(7); p = nullptr; }
int main() { leak(); }
CPP
c++ -fsanitize=address -g "$probe_dir/leak.cpp" -o "$probe_dir/leak"
probe=$(ASAN_OPTIONS=detect_leaks=1 "$probe_dir/leak" 2>&1 || true)
if [[ $probe == *"LeakSanitizer has encountered a fatal error"* || $probe == *"does not work under ptrace"* ]]; then
  echo "ci-sanitize: LeakSanitizer cannot run here (ptrace refused?): leak detection is off" >&2
  export ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
elif [[ $probe != *"detected memory leaks"* ]]; then
  echo "ci-sanitize: note: the LeakSanitizer probe found no leak; leak detection stays on" >&2
fi

# Every suite runs, the fuzz suite for fuzz_seconds per target (6 s here). The benchmark's
# figures mean nothing under ASan, but its test checks bytes and that every scenario reports, and
# takes ~10 s; Python (the PyTorch loop, valkyrie-order) runs uninstrumented: nothing is
# preloaded.
meson test -C "$dir" --print-errorlogs "$@"
