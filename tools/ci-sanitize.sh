#!/usr/bin/env bash
# The sanitizer pass of CI (.ci/run), also for running by hand: builds BUILD_DIR (default
# build-asan) with AddressSanitizer + UndefinedBehaviorSanitizer (any undefined behaviour
# aborts: -fno-sanitize-recover) and runs the unit, CLI, mount and fuzz suites there. Every test
# runs under tests/support/sanitize-wrap.sh (the build's default test setup), which fails it on
# any report from any process it started. Extra arguments go to `meson test`
# (e.g. `tools/ci-sanitize.sh build-asan --suite fuzz`). See docs/testing.md.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build-asan}
shift || true

if [[ ! -f $dir/build.ninja ]]; then
  meson setup "$dir" --wrap-mode=nodownload -Db_sanitize=address,undefined -Db_lundef=false \
    -Dcpp_args=-fno-sanitize-recover=undefined -Dcpp_link_args=-fno-sanitize-recover=undefined
fi
meson compile -C "$dir"

# LeakSanitizer stops the process's threads with ptrace at exit. Where that is not allowed (some
# containers), every process would die with "LeakSanitizer has encountered a fatal error": check
# once with a known leak, and run without leak detection there, saying so.
probe_dir=$(mktemp -d)
trap 'rm -rf "$probe_dir"' EXIT
printf '#include <cstdlib>\nvoid* volatile p;\nint main() { p = std::malloc(7); p = nullptr; }\n' >"$probe_dir/leak.cpp"
c++ -fsanitize=address -g "$probe_dir/leak.cpp" -o "$probe_dir/leak"
if ! ASAN_OPTIONS=detect_leaks=1 "$probe_dir/leak" 2>&1 | grep -q "detected memory leaks"; then
  echo "ci-sanitize: LeakSanitizer cannot run here (ptrace refused?): leak detection is off" >&2
  export ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
fi

# Not run here: the 'tools' suite (the benchmark, whose figures mean nothing under ASan; the
# PyTorch loop and the simulator's V1 listing, which exercise Python and the test simulator
# rather than new daemon paths). The fuzz suite runs each target for fuzz_seconds (6 s here).
meson test -C "$dir" --print-errorlogs --no-suite tools "$@"
