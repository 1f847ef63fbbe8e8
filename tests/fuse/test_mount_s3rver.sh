#!/usr/bin/env bash
# The mount against s3rver (third-party S3 server from npm): objects uploaded with awkward names
# and sizes, mounted, compared by name, size and sha256, random reads, EROFS. Exit 77 (skip)
# without /dev/fuse, root or s3rver.
set -euo pipefail
build=${BUILD_ROOT:?BUILD_ROOT not set}
source_root=${SOURCE_ROOT:?SOURCE_ROOT not set}
s3rver="$source_root/node_modules/.bin/s3rver"
[[ -c /dev/fuse && $(id -u) == 0 ]] || { echo "no /dev/fuse or not root: skipped"; exit 77; }
[[ -x $s3rver ]] || { echo "s3rver not installed (npm ci): skipped"; exit 77; }

tmp=$(mktemp -d /tmp/valkyrie-s3rver-test.XXXXXX)
mnt="$tmp/mnt"; src="$tmp/src"; mkdir -p "$mnt" "$src" "$tmp/s3rver"
source "$(dirname "$0")/lib.sh"

NODE_OPTIONS=--openssl-legacy-provider node "$s3rver" -d "$tmp/s3rver" -a 127.0.0.1 -p 0 --silent \
  --configure-bucket data >"$tmp/server.out" 2>&1 &
server_pid=$!
wait_until 10 grep -q "listening on" "$tmp/server.out" || fail "s3rver did not start: $(head -3 "$tmp/server.out")"
url="http://$(sed -nE 's/.*listening on (.*)$/\1/p' "$tmp/server.out" | head -1)"
export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_EC2_METADATA_DISABLED=true

# The source tree, uploaded key by key. One level of directories only: s3rver 3.7.1 omits the
# common prefix of keys nested two or more levels below the listed prefix ("deep/a/b/x" yields no
# "deep/" at the root), which real S3 does not; deep trees are covered by the valkyrie-s3sim test.
for d in "plain" "with space" "plus+sign" "per%cent" "tilde~" "ünï" "deep"; do mkdir -p "$src/$d"; done
i=0
for d in "plain" "with space" "plus+sign" "per%cent" "tilde~" "ünï" "deep"; do
  for j in $(seq 0 39); do printf 'object %d %d\n' $i $j >"$src/$d/f $j+~%.txt"; i=$((i + 1)); done
done
mkdir -p "$src/sizes"
: >"$src/sizes/empty"
head -c 1 /dev/urandom >"$src/sizes/one"
head -c $((8 * 1024 * 1024 + 1)) /dev/urandom >"$src/sizes/chunk_plus_1"
head -c $((20 * 1024 * 1024)) /dev/urandom >"$src/sizes/big"
/usr/bin/python3 "$SOURCE_ROOT/tests/support/s3_bulk.py" "$url" data put "$src" >/dev/null ||
  fail "uploading the source tree"
echo "uploaded $(find "$src" -type f | wc -l) objects to s3rver"

start_valkyrie data "$url" --cache-size 32MiB

diff <(cd "$src" && find . | sort) <(cd "$mnt" && find . | sort) >"$tmp/names.diff" || { head -5 "$tmp/names.diff"; ls -la "$mnt"; tail -5 "$tmp/daemon.err"; fail "names differ"; }
pass "find sees the same names"
diff <(cd "$src" && find . -type f -printf '%p %s\n' | sort) <(cd "$mnt" && find . -type f -printf '%p %s\n' | sort) >&2 ||
  fail "sizes differ"
pass "sizes match"
diff <(cd "$src" && find . -type f -print0 | sort -z | xargs -0 sha256sum) \
     <(cd "$mnt" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >&2 || fail "contents differ"
pass "sha256 of every file matches"
/usr/bin/python3 - "$src/sizes/big" "$mnt/sizes/big" <<'PY' || fail "random reads differ"
import os, random, sys
src, mnt = (os.open(p, os.O_RDONLY) for p in sys.argv[1:3])
size = os.fstat(src).st_size
rng = random.Random(5)
for _ in range(200):
    off, n = rng.randrange(size), rng.choice([1, 999, 65536, 1 << 20])
    if os.pread(src, n, off) != os.pread(mnt, n, off):
        sys.exit(f"differs at {off}+{n}")
PY
pass "random-offset reads match"
out=$(touch "$mnt/new" 2>&1) && fail "touch succeeded"
[[ $out == *"Read-only file system"* ]] || fail "touch: $out"
pass "writes get EROFS"
umount "$mnt"
expect_daemon_gone
echo "all s3rver mount checks passed"
