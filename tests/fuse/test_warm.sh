#!/usr/bin/env bash
# `valkyrie warm MOUNT [ORDER_FILE]`: fills the disk tier before the job starts.
# 1. A mount without --disk-cache: warm exits 1 with "has no disk tier".
# 2. A disk tier bigger than the dataset (8 x 20 MiB: 3 chunks each, the last short; 10 x 110 KiB):
#    warm with an order file (not a TTY: plain progress lines), then every file read with
#    0 GETs, bytes exact: all of it came from the disk (the memory cache was not filled).
# 3. A tier of 10 chunks and warm without an order file (listing order): 10 chunks planned and
#    written (up to the tier's size), and reading the first files of the listing sends 0 GETs
#    (--lookahead 0: no prefetch of the files after them, which are not on the disk).
# 4. Small objects packed: a tier of 2 slots and warm of the 10 x 110 KiB files: all 10 planned and
#    written into one packed slot ("# disk tier:" line), then read with 0 GETs, bytes exact.
# Exit 77 without /dev/fuse or root.
set -euo pipefail
[[ -c /dev/fuse && $(id -u) == 0 ]] || { echo "no /dev/fuse or not root: skipped"; exit 77; }
tmp=$(mktemp -d /tmp/valkyrie-warm.XXXXXX)
mnt="$tmp/mnt"; mkdir -p "$mnt" "$tmp/disk" "$tmp/disk2" "$tmp/disk3" "$tmp/ref"
source "$(dirname "$0")/lib.sh"
export AWS_ACCESS_KEY_ID=AKIDWARM AWS_SECRET_ACCESS_KEY=warm/secret AWS_EC2_METADATA_DISABLED=true
start_sim --synthetic data:8:20MiB:big/ --synthetic data:10:110KiB:small/
valkyrie=$BUILD_ROOT/src/cli/valkyrie
sim_stat() { curl -sf "$url/_sim/stats" | sed -E "s/.*\"$1\":([0-9]+).*/\1/"; }
reset_stats() { curl -sf -X POST "$url/_sim/reset-stats" >/dev/null; }
keys=$("$BUILD_ROOT/tools/valkyrie-s3" --endpoint "$url" --bucket data --threads 1 ls | awk '{print $3}')
for k in $keys; do
  mkdir -p "$tmp/ref/$(dirname "$k")"
  "$BUILD_ROOT/tools/valkyrie-s3" --endpoint "$url" --bucket data --threads 1 get "$k" -o "$tmp/ref/$k" >/dev/null
done
# read_exact KEY...: the mount's bytes of each key equal S3's.
read_exact() {
  for k in "$@"; do cmp -s "$mnt/$k" "$tmp/ref/$k" || fail "$k: other bytes than S3's"; done
}

# --- 1. no disk tier ---
start_valkyrie data "$url" --cache-size 256MiB
if out=$("$valkyrie" warm "$mnt" 2>&1); then fail "warm succeeded on a mount without a disk tier: $out"; fi
grep -q "has no disk tier" <<<"$out" || fail "warm said: $out"
pass "no disk tier: $out"
umount "$mnt"
expect_daemon_gone

# --- 2. warm in an order, then 0 GETs ---
start_valkyrie data "$url" --cache-size 256MiB --disk-cache "$tmp/disk" --disk-cache-size 512MiB
sort -r <<<"$keys" >"$tmp/order"
reset_stats
out=$("$valkyrie" warm "$mnt" "$tmp/order" 2>&1) || fail "warm failed: $out"
grep -q "^warm done: 34 chunks written, 0 already on the disk, 0 failed" <<<"$out" || fail "warm said: $out"
grep -q "^warm: 34 of 34 chunks" <<<"$out" || fail "no plain progress line: $out"
[[ $(sim_stat get) == 34 ]] || fail "warm sent $(sim_stat get) GETs, not one per chunk (34)"
reset_stats
read_exact $keys
gets=$(sim_stat get)
[[ $gets == 0 ]] || fail "reading after warm sent $gets GETs"
out2=$("$valkyrie" warm "$mnt" "$tmp/order" 2>&1) || fail "a second warm failed: $out2"
grep -q "^warm done: 0 chunks written, 34 already on the disk" <<<"$out2" || fail "second warm said: $out2"
[[ $(sim_stat get) == 0 ]] || fail "a second warm sent GETs"
pass "warm in order: 34 chunks, then every file read with 0 GETs, bytes exact; warm again: 0 GETs"
umount "$mnt"
expect_daemon_gone

# --- 3. a tier of 10 chunks, listing order ---
slot=$(((8 << 20) + 4096))
start_valkyrie data "$url" --cache-size 256MiB --lookahead 0 --disk-cache "$tmp/disk2" --disk-cache-size $((10 * slot))
out=$("$valkyrie" warm "$mnt" 2>&1) || fail "warm failed: $out"
grep -q "^warm: 10 of 10 chunks" <<<"$out" || fail "warm of a 10-chunk tier said: $out"
grep -q "^warm done: 10 chunks written" <<<"$out" || fail "warm said: $out"
reset_stats
read_exact big/shard_000000.tar big/shard_000001.tar big/shard_000002.tar  # (9 chunks: the first of the listing)
gets=$(sim_stat get)
[[ $gets == 0 ]] || fail "reading the first files of the listing after warm sent $gets GETs"
pass "a 10-chunk tier: warm stops at 10 chunks; the listing's first files read with 0 GETs"
umount "$mnt"
expect_daemon_gone

# --- 4. small objects packed: a tier of 2 slots takes all 10 x 110 KiB ---
start_valkyrie data "$url" --cache-size 256MiB --lookahead 0 --disk-cache "$tmp/disk3" --disk-cache-size $((2 * slot))
grep '^small/' <<<"$keys" >"$tmp/small-order"
out=$("$valkyrie" warm "$mnt" "$tmp/small-order" 2>&1) || fail "warm of the small files failed: $out"
grep -q "^warm done: 10 chunks written" <<<"$out" || fail "warm of 10 small files into 2 slots said: $out"
tier=$(grep '^# disk tier:' "$mnt/.valkyrie/order")
grep -q "10 chunks in 1 of 2 slots (10 small ones packed in 1)" <<<"$tier" || fail "disk tier line: $tier"
reset_stats
read_exact $(cat "$tmp/small-order")
gets=$(sim_stat get)
[[ $gets == 0 ]] || fail "reading the small files after warm sent $gets GETs"
pass "small objects packed: 10 x 110 KiB warmed into one slot of a 2-slot tier, read with 0 GETs ($tier)"
umount "$mnt"
expect_daemon_gone
