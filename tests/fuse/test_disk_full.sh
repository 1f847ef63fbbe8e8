#!/usr/bin/env bash
# The disk tier on a real, small filesystem (ext4 in a 64 MiB image on a loop device).
# 1. --disk-cache-size larger than the filesystem: preallocation fails (ENOSPC) and the daemon
#    exits with a clear message, nothing mounted.
# 2. The filesystem filled up under a running tier (64 x 256 KiB chunks; a filler file takes every free block, so
#    the journal cannot grow): its failed appends are counted as tier errors (ENOSPC in the log)
#    and step the tier aside (logged once), reads go on, bytes exact, the mount alive.
# (EIO through device-mapper's error target is not here: this machine has no device-mapper.)
# Exit 77 without root, /dev/fuse, losetup or mkfs.ext4, or if no loop device can be had.
set -euo pipefail
[[ -c /dev/fuse && $(id -u) == 0 ]] || { echo "no /dev/fuse or not root: skipped"; exit 77; }
command -v losetup >/dev/null && command -v mkfs.ext4 >/dev/null || { echo "no losetup/mkfs.ext4: skipped"; exit 77; }
tmp=$(mktemp -d /tmp/valkyrie-diskfull.XXXXXX)
mnt="$tmp/mnt"; mkdir -p "$mnt" "$tmp/fs"
source "$(dirname "$0")/lib.sh"
loopdev=
fs_cleanup() {
  set +e
  mountpoint -q "$mnt" && { umount "$mnt" || umount -l "$mnt"; }
  [[ -n $daemon_pid ]] && { kill -9 "$daemon_pid"; wait "$daemon_pid"; daemon_pid=; }
  mountpoint -q "$tmp/fs" && umount "$tmp/fs"
  [[ -n $loopdev ]] && losetup -d "$loopdev"
  cleanup
}
trap fs_cleanup EXIT
truncate -s 64M "$tmp/fs.img"
mkfs.ext4 -q -F "$tmp/fs.img" || { echo "mkfs.ext4 failed: skipped"; exit 77; }
loopdev=$(losetup -f --show "$tmp/fs.img" 2>/dev/null) || { loopdev=; echo "no loop device: skipped"; exit 77; }
mount "$loopdev" "$tmp/fs" || { echo "cannot mount the image: skipped"; exit 77; }
export AWS_ACCESS_KEY_ID=AKIDFULL AWS_SECRET_ACCESS_KEY=full/secret AWS_EC2_METADATA_DISABLED=true
start_sim --synthetic data:64:256KiB:ds/
metric() { curl -sf "127.0.0.1:$port/metrics" | awk -v m="$1" '$1 == m {printf "%d\n", $2}'; }
mkdir -p "$tmp/ref" "$tmp/fs/tier"
keys=$("$BUILD_ROOT/tools/valkyrie-s3" --endpoint "$url" --bucket data --threads 1 ls | awk '{print $3}')
/usr/bin/python3 "$SOURCE_ROOT/tests/support/s3_bulk.py" "$url" data get <(echo "$keys") "$tmp/ref" >/dev/null ||
  fail "downloading the references"
(cd "$tmp/ref" && find ds -type f | sort | xargs sha256sum) >"$tmp/ds.sha"
check_read() {
  (cd "$mnt" && awk '{print $2}' "$tmp/ds.sha" | xargs sha256sum) >"$tmp/got" || fail "reading through the mount"
  cmp -s "$tmp/ds.sha" "$tmp/got" || fail "other bytes than S3's"
}

# --- 1. a cap the filesystem cannot hold ---
if out=$("$BUILD_ROOT/src/cli/valkyrie" --mount "$mnt" --bucket data --endpoint "$url" --foreground \
  --no-metrics --chunk-size 256KiB --disk-cache "$tmp/fs/tier" --disk-cache-size 200MiB 2>&1); then
  fail "the daemon started with a 200 MiB tier on a 64 MiB filesystem"
fi
mountpoint -q "$mnt" && fail "mounted with a tier that cannot be preallocated"
grep -q "cannot preallocate" <<<"$out" || fail "no clear message: $out"
pass "a tier larger than its filesystem: $(grep -o 'cannot preallocate[^"]*' <<<"$out" | head -1)"
rm -rf "$tmp/fs/tier" && mkdir -p "$tmp/fs/tier"

# --- 2. the filesystem fills up under a running tier ---
VALKYRIE_LOG_LEVEL=info start_valkyrie data "$url" --chunk-size 256KiB --cache-size 4MiB \
  --disk-cache "$tmp/fs/tier" --disk-cache-size 24MiB
port=$(metrics_port)
# Every free block taken (the data files are preallocated: only the journal still needs room).
# What ext4's delayed allocation held back for the filler comes free at the sync (and root may
# dip into the reserved blocks): that is taken too, in ever smaller pieces, each written through
# (fsync) so that nothing is left that a journal append could get.
dd if=/dev/zero of="$tmp/fs/filler" bs=1M 2>/dev/null || true
sync
for bs in 64K 4K 1K; do
  while dd if=/dev/zero of="$tmp/fs/filler" bs=$bs count=1 oflag=append conv=notrunc,fsync 2>/dev/null; do :; done
done
[[ $(df --output=avail -B1 "$tmp/fs" | tail -1) -lt 8192 ]] || fail "the filesystem did not fill up"
check_read
check_read  # (again: what memory dropped comes from the disk or S3)
# The chunks written back meanwhile went to their preallocated slots, but their journal records
# found no room (ENOSPC): counted as tier errors. (Write-backs run after the reads: wait.)
errors_counted() { (($(metric valkyrie_disk_errors_total) > 0)); }
wait_until 20 errors_counted ||
  fail "no tier error counted on a full filesystem ($(metric valkyrie_disk_bytes_written_total) bytes written back)"
grep -q '"op":"journal","error":"No space left on device"' "$tmp/daemon.err" ||
  fail "no ENOSPC from the journal in the log: $(grep -m3 'disk cache' "$tmp/daemon.err")"
# The first pass's write-backs fail to journal one after another (no disk read between them: the
# tier was empty): five in a row and the tier steps aside, logged once.
stepped=$(grep -c 'disk cache stepped aside' "$tmp/daemon.err" || true)
[[ $stepped == 1 ]] || fail "the tier stepped aside $stepped times, not once: $(grep -m3 'disk cache' "$tmp/daemon.err")"
check_read  # (the bytes still exact after the errors)
kill -0 "$daemon_pid" || fail "the daemon died"
pass "filesystem full under the tier: bytes exact three times, $(metric valkyrie_disk_errors_total) tier errors counted (journal ENOSPC), stepped aside once, mount alive"
# Room again: the tier goes on (unmount and mount again: what was journaled is there).
rm -f "$tmp/fs/filler"
umount "$mnt"
expect_daemon_gone
VALKYRIE_LOG_LEVEL=info start_valkyrie data "$url" --chunk-size 256KiB --cache-size 4MiB \
  --disk-cache "$tmp/fs/tier" --disk-cache-size 24MiB
check_read
pass "after the filesystem has room again: mounted, bytes exact"
