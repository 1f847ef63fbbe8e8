#!/usr/bin/env bash
# The persistent disk tier (--disk-cache) through a real mount against valkyrie-s3sim.
# 1. A dataset (16 x 8 MiB, 3 x 20 MiB: a short last chunk, 20 x 110 KiB small objects) read
#    through a mount with --disk-cache: bytes exact; the chunks reach the disk (used bytes ==
#    the dataset's bytes).
# 2. A second daemon on the same directory is refused with a clear message.
# 3. Clean unmount, mount again, simulator counters reset: re-reading everything sends 0 GETs
#    and the bytes are exact (disk hits).
# 4. kill -9: a new file set read in that mount (written to the disk), the daemon killed, a new
#    mount reads it and the first set with 0 GETs.
# Exit 77 without /dev/fuse or root.
set -euo pipefail
[[ -c /dev/fuse && $(id -u) == 0 ]] || { echo "no /dev/fuse or not root: skipped"; exit 77; }
tmp=$(mktemp -d /tmp/valkyrie-disk.XXXXXX)
mnt="$tmp/mnt"; mkdir -p "$mnt" "$tmp/disk" "$tmp/ref"
source "$(dirname "$0")/lib.sh"
export AWS_ACCESS_KEY_ID=AKIDDISK AWS_SECRET_ACCESS_KEY=disk/secret AWS_EC2_METADATA_DISABLED=true
start_sim --synthetic data:16:8MiB:ds/big/ --synthetic data:3:20MiB:ds/odd/ --synthetic data:20:110KiB:ds/small/ \
  --synthetic data:4:8MiB:more/
sim_stat() { curl -sf "$url/_sim/stats" | sed -E "s/.*\"$1\":([0-9]+).*/\1/"; }
reset_stats() { curl -sf -X POST "$url/_sim/reset-stats" >/dev/null; }
metric() { curl -sf "127.0.0.1:$port/metrics" | awk -v m="$1" '$1 == m {printf "%d\n", $2}'; }
disk_opts=(--disk-cache "$tmp/disk" --disk-cache-size 512MiB --cache-size 256MiB)

# References, from the simulator itself (synthetic content is a function of bucket and key).
keys=$("$BUILD_ROOT/tools/valkyrie-s3" --endpoint "$url" --bucket data --threads 1 ls | awk '{print $3}')
[[ $(wc -l <<<"$keys") == 43 ]] || fail "the simulator lists $(wc -l <<<"$keys") keys, not 43"
/usr/bin/python3 "$SOURCE_ROOT/tests/support/s3_bulk.py" "$url" data get <(echo "$keys") "$tmp/ref" >/dev/null ||
  fail "downloading the references"
(cd "$tmp/ref" && find ds -type f | sort | xargs sha256sum) >"$tmp/ds.sha"
(cd "$tmp/ref" && find more -type f | sort | xargs sha256sum) >"$tmp/more.sha"
ds_bytes=$(cd "$tmp/ref" && find ds -type f -printf '%s\n' | awk '{s += $1} END {print s}')
more_bytes=$(cd "$tmp/ref" && find more -type f -printf '%s\n' | awk '{s += $1} END {print s}')

# check_read SET: the mount's bytes of ds/ or more/ equal the references.
check_read() {
  (cd "$mnt" && awk '{print $2}' "$tmp/$1.sha" | xargs sha256sum) >"$tmp/$1.got" || fail "reading $1 through the mount"
  cmp -s "$tmp/$1.sha" "$tmp/$1.got" || fail "$1: other bytes than S3's ($(diff "$tmp/$1.sha" "$tmp/$1.got" | grep -m1 '^>'))"
}
# wait_used BYTES: the disk tier holds that many data bytes (write-backs done) within 30 s.
wait_used() {
  local used=
  for _ in $(seq 300); do
    used=$(metric valkyrie_disk_used_bytes)
    [[ $used == "$1" ]] && return 0
    sleep 0.1
  done
  fail "the disk tier holds $used bytes, not $1 ($(metric valkyrie_disk_writes_dropped_total) writes dropped, $(metric valkyrie_disk_errors_total) errors)"
}

# --- 1. first read: from S3, written to the disk ---
VALKYRIE_LOG_LEVEL=info start_valkyrie data "$url" "${disk_opts[@]}"
port=$(metrics_port)
check_read ds
wait_used "$ds_bytes"
[[ $(metric valkyrie_disk_hits_total) == 0 ]] || fail "disk hits on an empty disk tier"
data_files=$(find "$tmp/disk" -name 'data.*' -printf '%s\n' | awk '{s += $1} END {print s}')
((data_files <= 512 * 1024 * 1024)) || fail "the data files take $data_files bytes, more than --disk-cache-size 512MiB"
pass "first read: bytes exact, $ds_bytes bytes written to the disk tier, data files $data_files bytes <= 512 MiB"

# --- 2. the lock ---
mkdir -p "$tmp/mnt2"
if out=$("$BUILD_ROOT/src/cli/valkyrie" --mount "$tmp/mnt2" --bucket data --endpoint "$url" --foreground \
  --no-metrics "${disk_opts[@]}" 2>&1); then
  mountpoint -q "$tmp/mnt2" && umount "$tmp/mnt2"
  fail "a second daemon on the same --disk-cache started"
fi
grep -q "in use by another valkyrie (pid $daemon_pid)" <<<"$out" || fail "the second daemon's message: $out"
mountpoint -q "$tmp/mnt2" && fail "the second daemon mounted"
pass "a second daemon on the directory is refused: $(grep -o 'in use by another valkyrie[^"]*' <<<"$out" | head -1)"

# --- 3. clean restart: everything from the disk ---
umount "$mnt"
expect_daemon_gone
reset_stats
VALKYRIE_LOG_LEVEL=info start_valkyrie data "$url" "${disk_opts[@]}"
port=$(metrics_port)
grep '"disk cache opened"' "$tmp/daemon.err" | tail -1 | grep -q "\"chunks\":45," ||
  fail "the second mount did not index 45 chunks: $(grep '"disk cache opened"' "$tmp/daemon.err" | tail -1)"
check_read ds
gets=$(sim_stat get)
[[ $gets == 0 ]] || fail "re-reading after a clean restart sent $gets GETs (disk hits $(metric valkyrie_disk_hits_total))"
[[ $(metric valkyrie_disk_bytes_read_total) == "$ds_bytes" ]] ||
  fail "disk bytes read $(metric valkyrie_disk_bytes_read_total), not $ds_bytes"
pass "clean restart: 45 chunks indexed, re-read with 0 GETs, bytes exact"

# --- 4. kill -9 after more data reached the disk ---
check_read more
wait_used $((ds_bytes + more_bytes))
kill -9 "$daemon_pid"
wait "$daemon_pid" 2>/dev/null || true
daemon_pid=
umount -l "$mnt" 2>/dev/null || true
reset_stats
VALKYRIE_LOG_LEVEL=info start_valkyrie data "$url" "${disk_opts[@]}"
port=$(metrics_port)
check_read more
check_read ds
gets=$(sim_stat get)
[[ $gets == 0 ]] || fail "re-reading after kill -9 sent $gets GETs"
[[ $(metric valkyrie_disk_check_failures_total) == 0 ]] || fail "check failures after kill -9"
pass "kill -9: the chunks written before it are read back with 0 GETs, bytes exact"
umount "$mnt"
expect_daemon_gone
