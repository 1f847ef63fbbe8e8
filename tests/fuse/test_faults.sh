#!/usr/bin/env bash
# The fault suite: the mount reads byte-exact data through S3's bad days (503 SlowDown, 500s,
# resets and truncations mid-body, a stalled body), or fails with a precise errno within a
# bounded time, and never dies; memory stays under the cap. S3 gone mid-read: an outage shorter
# than --retry-timeout is ridden out byte-exact, a longer one fails the read with ETIMEDOUT
# within the budget + 10%, the mount answers throughout, and an interrupted reader gets EINTR at
# once. Exit 77 without /dev/fuse or root.
set -euo pipefail
[[ -c /dev/fuse && $(id -u) == 0 ]] || { echo "no /dev/fuse or not root: skipped"; exit 77; }
tmp=$(mktemp -d /tmp/valkyrie-faults.XXXXXX)
mnt="$tmp/mnt"; mkdir -p "$mnt" "$tmp/data/bkt"
source "$(dirname "$0")/lib.sh"
for i in 0 1 2 3; do head -c $((12 * 1024 * 1024 + i * 4097)) /dev/urandom >"$tmp/data/bkt/file$i"; done
# For the outages: a small file kept cached, and a large one read slowly while S3 goes away.
head -c $((1024 * 1024)) /dev/urandom >"$tmp/data/bkt/hot.bin"
head -c $((64 * 1024 * 1024)) /dev/urandom >"$tmp/data/bkt/outage.bin"
(cd "$tmp/data/bkt" && sha256sum file*) >"$tmp/expected.sha"
export AWS_ACCESS_KEY_ID=AKIDFAULT AWS_SECRET_ACCESS_KEY=fault/secret AWS_EC2_METADATA_DISABLED=true

start_faulty_sim() {  # [port]
  SIM_PORT=${1:-0} start_sim --data "$tmp/data" --stall-time 30s
}
admin() { curl -sf -X POST "$url/_sim/$1" >/dev/null || fail "admin call $1"; }
counter() { curl -s "$url/_sim/stats" | sed -E "s/.*\"$1\":([0-9]+).*/\1/"; }
# A fresh mount per case, so that neither the kernel's page cache nor ours hides the faults.
remount() {  # [more flags]; $cache_size replaces the 16 MiB cache
  mountpoint -q "$mnt" && { umount "$mnt"; expect_daemon_gone; }
  : >"$tmp/daemon.err"
  VALKYRIE_LOG_LEVEL=info start_valkyrie bkt "$url" --chunk-size 1MiB --cache-size "${cache_size:-16MiB}" --workers 8 "$@"
}
# retries REASON: valkyrie_s3_retries_total{reason=REASON} of the current mount.
retries() {
  curl -sf "http://127.0.0.1:$(metrics_port)/metrics" | awk -v r="valkyrie_s3_retries_total{reason=\"$1\"}" '$1 == r { print $2 }'
}
# metric NAME: a series of the current mount's /metrics, e.g. metric 'valkyrie_s3_outage'.
metric() {
  curl -sf "http://127.0.0.1:$(metrics_port)/metrics" | awk -v r="$1" '$1 == r { print $2 }'
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


# ---- S3 gone in the middle of a read ----
# A reader that computes between reads (50 ms per MiB) goes through outage.bin, comparing every
# byte; it writes where it is to $tmp/progress ("waiting|read OFFSET TIME") and how it ended to
# $tmp/result (JSON). Once $tmp/hurry exists (S3 has gone) it stops computing, so that it reaches
# what was not fetched within a second or so however slowly this machine runs it: paced, a slow
# sanitizer build once took 8.3 s to go through what was read ahead, past the 8 s budget.
# pread goes through ctypes, so an EINTR reaches it as such (Python's own wrapper would retry);
# SIGALRM has a handler that does nothing, so the signal interrupts the read and does not end
# the reader.
cat >"$tmp/reader.py" <<'PY'
import ctypes, errno, json, os, signal, sys, time
path, src_path, progress_path, result_path, hurry_path = sys.argv[1:6]
libc = ctypes.CDLL(None, use_errno=True)
libc.pread.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_long]
libc.pread.restype = ctypes.c_ssize_t
signal.signal(signal.SIGALRM, lambda *_: None)
src = open(src_path, "rb").read()
fd = os.open(path, os.O_RDONLY)
buf = ctypes.create_string_buffer(1 << 20)
off, longest = 0, 0.0
# A read the kernel answers in part (pages read ahead before a failed one) returns short, and
# only the next one fails: the data needing S3 was reached when the short one was asked.
short_started = None
def write(p, text):
    with open(p + ".tmp", "w") as f:
        f.write(text)
    os.rename(p + ".tmp", p)
def report(**kw):
    kw.update(bytes=off, longest_read=round(longest, 3))
    write(result_path, json.dumps(kw))
while True:
    started = time.time()
    write(progress_path, "waiting %d %.3f\n" % (off, started))
    n = libc.pread(fd, buf, 1 << 20, off)
    ended = time.time()
    if n < 0:
        e = ctypes.get_errno()
        report(result="errno", errno=errno.errorcode.get(e, str(e)), started=started, ended=ended,
               reached=short_started if short_started is not None else started)
        sys.exit(0)
    longest = max(longest, ended - started)
    if n == 0:
        break
    if buf.raw[:n] != src[off:off + n]:
        report(result="wrong bytes", at=off)
        sys.exit(0)
    short_started = started if n < len(buf) and off + n < len(src) else None
    off += n
    write(progress_path, "read %d %.3f\n" % (off, ended))
    if not os.path.exists(hurry_path):
        time.sleep(0.05)
report(result="completed")
PY
now() { date +%s.%N; }
# wait_for SECONDS WHAT CMD...: runs CMD every 50 ms until it succeeds; fails the test after SECONDS.
wait_for() {
  local limit=$1 what=$2 end=$(( $(date +%s%N) + $1 * 1000000000 ))
  shift 2
  until "$@"; do
    (( $(date +%s%N) < end )) || fail "gave up waiting ${limit} s for $what"
    sleep 0.05
  done
}
progress_at_least() { [[ -s $tmp/progress ]] && (( $(awk '{ print $2 }' "$tmp/progress") >= $1 )); }
# The reader has been inside one pread for over a second (S3 is what it waits for).
reader_blocked() {
  [[ -s $tmp/progress ]] && awk -v now="$(now)" '$1 == "waiting" && now - $3 > 1 { ok = 1 } END { exit !ok }' "$tmp/progress"
}
logged() { grep -c "\"msg\":\"$1" "$tmp/daemon.err" || true; }
field() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$tmp/result" "$1"; }
# Seconds from $1 to $2 (floating point).
seconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
start_reader() {
  rm -f "$tmp/progress" "$tmp/result" "$tmp/hurry"
  /usr/bin/python3 "$tmp/reader.py" "$mnt/outage.bin" "$tmp/data/bkt/outage.bin" "$tmp/progress" "$tmp/result" "$tmp/hurry" &
  reader=$!
  extra_pids+=("$reader")
}
stop_server() {
  kill "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  server_pid=
}
hurry_reader() { touch "$tmp/hurry"; }
# The mount answers while S3 is away: a listing, a read of cached data that goes through the
# daemon (O_DIRECT), /metrics, each within 2 s.
check_mount_answers() {  # label
  local t0 t1 got
  t0=$(now)
  ls "$mnt" | grep -qx outage.bin || fail "$1: ls of the mount"
  got=$(dd if="$mnt/hot.bin" iflag=direct bs=1M status=none | sha256sum | cut -c1-64)
  [[ $got == "$hot_sum" ]] || fail "$1: a cached file read wrong or failed"
  [[ -n $(metric valkyrie_s3_outage) ]] || fail "$1: /metrics did not answer"
  t1=$(now)
  awk -v s="$(seconds "$t0" "$t1")" 'BEGIN { exit !(s < 2) }' || fail "$1: the mount took $(seconds "$t0" "$t1") s to answer"
  echo "$(seconds "$t0" "$t1")"
}
# (A server left stopped would never see the SIGTERM of the clean-up.)
trap '[[ -n $server_pid ]] && kill -CONT "$server_pid" 2>/dev/null; cleanup' EXIT
hot_sum=$(sha256sum <"$tmp/data/bkt/hot.bin" | cut -c1-64)
port=${url##*:}
# A mount for these cases: a cache that holds all of outage.bin (so that hot.bin is never
# evicted) while the reader's read-ahead (32 MiB at most) leaves it waiting on S3 for the rest;
# no next files; hot.bin cached and the root listed (within --metadata-ttl, no request) before
# S3 goes away.
outage_mount() {  # [more flags]
  # (a prefetch zone of 12.8 MiB, well under a second of the paced reader: it reaches data that
  # needs S3 early in the outage even when a sanitizer build runs slowly, where the default
  # half of the cache once kept it going past the long outage's budget)
  cache_size=128MiB remount --lookahead 0 --prefetch-share 10% --metadata-retry-timeout 20s "$@"
  cat "$mnt/hot.bin" >/dev/null
  ls "$mnt" >/dev/null
}

# 1. S3 gone for 10 s, within the budget: the read waits, then completes byte-exact.
outage_mount --retry-timeout 60s
start_reader
wait_for 20 "the reader to read 4 MiB" progress_at_least $((4 << 20))
stop_server
killed=$(now)
hurry_reader
wait_for 10 "the reader to wait on S3" reader_blocked
wait_for 5 "the outage to be logged" grep -q '"msg":"S3 is failing' "$tmp/daemon.err"
[[ $(metric valkyrie_s3_outage) == 1 ]] || fail "short outage: valkyrie_s3_outage is not 1"
answered_in=$(check_mount_answers "short outage")
reader_blocked || fail "short outage: the reader stopped waiting before S3 came back: $(cat "$tmp/result" 2>/dev/null)"
# (The outage's length is the point here, not a synchronisation: S3 comes back 10 s after it left.)
sleep "$(awk -v k="$killed" -v n="$(now)" 'BEGIN { d = k + 10 - n; print (d > 0 ? d : 0) }')"
start_faulty_sim "$port"
back=$(now)
wait_for 60 "the reader to finish" test -s "$tmp/result"
wait "$reader" || true
[[ $(field result) == completed ]] || fail "short outage: the reader got $(cat "$tmp/result")"
longest=$(field longest_read)
awk -v l="$longest" 'BEGIN { exit !(l >= 2) }' || fail "short outage: no read waited for S3 (longest ${longest} s): the test missed the outage"
wait_for 5 "the recovery to be logged" grep -q '"msg":"S3 answers again' "$tmp/daemon.err"
[[ $(logged "S3 is failing") == 1 && $(logged "S3 answers again") == 1 ]] ||
  fail "short outage: logged $(logged "S3 is failing") outage and $(logged "S3 answers again") recovery lines, not one each"
[[ $(metric valkyrie_s3_outage) == 0 && $(metric valkyrie_s3_outages_total) == 1 ]] || fail "short outage: metrics"
pass "S3 gone for $(seconds "$killed" "$back") s mid-read: the read waited ${longest} s and completed byte-exact; the mount answered in ${answered_in} s meanwhile; one line at the outage, one at the recovery"

# 2. S3 gone for longer than --retry-timeout 8s: the read fails with ETIMEDOUT once the failure
# has lasted 8 s (not before, and within 10% after: measured from when S3 left); the mount
# answers throughout and reads again once S3 is back.
outage_mount --retry-timeout 8s
start_reader
wait_for 20 "the reader to read 4 MiB" progress_at_least $((4 << 20))
stop_server
killed=$(now)
hurry_reader
wait_for 10 "the outage to be logged" grep -q '"msg":"S3 is failing' "$tmp/daemon.err"
answered_in=$(check_mount_answers "long outage")
wait_for 30 "the reader to fail" test -s "$tmp/result"
wait "$reader" || true
[[ $(field result) == errno && $(field errno) == ETIMEDOUT ]] || fail "long outage: the reader got $(cat "$tmp/result")"
failed_at=$(field ended)
# (A read asked after the budget had run out would fail at once: the reader must have reached
# what was not prefetched well within it. A short read before the failed one counts: it was
# where the reader waited.)
reached=$(seconds "$killed" "$(field reached)")
awk -v r="$reached" 'BEGIN { exit !(r < 6) }' ||
  fail "long outage: the reader reached data that needed S3 only ${reached} s after S3 left: $(cat "$tmp/result")"
# The read's wait began when S3 left or when the read was asked, whichever came later.
waited_from=$(awk -v k="$killed" -v s="$(field reached)" 'BEGIN { printf "%.3f", (s > k ? s : k) }')
after_kill=$(seconds "$killed" "$failed_at")
waited=$(seconds "$waited_from" "$failed_at")
# The budget runs from the outage's start for every request, so the read fails 8 s after S3
# left however late it was asked (a read asked after that would fail at once).
awk -v a="$after_kill" 'BEGIN { exit !(a >= 7.8) }' || fail "long outage: ETIMEDOUT ${after_kill} s after S3 left, before the 8 s budget"
awk -v a="$after_kill" -v w="$waited" 'BEGIN { exit !(a <= 8.8 && w <= 8.8) }' ||
  fail "long outage: ETIMEDOUT ${after_kill} s after S3 left (the read waited ${waited} s), over the 8 s budget + 10%"
mountpoint -q "$mnt" || fail "long outage: the mount died"
[[ $(logged "S3 still failing after the retry budget") == 1 ]] || fail "long outage: the give-up was not logged once"
[[ $(metric valkyrie_s3_requests_gave_up_total) -ge 1 ]] || fail "long outage: no request counted as given up"
start_faulty_sim "$port"
check_all "after the long outage"
cmp "$mnt/outage.bin" "$tmp/data/bkt/outage.bin" || fail "after the long outage: outage.bin differs"
pass "S3 gone for good: ETIMEDOUT ${after_kill} s after it left (the read waited ${waited} s; budget 8 s; data needing S3 reached ${reached} s after; the failed read asked $(seconds "$killed" "$(field started)") s after); the mount answered in ${answered_in} s meanwhile and reads exact once S3 is back"

# 3. An interrupted reader (SIGALRM while its read waits on S3) gets EINTR at once; the mount
# lives on. This outage is a server that hangs (stopped: connections are accepted and never
# answered). Interrupts reach the daemon for synchronous requests: --direct-io reads (a buffered
# read waits on the kernel's read-ahead, which only a fatal signal ends).
outage_mount --retry-timeout 60s --direct-io
start_reader
wait_for 20 "the reader to read 4 MiB" progress_at_least $((4 << 20))
kill -STOP "$server_pid"
hurry_reader
wait_for 10 "the reader to wait on S3" reader_blocked
signalled=$(now)
kill -ALRM "$reader"
wait_for 20 "the interrupted reader to return" test -s "$tmp/result"
wait "$reader" || true
[[ $(field result) == errno && $(field errno) == EINTR ]] || fail "interrupt: the reader got $(cat "$tmp/result")"
took=$(seconds "$signalled" "$(field ended)")
awk -v t="$took" 'BEGIN { exit !(t < 2) }' || fail "interrupt: EINTR came ${took} s after the signal"
[[ $(metric 'valkyrie_fuse_interrupted_total{op="read"}') -ge 1 ]] || fail "interrupt: not counted in the metrics"
answered_in=$(check_mount_answers "after an interrupt")
kill -CONT "$server_pid"
cmp "$mnt/outage.bin" "$tmp/data/bkt/outage.bin" || fail "after the interrupt: outage.bin differs"
pass "a reader interrupted while S3 hung got EINTR ${took} s after the signal; the mount answered (${answered_in} s) and reads exact once S3 answers"
umount "$mnt"; expect_daemon_gone
echo "all fault checks passed"
