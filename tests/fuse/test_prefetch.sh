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
settle() {  # until no GET arrives for half a second
  local last=-1 now
  for _ in $(seq 40); do now=$(gets); [[ $now == "$last" ]] && return 0; last=$now; sleep 0.5; done
}
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
settle
[[ $(gets) -gt 0 ]] || fail "nothing was fetched at mount time"
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

# --- a manifest with no usable key ---
printf 'nope.tar\n\n# only comments\n' >"$tmp/bad.txt"
out=$("$BUILD_ROOT/src/cli/valkyrie" --mount "$mnt" --bucket data --prefix train/ --endpoint "$url" \
  --manifest "$tmp/bad.txt" 2>&1) && fail "a useless manifest was accepted"
[[ $out == *"line 1: 'nope.tar': no such key"* && $out == *"names no key of s3://data/train/"* ]] || fail "bad manifest: $out"
mountpoint -q "$mnt" && fail "mounted anyway"
pass "a manifest with no usable key is refused at start-up, naming its lines"
echo "all prefetch checks passed"
