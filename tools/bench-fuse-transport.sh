#!/usr/bin/env bash
# FUSE over io_uring against /dev/fuse (issue: the read path's CPU cost), in one run, everything
# answered from the daemon's caches (valkyrie-s3sim, data read once before measuring):
#  - p50 latency of stat (a LOOKUP each: the kernel's dentries dropped before every pass),
#    open+close, and a 4 KiB pread at random offsets (--direct-io: every read reaches the daemon);
#  - 4 KiB random-read IOPS (fio, 4 jobs) and 1 MiB sequential reads (fio, 1 job), --direct-io.
# Sets the fuse module's enable_uring for the io_uring mounts and restores it on exit.
# ROUNDS rounds (default 3) measure both transports, alternating which goes first (dev-fuse,
# io-uring; io-uring, dev-fuse; ...); each round's figures are printed, then each transport's
# median over the rounds and their ratio.
# URING_POLL: --fuse-uring-poll for the mounts (default 30us, the daemon's default; 0: off).
# Usage: tools/bench-fuse-transport.sh [BUILD_DIR] [SECONDS per fio run] [ROUNDS]   (root, /dev/fuse, fio)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
secs=${2:-5}
rounds=${3:-3}
command -v fio >/dev/null || { echo "fio is needed" >&2; exit 1; }
export AWS_ACCESS_KEY_ID=AKIDBENCH AWS_SECRET_ACCESS_KEY=bench-secret AWS_EC2_METADATA_DISABLED=true
source tools/bench-lib.sh
bench_init fuse-transport
bench_fuse_uring
bench_start_sim --synthetic big:1:512MiB --synthetic small:2000:4KiB

# p50 (microseconds) of stat, open+close over every file of $mnt; pread 4 KiB of $1.
latency() {
  python3 - "$mnt" "$@" <<'PY'
import os, random, statistics, sys, time
mnt, mode = sys.argv[1], sys.argv[2]
ns = time.perf_counter_ns
def drop_dentries():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f: f.write("2\n")
t = []
if mode in ("stat", "open"):
    names = [os.path.join(mnt, n) for n in sorted(os.listdir(mnt))]
    for _ in range(3):
        if mode == "stat": drop_dentries()
        else: [os.stat(n) for n in names]  # entries cached: open alone is measured
        for n in names:
            a = ns()
            if mode == "stat": os.stat(n)
            else: os.close(os.open(n, os.O_RDONLY))
            t.append(ns() - a)
else:
    fd = os.open(sys.argv[3], os.O_RDONLY)
    size = os.fstat(fd).st_size
    rnd = random.Random(1)
    for _ in range(20000):
        off = rnd.randrange(0, size // 4096) * 4096
        a = ns(); os.pread(fd, 4096, off); t.append(ns() - a)
    os.close(fd)
print(f"{statistics.median(t) / 1000:.1f}")
PY
}
fio_run() {  # fio_run NAME FIO-ARGS... : prints IOPS and MiB/s
  fio --name="$1" --filename="$big" --readonly --ioengine=psync --time_based --runtime="$secs" \
    --group_reporting --output-format=terse --terse-version=3 "${@:2}" 2>/dev/null |
    awk -F';' '{ printf "%d %.0f", $8, $7 / 1024 }'
}

declare -A result
measure_round() {  # measure_round ROUND: both transports, into result[TRANSPORT,MEASURE,ROUND]
  local round=$1 transport order=(dev-fuse io-uring)
  ((round % 2)) || order=(io-uring dev-fuse)  # which goes first alternates too
  for transport in "${order[@]}"; do
    if [[ $transport == io-uring ]]; then echo Y >"$uring_param"; else echo "$uring_saved" >"$uring_param"; fi
    BENCH_LOG_LEVEL=debug bench_mount small --cache-size 1GiB --fuse-transport "$transport" --fuse-uring-poll "${URING_POLL:-30us}"
    if [[ $transport == io-uring ]]; then
      for _ in $(seq 100); do grep -q "FUSE over io_uring: on" "$tmp/daemon.err" && break; sleep 0.05; done
      grep -q "FUSE over io_uring: on" "$tmp/daemon.err" || { cat "$tmp/daemon.err" >&2; echo "no rings" >&2; exit 1; }
    fi
    cat "$mnt"/* >/dev/null  # into the daemon's caches
    result[$transport,stat,$round]=$(latency stat)
    result[$transport,open,$round]=$(latency open)
    bench_unmount
    bench_mount big --cache-size 1GiB --fuse-transport "$transport" --fuse-uring-poll "${URING_POLL:-30us}" --direct-io
    big=$(find "$mnt" -type f | head -1)
    cat "$big" >/dev/null
    result[$transport,read4k,$round]=$(latency read "$big")
    read -r iops _ <<<"$(fio_run rand --rw=randread --bs=4k --numjobs=4)"
    result[$transport,iops,$round]=$iops
    read -r _ mibs <<<"$(fio_run seq --rw=read --bs=1M --numjobs=1)"
    result[$transport,seq,$round]=$mibs
    bench_unmount
    : >"$tmp/daemon.err"
  done
}
measures=("stat p50 (us):stat" "open+close p50 (us):open" "4 KiB pread p50 (us):read4k"
          "4 KiB random reads (IOPS, 4 jobs):iops" "1 MiB sequential (MiB/s):seq")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b / a }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
report() {  # report TITLE VALUE-OF(TRANSPORT, KEY)
  printf '%s\n%-34s %12s %12s %10s\n' "$1" measure dev-fuse io-uring "io/dev"
  local m k dev io
  for m in "${measures[@]}"; do
    k=${m##*:}
    dev=$($2 dev-fuse "$k") io=$($2 io-uring "$k")
    printf '%-34s %12s %12s %10s\n' "${m%:*}" "$dev" "$io" "$(ratio "$dev" "$io")"
  done
}
for round in $(seq 1 "$rounds"); do
  measure_round "$round"
  of_round() { echo "${result[$1,$2,$round]}"; }
  report "round $round of $rounds" of_round
done
over_rounds() {
  local values=() r
  for r in $(seq 1 "$rounds"); do values+=("${result[$1,$2,$r]}"); done
  median "${values[@]}"
}
report "median of $rounds rounds" over_rounds
