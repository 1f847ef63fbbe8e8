#!/usr/bin/env bash
# Many small objects read whole by reader processes, without valkyrie-bench's byte check (issue
# 13: what the daemon and the simulator leave for the readers on this machine's cores).
# valkyrie-s3sim serves OBJECTS x 110 KiB under small/ behind the link model (30 ms first byte,
# 64 MiB/s per connection, 1 GiB/s total); the mount gets a shuffled order of all of them with
# --manifest; READERS processes take the next of its first FILES names from a shared counter and
# read each whole (open, read to EOF, close). Reported: files/s, and the daemon's and the
# simulator's CPU per file (utime + stime from /proc across the reads).
# Usage: tools/bench-small.sh [BUILD_DIR] [READERS] [FILES] [OBJECTS]
#   (root, /dev/fuse; VALKYRIE_ARGS: more flags, e.g. --cache-backing lazy; BENCH_PAUSE: seconds
#   between the mount and the first read, as a job that starts its loaders after the mount)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
readers=${2:-8}
files=${3:-8000}
objects=${4:-20000}
(( files <= objects )) || { echo "FILES ($files) must not exceed OBJECTS ($objects)" >&2; exit 2; }
export AWS_ACCESS_KEY_ID=AKIDBENCH AWS_SECRET_ACCESS_KEY=bench-secret AWS_EC2_METADATA_DISABLED=true
export BENCH_START_SECONDS=${BENCH_START_SECONDS:-30}  # --cache-prefault backs the cache first
source tools/bench-lib.sh
bench_init small
bench_start_sim --synthetic "bench:$objects:110KiB:small/" --first-byte-latency 30ms --conn-bandwidth 64MiB \
  --total-bandwidth 1GiB
/usr/bin/python3 -c 'import random, sys; r = random.Random(7); k = [f"small/shard_{i:06d}.tar" for i in range(int(sys.argv[1]))]; r.shuffle(k); print("\n".join(k))' \
  "$objects" >"$tmp/order.txt"
bench_mount bench --cache-size 2GiB --manifest "$tmp/order.txt"
sleep "${BENCH_PAUSE:-0}"
d0=$(bench_cpu_seconds "$daemon_pid") s0=$(bench_cpu_seconds "$sim_pid")
/usr/bin/python3 - "$mnt" "$tmp/order.txt" "$readers" "$files" <<'PY'
import multiprocessing, os, sys, time
mnt, order, readers, files = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
names = open(order).read().split()[:files]
nxt = multiprocessing.Value("q", 0)
def reader():
    buf = bytearray(1 << 20)
    while True:
        with nxt.get_lock():
            i = nxt.value
            nxt.value += 1
        if i >= len(names):
            return
        fd = os.open(os.path.join(mnt, names[i]), os.O_RDONLY)
        while os.readv(fd, [buf]):
            pass
        os.close(fd)
t0 = time.monotonic()
procs = [multiprocessing.Process(target=reader) for _ in range(readers)]
for p in procs: p.start()
for p in procs: p.join()
wall = time.monotonic() - t0
if any(p.exitcode for p in procs): sys.exit("a reader failed")
print(f"{readers} reader(s), {files} files: {files / wall:,.0f} files/s", end="")
PY
awk -v d0="$d0" -v d1="$(bench_cpu_seconds "$daemon_pid")" -v s0="$s0" -v s1="$(bench_cpu_seconds "$sim_pid")" -v n="$files" \
  'BEGIN { printf ", daemon %.0f us and simulator %.0f us of CPU per file\n", (d1 - d0) / n * 1e6, (s1 - s0) / n * 1e6 }'
