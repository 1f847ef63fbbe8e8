#!/usr/bin/env bash
# The fault suite: the mount reads byte-exact data through S3's bad days (503 SlowDown, 500s,
# resets and truncations mid-body, a stalled body), or fails with a precise errno within a
# bounded time, and never dies; memory stays under the cap. Exit 77 without /dev/fuse or root.
set -euo pipefail
[[ -c /dev/fuse && $(id -u) == 0 ]] || { echo "no /dev/fuse or not root: skipped"; exit 77; }
tmp=$(mktemp -d /tmp/valkyrie-faults.XXXXXX)
mnt="$tmp/mnt"; mkdir -p "$mnt" "$tmp/data/bkt"
source "$(dirname "$0")/lib.sh"
for i in 0 1 2 3; do head -c $((12 * 1024 * 1024 + i * 4097)) /dev/urandom >"$tmp/data/bkt/file$i"; done
(cd "$tmp/data/bkt" && sha256sum file*) >"$tmp/expected.sha"
export AWS_ACCESS_KEY_ID=AKIDFAULT AWS_SECRET_ACCESS_KEY=fault/secret AWS_EC2_METADATA_DISABLED=true

start_faulty_sim() {  # [port]
  SIM_PORT=${1:-0} start_sim --data "$tmp/data" --stall-time 30s
}
admin() { curl -sf -X POST "$url/_sim/$1" >/dev/null || fail "admin call $1"; }
counter() { curl -s "$url/_sim/stats" | sed -E "s/.*\"$1\":([0-9]+).*/\1/"; }
# A fresh mount per case, so that neither the kernel's page cache nor ours hides the faults.
remount() {
  mountpoint -q "$mnt" && { umount "$mnt"; expect_daemon_gone; }
  : >"$tmp/daemon.err"
  VALKYRIE_LOG_LEVEL=info start_valkyrie bkt "$url" --chunk-size 1MiB --cache-size 16MiB --workers 8
}
# retries REASON: valkyrie_s3_retries_total{reason=REASON} of the current mount.
retries() {
  curl -sf "http://127.0.0.1:$(metrics_port)/metrics" | awk -v r="valkyrie_s3_retries_total{reason=\"$1\"}" '$1 == r { print $2 }'
}
check_all() {  # label
  (cd "$mnt" && sha256sum file*) >"$tmp/got.sha" || fail "$1: a read failed"
  diff "$tmp/expected.sha" "$tmp/got.sha" >&2 || fail "$1: bytes differ"
}

start_faulty_sim
# The simulator's fault kinds and the retry reasons valkyrie's metrics count them under.
declare -A reason=([slowdown]=slow_down [error500]=server_error [reset]=connection_reset [truncate]=truncated_body)
for kind in slowdown error500 reset truncate; do
  remount
  admin "reset-stats"
  admin "faults?$kind=0.1"
  check_all "$kind"
  admin "faults"
  n=$(counter "$kind")
  [[ $n -gt 0 ]] || fail "$kind: no fault was injected"
  r=$(retries "${reason[$kind]}")
  # Every injected fault is retried once; a reset can also hit a connection the pool then
  # replaces (counted as stale_connection instead), so at most n for those.
  [[ -n $r && $r -gt 0 && $r -le $n ]] || fail "$kind: metrics show $r retries for $n faults"
  pass "10% $kind: every byte exact ($n faults injected, $r retries in the metrics)"
done

# A body that stalls (the server stops sending for 30 s): the client's 5 s stall timeout fires,
# the range is fetched again, the read is exact.
remount
admin "faults/next?kind=stall&count=1"
start=$(date +%s)
check_all "stall"
took=$(( $(date +%s) - start ))
[[ $(counter stall) == 1 ]] || fail "stall: not injected"
[[ $took -lt 20 ]] || fail "stall: reads took ${took}s"
[[ $(retries timeout) -ge 1 ]] || fail "stall: no timeout retry in the metrics"
pass "a stalled body is abandoned after the stall timeout and refetched (${took}s)"

# 1% of every fault kind at once, 4 readers.
remount
admin "faults?slowdown=0.01&error500=0.01&reset=0.01&truncate=0.01"
pids=()
for i in 1 2 3 4; do ( (cd "$mnt" && sha256sum file*) >"$tmp/par$i.sha" ) & pids+=($!); done
for p in "${pids[@]}"; do wait "$p" || fail "a reader failed under 1% faults"; done
for i in 1 2 3 4; do diff -q "$tmp/expected.sha" "$tmp/par$i.sha" >/dev/null || fail "reader $i: bytes differ"; done
admin "faults"
hwm_kb=$(awk '/VmHWM/ { print $2 }' "/proc/$daemon_pid/status")
# (Not in the sanitizer build: ASan's shadow memory and quarantine are in the RSS.)
[[ -n ${VALKYRIE_SANITIZER:-} || $hwm_kb -lt $(( (16 + 64) * 1024 )) ]] || fail "peak RSS ${hwm_kb} kB over the 16 MiB cache + 64 MiB"
pass "1% of each fault, 4 readers: exact; peak RSS $((hwm_kb / 1024)) MiB (cache 16 MiB)"

# The server killed during reads and back 10 s later on the same port: reads in flight either
# complete exactly or fail with EIO/ETIMEDOUT/EHOSTUNREACH within a bounded time; the mount
# stays up and reads work again once the server is back.
remount
port=${url##*:}
( /usr/bin/python3 - "$mnt/file3" "$tmp/data/bkt/file3" >"$tmp/outage.txt" 2>&1 <<'PY'
import errno, os, sys, time
f = os.open(sys.argv[1], os.O_RDONLY)
src = open(sys.argv[2], "rb").read()
start, off = time.time(), 0
try:
    while True:
        b = os.pread(f, 1 << 20, off)
        if not b:
            break
        assert b == src[off:off + len(b)], "wrong bytes"
        off += len(b)
        time.sleep(0.2)   # a slow reader, so the outage hits it mid-file
    print("completed")
except OSError as e:
    print("errno", errno.errorcode[e.errno], "after", round(time.time() - start, 1), "s")
PY
) &
reader=$!
sleep 0.5
kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
sleep 10
start_faulty_sim "$port"
wait "$reader" || true
outcome=$(cat "$tmp/outage.txt")
[[ $outcome == completed || $outcome =~ ^errno\ (EIO|ETIMEDOUT|EHOSTUNREACH)\ after ]] || fail "outage: $outcome"
mountpoint -q "$mnt" || fail "the mount died during the outage"
check_all "after the outage"
pass "server down 10 s: the reader saw '$outcome'; the mount survived and reads are exact again"
umount "$mnt"; expect_daemon_gone
echo "all fault checks passed"
