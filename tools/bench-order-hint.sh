#!/usr/bin/env bash
# A live training order of many keys being installed, and the mount's latency meanwhile. Each
# round: valkyrie-s3sim with KEYS objects under img/, a mount over FUSE over io_uring whose
# start-up listing has them all (--manifest of one key), --metadata-ttl 0s (every stat reaches
# the daemon); one stat prober pinned to each CPU (its requests go to that CPU's ring queue,
# hence to one reactor), then the shuffled order of all KEYS written to /.valkyrie/order.
# Prints the time the write took (the order checked and installed before close returns) and
# each CPU's worst stat during the run: a reactor held by the order shows as that CPU's stall.
# Sets the fuse module's enable_uring and restores it on exit.
# Usage: tools/bench-order-hint.sh [BUILD_DIR] [KEYS] [ROUNDS]   (root, /dev/fuse)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
keys=${2:-500000}
rounds=${3:-1}
export AWS_ACCESS_KEY_ID=AKIDBENCH AWS_SECRET_ACCESS_KEY=bench-secret AWS_EC2_METADATA_DISABLED=true
export BENCH_START_SECONDS=${BENCH_START_SECONDS:-120}  # (1.28 M synthetic keys: several seconds)
source tools/bench-lib.sh
bench_init order-hint
bench_fuse_uring
echo Y >"$uring_param"
bench_start_sim --synthetic "bench:$keys:1KiB:img/" --synthetic bench:1:1KiB:probe/
echo "probe/shard_000000.tar" >"$tmp/manifest.txt"
python3 - "$keys" >"$tmp/order.txt" <<'PY'
import random, sys
names = [f"img/shard_{i:06d}.tar" for i in range(int(sys.argv[1]))]
random.Random(5).shuffle(names)
print("\n".join(names))
PY
for round in $(seq "$rounds"); do
  bench_mount bench --cache-size 1GiB --manifest "$tmp/manifest.txt" --metadata-ttl 0s --fuse-transport io-uring
  python3 - "$mnt" "$tmp/order.txt" "$round" <<'PY'
import os, shutil, sys, threading, time
mnt, order, rnd = sys.argv[1], sys.argv[2], sys.argv[3]
stop = False
worst = {}
def probe(cpu):
    os.sched_setaffinity(0, {cpu})
    path, w, n = os.path.join(mnt, "probe", "shard_000000.tar"), 0.0, 0
    while not stop:
        t = time.monotonic()
        os.stat(path)
        w, n = max(w, time.monotonic() - t), n + 1
        time.sleep(0.001)
    worst[cpu] = (w, n)
probers = [threading.Thread(target=probe, args=(c,)) for c in sorted(os.sched_getaffinity(0))]
for p in probers: p.start()
time.sleep(0.5)
t = time.monotonic()
shutil.copyfile(order, os.path.join(mnt, ".valkyrie", "order"))
took = time.monotonic() - t
time.sleep(0.5)
stop = True
for p in probers: p.join()
head = open(os.path.join(mnt, ".valkyrie", "order")).readline().strip()
print(f"round {rnd}: order written and installed in {took:.2f} s ({head.split(': ', 1)[-1]})")
print("  worst stat meanwhile: " + ", ".join(f"cpu{c} {w * 1000:.1f} ms ({n} stats)" for c, (w, n) in sorted(worst.items())))
PY
  bench_unmount
done
