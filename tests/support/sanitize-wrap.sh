#!/usr/bin/env bash
# Runs one test of a sanitizer build (the 'sanitize' test setup, meson.build) and fails it on any
# AddressSanitizer, LeakSanitizer or UndefinedBehaviorSanitizer report from any process the test
# started: the daemon (forked, daemonised, its stderr in a file the test may never show), the
# simulator, helper tools. Reports go to files in a private directory (log_path), not to
# stderr; after the test they are printed and the test fails, whatever its exit status.
# Options already in ASAN_OPTIONS / UBSAN_OPTIONS / LSAN_OPTIONS come last and win
# (detect_leaks=0 where LeakSanitizer cannot run: tools/ci-sanitize.sh checks).
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
reports=$(mktemp -d "${TMPDIR:-/tmp}/valkyrie-sanitize.XXXXXX") || exit 1
trap 'rm -rf "$reports"' EXIT

# GCC links UBSan as a runtime of its own that ignores log_path next to ASan and prints to stderr;
# with -fno-sanitize-recover and abort_on_error its report ends in abort(), and handle_abort=1
# makes ASan write that abort, with its stack, to a file here. (Any other abort counts too.)
export ASAN_OPTIONS="log_path=$reports/asan:halt_on_error=1:abort_on_error=1:handle_abort=1:detect_leaks=1:check_initialization_order=1:strict_string_checks=1:detect_invalid_pointer_pairs=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="log_path=$reports/ubsan:halt_on_error=1:abort_on_error=1:print_stacktrace=1:suppressions=$here/ubsan.supp${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
# Tests skip what a sanitizer makes meaningless (memory bounds: shadow memory is in the RSS).
export VALKYRIE_SANITIZER=address,undefined
export LSAN_OPTIONS="suppressions=$here/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"

"$@"
rc=$?

shopt -s nullglob
found=("$reports"/*)
if ((${#found[@]})); then
  for f in "${found[@]}"; do
    echo "==== sanitizer report: $(basename "$f") (test exit status $rc) ====" >&2
    cat "$f" >&2
  done
  echo "FAIL: ${#found[@]} sanitizer report(s) from the processes of this test" >&2
  exit 1
fi
exit "$rc"
