#!/usr/bin/env bash
# valkyrie-passthrough-probe (docs/benchmarks.md) mounts its own FUSE file system and reads the
# same bytes through FUSE's page cache and through passthrough: here it must get the bytes right
# on both paths and leave no mount behind. Exit 77 (skip) without root or /dev/fuse, or on a
# kernel that refuses passthrough (the probe's own 77).
set -uo pipefail
[[ $(id -u) == 0 && -c /dev/fuse ]] || { echo "skip: needs root and /dev/fuse"; exit 77; }
mnt=$(mktemp -d /tmp/valkyrie-probe.XXXXXX)
trap 'mountpoint -q "$mnt" && umount -l "$mnt"; rmdir "$mnt"' EXIT
out=$(timeout 120 "$BUILD_ROOT/tools/valkyrie-passthrough-probe" "$mnt" 8 2 2>&1)
rc=$?
echo "$out"
[[ $rc == 77 ]] && { echo "skip: the kernel refuses passthrough"; exit 77; }
[[ $rc == 0 ]] || { echo "not ok - the probe exited $rc"; exit 1; }
grep -q "^median of 2 reads of 8 MiB" <<<"$out" || { echo "not ok - no summary line"; exit 1; }
if mountpoint -q "$mnt"; then echo "not ok - the probe left its mount"; exit 1; fi
echo "ok - the probe read the same bytes through FUSE's page cache and through passthrough, and unmounted"
