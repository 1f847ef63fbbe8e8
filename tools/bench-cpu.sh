#!/usr/bin/env bash
# CPU per GiB (issue: the read path's CPU cost). valkyrie-s3sim without the link model, so the
# CPUs are what is measured; each round, in this order:
#  - curl: one SigV4 GET of a 1 GiB object (user + system CPU of curl);
#  - valkyrie, cold `dd bs=1M` of the same object through a fresh mount (daemon CPU; with the
#    default --cache-backing background this includes backing the cache meanwhile);
#  - valkyrie, re-read from the chunk cache with the page cache dropped (daemon CPU);
#  - with the default --cache-backing background: a cold `dd` through a fresh mount once its
#    cache is backed (the daemon's RSS holds the arena), as a job that starts reading seconds
#    after the mount finds it, and what the backing itself cost (daemon CPU while it ran);
#  - valkyrie with --passthrough-pool 1GiB: a re-read that copies the cached object into a
#    backing file at its open, then one that finds the file kept (daemon CPU);
#  - valkyrie, cold `dd` of the same object through a mount whose 1 GiB cache another 1 GiB
#    object filled first (daemon CPU): the steady state of a long job, where a fetched chunk
#    takes memory an evicted one gave back, not memory the kernel must clear first;
#  - valkyrie, 4,000 objects of 110 KiB read whole, cold (daemon CPU per file).
# Daemon CPU is the utime + stime of its process (/proc/PID/stat) across each phase.
# With PERF=1 each valkyrie phase is also recorded with `perf record -g` and the top symbols
# (self time) are printed after the round.
# Round "warm" comes first and is not one of the ROUNDS: this VM backs memory lazily, and the
# first runs after it was idle pay for that (WARMUP=0 leaves it out).
# Usage: tools/bench-cpu.sh [BUILD_DIR] [ROUNDS]   (root, /dev/fuse; VALKYRIE_ARGS: more flags)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
rounds=${2:-3}
export AWS_ACCESS_KEY_ID=AKIDBENCH AWS_SECRET_ACCESS_KEY=bench-secret AWS_EC2_METADATA_DISABLED=true
source tools/bench-lib.sh
bench_init cpu-bench
bench_start_sim --synthetic bench:2:1GiB --synthetic small:4000:110KiB ${SIM_ARGS:-}
# wait_backed ARENA_MIB: with the default --cache-backing background, until the daemon's RSS
# holds its cache's arena (--cache-size less the passthrough pool: an eighth by default where the
# kernel has passthrough), so that the backing does not count in a phase measured after it.
# backed_in_background: VALKYRIE_ARGS leave the default --cache-backing (any --cache-backing or
# --cache-prefault there, in either spelling, means not).
backed_in_background() { [[ ${VALKYRIE_ARGS:-} != *--cache-backing* && ${VALKYRIE_ARGS:-} != *--cache-prefault* ]]; }
wait_backed() {
  backed_in_background || return 0
  backed() { (( $(awk '/VmRSS/ { print $2 }' "/proc/$daemon_pid/status") >= $1 * 1024 )); }
  for _ in $(seq 1200); do backed "$1" && return 0; sleep 0.05; done
  echo "the cache was not backed within 60 s" >&2; exit 1
}
sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }
drop_page_cache() { sync; echo 3 >/proc/sys/vm/drop_caches; }
perf_start() { [[ ${PERF:-0} == 1 ]] || return 0; perf record -q -g -p "$daemon_pid" -o "$tmp/$1.perf" 2>/dev/null & perf_pid=$!; sleep 0.2; }
perf_stop() {
  [[ ${PERF:-0} == 1 ]] || return 0
  # (perf record can have exited on its own: once here it had, and the script stopped at the kill)
  if ! kill -INT "$perf_pid" 2>/dev/null; then
    echo "--- perf: $1: perf record had exited, no profile"
    return 0
  fi
  wait "$perf_pid" 2>/dev/null || true
  echo "--- perf: $1 (self time, top 25)"
  # (a phase the daemon spent no CPU in, the kept passthrough file's, has no samples: grep then
  # finds nothing, and the script must go on)
  local top
  top=$(perf report -i "$tmp/$1.perf" --no-children --sort symbol --percent-limit 0.7 --stdio -g none 2>/dev/null |
    sed -E "s/( +-)* *$//" | grep -E '^ +[0-9]' | head -25 || true)
  echo "${top:-    (no samples)}"
}
# Runs CMD... and sets $spent to the daemon's CPU-seconds meanwhile (PERF=1: its profile, NAME).
daemon_cpu() {
  local name=$1 c0 c1
  shift
  perf_start "$name"; c0=$(bench_cpu_seconds "$daemon_pid")
  "$@"
  c1=$(bench_cpu_seconds "$daemon_pid"); perf_stop "$name"
  spent=$(sub "$c1" "$c0")
}
x_curl() { awk -v a="$1" -v b="$curl_s" 'BEGIN { printf "%.2f", a / b }'; }
printf '%-6s %-44s %12s\n' round phase "CPU-s per GiB or per 1k files"
for round in $([[ ${WARMUP:-1} == 0 ]] || echo warm) $(seq 1 "$rounds"); do
  drop_page_cache
  curl_s=$( { TIMEFORMAT='%U %S'; time curl -s -o /dev/null --aws-sigv4 "aws:amz:us-east-1:s3" \
    --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
    "$url/bench/shard_000000.tar"; } 2>&1 | awk '{ printf "%.3f", $1 + $2 }')
  printf '%-6s %-44s %12s\n' "$round" "curl, one GET of 1 GiB" "$curl_s"

  bench_mount bench --cache-size 2GiB
  daemon_cpu cold dd if="$mnt/shard_000000.tar" of=/dev/null bs=1M status=none
  cold=$spent
  wait_backed 1792  # (a backing still running would count in the re-read)
  drop_page_cache
  daemon_cpu reread dd if="$mnt/shard_000000.tar" of=/dev/null bs=1M status=none
  reread=$spent
  bench_unmount
  printf '%-6s %-44s %12s  (%s x curl)\n' "$round" "valkyrie cold dd bs=1M" "$cold" "$(x_curl "$cold")"
  printf '%-6s %-44s %12s\n' "$round" "valkyrie re-read, chunk cache, page cache dropped" "$reread"

  if backed_in_background; then
    bench_mount bench --cache-size 2GiB
    c0=$(bench_cpu_seconds "$daemon_pid")
    wait_backed 1792
    backing=$(sub "$(bench_cpu_seconds "$daemon_pid")" "$c0")
    daemon_cpu cold_backed dd if="$mnt/shard_000000.tar" of=/dev/null bs=1M status=none
    bench_unmount
    printf '%-6s %-44s %12s  (%s x curl)\n' "$round" "valkyrie cold dd, once the cache was backed" "$spent" "$(x_curl "$spent")"
    printf '%-6s %-44s %12s\n' "$round" "  (its backing: CPU-s per GiB of 1.75 GiB)" "$(awk -v a="$backing" 'BEGIN { printf "%.3f", a / 1.75 }')"
  fi

  # FUSE passthrough with a pool that holds the object (Linux >= 6.9; elsewhere the page cache):
  # the first re-read copies it from the chunk cache into a backing file at the open, later ones
  # are read by the kernel from that file (kept after the close), with no request to the daemon.
  bench_mount bench --cache-size 3GiB --passthrough-pool 1GiB
  wait_backed 2048
  dd if="$mnt/shard_000000.tar" of=/dev/null bs=1M status=none
  drop_page_cache
  daemon_cpu pt_first dd if="$mnt/shard_000000.tar" of=/dev/null bs=1M status=none
  pt_first=$spent
  drop_page_cache
  daemon_cpu pt_again dd if="$mnt/shard_000000.tar" of=/dev/null bs=1M status=none
  bench_unmount
  printf '%-6s %-44s %12s\n' "$round" "re-read, passthrough: copy at the open" "$pt_first"
  printf '%-6s %-44s %12s\n' "$round" "re-read, passthrough: the file kept" "$spent"

  bench_mount bench --cache-size 1GiB
  wait_backed 896
  dd if="$mnt/shard_000001.tar" of=/dev/null bs=1M status=none  # fills the cache
  drop_page_cache
  daemon_cpu steady dd if="$mnt/shard_000000.tar" of=/dev/null bs=1M status=none
  bench_unmount
  printf '%-6s %-44s %12s  (%s x curl)\n' "$round" "valkyrie cold dd, cache memory reused" "$spent" "$(x_curl "$spent")"

  bench_mount small --cache-size 2GiB
  wait_backed 1792
  ls "$mnt" >/dev/null
  daemon_cpu small /usr/bin/python3 - "$mnt" <<'PY'
import os, sys
for name in sorted(os.listdir(sys.argv[1])):
    with open(os.path.join(sys.argv[1], name), "rb") as f:
        while f.read(1 << 20):
            pass
PY
  bench_unmount
  printf '%-6s %-44s %12s\n' "$round" "valkyrie 4,000 x 110 KiB cold, per 1k files" "$(awk -v a="$spent" 'BEGIN { printf "%.3f", a / 4 }')"
done
