#!/usr/bin/env bash
# The shared cache tier in an S3 Express One Zone directory bucket (simulated): the cache store
# is a second valkyrie-s3sim whose bucket is named like a directory bucket,
# cache--use1-az4--x-s3, so it wants CreateSession sessions (x-amz-s3session-token, signed for
# s3express); its sessions last 2 s and its link is shaped so that node 2's read lasts longer
# than two of them: sessions expire and are replaced while the nodes read.
# 1. Node 1 reads the dataset (6 x 8 MiB, 20 x 110 KiB): bytes exact; it stores every chunk in
#    the directory bucket, through sessions (--shared-cache-express-session auto).
# 2. Node 2 reads it all from the directory bucket: bytes exact, 0 GETs at the origin, every chunk
#    a shared hit and no shared error; the store made more than one session during that read
#    and refused no request (no auth failure, no expired session used).
# 3. With --shared-cache-express-session off (long-term keys, no session: what this daemon sent
#    before sessions), the store refuses every request: node 3 reads exact bytes from the
#    origin, with 0 shared hits and the errors counted.
# Exit 77 without /dev/fuse or root.
set -euo pipefail
[[ -c /dev/fuse && $(id -u) == 0 ]] || { echo "no /dev/fuse or not root: skipped"; exit 77; }
tmp=$(mktemp -d /tmp/valkyrie-express.XXXXXX)
mnt="$tmp/mnt"; mkdir -p "$mnt" "$tmp/ref"
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/nodes.sh"
export AWS_ACCESS_KEY_ID=AKIDEXPRESS AWS_SECRET_ACCESS_KEY=express/secret AWS_EC2_METADATA_DISABLED=true
bucket=cache--use1-az4--x-s3

start_sim --synthetic data:6:8MiB:ds/big/ --synthetic data:20:110KiB:ds/small/
origin=$url
extra_pids+=("$server_pid")
mv "$tmp/sim.out" "$tmp/sim1.out"
# 12 MiB/s: node 2's ~50 MiB take over 4 s, more than two 2 s sessions.
start_sim --bucket "$bucket" --session-lifetime 2s --total-bandwidth 12MiB
store=$url
extra_pids+=("$server_pid")
chunks=$((6 + 20))

stat_of() { curl -sf "$1/_sim/stats" | sed -E "s/.*\"$2\":([0-9]+).*/\1/"; }
s3ref() { "$BUILD_ROOT/tools/valkyrie-s3" --endpoint "$origin" --bucket data --threads 1 "$@" >/dev/null; }
keys=$("$BUILD_ROOT/tools/valkyrie-s3" --endpoint "$origin" --bucket data --threads 1 ls | awk '{print $3}')
for k in $keys; do mkdir -p "$tmp/ref/$(dirname "$k")"; s3ref get "$k" -o "$tmp/ref/$k" || fail "downloading $k"; done
(cd "$tmp/ref" && find ds -type f | sort | xargs sha256sum) >"$tmp/ds.sha"
ds_bytes=$(cd "$tmp/ref" && find ds -type f -printf '%s\n' | awk '{s += $1} END {print s}')

stop_node() { umount "$tmp/mnt$1"; }
metric() { curl -sf "127.0.0.1:$port/metrics" | awk -v m="$1" '$1 == m {printf "%d\n", $2}'; }
check_read() {
  (cd "$tmp/mnt$1" && awk '{print $2}' "$tmp/ds.sha" | xargs sha256sum) >"$tmp/got" || fail "node $1: reading"
  cmp -s "$tmp/ds.sha" "$tmp/got" || fail "node $1: other bytes than S3's ($(diff "$tmp/ds.sha" "$tmp/got" | grep -m1 '^>'))"
}
drained() { [[ $(metric valkyrie_shared_write_back_pending) == 0 ]]; }
shared=(--shared-cache "s3://$bucket/nodes" --shared-cache-endpoint "$store")

# --- 1. node 1 fills the directory bucket ---
start_node 1 "${shared[@]}"
grep -q '"express_session":"on"' "$tmp/daemon1.err" || fail "node 1 does not use sessions for $bucket"
check_read 1
wait_until 30 drained || fail "node 1: stores did not drain ($(metric valkyrie_shared_write_back_pending) pending)"
[[ $(metric valkyrie_shared_puts_total) == "$chunks" ]] ||
  fail "node 1 stored $(metric valkyrie_shared_puts_total) chunks, not $chunks (errors $(metric valkyrie_shared_errors_total))"
[[ $(stat_of "$store" put) == "$chunks" ]] || fail "the store saw $(stat_of "$store" put) PUTs"
(($(stat_of "$store" create_session) >= 1)) || fail "node 1 made no session"
[[ $(stat_of "$store" auth_failures) == 0 ]] || fail "node 1: $(stat_of "$store" auth_failures) requests refused"
stop_node 1
pass "node 1: bytes exact, $chunks chunks stored in $bucket through $(stat_of "$store" create_session) session(s)"

# --- 2. node 2 reads everything from the directory bucket, sessions expiring meanwhile ---
curl -sf -X POST "$origin/_sim/reset-stats" >/dev/null
curl -sf -X POST "$store/_sim/reset-stats" >/dev/null
start_node 2 "${shared[@]}"
t0=$(date +%s%N)
check_read 2
took_ms=$((($(date +%s%N) - t0) / 1000000))
gets=$(stat_of "$origin" get)
sessions=$(stat_of "$store" create_session)
[[ $gets == 0 ]] || fail "node 2 sent $gets GETs to the origin (shared hits $(metric valkyrie_shared_hits_total), errors $(metric valkyrie_shared_errors_total))"
[[ $(metric valkyrie_shared_hits_total) == "$chunks" ]] || fail "node 2: $(metric valkyrie_shared_hits_total) shared hits, not $chunks"
[[ $(metric valkyrie_shared_errors_total) == 0 ]] || fail "node 2: $(metric valkyrie_shared_errors_total) shared errors"
[[ $(metric valkyrie_shared_bytes_read_total) == "$ds_bytes" ]] || fail "node 2 read $(metric valkyrie_shared_bytes_read_total) bytes from the store"
((sessions > 1)) || fail "the store made $sessions session(s) during node 2's read of $took_ms ms (2 s sessions)"
[[ $(stat_of "$store" auth_failures) == 0 ]] || fail "node 2: the store refused $(stat_of "$store" auth_failures) requests"
[[ $(stat_of "$store" expired_sessions) == 0 ]] || fail "node 2 used an expired session $(stat_of "$store" expired_sessions) times"
stop_node 2
pass "node 2: bytes exact, 0 origin GETs, $chunks shared hits in $took_ms ms; $sessions sessions of 2 s, no request refused"

# --- 3. without sessions the directory bucket refuses, and the origin serves ---
curl -sf -X POST "$origin/_sim/reset-stats" >/dev/null
curl -sf -X POST "$store/_sim/reset-stats" >/dev/null
start_node 3 "${shared[@]}" --shared-cache-express-session off
check_read 3
[[ $(metric valkyrie_shared_hits_total) == 0 ]] || fail "node 3: $(metric valkyrie_shared_hits_total) hits without a session"
(($(metric valkyrie_shared_errors_total) > 0)) || fail "node 3: no shared error counted"
(($(stat_of "$store" auth_failures) > 0)) || fail "node 3: the store refused nothing"
[[ $(stat_of "$store" create_session) == 0 ]] || fail "node 3 made sessions with --shared-cache-express-session off"
(($(stat_of "$origin" get) >= chunks)) || fail "node 3: $(stat_of "$origin" get) origin GETs"
stop_node 3
pass "--shared-cache-express-session off: the store refuses ($(stat_of "$store" auth_failures) refusals), bytes exact from the origin"
