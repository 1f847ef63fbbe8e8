#!/usr/bin/env bash
# --metadata-ttl and directory paging through a real mount. Within the TTL a changed bucket is
# not seen and costs no LIST; after it a new key and a size change are (the kernel's attribute
# and entry caches expire with it). A directory being read while its listing is refreshed under
# it (keys added before the reader's position) gives every name exactly once. Exit 77 without
# /dev/fuse or root.
set -euo pipefail
[[ -c /dev/fuse && $(id -u) == 0 ]] || { echo "no /dev/fuse or not root: skipped"; exit 77; }
tmp=$(mktemp -d /tmp/valkyrie-metadata.XXXXXX)
mnt="$tmp/mnt"; mkdir -p "$mnt"
source "$(dirname "$0")/lib.sh"
export AWS_ACCESS_KEY_ID=AKIDMETA AWS_SECRET_ACCESS_KEY=meta/secret AWS_EC2_METADATA_DISABLED=true
py=/usr/bin/python3

start_sim --synthetic meta:300:1KiB:many/
put() { printf '%s' "$2" >"$tmp/body"; "$BUILD_ROOT/tools/valkyrie-s3" --endpoint "$url" --bucket meta put "$1" "$tmp/body" >/dev/null; }
lists() { curl -sf "$url/_sim/stats" | sed -E 's/.*"list":([0-9]+).*/\1/'; }
ms() { echo $(($(date +%s%N) / 1000000)); }
put ttl/a 1
put ttl/b 0123456789

# --- within the TTL the old view, after it the bucket as it is ---
ttl_ms=3000
start_valkyrie meta "$url" --metadata-ttl 3s
t0=$(ms)
[[ $(ls "$mnt/ttl" | tr '\n' ' ') == "a b " ]] || fail "listing: $(ls "$mnt/ttl")"
[[ $(stat -c %s "$mnt/ttl/b") == 10 ]] || fail "size of b: $(stat -c %s "$mnt/ttl/b")"
lists0=$(lists)
put ttl/c 333
put ttl/b 01234567890123456789
[[ $(ls "$mnt/ttl" | tr '\n' ' ') == "a b " ]] || fail "within the TTL the listing changed: $(ls "$mnt/ttl")"
[[ $(stat -c %s "$mnt/ttl/b") == 10 ]] || fail "within the TTL the size changed: $(stat -c %s "$mnt/ttl/b")"
[[ ! -e $mnt/ttl/c ]] || fail "within the TTL the new key is there"
[[ $(lists) == "$lists0" ]] || fail "within the TTL the listing cost $(($(lists) - lists0)) LISTs"
(($(ms) - t0 < ttl_ms)) || fail "inconclusive: the checks within the TTL took $(($(ms) - t0)) ms (machine overloaded?)"
pass "within --metadata-ttl: the old listing and size, no LIST, the new key not found"
changed() { [[ $(ls "$mnt/ttl" | tr '\n' ' ') == "a b c " && $(stat -c %s "$mnt/ttl/b") == 20 ]]; }
wait_until 15 changed || fail "after the TTL: listing '$(ls "$mnt/ttl" | tr '\n' ' ')', size of b $(stat -c %s "$mnt/ttl/b")"
seen_ms=$(($(ms) - t0))
((seen_ms >= ttl_ms)) || fail "the change was seen after $seen_ms ms, before the TTL ($ttl_ms ms)"
[[ $(cat "$mnt/ttl/c") == 333 && $(cat "$mnt/ttl/b") == 01234567890123456789 ]] || fail "new bytes after the TTL"
pass "after --metadata-ttl ($seen_ms ms): the new key, the new size and the new bytes"

# --- a directory read across a listing refresh: no name twice, none skipped ---
# The reader takes the first page of 300 entries (a getdents holds a few dozen), keys are added
# that sort before its position, another reader lists the directory once the TTL has passed (the
# listing is refreshed), then the first reader goes on.
$py - "$mnt/many" "$BUILD_ROOT/tools/valkyrie-s3" "$url" "$tmp/body" <<'PY' || fail "readdir across a refresh"
import os, subprocess, sys, time
path, s3, url, body = sys.argv[1:5]
it = os.scandir(path)
names = [next(it).name for _ in range(10)]
open(body, "w").write("new")
for i in range(5):
    subprocess.run([s3, "--endpoint", url, "--bucket", "meta", "put", f"many/added_{i}", body],
                   check=True, stdout=subprocess.DEVNULL)
deadline = time.monotonic() + 15
while "added_0" not in os.listdir(path):  # a new opendir: the refreshed listing, once the TTL passed
    if time.monotonic() > deadline:
        sys.exit("the listing was not refreshed within 15 s")
    time.sleep(0.05)
names += [e.name for e in it]
twice = sorted({n for n in names if names.count(n) > 1})
missing = [n for n in (f"shard_{i:06d}.tar" for i in range(300)) if n not in names]
if twice or missing:
    sys.exit(f"{len(names)} names read: {len(twice)} twice (first {twice[:3]}), {len(missing)} missing (first {missing[:3]})")
print(f"{len(names)} names, each once")
PY
pass "a directory read while its listing is refreshed: every unchanged name exactly once"
umount "$mnt"; expect_daemon_gone
