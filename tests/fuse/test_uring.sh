#!/usr/bin/env bash
# FUSE over io_uring end to end: with the fuse module's enable_uring set (by this test, restored
# on exit), --fuse-transport io-uring mounts, the daemon says its rings are on, and lookups,
# reads (small, large, concurrent, at offsets), listings, EROFS and the order control file behave
# as on /dev/fuse; SIGTERM unmounts cleanly. With enable_uring unset the same daemon falls back
# to /dev/fuse (its own decoder) with one log line. Exit 77 without root, /dev/fuse or a kernel
# with FUSE over io_uring (no /sys/module/fuse/parameters/enable_uring).
set -euo pipefail
build=${BUILD_ROOT:?BUILD_ROOT not set}
param=/sys/module/fuse/parameters/enable_uring
[[ -c /dev/fuse && $(id -u) == 0 ]] || { echo "no /dev/fuse or not root: skipped"; exit 77; }
[[ -w $param ]] || { echo "this kernel has no FUSE over io_uring ($param): skipped"; exit 77; }

tmp=$(mktemp -d /tmp/valkyrie-uring-test.XXXXXX)
mnt="$tmp/mnt"; data="$tmp/data"; mkdir -p "$mnt" "$data/d/sub"
source "$(dirname "$0")/lib.sh"
saved=$(cat "$param")
restore_param() { echo "$saved" >"$param"; }
trap 'restore_param; cleanup' EXIT

for i in $(seq 0 199); do printf 'small %d\n' "$i" >"$data/d/sub/f$i"; done
head -c $((40 * 1024 * 1024 + 123)) /dev/urandom >"$data/d/big"
export AWS_ACCESS_KEY_ID=AKIDURING AWS_SECRET_ACCESS_KEY=uring/secret AWS_EC2_METADATA_DISABLED=true
start_sim --data "$data"

check_mount() {
  local what=$1
  [[ $(cat "$mnt/sub/f17") == "small 17" ]] || fail "$what: small file"
  [[ $(ls "$mnt/sub" | wc -l) == 200 ]] || fail "$what: listing"
  [[ $(stat -c %s "$mnt/big") == $((40 * 1024 * 1024 + 123)) ]] || fail "$what: size"
  cmp "$mnt/big" "$data/d/big" || fail "$what: big file bytes"
  # Concurrent readers at offsets (requests from several CPUs: several queues).
  local pids=()
  for k in 0 1 2 3; do
    (dd if="$mnt/big" bs=1M skip=$((k * 9)) count=9 status=none | cmp - <(dd if="$data/d/big" bs=1M skip=$((k * 9)) count=9 status=none)) &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || fail "$what: concurrent read $p"; done
  for i in $(seq 0 199); do cat "$mnt/sub/f$i"; done | cmp - <(for i in $(seq 0 199); do cat "$data/d/sub/f$i"; done) ||
    fail "$what: 200 small files"
  if touch "$mnt/new" 2>"$tmp/touch.err"; then fail "$what: a create succeeded"; fi
  grep -q "Read-only file system" "$tmp/touch.err" || fail "$what: create: $(cat "$tmp/touch.err")"
  printf 'sub/f3\nsub/f4\n' >"$mnt/.valkyrie/order" || fail "$what: writing the order file"
  grep -q "sub/f3" "$mnt/.valkyrie/order" || fail "$what: the order file reads back"
  pass "$what: lookups, listings, reads, EROFS and the order file"
}

stop_daemon() {
  kill -TERM "$daemon_pid"
  wait_until 10 bash -c "! kill -0 $daemon_pid 2>/dev/null" || fail "the daemon did not end on SIGTERM"
  ! mountpoint -q "$mnt" || fail "still mounted after SIGTERM"
  daemon_pid=
}

# --- rings on ---
echo Y >"$param"
: >"$tmp/daemon.err"
VALKYRIE_LOG_LEVEL=debug VALKYRIE_FUSE_TRANSPORT=io-uring start_valkyrie d "$url"
wait_until 5 grep -q "FUSE over io_uring: on" "$tmp/daemon.err" || fail "the rings did not come up: $(cat "$tmp/daemon.err")"
# Requests wait in the kernel until every CPU's queue has a ring entry: a missing queue hangs
# the mount (SIGKILL is the only way out of that wait).
timeout -s KILL 10 stat "$mnt/sub/f1" >/dev/null || fail "the mount does not answer over io_uring"
check_mount "io_uring"
port=$(metrics_port)
ring=$(curl -sf "127.0.0.1:$port/metrics" | awk '$1 == "valkyrie_fuse_transport_requests_total{channel=\"ring\"}" {print $2}')
dev=$(curl -sf "127.0.0.1:$port/metrics" | awk '$1 == "valkyrie_fuse_transport_requests_total{channel=\"dev_fuse\"}" {print $2}')
echo "requests: $ring through the rings, $dev through /dev/fuse"
((${ring:-0} > 500 && ${ring:-0} > 10 * ${dev:-0})) || fail "the requests did not go through the rings (ring=$ring dev_fuse=$dev)"
grep -q "ring entry ended with an error" "$tmp/daemon.err" && fail "a ring entry failed: $(cat "$tmp/daemon.err")"
stop_daemon
pass "io_uring: SIGTERM unmounts"

# --- auto with the module setting off: /dev/fuse, said once ---
echo N >"$param"
: >"$tmp/daemon.err"
VALKYRIE_LOG_LEVEL=info VALKYRIE_FUSE_TRANSPORT=auto start_valkyrie d "$url"
[[ $(grep -c "FUSE over io_uring is off" "$tmp/daemon.err") == 1 ]] || fail "auto: no fallback line: $(cat "$tmp/daemon.err")"
check_mount "auto without enable_uring"
stop_daemon

# --- io-uring asked for, the kernel declines: the own decoder on /dev/fuse ---
: >"$tmp/daemon.err"
VALKYRIE_LOG_LEVEL=debug VALKYRIE_FUSE_TRANSPORT=io-uring start_valkyrie d "$url"
wait_until 5 grep -q "did not offer FUSE over io_uring" "$tmp/daemon.err" || fail "no decline line: $(cat "$tmp/daemon.err")"
check_mount "io-uring declined by the kernel"
stop_daemon
[[ $(cat "$param") == N ]] || fail "the daemon changed enable_uring"
