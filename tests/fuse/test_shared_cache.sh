#!/usr/bin/env bash
# The shared cache tier (--shared-cache) with two daemons as two nodes: the origin is one
# valkyrie-s3sim, the cache bucket a second one (its own process and port).
# 1. Node 1 reads the dataset (8 x 8 MiB, 2 x 20 MiB with a short last chunk, 20 x 110 KiB):
#    bytes exact; its stores drain (metric) and the cache bucket holds one object per chunk.
# 2. Node 2 (its own daemon, mount and memory cache, no disk tier) reads it all: bytes exact,
#    0 GETs at the origin; the origin sent the dataset's bytes once for both nodes together.
# 3. Faults on the cache store (500, reset, corrupt body, stall) never reach a reader: a fresh
#    node reads exact bytes each time, and counts the errors or check failures.
# 4. A forged chunk (one chunk object with a byte flipped) is rejected and counted; exact bytes.
# 5. With --shared-cache-key-file: a node with the key reads what a keyed node stored (0 origin
#    GETs); a node with another key rejects every chunk and reads exact bytes from the origin.
# 6. The same two-node check with s3rver as the cache store, its credentials from a profile
#    (--shared-cache-profile); skipped without s3rver.
# Exit 77 without /dev/fuse or root.
set -euo pipefail
[[ -c /dev/fuse && $(id -u) == 0 ]] || { echo "no /dev/fuse or not root: skipped"; exit 77; }
tmp=$(mktemp -d /tmp/valkyrie-shared.XXXXXX)
mnt="$tmp/mnt"; mkdir -p "$mnt" "$tmp/ref"
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/nodes.sh"
export AWS_ACCESS_KEY_ID=AKIDSHARED AWS_SECRET_ACCESS_KEY=shared/secret AWS_EC2_METADATA_DISABLED=true

# The origin, then the cache store (start_sim sets $url and $server_pid: keep both).
start_sim --synthetic data:8:8MiB:ds/big/ --synthetic data:2:20MiB:ds/odd/ --synthetic data:20:110KiB:ds/small/
origin=$url
extra_pids+=("$server_pid")
mv "$tmp/sim.out" "$tmp/sim1.out"
start_sim --bucket cache
store=$url
extra_pids+=("$server_pid")
chunks=$((8 + 2 * 3 + 20))

s3ref() { "$BUILD_ROOT/tools/valkyrie-s3" --endpoint "$origin" --bucket data --threads 1 "$@" >/dev/null; }
stat_of() { curl -sf "$1/_sim/stats" | sed -E "s/.*\"$2\":([0-9]+).*/\1/"; }
keys=$("$BUILD_ROOT/tools/valkyrie-s3" --endpoint "$origin" --bucket data --threads 1 ls | awk '{print $3}')
for k in $keys; do mkdir -p "$tmp/ref/$(dirname "$k")"; s3ref get "$k" -o "$tmp/ref/$k" || fail "downloading $k"; done
(cd "$tmp/ref" && find ds -type f | sort | xargs sha256sum) >"$tmp/ds.sha"
ds_bytes=$(cd "$tmp/ref" && find ds -type f -printf '%s\n' | awk '{s += $1} END {print s}')
curl -sf -X POST "$origin/_sim/reset-stats" >/dev/null

stop_node() { umount "$tmp/mnt$1"; }
metric() { curl -sf "127.0.0.1:$port/metrics" | awk -v m="$1" '$1 == m {printf "%d\n", $2}'; }
# check_read N: node N's bytes of the dataset equal the references.
check_read() {
  (cd "$tmp/mnt$1" && awk '{print $2}' "$tmp/ds.sha" | xargs sha256sum) >"$tmp/got" || fail "node $1: reading"
  cmp -s "$tmp/ds.sha" "$tmp/got" || fail "node $1: other bytes than S3's ($(diff "$tmp/ds.sha" "$tmp/got" | grep -m1 '^>'))"
}
# wait_stored: the node's stores have drained (nothing queued or in flight) within 30 s.
wait_stored() {
  for _ in $(seq 300); do
    [[ $(metric valkyrie_shared_write_back_pending) == 0 ]] && return 0
    sleep 0.1
  done
  fail "stores did not drain: $(metric valkyrie_shared_write_back_pending) pending"
}
shared=(--shared-cache s3://cache/nodes --shared-cache-endpoint "$store")

# --- 1. node 1 fills the cache bucket ---
start_node 1 "${shared[@]}"
check_read 1
wait_stored
[[ $(metric valkyrie_shared_puts_total) == "$chunks" ]] ||
  fail "node 1 stored $(metric valkyrie_shared_puts_total) chunks, not $chunks (dropped $(metric valkyrie_shared_writes_dropped_total), errors $(metric valkyrie_shared_errors_total))"
[[ $(metric valkyrie_shared_bytes_written_total) == "$ds_bytes" ]] || fail "node 1 stored $(metric valkyrie_shared_bytes_written_total) bytes"
[[ $(stat_of "$store" put) == "$chunks" ]] || fail "the cache store saw $(stat_of "$store" put) PUTs"
origin_after_1=$(stat_of "$origin" bytes_sent)
stop_node 1
pass "node 1: bytes exact, $chunks chunks ($ds_bytes bytes) stored in the cache bucket"

# --- 2. node 2 reads everything from the cache bucket ---
curl -sf -X POST "$origin/_sim/reset-stats" >/dev/null
start_node 2 "${shared[@]}"
check_read 2
gets=$(stat_of "$origin" get)
[[ $gets == 0 ]] || fail "node 2 sent $gets GETs to the origin (shared hits $(metric valkyrie_shared_hits_total))"
[[ $(metric valkyrie_shared_hits_total) == "$chunks" ]] || fail "node 2: $(metric valkyrie_shared_hits_total) shared hits"
[[ $(metric valkyrie_shared_bytes_read_total) == "$ds_bytes" ]] || fail "node 2 read $(metric valkyrie_shared_bytes_read_total) bytes from the cache"
[[ $origin_after_1 == "$ds_bytes" ]] || fail "the origin sent $origin_after_1 bytes for both nodes, not the dataset's $ds_bytes"
wait_stored
[[ $(metric valkyrie_shared_puts_total) == 0 ]] || fail "node 2 stored chunks it read from the cache"
stop_node 2
pass "node 2: bytes exact, 0 origin GETs, $chunks shared hits; origin bytes for both nodes = the dataset once ($ds_bytes)"

# --- 3. faults on the cache store never reach a reader ---
n=3
for f in error500 reset corrupt stall; do
  curl -sf -X POST "$store/_sim/faults?$f=1&stall_time=5s" >/dev/null
  start_node $n "${shared[@]}"
  check_read $n
  errors=$(metric valkyrie_shared_errors_total) checks=$(metric valkyrie_shared_check_failures_total)
  hits=$(metric valkyrie_shared_hits_total)
  ((errors + checks > 0)) || fail "fault $f: no error or check failure counted"
  stop_node $n
  pass "cache store fault $f: bytes exact (errors $errors, check failures $checks, hits $hits)"
  n=$((n + 1))
done
curl -sf -X POST "$store/_sim/faults" >/dev/null

# --- 4. a forged chunk: one object with a byte flipped ---
cachecli() { "$BUILD_ROOT/tools/valkyrie-s3" --endpoint "$store" --bucket cache --threads 1 "$@"; }
victim=$(cachecli ls --prefix nodes/ | awk '{print $3}' | grep '/k/ds/big/shard_000003.tar/.*/0$' | head -1)
[[ -n $victim ]] || fail "no chunk object for ds/big/shard_000003.tar chunk 0 in the cache bucket"
cachecli get "$victim" -o "$tmp/victim" >/dev/null
python3 -c "import sys; b = bytearray(open(sys.argv[1], 'rb').read()); b[-1000] ^= 1; open(sys.argv[1], 'wb').write(b)" "$tmp/victim"
cachecli put "$victim" "$tmp/victim" >/dev/null
curl -sf -X POST "$origin/_sim/reset-stats" >/dev/null
start_node $n "${shared[@]}"
check_read $n
[[ $(metric valkyrie_shared_check_failures_total) == 1 ]] || fail "forged chunk: $(metric valkyrie_shared_check_failures_total) check failures"
[[ $(stat_of "$origin" get) -ge 1 ]] || fail "forged chunk: not fetched from the origin"
stop_node $n
n=$((n + 1))
pass "a chunk with a flipped byte is rejected (1 check failure), the reader gets S3's bytes"

# --- 5. authenticated chunks ---
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$tmp/key-a"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$tmp/key-b"
keyed=(--shared-cache s3://cache/keyed --shared-cache-endpoint "$store")
start_node $n "${keyed[@]}" --shared-cache-key-file "$tmp/key-a"
check_read $n
wait_stored
stop_node $n
n=$((n + 1))
curl -sf -X POST "$origin/_sim/reset-stats" >/dev/null
start_node $n "${keyed[@]}" --shared-cache-key-file "$tmp/key-a"
check_read $n
[[ $(stat_of "$origin" get) == 0 ]] || fail "a node with the key sent $(stat_of "$origin" get) GETs to the origin"
stop_node $n
n=$((n + 1))
start_node $n "${keyed[@]}" --shared-cache-key-file "$tmp/key-b"
check_read $n
[[ $(metric valkyrie_shared_check_failures_total) == "$chunks" ]] ||
  fail "another key: $(metric valkyrie_shared_check_failures_total) check failures, not $chunks"
[[ $(metric valkyrie_shared_hits_total) == 0 ]] || fail "another key: $(metric valkyrie_shared_hits_total) hits"
stop_node $n
n=$((n + 1))
pass "HMAC: the same key reads with 0 origin GETs; another key rejects all $chunks chunks, bytes exact"

# --- 6. s3rver as the cache store ---
s3rver="${SOURCE_ROOT:-}/node_modules/.bin/s3rver"
if [[ -x $s3rver ]]; then
  mkdir -p "$tmp/s3rver"
  NODE_OPTIONS=--openssl-legacy-provider node "$s3rver" -d "$tmp/s3rver" -a 127.0.0.1 -p 0 --silent \
    --configure-bucket cache >"$tmp/s3rver.out" 2>&1 &
  extra_pids+=("$!")
  for _ in $(seq 200); do grep -q "listening on" "$tmp/s3rver.out" 2>/dev/null && break; sleep 0.05; done
  s3rver_url="http://$(sed -nE 's/.*listening on (.*)$/\1/p' "$tmp/s3rver.out" | head -1)"
  # s3rver checks its own credentials: a profile for the cache store (--shared-cache-profile),
  # the environment's for the origin.
  printf '[s3rver]\naws_access_key_id = S3RVER\naws_secret_access_key = S3RVER\n' >"$tmp/aws-credentials"
  export AWS_SHARED_CREDENTIALS_FILE="$tmp/aws-credentials"
  on_s3rver=(--shared-cache s3://cache/s3rver --shared-cache-endpoint "$s3rver_url" --shared-cache-profile s3rver)
  start_node $n "${on_s3rver[@]}"
  check_read $n
  wait_stored
  [[ $(metric valkyrie_shared_puts_total) == "$chunks" ]] || fail "s3rver: $(metric valkyrie_shared_puts_total) chunks stored"
  stop_node $n
  n=$((n + 1))
  curl -sf -X POST "$origin/_sim/reset-stats" >/dev/null
  start_node $n "${on_s3rver[@]}"
  check_read $n
  [[ $(stat_of "$origin" get) == 0 ]] || fail "s3rver: node 2 sent $(stat_of "$origin" get) GETs to the origin"
  [[ $(metric valkyrie_shared_hits_total) == "$chunks" ]] || fail "s3rver: $(metric valkyrie_shared_hits_total) hits"
  stop_node $n
  pass "s3rver as the cache store: node 2 reads with 0 origin GETs, bytes exact"
else
  echo "s3rver not installed: its part skipped"
fi
