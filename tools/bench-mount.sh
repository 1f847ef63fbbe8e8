#!/usr/bin/env bash
# Benchmarks the mount against valkyrie-s3sim with the S3 link model (30 ms first byte,
# 64 MiB/s per connection, 1 GiB/s total), every baseline in the same run:
#  - cold `dd bs=1M` of a 1 GiB object through valkyrie vs the link's total bandwidth, one curl
#    GET, and s3fs (if installed) mounted on the same server;
#  - warm re-read through valkyrie vs reading the same bytes from tmpfs;
#  (both with the default flags and with --cache-prefault)
#  - peak RSS of the daemon while reading 4 GiB through a 512 MiB cache.
# Usage: tools/bench-mount.sh [BUILD_DIR]   (root, /dev/fuse)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
export AWS_ACCESS_KEY_ID=AKIDBENCH AWS_SECRET_ACCESS_KEY=bench-secret AWS_EC2_METADATA_DISABLED=true
source tools/bench-lib.sh
bench_init mount-bench
bench_remove_on_exit /dev/shm/valkyrie-bench-tmpfs
bench_start_sim --synthetic bench:1:1GiB --synthetic big:1:4GiB --first-byte-latency 30ms --conn-bandwidth 64MiB \
  --total-bandwidth 1GiB ${SIM_ARGS:-}
link_mb=1073.7   # 1 GiB/s in MB/s

dd_mbps() {  # file -> MB/s of dd bs=1M
  dd if="$1" of=/dev/null bs=1M 2>&1 | sed -nE 's/.* bytes .* copied, ([0-9.]+) s, .*/\1/p' |
    awk '{ printf "%.1f", 1073741824 / $1 / 1e6 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
mount_valkyrie() { bench_mount "$1" --cache-size "$2" "${@:3}" ${VALKYRIE_ARGS:-}; }  # bucket, cache size, flags
printf '%-48s %10s  %s\n' "scenario (link: 1 GiB/s total)" "MB/s" "ratio"
curl_mb=$(curl -s -o /dev/null -w '%{speed_download}' --aws-sigv4 "aws:amz:us-east-1:s3" \
  --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
  "$url/bench/shard_000000.tar" | awk '{ printf "%.1f", $1 / 1e6 }')
printf '%-48s %10s  %s x link\n' "curl, one GET of 1 GiB" "$curl_mb" "$(ratio "$curl_mb" "$link_mb")"

# Cold, then warm, through a fresh mount: with the default cache memory (backed in the background
# from the mount on, so a read at once meets it half done), and with --cache-prefault (backed
# before the mount answers: no page fault on the read path).
for variant in default prefault; do
  flags=(); [[ $variant == prefault ]] && flags=(--cache-prefault)
  mount_valkyrie bench 2GiB "${flags[@]}"
  cold=$(dd_mbps "$mnt/shard_000000.tar")
  warm=$(dd_mbps "$mnt/shard_000000.tar")
  if [[ $variant == default ]]; then
    cp "$mnt/shard_000000.tar" /dev/shm/valkyrie-bench-tmpfs
    tmpfs=$(dd_mbps /dev/shm/valkyrie-bench-tmpfs)
    rm -f /dev/shm/valkyrie-bench-tmpfs
    cold_default=$cold
  fi
  bench_unmount
  label="valkyrie${flags:+ ${flags[*]}}"
  printf '%-48s %10s  %s x link, %s x curl\n' "$label cold dd bs=1M" "$cold" "$(ratio "$cold" "$link_mb")" "$(ratio "$cold" "$curl_mb")"
  printf '%-48s %10s  %s x tmpfs\n' "$label warm re-read dd bs=1M" "$warm" "$(ratio "$warm" "$tmpfs")"
done
printf '%-48s %10s\n' "tmpfs dd bs=1M (same bytes)" "$tmpfs"
cold=$cold_default

if command -v s3fs >/dev/null; then
  echo "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" >"$tmp/passwd"; chmod 600 "$tmp/passwd"
  s3fs bench "$mnt" -o url="$url" -o use_path_request_style -o passwd_file="$tmp/passwd" -o ro \
    -o endpoint=us-east-1 2>"$tmp/s3fs.err"
  for _ in $(seq 100); do mountpoint -q "$mnt" && break; sleep 0.05; done
  s3fs_mb=$(dd_mbps "$mnt/shard_000000.tar")
  printf '%-48s %10s  %s x link; valkyrie = %s x s3fs\n' "s3fs 1.90 cold dd bs=1M" "$s3fs_mb" \
    "$(ratio "$s3fs_mb" "$link_mb")" "$(ratio "$cold" "$s3fs_mb")"
  umount "$mnt"
fi

mount_valkyrie big 512MiB
dd if="$mnt/shard_000000.tar" of=/dev/null bs=1M 2>/dev/null
hwm_kb=$(awk '/VmHWM/ { print $2 }' "/proc/$daemon_pid/status")
printf '%-48s %10s  cap 512 MiB + 64 MiB = 576 MiB\n' "peak RSS reading 4 GiB via 512 MiB cache" "$((hwm_kb / 1024)) MiB"
bench_unmount
