#!/usr/bin/env bash
# Soak (issues: operations, reliability): 20 GiB (40 shards of 512 MiB) and 3,000 objects of
# 110 KiB from valkyrie-s3sim behind the link model, read through a 512 MiB cache for 10 minutes
# under 1% injected faults (500s, SlowDowns, resets and truncations, 0.25% each) by 8 readers:
# 6 read whole shards, each in its own shuffled order, checked against the SHA-256 of a direct
# download; 1 reads 256 KiB at random offsets of the shards and 1 reads the small objects whole,
# both checked against the simulator's synthetic content (tools/soak_readers.py).
# The daemon runs inside a memory cgroup of --cache-size + 96 MiB (cgroup v1 or v2; set
# VALKYRIE_SOAK_MEMCG=0 to run without): the cache's hard cap has to hold against the kernel's
# accounting, not only against RSS samples.
# Reported: bytes read, read errors (there must be none: every fault here is retryable), the
# longest time any reader went without finishing a read, RSS sampled every 5 s against the cap,
# the cgroup's peak and its OOM kills (there must be none), and the retries by reason from the
# metrics next to the faults the simulator injected.
# Usage: tools/bench-soak.sh [BUILD_DIR] [SECONDS]   (root, /dev/fuse; VALKYRIE_ARGS: more flags)
set -euo pipefail
cd "$(dirname "$0")/.."
build=$(realpath "${1:-build}")
duration=${2:-600}
export AWS_ACCESS_KEY_ID=AKIDSOAK AWS_SECRET_ACCESS_KEY=soak-secret AWS_EC2_METADATA_DISABLED=true
tmp=$(mktemp -d /tmp/valkyrie-soak.XXXXXX)
mnt="$tmp/mnt"; mkdir -p "$mnt"
pids=()
cleanup() {
  set +e
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  mountpoint -q "$mnt" && { umount "$mnt" || umount -l "$mnt"; }
  [[ -n ${sim:-} ]] && kill "$sim"
  wait 2>/dev/null; rm -rf "$tmp"
  [[ -n ${memcg:-} ]] && rmdir "$memcg" 2>/dev/null
}
trap cleanup EXIT
"$build/tools/valkyrie-s3sim" --listen 127.0.0.1:0 --credentials "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
  --synthetic soak:40:512MiB --synthetic soak:3000:110KiB:small/ --first-byte-latency 30ms --conn-bandwidth 64MiB --total-bandwidth 1GiB \
  --log-level warn >"$tmp/sim.out" 2>"$tmp/sim.err" &
sim=$!
for _ in $(seq 100); do [[ -s $tmp/sim.out ]] && break; sleep 0.05; done
url=$(head -1 "$tmp/sim.out" | awk '{print $3}')
s3() { "$build/tools/valkyrie-s3" --endpoint "$url" --bucket soak "$@"; }

echo "reference SHA-256 of 40 shards (direct downloads)..." >&2
for i in $(seq 0 39); do
  k=$(printf 'shard_%06d.tar' "$i")
  s3 get "$k" -o /dev/shm/valkyrie-soak-ref >/dev/null
  echo "$(sha256sum </dev/shm/valkyrie-soak-ref | awk '{print $1}') $k" >>"$tmp/ref.sha"
done
rm -f /dev/shm/valkyrie-soak-ref
curl -sf -X POST "$url/_sim/faults?error500=0.0025&slowdown=0.0025&reset=0.0025&truncate=0.0025" >/dev/null
curl -sf -X POST "$url/_sim/reset-stats" >/dev/null

# The memory cgroup: v2 (memory.max, memory.events' oom_kill) or v1 (memory.limit_in_bytes,
# memory.oom_control's oom_kill).
cache_mib=512 memcg="" memcg_limit=$(((512 + 96) << 20))
if [[ ${VALKYRIE_SOAK_MEMCG:-1} != 0 ]]; then
  if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
    memcg=/sys/fs/cgroup/valkyrie-soak-$$; mkdir "$memcg"; echo "$memcg_limit" >"$memcg/memory.max"
    echo 0 >"$memcg/memory.swap.max" 2>/dev/null || true
  elif [[ -d /sys/fs/cgroup/memory ]]; then
    memcg=/sys/fs/cgroup/memory/valkyrie-soak-$$; mkdir "$memcg"; echo "$memcg_limit" >"$memcg/memory.limit_in_bytes"
  else
    echo "no memory cgroup controller here: set VALKYRIE_SOAK_MEMCG=0 to soak without one" >&2; exit 1
  fi
fi
oom_kills() {
  local f=$memcg/memory.events; [[ -f $f ]] || f=$memcg/memory.oom_control
  awk '$1 == "oom_kill" { n = $2 } END { print n + 0 }' "$f"
}
memcg_peak() { local f=$memcg/memory.peak; [[ -f $f ]] || f=$memcg/memory.max_usage_in_bytes; cat "$f" 2>/dev/null || echo 0; }
( [[ -n $memcg ]] && echo "$BASHPID" >"$memcg/cgroup.procs"
  exec "$build/src/cli/valkyrie" --mount "$mnt" --bucket soak --endpoint "$url" --cache-size ${cache_mib}MiB --foreground \
  --metrics-addr 127.0.0.1:0 --log-level info ${VALKYRIE_ARGS:-} 2>"$tmp/daemon.log" ) &
daemon=$!
pids+=("$daemon")
for _ in $(seq 100); do mountpoint -q "$mnt" && break; sleep 0.05; done
mountpoint -q "$mnt" || { cat "$tmp/daemon.log"; exit 1; }
for _ in $(seq 100); do grep -q '"metrics":"' "$tmp/daemon.log" && break; sleep 0.05; done  # logged just after the mount shows
port=$(grep -o '"metrics":"[^"]*"' "$tmp/daemon.log" | sed 's/.*:\([0-9]*\)"$/\1/')

end=$(($(date +%s) + duration))
reader() {  # id: shards in its own shuffled order, again and again, until the end
  local id=$1 order
  while (($(date +%s) < end)); do
    order=$(seq 0 39 | shuf --random-source=<(yes "$id"))
    for i in $order; do
      (($(date +%s) < end)) || break
      k=$(printf 'shard_%06d.tar' "$i")
      if sum=$(sha256sum <"$mnt/$k" 2>>"$tmp/reader$id.err" | awk '{print $1}') && [[ -n $sum ]]; then
        grep -q "^$sum $k\$" "$tmp/ref.sha" && echo "$(date +%s) ok $k" || echo "$(date +%s) MISMATCH $k"
      else
        echo "$(date +%s) ERROR $k"
      fi
    done
  done >"$tmp/reader$id.log"
}
for r in $(seq 1 6); do reader "$r" & pids+=($!); done
/usr/bin/python3 tools/soak_readers.py random "$mnt" soak "$end" 7 >"$tmp/random.log" 2>&1 & pids+=($!)
/usr/bin/python3 tools/soak_readers.py small "$mnt" soak "$end" 8 >"$tmp/small.log" 2>&1 & pids+=($!)
start=$(date +%s)
max_rss=0 min_rss=0 samples=0
while (($(date +%s) < end)); do
  sleep 5
  rss=$(ps -o rss= -p "$daemon" | tr -d ' ')
  [[ -n $rss ]] || { echo "the daemon died" >&2; exit 1; }
  ((rss > max_rss)) && max_rss=$rss
  ((samples == 2)) && min_rss=$rss  # after the cache filled
  ((samples > 2 && rss < min_rss)) && min_rss=$rss
  samples=$((samples + 1))
  echo "$(($(date +%s) - start)) s: RSS $((rss / 1024)) MiB, shards read $(cat "$tmp"/reader*.log 2>/dev/null | grep -c ok)," \
    "random reads $(grep -c ok "$tmp/random.log"), small objects $(grep -c ok "$tmp/small.log"), OOM kills ${memcg:+$(oom_kills)}" >&2
done
for p in "${pids[@]:1}"; do wait "$p" || true; done
curl -sf "http://127.0.0.1:$port/metrics" >"$tmp/metrics"
curl -sf "$url/_sim/stats" >"$tmp/sim.json"
mountpoint -q "$mnt" || { echo "the mount died" >&2; exit 1; }
umount "$mnt"; wait "$daemon" || true

ok=$(cat "$tmp"/reader*.log | grep -c " ok " || true)
bad=$(cat "$tmp"/{reader*,random,small}.log | grep -c MISMATCH || true)
errors=$(cat "$tmp"/{reader*,random,small}.log | grep -c ERROR || true)
grep -h -m3 -E 'MISMATCH|ERROR|Traceback' "$tmp"/{reader*,random,small}.log >&2 || true
random_ok=$(grep -c " ok " "$tmp/random.log" || true)
small_ok=$(grep -c " ok " "$tmp/small.log" || true)
kills=$(oom_kills) peak=$(memcg_peak)
# The longest time a reader went without finishing a shard (stuck readers show here).
gap=$(for f in "$tmp"/{reader*,random,small}.log; do awk -v s="$start" 'BEGIN{p=s} {if ($1-p>m) m=$1-p; p=$1} END{print m+0}' "$f"; done | sort -n | tail -1)
echo
echo "duration:            $duration s, 8 readers, 40 x 512 MiB shards + 3,000 x 110 KiB, cache 512 MiB, 1% faults"
echo "shards read:         $ok ($((ok / 2)) GiB); random 256 KiB reads $random_ok; small objects $small_ok"
echo "mismatches, errors:  $bad, $errors"
echo "longest reader gap:  $gap s between finished reads"
if [[ -n $memcg ]]; then
  echo "memory cgroup:       limit $((memcg_limit >> 20)) MiB, peak $((${peak:-0} >> 20)) MiB, OOM kills $kills"
fi
echo "daemon RSS:          max $((max_rss / 1024)) MiB, min after fill $((min_rss / 1024)) MiB (cap 512 MiB of chunks)"
/usr/bin/python3 - "$tmp/metrics" "$tmp/sim.json" <<'PY'
import json, sys
m = {}
for line in open(sys.argv[1]):
    if line and not line.startswith("#"):
        k, v = line.rsplit(" ", 1); m[k] = float(v)
sim = json.load(open(sys.argv[2]))
retries = {k.split('"')[1]: int(v) for k, v in m.items() if k.startswith("valkyrie_s3_retries_total{") and v}
print(f"faults injected:     {sim['faults']}")
print(f"retries (metrics):   {retries}")
gets = int(sum(v for k, v in m.items() if k.startswith('valkyrie_s3_requests_total{operation="GetObject"')))
gib = m["valkyrie_s3_received_bytes_total"] / 2**30
print(f"S3 GETs:             {gets}, {gib:.1f} GiB; cache hit ratio {m['valkyrie_cache_hit_ratio']:.3f}")
PY
((bad == 0 && errors == 0)) || exit 1
[[ -z $memcg || $kills == 0 ]] || exit 1
