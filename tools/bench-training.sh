#!/usr/bin/env bash
# Simulated training loop through the mount (issue: prefetch engine). valkyrie-s3sim serves
# 64 shards of 64 MiB behind the link model (30 ms first byte, 64 MiB/s per connection, 1 GiB/s
# total). The loop reads a shard fully, then "computes" for as long as the link needs to deliver
# one shard at 80% of its total bandwidth (64 MiB / 0.8 GiB/s = 78 ms). Reported: compute-busy
# fraction = compute time / wall time, with and without a manifest (shuffled order).
# Usage: tools/bench-training.sh [BUILD_DIR]   (root, /dev/fuse)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
export AWS_ACCESS_KEY_ID=AKIDTRAIN AWS_SECRET_ACCESS_KEY=train-secret AWS_EC2_METADATA_DISABLED=true
source tools/bench-lib.sh
bench_init training
bench_start_sim --synthetic train:64:64MiB --first-byte-latency 30ms --conn-bandwidth 64MiB --total-bandwidth 1GiB
# A shuffled order (fixed seed), as a data loader's sampler would produce.
/usr/bin/python3 -c 'import random; r = random.Random(7); k = [f"shard_{i:06d}.tar" for i in range(64)]; r.shuffle(k); print("\n".join(k))' >"$tmp/order.txt"

run() {  # label read_order(file or "") manifest(yes/no) extra flags...
  local label=$1 order=$2 manifest=$3
  shift 3
  local flags=()
  [[ $manifest == yes ]] && flags+=(--manifest "$order")
  bench_mount train --cache-size 1GiB "${flags[@]}" "$@"
  sleep 1  # settle: with a manifest the first shards arrive now
  loop "$mnt" "$order" "$label"
  bench_unmount
}
loop() {  # dir order_file label
  /usr/bin/python3 - "$1" "$2" "$3" <<'PY'
import os, sys, time
mnt, order, label = sys.argv[1:4]
names = open(order).read().split() if order else sorted(os.listdir(mnt))
compute = 64 * 2**20 / (0.8 * 2**30)
buf = bytearray(1 << 20)
busy = stall = 0.0
start = time.monotonic()
for n in names:
    t0 = time.monotonic()
    with open(os.path.join(mnt, n), "rb", buffering=0) as f:
        while f.readinto(buf):
            pass
    stall += time.monotonic() - t0
    t1 = time.monotonic()
    time.sleep(compute)   # the GPU step: the CPU is free meanwhile
    busy += time.monotonic() - t1
wall = time.monotonic() - start
print(f"{label:<34} compute-busy {busy / wall:6.1%}   wall {wall:5.1f} s   waiting on data {stall:5.1f} s")
PY
}
# The bound of a read-then-compute loop: the same loop over a local tmpfs copy of the shards.
shm=/dev/shm/valkyrie-training-baseline
bench_remove_on_exit "$shm"
bench_mount train --cache-size 1GiB
rm -rf "$shm"; mkdir -p "$shm"; cp "$mnt"/shard_* "$shm"/
bench_unmount
loop "$shm" "$tmp/order.txt" "tmpfs copy, shuffled (baseline)"
rm -rf "$shm"
run "sorted order, no manifest" "" no
# The defaults: FUSE passthrough where the kernel (>= 6.9) and the daemon's privileges allow,
# with an eighth of --cache-size (128 MiB) for backing files: the kernel reads each shard from
# one filled ahead of its open. Beside it, passthrough off (every read through the page cache
# and the daemon, what older kernels get) and a quarter of the cache for it.
run "shuffled order, with --manifest" "$tmp/order.txt" yes
run "shuffled, --manifest, pool 0" "$tmp/order.txt" yes --passthrough-pool 0
run "shuffled, --manifest --direct-io" "$tmp/order.txt" yes --direct-io
run "shuffled, --manifest, pool 256MiB" "$tmp/order.txt" yes --passthrough-pool 256MiB
run "shuffled order, no manifest" "$tmp/order.txt" no
