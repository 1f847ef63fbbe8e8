#!/usr/bin/env bash
# The disk tier's acceptance benchmarks (issue 14). valkyrie-s3sim behind the link model (30 ms
# first byte, 64 MiB/s per connection, 1 GiB/s total); the tier's directory on a real disk
# ($BENCH_DISK_DIR, default /var/tmp: check `findmnt -T` that it is not tmpfs); the page cache
# dropped before every epoch. Parts (second argument, default abcd):
#  a  A_FILES x A_SIZE (64 x 64 MiB), --cache-size 512MiB, --disk-cache-size 8GiB, a new shuffled
#     order written to MOUNT/.valkyrie/order before each epoch: epoch 2's fraction of bytes not
#     sent by S3 (the simulator's bytes_sent), its read speed beside fio's (O_DIRECT sequential
#     read of as many bytes on the tier's filesystem, 1 MiB blocks as the reader's) and beside
#     the S3 path (the same epoch 2 without --disk-cache). This disk's speed moves 2-3 x from one
#     minute to the next (a file read back soon after it was written comes from the host's
#     cache), so fio reads a file written just before epoch 1, about as old as the tier's data, and
#     epoch 2 (each time a new order) and fio alternate, A_ROUNDS times (default 3), which one
#     goes first alternating too: a ratio per round, and their median.
#  b  the same dataset on a tier half its size (--disk-cache-size A/2), one order of two epochs
#     (two shuffles) handed over before epoch 1: epoch 2's bytes without S3 beside the offline
#     optimum (Belady with bypass over the chunk sequence, capacity = memory + disk chunks, and
#     disk alone), and the same run without an order (LRU memory, CLOCK disk).
#  c  disk use (the data files' allocated bytes, and the whole directory) sampled every 0.1 s
#     during part b's runs, never above --disk-cache-size.
#  d  D_FILES x D_SIZE (240 x 64 MiB) in 64 KiB chunks, link model without the first-byte
#     latency (it only slows the filling): two thirds of the files read and written back (163,840
#     chunks), the rest read and the daemon killed (-9) half way, then a mount again: the index
#     time and chunks from the "disk cache opened" log line, and a full re-read whose S3 bytes
#     are at most the bytes not on the disk (no chunk complete on disk fetched again).
#  e  small objects: E_FILES x 110 KiB (1000), --cache-size 64MiB, a tier of E_TIER (128 MiB: 15
#     slots of 8 MiB) that holds them all only if small chunks are packed: the objects the tier
#     holds after one epoch (the order file's "# disk tier:" line) beside its slots, and a second
#     epoch's S3 bytes beside the dataset's.
# Usage: tools/bench-disk.sh [BUILD_DIR] [PARTS]   (root, /dev/fuse, fio; VALKYRIE_ARGS: more daemon flags)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
parts=${2:-abcde}
export AWS_ACCESS_KEY_ID=AKIDDISK AWS_SECRET_ACCESS_KEY=disk-bench-secret AWS_EC2_METADATA_DISABLED=true
source tools/bench-lib.sh
bench_init disk
base=${BENCH_DISK_DIR:-/var/tmp}
work=$(mktemp -d "$base/valkyrie-bench-disk.XXXXXX")
bench_remove_on_exit "$work"
echo "tier directory: $work on $(findmnt -n -o SOURCE,FSTYPE -T "$work" | tr -s ' ')"
A_FILES=${A_FILES:-64} A_SIZE=${A_SIZE:-64MiB} A_ROUNDS=${A_ROUNDS:-3}
D_FILES=${D_FILES:-240} D_SIZE=${D_SIZE:-64MiB}
E_FILES=${E_FILES:-1000} E_TIER=${E_TIER:-128MiB}
link=(--first-byte-latency 30ms --conn-bandwidth 64MiB --total-bandwidth 1GiB)

to_bytes() { numfmt --from=iec-i "${1%B}"; }
sim_stat() { curl -sf "$url/_sim/stats" | sed -E "s/.*\"$1\":([0-9]+).*/\1/"; }
reset_stats() { curl -sf -X POST "$url/_sim/reset-stats" >/dev/null; }
metric() { curl -sf "127.0.0.1:$port/metrics" | awk -v m="$1" '$1 == m {printf "%.0f\n", $2}'; }
# What made the tier drop writes or step aside, from its counters.
tier_faults() {
  echo "writes dropped $(metric valkyrie_disk_writes_dropped_total), slow $(metric valkyrie_disk_slow_total), hung $(metric valkyrie_disk_hung_total), errors $(metric valkyrie_disk_errors_total)"
}
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
# mount_tier BUCKET FLAGS...: as bench_mount, with metrics on a free port ($port) and info logs.
mount_tier() {
  local bucket=$1
  shift
  : >"$tmp/daemon.err"
  "$build/src/cli/valkyrie" --mount "$mnt" --bucket "$bucket" --endpoint "$url" --foreground \
    --log-level info --metrics-addr 127.0.0.1:0 ${VALKYRIE_ARGS:-} "$@" 2>>"$tmp/daemon.err" &
  daemon_pid=$!
  for _ in $(seq 200); do grep -q '"metrics":"' "$tmp/daemon.err" && mountpoint -q "$mnt" && break; sleep 0.05; done
  mountpoint -q "$mnt" || { cat "$tmp/daemon.err" >&2; echo "the mount did not come up" >&2; exit 1; }
  port=$(grep -o '"metrics":"[^"]*"' "$tmp/daemon.err" | tail -1 | sed 's/.*:\([0-9]*\)"$/\1/')
}
# shuffle SEED COUNT: COUNT shuffled file names, one a line.
shuffle() {
  /usr/bin/python3 -c 'import random, sys; r = random.Random(int(sys.argv[1])); k = [f"shard_{i:06d}.tar" for i in range(int(sys.argv[2]))]; r.shuffle(k); print("\n".join(k))' "$1" "$2"
}
hand_over() {  # ORDER_FILE: the mount's training order from now on
  cp "$1" "$mnt/.valkyrie/order"
}
# epoch ORDER_FILE [STOP_AFTER_FILES]: reads the files in that order (1 MiB reads); prints
# "BYTES SECONDS".
epoch() {
  /usr/bin/python3 - "$mnt" "$1" "${2:-0}" <<'PY'
import os, sys, time
mnt, order, stop = sys.argv[1], sys.argv[2], int(sys.argv[3])
buf = bytearray(1 << 20)
n = 0
t0 = time.monotonic()
for i, name in enumerate(open(order).read().split()):
    if stop and i >= stop:
        break
    with open(os.path.join(mnt, name), "rb", buffering=0) as f:
        while (k := f.readinto(buf)):
            n += k
print(n, time.monotonic() - t0)
PY
}
# settle: waits until the write-backs are done (the tier's used bytes unchanged for 1 s).
settle() {
  local prev=-1 now
  for _ in $(seq 600); do
    now=$(metric valkyrie_disk_used_bytes)
    [[ $now == "$prev" ]] && return 0
    prev=$now
    sleep 1
  done
}
rate() { awk -v b="$1" -v s="$2" 'BEGIN {printf "%.0f", b / s / 1048576}'; }  # MiB/s
frac() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a / b}'; }
fio_read() {  # FILE BS: MiB/s of an O_DIRECT sequential read
  fio --name=r --filename="$1" --size="$fio_size" --rw=read --bs="$2" --direct=1 --ioengine=io_uring \
    --output-format=json 2>/dev/null | /usr/bin/python3 -c 'import json, sys; print(round(json.load(sys.stdin)["jobs"][0]["read"]["bw_bytes"] / 2**20))'
}
# sample_disk DIR CAP OUT: samples DIR's disk use every 0.1 s into OUT ("data_bytes dir_bytes")
# until killed.
sample_disk() {
  while :; do
    echo "$(du -B1 -c "$1"/data.* 2>/dev/null | tail -1 | cut -f1) $(du -B1 -s "$1" | cut -f1)" >>"$3"
    sleep 0.1
  done
}

if [[ $parts == *a* || $parts == *b* || $parts == *c* ]]; then
  bench_start_sim --synthetic "train:$A_FILES:$A_SIZE" "${link[@]}"
  a_bytes=$((A_FILES * $(to_bytes "$A_SIZE")))
fi

if [[ $parts == *a* ]]; then
  echo "== a: $A_FILES x $A_SIZE, --cache-size 512MiB, --disk-cache-size 8GiB, a new order each epoch"
  mkdir -p "$work/a"
  shuffle 1 "$A_FILES" >"$tmp/o1"
  # fio's file, written just before epoch 1 writes the tier's data: about as old when both are
  # read, and its writes over before the daemon's (written after epoch 1, the host still
  # flushing it slowed the tier's first reads enough for the tier to step aside once).
  fio --name=w --filename="$work/fio.f" --size="$a_bytes" --rw=write --bs=8M --direct=1 \
    --ioengine=io_uring --iodepth=8 >/dev/null 2>&1
  sync
  mount_tier train --cache-size 512MiB --disk-cache "$work/a" --disk-cache-size 8GiB
  hand_over "$tmp/o1"
  drop_caches
  reset_stats
  read -r b1 s1 < <(epoch "$tmp/o1")
  settle
  sent1=$(sim_stat bytes_sent)
  echo "  after epoch 1: $(metric valkyrie_disk_used_bytes) bytes on the tier, $(metric valkyrie_disk_writes_dropped_total) writes dropped, $(metric valkyrie_disk_writes_declined_total) declined"
  printf '  epoch 1 (S3, written back):   %5d MiB/s   S3 sent %d of %d bytes\n' "$(rate "$b1" "$s1")" "$sent1" "$b1"
  fio_size=$a_bytes
  ratios=()
  for round in $(seq "$A_ROUNDS"); do
    shuffle $((100 + round)) "$A_FILES" >"$tmp/o2"
    hand_over "$tmp/o2"
    if ((round % 2 == 0)); then drop_caches; f1=$(fio_read "$work/fio.f" 1M); fi
    drop_caches
    reset_stats
    read -r b2 s2 < <(epoch "$tmp/o2")
    sent2=$(sim_stat bytes_sent)
    if ((round % 2 == 1)); then drop_caches; f1=$(fio_read "$work/fio.f" 1M); fi
    r=$(frac "$(rate "$b2" "$s2")" "$f1")
    ratios+=("$r")
    printf '  epoch 2 round %d (disk tier): %5d MiB/s   fio bs=1M %5d MiB/s (%s first): %s x fio   bytes without S3: %s (S3 sent %d)\n' \
      "$round" "$(rate "$b2" "$s2")" "$f1" "$([[ $((round % 2)) == 1 ]] && echo epoch || echo fio)" "$r" \
      "$(frac $((b2 - sent2)) "$b2")" "$sent2"
  done
  e2_rate=$(rate "$b2" "$s2")
  echo "  disk reads $(metric valkyrie_disk_bytes_read_total) bytes, $(metric valkyrie_disk_check_failures_total) check failures"
  bench_unmount
  rm -f "$work/fio.f"
  rm -rf "$work/a"
  # The S3 path: the same two epochs without the disk tier.
  mount_tier train --cache-size 512MiB
  hand_over "$tmp/o1"
  drop_caches
  read -r _ _ < <(epoch "$tmp/o1")
  hand_over "$tmp/o2"
  drop_caches
  reset_stats
  read -r b3 s3 < <(epoch "$tmp/o2")
  sent3=$(sim_stat bytes_sent)
  bench_unmount
  printf '  epoch 2 without the tier:     %5d MiB/s   bytes without S3: %s\n' "$(rate "$b3" "$s3")" "$(frac $((b3 - sent3)) "$b3")"
  median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}')
  printf '  epoch 2 / fio(1M): median %s over %d rounds (%s); last round / S3 path = %s\n' "$median" "$A_ROUNDS" \
    "${ratios[*]}" "$(frac "$e2_rate" "$(rate "$b3" "$s3")")"
fi

if [[ $parts == *b* || $parts == *c* ]]; then
  half=$((a_bytes / 2))
  echo "== b/c: $A_FILES x $A_SIZE on a $half-byte tier, --cache-size 512MiB, two epochs"
  { shuffle 3 "$A_FILES"; shuffle 4 "$A_FILES"; } >"$tmp/two"
  head -n "$A_FILES" "$tmp/two" >"$tmp/e1"
  tail -n "$A_FILES" "$tmp/two" >"$tmp/e2"
  b_run() {  # label with_order(yes/no)
    rm -rf "$work/b"
    mkdir -p "$work/b"
    : >"$tmp/du.$2"
    mount_tier train --cache-size 512MiB --disk-cache "$work/b" --disk-cache-size "$half"
    sample_disk "$work/b" "$half" "$tmp/du.$2" &
    local sampler=$!
    [[ $2 == yes ]] && hand_over "$tmp/two"
    drop_caches
    local b1 s1
    read -r b1 s1 < <(epoch "$tmp/e1")
    settle
    echo "  epoch 1: $(rate "$b1" "$s1") MiB/s" >&2
    drop_caches
    reset_stats
    local b s
    read -r b s < <(epoch "$tmp/e2")
    local sent
    sent=$(sim_stat bytes_sent)
    kill "$sampler"
    wait "$sampler" 2>/dev/null || true
    slots=$(grep -o '"slots":[0-9]*' "$tmp/daemon.err" | head -1 | cut -d: -f2)
    declined=$(metric valkyrie_disk_writes_declined_total)
    dropped=$(metric valkyrie_disk_writes_dropped_total)
    bench_unmount
    printf '  %-26s epoch 2 bytes without S3: %s  (%d MiB/s; %s writes declined, %s dropped)\n' "$1" "$(frac $((b - sent)) "$b")" \
      "$(rate "$b" "$s")" "${declined:-0}" "${dropped:-0}"
    read -r maxdata maxdir < <(sort -n "$tmp/du.$2" | awk '{if ($1 > d) d = $1; if ($2 > r) r = $2} END {print d + 0, r + 0}')
    printf '  %-26s disk use sampled %d times: data files at most %d, directory at most %d, cap %d: %s\n' "" \
      "$(wc -l <"$tmp/du.$2")" "$maxdata" "$maxdir" "$half" "$([[ $maxdir -le $half ]] && echo within || echo OVER)"
  }
  [[ $parts == *b* ]] && b_run "order known (Belady):" yes
  b_run "no order (LRU + CLOCK):" no
  chunk=$((8 << 20))
  mem_chunks=$(((512 << 20) / chunk))
  /usr/bin/python3 - "$tmp/two" "$A_FILES" "$(to_bytes "$A_SIZE")" "$chunk" "$mem_chunks" "$slots" <<'PY'
import sys
order, nfiles, size, chunk, mem, disk = sys.argv[1], *map(int, sys.argv[2:])
per = (size + chunk - 1) // chunk
seq = [(name, c) for name in open(order).read().split() for c in range(per)]
half = len(seq) // 2
nxt, last = [0] * len(seq), {}
for i in range(len(seq) - 1, -1, -1):
    nxt[i] = last.get(seq[i], 1 << 60)
    last[seq[i]] = i
def belady(cap):
    held, hits = {}, 0  # chunk -> next use
    for i, x in enumerate(seq):
        if x in held:
            if i >= half: hits += 1
            held[x] = nxt[i]
            continue
        if len(held) < cap:
            held[x] = nxt[i]
            continue
        far = max(held, key=held.get)
        if nxt[i] < held[far]:
            del held[far]
            held[x] = nxt[i]
    return hits / half
print(f"  offline optimum (Belady with bypass), epoch 2 bytes without S3: memory+disk ({mem}+{disk} chunks) {belady(mem + disk):.3f}, disk alone ({disk}) {belady(disk):.3f}")
PY
fi

if [[ $parts == *d* ]]; then
  [[ -n $sim_pid ]] && { kill "$sim_pid"; wait "$sim_pid" 2>/dev/null || true; sim_pid=; }
  bench_start_sim --synthetic "many:$D_FILES:$D_SIZE" --conn-bandwidth 64MiB --total-bandwidth 1GiB
  d_bytes=$((D_FILES * $(to_bytes "$D_SIZE")))
  chunk=$((64 << 10))
  cap=$(((d_bytes / chunk + 64) * (chunk + 4096)))  # (all of it fits)
  echo "== d: $D_FILES x $D_SIZE in 64 KiB chunks ($((d_bytes / chunk)) chunks), tier $cap bytes, kill -9 mid-epoch"
  mkdir -p "$work/d"
  flags=(--chunk-size 64KiB --cache-size 512MiB --disk-cache "$work/d" --disk-cache-size "$cap")
  shuffle 5 "$D_FILES" >"$tmp/d1"
  mount_tier many "${flags[@]}"
  # Two thirds of the files read (and written back) in full, then the rest read and the daemon
  # killed half way, its write-backs in flight.
  fill=$((D_FILES * 2 / 3))
  read -r fb s < <(epoch "$tmp/d1" "$fill")
  settle
  echo "  first $fill files: $(rate "$fb" "$s") MiB/s, $(metric valkyrie_disk_used_bytes) bytes on the disk tier; $(tier_faults)"
  tail -n +$((fill + 1)) "$tmp/d1" >"$tmp/d2"
  read -r _ _ < <(epoch "$tmp/d2" $(((D_FILES - fill) / 2)))
  kill -9 "$daemon_pid"
  wait "$daemon_pid" 2>/dev/null || true
  daemon_pid=
  umount -l "$mnt" 2>/dev/null || true
  reset_stats
  mount_tier many "${flags[@]}"
  line=$(grep '"disk cache opened"' "$tmp/daemon.err" | tail -1)
  chunks=$(grep -o '"chunks":[0-9]*' <<<"$line" | cut -d: -f2)
  secs=$(grep -o '"replay_seconds":[0-9.e-]*' <<<"$line" | cut -d: -f2)
  used=$(metric valkyrie_disk_used_bytes)
  read -r b _ < <(epoch "$tmp/d1")
  sent=$(sim_stat bytes_sent)
  gets=$(sim_stat get)
  reread_faults=$(tier_faults)
  bench_unmount
  echo "  after kill -9: $chunks chunks ($used bytes) indexed in $secs s (startup, no data read)"
  echo "  re-read: S3 sent $sent bytes in $gets GETs; bytes not on the disk: $((b - used)): $([[ $sent -le $((b - used)) ]] && echo 'no chunk on disk fetched again' || echo 'CHUNKS ON DISK FETCHED AGAIN')"
  echo "  re-read: $reread_faults"
fi

if [[ $parts == *e* ]]; then
  [[ -n $sim_pid ]] && { kill "$sim_pid"; wait "$sim_pid" 2>/dev/null || true; sim_pid=; }
  bench_start_sim --synthetic "small:$E_FILES:110KiB" "${link[@]}"
  e_bytes=$((E_FILES * 110 * 1024))
  echo "== e: $E_FILES x 110 KiB ($e_bytes bytes), tier $E_TIER, memory 64 MiB"
  mkdir -p "$work/e"
  /usr/bin/python3 -c 'import sys; print("\n".join(f"shard_{i:06d}.tar" for i in range(int(sys.argv[1]))))' "$E_FILES" >"$tmp/e1"
  mount_tier small --cache-size 64MiB --disk-cache "$work/e" --disk-cache-size "$E_TIER"
  read -r b1 s1 < <(epoch "$tmp/e1")
  settle
  tier_line=$(grep '^# disk tier:' "$mnt/.valkyrie/order")
  echo "  epoch 1: $(rate "$b1" "$s1") MiB/s; $tier_line"
  echo "  writes dropped $(metric valkyrie_disk_writes_dropped_total), declined $(metric valkyrie_disk_writes_declined_total)"
  drop_caches
  reset_stats
  read -r b2 s2 < <(epoch "$tmp/e1")
  sent=$(sim_stat bytes_sent)
  echo "  epoch 2: $(rate "$b2" "$s2") MiB/s; S3 sent $sent of $b2 bytes ($(frac "$sent" "$b2")); disk hits $(metric valkyrie_disk_hits_total)"
  bench_unmount
fi
