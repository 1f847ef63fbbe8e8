#!/usr/bin/env bash
# Benchmarks the S3 client against valkyrie-s3sim, every figure from the same run:
#  1. with the S3 link model (30 ms first byte, 64 MiB/s per connection, 1 GiB/s total):
#     one GET of a 1 GiB object vs N parallel 8 MiB ranged GETs, as a fraction of the link;
#  2. unshaped: the client's parallel ranged GETs vs curl's single GET of the same object.
# Usage: tools/bench-s3-client.sh [BUILD_DIR]   (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
sim="$build/tools/valkyrie-s3sim"
cli="$build/tools/valkyrie-s3"
[[ -x $sim && -x $cli ]] || { echo "build first: meson setup $build && meson compile -C $build" >&2; exit 1; }
export AWS_ACCESS_KEY_ID=AKIDBENCH AWS_SECRET_ACCESS_KEY=bench-secret AWS_EC2_METADATA_DISABLED=true
tmp=$(mktemp -d)
sim_pid=
cleanup() { [[ -n $sim_pid ]] && kill "$sim_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

start_sim() {
  [[ -n $sim_pid ]] && { kill "$sim_pid"; wait "$sim_pid" 2>/dev/null || true; }
  "$sim" --listen 127.0.0.1:0 --credentials "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
    --synthetic bench:1:1GiB "$@" >"$tmp/sim.out" 2>"$tmp/sim.err" &
  sim_pid=$!
  for _ in $(seq 100); do [[ -s $tmp/sim.out ]] && break; sleep 0.05; done
  url=$(head -1 "$tmp/sim.out" | awk '{print $3}')
}
get() {  # get PARALLEL PART_SIZE -> MB/s
  "$cli" --endpoint "$url" --bucket bench --json get shard_000000.tar --parallel "$1" --part-size "$2" \
    --verify-synthetic | sed -E 's/.*"mb_per_s":([0-9.]+).*/\1/'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
link_mb=$(awk 'BEGIN { printf "%.1f", 1073741824 / 1e6 }')      # 1 GiB/s in MB/s
conn_mb=$(awk 'BEGIN { printf "%.1f", 64 * 1048576 / 1e6 }')    # 64 MiB/s in MB/s

echo "== 1. link model: 30ms first byte, 64MiB/s per connection, 1GiB/s total (${link_mb} MB/s) =="
start_sim --first-byte-latency 30ms --conn-bandwidth 64MiB --total-bandwidth 1GiB
one=$(get 1 0)
printf "%-34s %9s MB/s  %s x per-connection\n" "1 GET of 1 GiB" "$one" "$(ratio "$one" "$conn_mb")"
for n in 16 20 24 32; do
  v=$(get "$n" 8MiB)
  printf "%-34s %9s MB/s  %s x total bandwidth\n" "$n parallel 8 MiB ranged GETs" "$v" "$(ratio "$v" "$link_mb")"
done

echo "== 2. unshaped: the client vs curl on the same object, same server (best of 3) =="
start_sim
best_curl=0 best_client=0
for _ in 1 2 3; do
  c=$(curl -s -o /dev/null -w '%{speed_download}' --aws-sigv4 "aws:amz:us-east-1:s3" \
        --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
        "$url/bench/shard_000000.tar")
  c=$(awk -v b="$c" 'BEGIN { printf "%.1f", b / 1e6 }')
  v=$(get 16 8MiB)
  best_curl=$(awk -v a="$best_curl" -v b="$c" 'BEGIN { print (b > a ? b : a) }')
  best_client=$(awk -v a="$best_client" -v b="$v" 'BEGIN { print (b > a ? b : a) }')
done
printf "%-34s %9s MB/s\n" "curl, one GET" "$best_curl"
printf "%-34s %9s MB/s  %s x curl\n" "valkyrie-s3, 16 x 8 MiB GETs" "$best_client" "$(ratio "$best_client" "$best_curl")"
