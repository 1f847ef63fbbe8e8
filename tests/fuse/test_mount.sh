#!/usr/bin/env bash
# Integration test of the mount: a real FUSE mount of valkyrie-s3sim (SigV4 checked) holding a
# tree of ~2,500 objects with awkward names and sizes. Compares names, sizes and sha256 of every
# file with the source, reads concurrently and at random offsets, checks EROFS, an overwrite
# during a read, LIST-only `ls -l`, and SIGTERM during reads. Unmounts even when it fails.
# Exit 77 (skip) without /dev/fuse or root.
set -euo pipefail
build=${BUILD_ROOT:?BUILD_ROOT not set}
s3="$build/tools/valkyrie-s3"
[[ -c /dev/fuse && $(id -u) == 0 ]] || { echo "no /dev/fuse or not root: skipped"; exit 77; }

tmp=$(mktemp -d /tmp/valkyrie-mount-test.XXXXXX)
mnt="$tmp/mnt"; data="$tmp/data"; mkdir -p "$mnt" "$data/tree"
source "$(dirname "$0")/lib.sh"

chunk=$((1024 * 1024))
tree="$data/tree"
# --- the source tree ---
for d in "plain" "with space" "plus+sign" "per%cent" "tilde~" "ünïcödé" "deep/a/b/c" "clash"; do
  mkdir -p "$tree/$d"
done
for i in $(seq 0 1399); do
  d=("plain" "with space" "plus+sign" "per%cent" "tilde~" "ünïcödé" "deep/a/b/c")
  printf 'file %d\n' "$i" >"$tree/${d[$((i % 7))]}/f $i+~%.txt"
done
mkdir -p "$tree/many"
for i in $(seq 0 999); do printf '%d' "$i" >"$tree/many/item_$i"; done
mkdir -p "$tree/sizes"
: >"$tree/sizes/empty"
head -c 1 /dev/urandom >"$tree/sizes/one"
for n in $((chunk - 1)) $chunk $((chunk + 1)); do head -c "$n" /dev/urandom >"$tree/sizes/size_$n"; done
head -c $((100 * chunk)) /dev/urandom >"$tree/sizes/big_100MiB"
long=$(printf 'n%.0s' $(seq 255))
echo "longest name" >"$tree/$long"
echo inner >"$tree/clash/inner"
objects=$(find "$tree" -type f | wc -l)

export AWS_ACCESS_KEY_ID=AKIDMOUNT AWS_SECRET_ACCESS_KEY=mount/secret AWS_EC2_METADATA_DISABLED=true
start_sim --data "$data"
put() { echo -n "$2" >"$tmp/put.body"; "$s3" --endpoint "$url" --bucket tree put "$1" "$tmp/put.body" >/dev/null; }
# Keys a file tree cannot hold: a directory marker, a file that clashes with a directory, a key
# with an empty segment, a name over 255 bytes.
put "marker/" ""
put "clash" "I am a file named like a directory"
put "x//y" "empty segment"
put "$long$long" "too long"
echo "tree: $((objects + 4)) objects"

mount_fs() { start_valkyrie tree "$url" --chunk-size 1MiB --cache-size 64MiB --workers 16; }
stat_of() { curl -s "$url/_sim/stats"; }
counter() { stat_of | sed -E "s/.*\"$1\":([0-9]+).*/\1/"; }

mount_fs

# --- ls -l of 1,000 objects uses LIST requests only ---
curl -s -X POST "$url/_sim/reset-stats" >/dev/null
n=$(ls -l "$mnt/many" | grep -c item_)
[[ $n == 1000 ]] || fail "ls -l many: $n entries"
[[ $(counter head) == 0 && $(counter get) == 0 && $(counter list) -ge 1 ]] ||
  fail "ls -l used more than LIST: $(stat_of)"
pass "ls -l of 1,000 objects: $(counter list) LIST requests, no HEAD, no GET"

# --- names ---
(cd "$tree" && find . | sort) >"$tmp/expected.names"
printf '%s\n' ./marker ./x >>"$tmp/expected.names"
sort -o "$tmp/expected.names" "$tmp/expected.names"
(cd "$mnt" && find . | sort) >"$tmp/got.names"
diff "$tmp/expected.names" "$tmp/got.names" >&2 || fail "find differs"
pass "find sees exactly the expected $(wc -l <"$tmp/got.names") names"
[[ $(cat "$mnt/clash/inner") == inner ]] || fail "clash: the directory must win"
pass "file/directory clash shows the directory"

# --- sizes and bytes ---
(cd "$tree" && find . -type f -printf '%p %s\n' | sort) >"$tmp/expected.sizes"
(cd "$mnt" && find . -type f -printf '%p %s\n' | sort) >"$tmp/got.sizes"
diff "$tmp/expected.sizes" "$tmp/got.sizes" >&2 || fail "sizes differ"
pass "stat sizes match"
(cd "$tree" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$tmp/expected.sha"
(cd "$mnt" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$tmp/got.sha"
diff "$tmp/expected.sha" "$tmp/got.sha" >&2 || fail "contents differ"
pass "sha256 of all $(wc -l <"$tmp/got.sha") files matches the source"

# --- the last byte of every size class ---
for f in sizes/one "sizes/size_$((chunk - 1))" "sizes/size_$chunk" "sizes/size_$((chunk + 1))" sizes/big_100MiB; do
  cmp <(tail -c 1 "$tree/$f") <(tail -c 1 "$mnt/$f") || fail "last byte of $f"
done
pass "last byte of every size class"

# --- 8 concurrent readers on the same and on different files (through a 64 MiB cache) ---
expected_big=$(sha256sum <"$tree/sizes/big_100MiB")
pids=()
for i in 1 2 3 4; do (sha256sum <"$mnt/sizes/big_100MiB" >"$tmp/r$i") & pids+=($!); done
for i in 5 6 7 8; do (cat "$mnt/plain/"* "$mnt/many/"* | sha256sum >"$tmp/r$i") & pids+=($!); done
for p in "${pids[@]}"; do wait "$p" || fail "a concurrent reader failed"; done
for i in 1 2 3 4; do [[ $(cat "$tmp/r$i") == "$expected_big" ]] || fail "reader $i got other bytes"; done
expected_small=$(cat "$tree/plain/"* "$tree/many/"* | sha256sum)
for i in 5 6 7 8; do [[ $(cat "$tmp/r$i") == "$expected_small" ]] || fail "reader $i got other bytes"; done
pass "8 concurrent readers get identical, correct bytes"

# --- random-offset reads ---
/usr/bin/python3 - "$tree/sizes/big_100MiB" "$mnt/sizes/big_100MiB" <<'PY' || fail "random reads differ"
import os, random, sys
src, mnt = (os.open(p, os.O_RDONLY) for p in sys.argv[1:3])
size = os.fstat(src).st_size
rng = random.Random(11)
for _ in range(300):
    off = rng.randrange(size)
    n = rng.choice([1, 17, 4096, 65536, 300000, 1 << 20])
    if os.pread(src, n, off) != os.pread(mnt, n, off):
        sys.exit(f"differs at {off}+{n}")
PY
pass "300 random-offset reads match the source"

# --- a read-only filesystem ---
for op in "touch $mnt/new" "mkdir $mnt/newdir" "rm $mnt/plain/f\ 0+~%.txt" "mv $mnt/sizes/one $mnt/sizes/two" \
          "truncate -s 0 $mnt/sizes/one" "sh -c 'echo x >> $mnt/sizes/one'" "ln -s a $mnt/link"; do
  out=$(eval "$op" 2>&1) && fail "'$op' succeeded"
  [[ $out == *"Read-only file system"* ]] || fail "'$op': $out"
done
pass "write, create, mkdir, unlink, rename, truncate, symlink get EROFS"

head -c $((48 * chunk)) /dev/urandom >"$tmp/old_version"
# --- SIGTERM during active reads ---
umount "$mnt"
expect_daemon_gone
pass "umount ends the daemon"
# An object no cache has seen, for the overwrite check on the fresh mount.
"$s3" --endpoint "$url" --bucket tree put fresh/changing "$tmp/old_version" >/dev/null
mount_fs
# --- an object overwritten on the server during a read: an error or the old bytes, never a mix ---
head -c $((48 * chunk)) /dev/urandom >"$tmp/new_version"
/usr/bin/python3 - "$mnt/fresh/changing" "$tmp/old_version" "$tmp/new_version" \
    "$s3 --endpoint $url --bucket tree put fresh/changing $tmp/new_version" <<'PY' || fail "overwrite during read"
import errno, os, subprocess, sys
path, old_path, new_path, put = sys.argv[1:5]
old, new = open(old_path, "rb").read(), open(new_path, "rb").read()
MiB = 1 << 20
f = os.open(path, os.O_RDONLY)
first = os.pread(f, 4096, 0)
assert first == old[:4096]
subprocess.run(put, shell=True, check=True, stdout=subprocess.DEVNULL)
# Far from anything read ahead: this chunk must be fetched now, pinned to the old ETag.
try:
    far = os.pread(f, MiB, 40 * MiB)
    sys.exit("a read after the overwrite returned bytes instead of an error")
except OSError as e:
    assert e.errno in (errno.ESTALE, errno.EIO), f"unexpected errno {e.errno}"
    print("overwrite: far read failed with", errno.errorcode[e.errno])
# Reading on sequentially: every byte returned is the old version's, up to an error.
got = first
try:
    while True:
        b = os.pread(f, MiB, len(got))
        if not b:
            break
        got += b
except OSError as e:
    assert e.errno in (errno.ESTALE, errno.EIO), f"unexpected errno {e.errno}"
assert old.startswith(got), "bytes of two versions mixed"
os.close(f)
# A new open sees the new version whole.
assert open(path, "rb").read() == new, "a new open does not see the new version"
PY
pass "overwrite during a read gives an error, not mixed bytes"

reads_answered() {
  curl -sf "127.0.0.1:$(metrics_port)/metrics" | awk '$1 == "valkyrie_fuse_requests_total{op=\"read\"}" {printf "%d\n", $2}'
}
reads0=$(reads_answered)
readers=()
for i in 1 2 3; do (cat "$mnt/sizes/big_100MiB" >/dev/null 2>&1 || true) & readers+=($!); done
reading() { (($(reads_answered) > reads0)); }
wait_until 10 reading || fail "the readers' reads never reached the daemon"
kill -TERM "$daemon_pid"
expect_daemon_gone
readers_done() { local p; for p in "${readers[@]}"; do kill -0 "$p" 2>/dev/null && return 1; done; return 0; }
wait_until 10 readers_done || fail "readers of the unmounted filesystem still blocked"
for p in "${readers[@]}"; do wait "$p"; done
mountpoint -q "$mnt" && fail "still mounted after SIGTERM"
out=$(ls "$mnt" 2>&1) || true
[[ $out != *"not connected"* ]] || fail "left a dead mount: $out"
pass "SIGTERM during reads: unmounted, daemon gone, readers released, no dead mount"
echo "all mount checks passed"
