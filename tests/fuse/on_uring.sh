#!/usr/bin/env bash
# Runs a mount test (argument) on the io_uring transport: sets the fuse module's enable_uring,
# restores it on exit, and passes VALKYRIE_FUSE_TRANSPORT=io-uring to the test's daemons.
# Exit 77 where the kernel has no FUSE over io_uring, or without root.
set -uo pipefail
param=/sys/module/fuse/parameters/enable_uring
[[ $(id -u) == 0 ]] || { echo "not root: skipped"; exit 77; }
[[ -w $param ]] || { echo "this kernel has no FUSE over io_uring ($param): skipped"; exit 77; }
saved=$(cat "$param")
trap 'echo "$saved" >"$param"' EXIT
echo Y >"$param"
VALKYRIE_FUSE_TRANSPORT=io-uring "$@"
