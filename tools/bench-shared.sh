#!/usr/bin/env bash
# The shared cache tier's figures: node 2's cold read from the cache bucket against that store's
# link, and the origin bytes when two nodes read at the same time.
# Origin: valkyrie-s3sim (no link model); cache store: a second valkyrie-s3sim behind the link
# model (LINK_TOTAL, LINK_CONN, LINK_LATENCY). Node 1 reads FILES x SIZE and stores it; node 2
# (fresh daemon, own memory cache, no disk tier) reads it with dd, ROUNDS times alternating with
# the link's own figure: curl fetching a SIZE object from the store in 32 ranged GETs at once.
# Usage: tools/bench-shared.sh [BUILD_DIR]   (root, /dev/fuse)
set -euo pipefail
cd "$(dirname "$0")/.."
build=$(realpath "${1:-build}")
files=${FILES:-2} size=${SIZE:-512MiB}
link=(--total-bandwidth "${LINK_TOTAL:-1GiB}" --conn-bandwidth "${LINK_CONN:-64MiB}" --first-byte-latency "${LINK_LATENCY:-5ms}")
export AWS_ACCESS_KEY_ID=AKIDBENCH AWS_SECRET_ACCESS_KEY=bench-secret AWS_EC2_METADATA_DISABLED=true
tmp=$(mktemp -d /tmp/valkyrie-bench-shared.XXXXXX)
pids=() mnts=()
cleanup() {
  set +e
  for m in "${mnts[@]}"; do mountpoint -q "$m" && { umount "$m" || umount -l "$m"; }; done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
sim() {  # sim NAME FLAGS...: prints the URL
  local name=$1
  shift
  "$build/tools/valkyrie-s3sim" --listen 127.0.0.1:0 --credentials "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" "$@" \
    >"$tmp/$name.out" 2>"$tmp/$name.err" &
  pids+=("$!")
  for _ in $(seq 100); do [[ -s $tmp/$name.out ]] && break; sleep 0.05; done
  head -1 "$tmp/$name.out" | awk '{print $3}'
}
origin=$(sim origin --synthetic "data:$files:$size:ds/")
store=$(sim store --bucket cache "${link[@]}")
stat_of() { curl -sf "$1/_sim/stats" | sed -E "s/.*\"$2\":([0-9]+).*/\1/"; }
node() {  # node N: mounts, sets $port
  local m="$tmp/mnt$1"
  mkdir -p "$m"
  mnts+=("$m")
  "$build/src/cli/valkyrie" --mount "$m" --bucket data --endpoint "$origin" --foreground --log-level info \
    --metrics-addr 127.0.0.1:0 --cache-size 2GiB --shared-cache s3://cache/bench --shared-cache-endpoint "$store" ${NODE_FLAGS:-} \
    2>>"$tmp/node$1.err" &
  pids+=("$!")
  for _ in $(seq 100); do mountpoint -q "$m" && break; sleep 0.05; done
  for _ in $(seq 100); do grep -q '"metrics":"' "$tmp/node$1.err" && break; sleep 0.05; done
  port=$(grep -o '"metrics":"[^"]*"' "$tmp/node$1.err" | tail -1 | sed 's/.*:\([0-9]*\)"$/\1/')
}
metric() { curl -sf "127.0.0.1:$port/metrics" | awk -v m="$1" '$1 == m {printf "%d\n", $2}'; }
mibs() { awk -v b="$1" -v s="$2" 'BEGIN {printf "%.0f", b / s / 1048576}'; }
total=$((files * $(numfmt --from=iec "${size%iB}")))

# Node 1 fills the store.
node 1
cat "$tmp"/mnt1/ds/* >/dev/null
for _ in $(seq 600); do [[ $(metric valkyrie_shared_write_back_pending) == 0 ]] && break; sleep 0.1; done
echo "node 1: stored $(metric valkyrie_shared_puts_total) chunks; origin sent $(stat_of "$origin" bytes_sent) of $total bytes"
umount "$tmp/mnt1"

# ROUNDS rounds, alternating: the link (one SIZE object straight from the store: 32 ranged GETs
# of 8 MiB in flight, what fills a link of 64 MiB/s connections), then
# node 2 cold (a fresh daemon, own empty memory cache: dd of every file), through the page cache
# and with --direct-io.
head -c "$(numfmt --from=iec "${size%iB}")" /dev/zero >"$tmp/obj"
"$build/tools/valkyrie-s3" --endpoint "$store" --bucket cache --threads 1 put probe "$tmp/obj" >/dev/null
bytes=$(stat -c %s "$tmp/obj")
for round in $(seq "${ROUNDS:-3}"); do
  # (curl: 8 MiB ranges, 32 at once, SigV4-signed; lighter on the CPUs than our S3 tool, which
  # tops out near 650 MiB/s on this 2-core machine with the simulator beside it)
  args=()  # (--next resets every option: each range carries its own)
  for ((off = 0; off < bytes; off += 8 << 20)); do
    args+=(-sf --aws-sigv4 "aws:amz:us-east-1:s3" -u "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY"
      -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -r "$off-$((off + (8 << 20) - 1))" -o /dev/null -w '%{size_download}\n'
      "$store/cache/probe" --next)
  done
  t0=$(date +%s.%N)
  got=$(curl --parallel --parallel-max 32 "${args[@]:0:${#args[@]}-1}" 2>/dev/null | awk '{s += $1} END {print s}')
  [[ $got == "$bytes" ]] || { echo "the link probe got $got of $bytes bytes" >&2; exit 1; }
  t1=$(date +%s.%N)
  link_mibs=$(mibs "$bytes" "$(echo "$t1 - $t0" | bc)")
  line="round $round: link (curl, 32 ranged GETs in flight, a $size object from the store) $link_mibs MiB/s"
  # Node 2 through the page cache, then with --direct-io (replies straight into dd's buffer).
  for variant in page-cache direct-io; do
    curl -sf -X POST "$origin/_sim/reset-stats" >/dev/null
    NODE_FLAGS=$([[ $variant == direct-io ]] && echo --direct-io || true) node 2
    t0=$(date +%s.%N)
    for f in "$tmp"/mnt2/ds/*; do dd if="$f" of=/dev/null bs=4M status=none; done
    t1=$(date +%s.%N)
    node2_mibs=$(mibs "$total" "$(echo "$t1 - $t0" | bc)")
    line+="; node 2 cold, $variant: $node2_mibs MiB/s = $(awk -v a="$node2_mibs" -v b="$link_mibs" 'BEGIN {printf "%.2f", a / b}') x (origin GETs $(stat_of "$origin" get), shared hits $(metric valkyrie_shared_hits_total))"
    umount "$tmp/mnt2"
    kill "${pids[-1]}" 2>/dev/null || true
    wait "${pids[-1]}" 2>/dev/null || true
  done
  echo "$line"
done

# Both at once on a fresh prefix: what the origin sends.
curl -sf -X POST "$origin/_sim/reset-stats" >/dev/null
for n in 3 4; do
  m="$tmp/mnt$n"; mkdir -p "$m"; mnts+=("$m")
  "$build/src/cli/valkyrie" --mount "$m" --bucket data --endpoint "$origin" --foreground --log-level info \
    --metrics-addr 127.0.0.1:0 --cache-size 2GiB --shared-cache s3://cache/both --shared-cache-endpoint "$store" \
    2>>"$tmp/node$n.err" &
  pids+=("$!")
  for _ in $(seq 100); do mountpoint -q "$m" && break; sleep 0.05; done
done
cat "$tmp"/mnt3/ds/* >/dev/null &
r3=$!
cat "$tmp"/mnt4/ds/* >/dev/null
wait $r3
echo "two nodes at once: the origin sent $(stat_of "$origin" bytes_sent) bytes for a $total-byte dataset ($(awk -v a="$(stat_of "$origin" bytes_sent)" -v b="$total" 'BEGIN {printf "%.2f", a / b}') x)"
