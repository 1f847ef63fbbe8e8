#!/usr/bin/env bash
# A background mount lets go of its caller: `out=$(valkyrie ... 2>&1)` and Python's
# subprocess.run(capture_output=True) return once the mount answers, with nothing captured (the
# daemon's "mounted" line included); its stdin, stdout and stderr are then /dev/null or the
# --log-file, and its working directory /. Later lines (SIGUSR2's notice) land in --log-file,
# which SIGHUP reopens after logrotate moved it (without one SIGHUP ends nothing). An error
# before the mount is ready still reaches the caller, once. Each capture has a deadline: a
# daemon holding the pipe fails the test rather than hanging it. Exit 77 without /dev/fuse or root.
set -euo pipefail
[[ -c /dev/fuse && $(id -u) == 0 ]] || { echo "no /dev/fuse or not root: skipped"; exit 77; }
tmp=$(mktemp -d /tmp/valkyrie-daemonout.XXXXXX)
mnt="$tmp/mnt"; mkdir -p "$mnt" "$tmp/disk"
source "$(dirname "$0")/../fuse/lib.sh"
export AWS_ACCESS_KEY_ID=AKIDOUT AWS_SECRET_ACCESS_KEY=out/secret AWS_EC2_METADATA_DISABLED=true
start_sim --synthetic data:2:1MiB
v="$BUILD_ROOT/src/cli/valkyrie"
# With the cache backed at start (--cache-prefault; what that took is said in the mounted line)
# and a disk tier (whose "disk cache opened" line, logged before the mount is ready, is held
# until the daemon lets go of the caller: log::hold_quiet_lines).
args=(--mount "$mnt" --bucket data --endpoint "$url" --metrics-addr 127.0.0.1:0 --log-level info
  --cache-size 64MiB --cache-prefault --disk-cache "$tmp/disk" --disk-cache-size 64MiB)
# The daemonized valkyrie on $mnt (not this shell's child), for cleanup and the checks.
find_daemon() { daemon_pid=$(pgrep -f "valkyrie --mount $mnt " | head -1 || true); }
daemon_gone() {
  for _ in $(seq 100); do kill -0 "$daemon_pid" 2>/dev/null || { daemon_pid=; return 0; }; sleep 0.05; done
  fail "the daemon did not exit"
}
# wait_for SECONDS FILE: until FILE exists.
wait_for() {
  for _ in $(seq $(($1 * 20))); do [[ -e $2 ]] && return 0; sleep 0.05; done
  return 1
}
# expect_line FILE TEXT: TEXT shows up in FILE within 5 s.
expect_line() {
  for _ in $(seq 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
  fail "'$2' not in $1: $(cat "$1" 2>/dev/null)"
}
check_detached() {
  [[ $(readlink "/proc/$daemon_pid/fd/0") == /dev/null && $(readlink "/proc/$daemon_pid/fd/1") == /dev/null ]] ||
    fail "stdin/stdout of the daemon: $(ls -l "/proc/$daemon_pid/fd/")"
  [[ $(readlink "/proc/$daemon_pid/fd/2") == "$1" ]] || fail "stderr of the daemon is $(readlink "/proc/$daemon_pid/fd/2"), not $1"
  [[ $(readlink "/proc/$daemon_pid/cwd") == / ]] || fail "the daemon's directory is $(readlink "/proc/$daemon_pid/cwd")"
}

# --- Python: subprocess.run(capture_output=True), no --log-file (later lines: syslog) ---
/usr/bin/python3 - "$v" "${args[@]}" >"$tmp/py.out" 2>&1 <<'PY' &
import subprocess, sys
try:
    r = subprocess.run(sys.argv[1:], capture_output=True, timeout=20)
except subprocess.TimeoutExpired as e:
    print(f"TIMEOUT: subprocess.run did not return within 20 s; captured so far: {e.stderr!r}")
    sys.exit(1)
print(f"exit {r.returncode} stdout {r.stdout!r} stderr {r.stderr!r}")
sys.exit(0 if r.returncode == 0 and not r.stdout and not r.stderr else 1)
PY
py=$!
extra_pids+=("$py")
status=0; wait "$py" || status=$?
find_daemon
[[ $status == 0 ]] || fail "python capture: $(cat "$tmp/py.out")"
mountpoint -q "$mnt" && [[ $(stat -c %s "$mnt/shard_000001.tar") == 1048576 ]] || fail "python capture: not mounted"
check_detached /dev/null
pass "subprocess.run(capture_output=True) returns with nothing captured: $(cat "$tmp/py.out")"
# Without a log file SIGHUP is caught and ignored: a hangup must not leave the mount dead.
sigcgt=$(awk '/^SigCgt:/ { print $2 }' "/proc/$daemon_pid/status")
(( 0x$sigcgt & 1 )) || fail "SIGHUP is not caught (SigCgt $sigcgt): a hangup would end the daemon"
kill -HUP "$daemon_pid"
[[ $(wc -c <"$mnt/shard_000000.tar") == 1048576 ]] && kill -0 "$daemon_pid" ||
  fail "SIGHUP ended the daemon"
pass "SIGHUP without --log-file is caught and ends nothing"
umount "$mnt"; daemon_gone

# --- the shell: out=$(valkyrie ... 2>&1), with --log-file ---
( out=$("$v" "${args[@]}" --log-file "$tmp/v.log" 2>&1); echo "$?" >"$tmp/sh.rc.new"; printf '%s' "$out" >"$tmp/sh.out"
  mv "$tmp/sh.rc.new" "$tmp/sh.rc" ) &
extra_pids+=($!)
returned=0; wait_for 20 "$tmp/sh.rc" || returned=$?
find_daemon
((returned == 0)) || fail "out=\$(valkyrie ...) did not return within 20 s"
[[ $(cat "$tmp/sh.rc") == 0 && ! -s $tmp/sh.out ]] || fail "out=\$(valkyrie ...): exit $(cat "$tmp/sh.rc"), '$(cat "$tmp/sh.out")'"
[[ $(stat -c %s "$mnt/shard_000000.tar") == 1048576 ]] || fail "shell capture: not mounted"
check_detached "$tmp/v.log"
expect_line "$tmp/v.log" '"msg":"mounted"'
grep -q '"msg":"disk cache opened"' "$tmp/v.log" || fail "the disk tier's line is not in --log-file: $(cat "$tmp/v.log")"
grep '"msg":"mounted"' "$tmp/v.log" | grep -q '"cache_backing":"start: backed in [0-9.]* s"' ||
  fail "the mounted line does not say how long backing the cache took: $(grep mounted "$tmp/v.log")"
grep '"msg":"mounted"' "$tmp/v.log" | grep -q '"cache_pages":"' ||
  fail "the mounted line does not say which pages the cache got: $(grep mounted "$tmp/v.log")"
pass "out=\$(valkyrie ... 2>&1) returns with nothing captured; the mounted line is in --log-file"
kill -USR2 "$daemon_pid"
expect_line "$tmp/v.log" "log level changed (SIGUSR2)"
mv "$tmp/v.log" "$tmp/v.log.1"
kill -HUP "$daemon_pid"
# Both handlers run on reactor 0, in the order their signals reached Asio's pipe. Two signals
# sent back to back can be caught by two threads and reach the pipe in either order, so the
# USR2 goes once the reopen has created the new file: its handler then runs after SIGHUP's.
wait_for 5 "$tmp/v.log" || fail "SIGHUP did not reopen the moved log file within 5 s"
kill -USR2 "$daemon_pid"
expect_line "$tmp/v.log" "log level changed (SIGUSR2)"
[[ $(grep -c "log level changed" "$tmp/v.log.1") == 1 ]] || fail "after SIGHUP the old file still grew"
[[ $(readlink "/proc/$daemon_pid/fd/2") == "$tmp/v.log" ]] || fail "stderr did not follow the reopened log file"
kill -0 "$daemon_pid" || fail "SIGHUP ended the daemon"
pass "later lines go to --log-file; SIGHUP reopens it after it was moved (stderr too)"
umount "$mnt"; daemon_gone

# --- an error before the mount is ready reaches the caller once ---
status=0
"$v" "${args[@]}" --trace-output "$tmp/no/such/dir/trace.json" >"$tmp/err.out" 2>&1 || status=$?
[[ $status == 1 ]] || fail "a failing daemon exited $status: $(cat "$tmp/err.out")"
[[ $(grep -c "cannot write the trace file" "$tmp/err.out") == 1 ]] || fail "the error, not once: $(cat "$tmp/err.out")"
mountpoint -q "$mnt" && fail "a failed start left a mount"
pass "an error in the daemon before the mount is ready reaches the caller once: $(cat "$tmp/err.out")"
echo "all daemon-output checks passed"
