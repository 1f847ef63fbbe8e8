#!/usr/bin/env bash
# Prefetch through a real mount, counted by valkyrie-s3sim's request counters: with a manifest
# the first shard is in memory before it is read (its first read sends no GET); without one, a
# sequential reader brings the next numbered shard in whole. Exit 77 without /dev/fuse or root.
set -euo pipefail
[[ -c /dev/fuse && $(id -u) == 0 ]] || { echo "no /dev/fuse or not root: skipped"; exit 77; }
tmp=$(mktemp -d /tmp/valkyrie-prefetch.XXXXXX)
mnt="$tmp/mnt"; mkdir -p "$mnt"
source "$(dirname "$0")/lib.sh"
export AWS_ACCESS_KEY_ID=AKIDPF AWS_SECRET_ACCESS_KEY=pf/secret AWS_EC2_METADATA_DISABLED=true
start_sim --synthetic data:6:24MiB:train/ --first-byte-latency 10ms --log-level debug
gets() { curl -s "$url/_sim/stats" | sed -E 's/.*"get":([0-9]+).*/\1/'; }
reset() { curl -sf -X POST "$url/_sim/reset-stats" >/dev/null; mark=$(wc -l <"$tmp/sim.err"); }
gets_of() {  # GETs of one key since the last reset, from the simulator's request log
  tail -n +$((mark + 1)) "$tmp/sim.err" | grep -c "request GET /data/train/$1 " || true
}
verify() {  # bytes of the mounted file against the simulator's content
  "$BUILD_ROOT/tools/valkyrie-s3" --endpoint "$url" --bucket data get "train/$1" -o "$tmp/ref" >/dev/null
  cmp -s "$tmp/ref" "$mnt/$1" || fail "$1 differs"
}

# --- with a manifest ---
printf '# epoch 1\nshard_000004.tar\nshard_000002.tar\nmissing.tar\nshard_000005.tar\n' >"$tmp/order.txt"
VALKYRIE_LOG_LEVEL=info start_valkyrie data "$url" --prefix train/ --manifest "$tmp/order.txt" --lookahead 2 \
  --cache-size 256MiB
grep -q "line 4: 'missing.tar': no such key; skipped" "$tmp/daemon.err" || { cat "$tmp/daemon.err"; fail "manifest problem not reported"; }
pass "an unknown manifest key is reported with its line number and skipped"
# The warm-up at mount: until its GETs have been sent and answered.
fetched_any() { [[ $(gets) -gt 0 ]]; }
wait_until 30 fetched_any || fail "nothing was fetched at mount time"
settle
reset
cat "$mnt/shard_000004.tar" >/dev/null
[[ $(gets_of shard_000004.tar) == 0 ]] || fail "the first shard of the manifest was not warm: $(gets_of shard_000004.tar) GETs"
pass "with a manifest, the first read of the first shard is a cache hit (0 GETs for it)"
settle
[[ $(gets_of shard_000005.tar) -gt 0 ]] || fail "reading the first entry did not fetch the third"
reset
cat "$mnt/shard_000002.tar" >/dev/null
[[ $(gets_of shard_000002.tar) == 0 ]] || fail "the second shard of the manifest was not warm: $(gets_of shard_000002.tar) GETs"
pass "the manifest's next entries were fetched ahead (0 GETs for the second; the third came in)"
verify shard_000004.tar; verify shard_000002.tar
pass "prefetched bytes are exact"
umount "$mnt"; expect_daemon_gone

# --- without a manifest: numbered successors ---
start_valkyrie data "$url" --prefix train/ --lookahead 1 --cache-size 256MiB
cat "$mnt/shard_000000.tar" >/dev/null
settle; reset
cat "$mnt/shard_000001.tar" >/dev/null
[[ $(gets_of shard_000001.tar) == 0 ]] || fail "the successor shard was not prefetched: $(gets_of shard_000001.tar) GETs"
verify shard_000001.tar
pass "reading shard_000000 brought shard_000001 in whole (its read: 0 GETs)"
umount "$mnt"; expect_daemon_gone

# --- two epochs through a cache of half the dataset: future-order eviction keeps what epoch 2
# reads soonest (LRU would keep nothing useful there). Compared with the policy's reference: a
# model of the same steps (warm-up, read-ahead, the next file fetched whole, the furthest next use
# evicted, a prefetch never evicting what is needed sooner) on the chunk trace, 3 chunks of
# 8 MiB per shard, 9 slots (--passthrough-pool 0: auto would take an eighth of the 72 MiB).
printf '%s\n' shard_000003.tar shard_000000.tar shard_000005.tar shard_000001.tar shard_000004.tar \
  shard_000002.tar >"$tmp/epoch.txt"
cat "$tmp/epoch.txt" "$tmp/epoch.txt" >"$tmp/epochs.txt"
start_valkyrie data "$url" --prefix train/ --manifest "$tmp/epochs.txt" --cache-size 72MiB --lookahead 1 \
  --passthrough-pool 0
sent() { curl -s "$url/_sim/stats" | sed -E 's/.*"bytes_sent":([0-9]+).*/\1/'; }
settle
for epoch in 1 2; do
  sync; echo 3 >/proc/sys/vm/drop_caches  # the page cache would answer epoch 2 by itself
  before=$(sent)
  while read -r f; do cat "$mnt/$f" >/dev/null; done <"$tmp/epoch.txt"
  settle
  eval "epoch${epoch}_bytes=$(($(sent) - before))"
done
for f in $(cat "$tmp/epoch.txt"); do verify "$f"; done
/usr/bin/python3 - "$epoch2_bytes" <<'PY' || fail "epoch 2 reuse"
import sys
E = [3, 0, 5, 1, 4, 2]; order = E * 2; N = len(order); C = 3; S = 9
cache = set()
def dist(f, c, cursor, passed):  # predictor::next_use
    pos = [i for i, x in enumerate(order) if x == f]
    after = [i for i in pos if (i > cursor if (f == order[cursor] and c < passed) else i >= cursor)]
    return ((after[0] - cursor if after else pos[0] + N - cursor) << 24) + c
def admit(key, cursor, passed, incoming):  # chunk_cache::take_slot; incoming None: a reader's
    if key in cache: return 0
    if len(cache) >= S:
        victim = max(cache, key=lambda k: dist(*k, cursor, passed))
        if incoming is not None and dist(*victim, cursor, passed) <= incoming: return 0
        cache.remove(victim)
    cache.add(key); return 1
for c in range(C): admit((order[0], c), 0, 0, dist(order[0], c, 0, 0))  # warm-up at mount
fetched = [0] * N
for p, f in enumerate(order):
    for c in (1, 2): fetched[p] += admit((f, c), p, 0, dist(f, c, p, 0))  # read-ahead
    fetched[p] += admit((f, 0), p, 0, None)                                 # the first read
    if p + 1 < N:                                                           # the next file, whole
        for c in range(C): fetched[p] += admit((order[p + 1], c), p, 0, dist(order[p + 1], c, p, 0))
    for c in (1, 2): fetched[p] += admit((f, c), p, c, None)
reference = 1 - sum(fetched[len(E):]) / (len(E) * C)
reuse = 1 - int(sys.argv[1]) / (6 * 24 * 2**20)
# The reference models the steps of the first future-order policy; the prefetcher since keeps
# at least as much (0.50 measured: the most a cache of half the dataset can keep), never less.
print(f"epoch 2: {reuse:.2f} of the bytes served without S3; the policy's reference {reference:.2f} (LRU: 0)")
sys.exit(0 if reuse >= reference - 0.1 and reuse > 0.2 and reuse <= 0.5 + 0.05 else 1)
PY
pass "epoch 2 through a half-size cache: reuse at least the policy's reference, at most half"
umount "$mnt"; expect_daemon_gone

# --- live order hints: /.valkyrie/order, written through valkyrie-order and its Python module ---
VALKYRIE_LOG_LEVEL=info start_valkyrie data "$url" --prefix train/ --lookahead 1 --cache-size 256MiB --allow-other
port=$(metrics_port)
updates() { curl -s "127.0.0.1:$port/metrics" | grep "^valkyrie_order_updates_total{result=\"$1\"}" | awk '{print $2}'; }
[[ $(ls -A "$mnt") != *.valkyrie* ]] || fail "the control directory shows in the root listing"
[[ $(ls "$mnt/.valkyrie") == order ]] || fail "the control directory does not hold 'order'"
grep -q "training order: none" "$mnt/.valkyrie/order" || fail "no order expected: $(cat "$mnt/.valkyrie/order")"
pass "/.valkyrie/order is there by name, never listed, and says there is no order"
settle; reset
printf 'shard_000005.tar\nshard_000002.tar\nmissing.tar\nshard_000000.tar\n' >"$tmp/hint.txt"
out=$("$BUILD_ROOT/tools/valkyrie-order" "$mnt" "$tmp/hint.txt") || fail "valkyrie-order: $out"
[[ $out == *"3 keys"*"1 lines skipped"* ]] || fail "valkyrie-order said: $out"
grep -q "^# skipped line 3: missing.tar: no such key" "$mnt/.valkyrie/order" || fail "skipped line not shown"
settle
[[ $(gets_of shard_000005.tar) -gt 0 && $(gets_of shard_000002.tar) == 0 ]] ||
  fail "warm-up: $(gets_of shard_000005.tar) GETs of the hint's first shard, $(gets_of shard_000002.tar) of its second"
reset
cat "$mnt/shard_000005.tar" >/dev/null
[[ $(gets_of shard_000005.tar) == 0 ]] || fail "the hint's first shard was not warm"
settle
[[ $(gets_of shard_000002.tar) -gt 0 && $(gets_of shard_000006.tar) == 0 ]] ||
  fail "after the hint's first shard: $(gets_of shard_000002.tar) GETs of its second, $(gets_of shard_000006.tar) of the numbered successor"
reset
cat "$mnt/shard_000002.tar" >/dev/null
[[ $(gets_of shard_000002.tar) == 0 ]] || fail "the hint's second shard was not prefetched"
verify shard_000005.tar; verify shard_000002.tar
pass "a hint warms up its first shard (read: 0 GETs) and brings in its next one, not the numbered successor"
# A hint naming nothing: refused at close (EINVAL), the order in force stays.
out=$(PYTHONPATH="$SOURCE_ROOT/tools" /usr/bin/python3 -c '
import sys, valkyrie_order as vo
try:
    vo.write_order(["nope.tar"], mount=sys.argv[1])
except vo.OrderRefused as e:
    print("refused:", e)
header, keys = vo.read_order(sys.argv[1])
print(len(keys), header[0])
# WebDataset brace notation and sampler helpers
assert vo.expand_braces("a-{008..010}.tar") == ["a-008.tar", "a-009.tar", "a-010.tar"]
assert vo.order_from_webdataset("file:/m/x-{1..2}.tar::pipe:cat /m/y.tar") == ["/m/x-1.tar", "/m/x-2.tar", "/m/y.tar"]
assert vo.order_from_sampler([4, 5, 0, 1, 6], lambda i: f"s{i // 2}") == ["s2", "s0", "s3"]
' "$mnt") || fail "python helper: $out"
[[ $out == *"refused:"*"no line of the order names a file"* && $out == *"3 # valkyrie training order from hint: 3 keys"* ]] ||
  fail "a useless hint: $out"
pass "a hint naming no file is refused at close (EINVAL) and the previous order stays"
# Paths inside the mount work as well as keys; only the owner (or root) may write.
PYTHONPATH="$SOURCE_ROOT/tools" /usr/bin/python3 -c '
import sys, valkyrie_order as vo
vo.write_order([sys.argv[1] + "/shard_000003.tar", sys.argv[1] + "/shard_000001.tar"])' "$mnt" || fail "paths"
[[ $(grep -v '^#' "$mnt/.valkyrie/order" | tr '\n' ' ') == "shard_000003.tar shard_000001.tar " ]] || fail "paths: $(cat "$mnt/.valkyrie/order")"
chmod 755 "$tmp"  # (mktemp -d made it 0700: others could not reach the mount at all)
setpriv --reuid=65534 --regid=65534 --clear-groups cat "$mnt/.valkyrie/order" >/dev/null || fail "others cannot read the order"
setpriv --reuid=65534 --regid=65534 --clear-groups sh -c "echo shard_000004.tar >'$mnt/.valkyrie/order'" 2>/dev/null &&
  fail "another user could write the order"
touch "$mnt/shard_000001.tar" 2>/dev/null && fail "touch of a data file succeeded"
out=$(sh -c "echo x >'$mnt/new.tar'" 2>&1) && fail "created a file"
[[ $out == *"Read-only file system"* ]] || fail "creating a file: $out"
pass "paths work as keys; other users may read but not write the order; data files stay read-only (EROFS)"
"$BUILD_ROOT/tools/valkyrie-order" "$mnt" --clear || fail "clear"
wait_until 5 grep -q "training order: none" "$mnt/.valkyrie/order" || fail "not cleared"  # (applied at the last close)
[[ $(updates set) == 2 && $(updates refused) == 1 && $(updates cleared) == 1 ]] ||
  fail "valkyrie_order_updates_total: set $(updates set), refused $(updates refused), cleared $(updates cleared)"
pass "an empty order clears it; valkyrie_order_updates_total counts 2 set, 1 refused, 1 cleared"
umount "$mnt"; expect_daemon_gone
start_valkyrie data "$url" --prefix train/ --no-control-files
[[ $(findmnt -no OPTIONS "$mnt") == ro,* ]] || fail "--no-control-files: mounted $(findmnt -no OPTIONS "$mnt")"
[[ ! -e $mnt/.valkyrie ]] || fail "--no-control-files: /.valkyrie exists"
umount "$mnt"; expect_daemon_gone
pass "--no-control-files: no /.valkyrie, and the kernel mounts read-only"

# --- --direct-io: reads bypass the page cache, bytes exact; a shared mmap works (the daemon asks
# the kernel for FUSE_DIRECT_IO_ALLOW_MMAP, Linux >= 6.6) and maps the same bytes ---
start_valkyrie data "$url" --prefix train/ --direct-io --cache-size 64MiB
verify shard_000003.tar  # (leaves the reference in $tmp/ref)
/usr/bin/python3 - "$mnt/shard_000003.tar" "$tmp/ref" <<'PY' || fail "--direct-io mmap"
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as m:  # MAP_SHARED
    if m[:] != open(sys.argv[2], "rb").read():
        sys.exit("a shared mmap of a direct-io file maps other bytes than the reference")
PY
umount "$mnt"; expect_daemon_gone
pass "--direct-io: bytes exact, through read() and through a shared mmap"

# --- a manifest with no usable key ---
printf 'nope.tar\n\n# only comments\n' >"$tmp/bad.txt"
out=$("$BUILD_ROOT/src/cli/valkyrie" --mount "$mnt" --bucket data --prefix train/ --endpoint "$url" \
  --manifest "$tmp/bad.txt" 2>&1) && fail "a useless manifest was accepted"
[[ $out == *"line 1: 'nope.tar': no such key"* && $out == *"names no key of s3://data/train/"* ]] || fail "bad manifest: $out"
mountpoint -q "$mnt" && fail "mounted anyway"
pass "a manifest with no usable key is refused at start-up, naming its lines"
echo "all prefetch checks passed"
