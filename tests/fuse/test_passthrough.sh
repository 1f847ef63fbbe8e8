#!/usr/bin/env bash
# FUSE passthrough (--passthrough-pool): an object the chunk cache holds whole is read by the
# kernel from a backing file. Every read's bytes are compared with the simulator's, and the
# opens are counted by how they were answered (valkyrie_fuse_passthrough_opens_total): through
# the page cache while not cached, filled at the open once cached, shared by concurrent and later
# opens, prepared ahead for the next file, never for objects under 1 MiB or over the pool, and
# never while the same file is open through the page cache (the kernel would fail that open).
# --passthrough-pool auto: an eighth of the cache, none for an order that reads again more than
# stays local or that has no object a backing file takes.
# Exit 77 without /dev/fuse or root, or where the kernel does not grant passthrough (< 6.9).
set -euo pipefail
[[ -c /dev/fuse && $(id -u) == 0 ]] || { echo "no /dev/fuse or not root: skipped"; exit 77; }
tmp=$(mktemp -d /tmp/valkyrie-passthrough.XXXXXX)
mnt="$tmp/mnt"; mkdir -p "$mnt"
source "$(dirname "$0")/lib.sh"
export AWS_ACCESS_KEY_ID=AKIDPT AWS_SECRET_ACCESS_KEY=pt/secret AWS_EC2_METADATA_DISABLED=true
start_sim --synthetic data:4:3MiB:big/ --synthetic data:2:100KiB:small/ --synthetic data:1:20MiB:huge/ \
  --synthetic data:1:3MiB:solo/
VALKYRIE_LOG_LEVEL=info start_valkyrie data "$url" --passthrough-pool 16MiB --cache-size 256MiB --lookahead 1
if grep -q "did not offer FUSE passthrough" "$tmp/daemon.err"; then
  echo "the kernel does not grant FUSE passthrough: skipped"; exit 77
fi
grep -q "FUSE passthrough on" "$tmp/daemon.err" || { cat "$tmp/daemon.err"; fail "passthrough was not set up"; }
metric() { curl -sf "127.0.0.1:$(metrics_port)/metrics" | awk -v m="$1" '$1 == m { print $2 + 0; f = 1 } END { if (!f) print 0 }'; }
opens() { metric "valkyrie_fuse_passthrough_opens_total{answer=\"$1\"}"; }
verify() {  # bytes of the mounted file (read by cmp) against the simulator's
  "$BUILD_ROOT/tools/valkyrie-s3" --endpoint "$url" --bucket data get "$1" -o "$tmp/ref" >/dev/null
  cmp "$tmp/ref" "$mnt/$1" || fail "$1 differs"
}
expect() {  # answer count
  local got; got=$(opens "$1")
  [[ $got == "$2" ]] || fail "passthrough opens answered '$1': $got, expected $2 (filled $(opens filled), \
prepared $(opens prepared), shared $(opens shared), page_cache $(opens page_cache))"
}

verify big/shard_000000.tar
expect page_cache 1
pass "an object not cached yet is read through the page cache, bytes exact"
settle
verify big/shard_000000.tar
expect filled 1
pass "once cached, an open copies it into a backing file; the kernel's reads of it are exact"
exec 3<"$mnt/big/shard_000000.tar"
verify big/shard_000000.tar
exec 3<&-
verify big/shard_000000.tar
expect shared 3
expect filled 1
pass "an open beside a live passthrough open, and a later one, share its backing file (no copy)"
sync; echo 3 >/proc/sys/vm/drop_caches  # the kernel forgets the inode: a new number next lookup
verify big/shard_000000.tar
expect shared 4
expect filled 1
pass "after the kernel forgot the inode, an open under its new number shares the kept file (no copy)"
# Reading shard_000000 fetched its successor whole (--lookahead 1): filled ahead of its open.
# The open still takes the prefetched chunk out of the prefetch zone, as a first read would (the
# kernel then sends no reads): left there, chunks the order still wants fill the zone and refuse
# the next files' prefetch (the training loop once fell to 0.4 x its bound that way).
settle
used=$(metric valkyrie_prefetch_chunks_used_total)
verify big/shard_000001.tar
expect prepared 1
(( $(metric valkyrie_prefetch_chunks_used_total) > used )) ||
  fail "the prepared open left its prefetched chunk unread (prefetch chunks used: $used before, $(metric valkyrie_prefetch_chunks_used_total) after)"
pass "the next file fetched whole was prepared ahead: its open needed no copy and took its prefetched chunk"

verify small/shard_000000.tar
verify huge/shard_000000.tar
settle
verify huge/shard_000000.tar
expect filled 1
expect prepared 1
pass "objects under 1 MiB and over the pool stay on the page cache, bytes exact"

# A file open through the page cache (not cached at its open) keeps every open of it there
# until it is closed, though the object is cached meanwhile.
exec 4<"$mnt/solo/shard_000000.tar"
head -c 1 <&4 >/dev/null
settle
before=$(opens page_cache) filled=$(opens filled)
verify solo/shard_000000.tar
[[ $(opens page_cache) == $((before + 1)) ]] || fail "an open beside a page-cache open was not kept on the page cache"
exec 4<&-
verify solo/shard_000000.tar
[[ $(opens filled) == $((filled + 1)) ]] || fail "once the page-cache opens were closed, the cached object was not passed through"
pass "an open beside a page-cache open stays on the page cache (no EIO); after the close it is passed through"

# mmap of a passed-through file reads the backing file's pages.
/usr/bin/python3 - "$mnt/big/shard_000000.tar" "$tmp/ref0" "$BUILD_ROOT" "$url" <<'PY' || fail "mmap of a passed-through file differs"
import mmap, subprocess, sys
path, ref, build, url = sys.argv[1:]
subprocess.run([build + "/tools/valkyrie-s3", "--endpoint", url, "--bucket", "data", "get", "big/shard_000000.tar", "-o", ref],
               check=True, stdout=subprocess.DEVNULL)
with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as m, open(ref, "rb") as r:
    sys.exit(0 if m[:] == r.read() else 1)
PY
pass "mmap of a passed-through file is exact"
held=$(metric valkyrie_fuse_passthrough_pool_bytes)
(( held <= 16 * 1024 * 1024 )) || fail "the backing files hold $held bytes, over the 16 MiB pool"
pass "the backing files stay within --passthrough-pool ($held bytes)"
umount "$mnt"; expect_daemon_gone

# A pool with room for one 3 MiB file beside one in use: the next file's fill ahead waits while
# the file is open, and goes on when its close leaves the file idle, so its open needs no copy.
: >"$tmp/daemon.err"
VALKYRIE_LOG_LEVEL=info start_valkyrie data "$url" --passthrough-pool 5MiB --cache-size 256MiB --lookahead 1
prepares() { metric "valkyrie_fuse_passthrough_prepares_total{outcome=\"$1\"}"; }
verify big/shard_000000.tar  # through the page cache; shard 1 prepared ahead
settle
exec 3<"$mnt/big/shard_000001.tar"  # prepared: in use; shard 2 is fetched whole, no room for it
settle
[[ $(opens prepared) == 1 ]] || fail "shard 1 was not prepared ahead (prepared $(opens prepared))"
[[ $(prepares waited) == 1 ]] || fail "shard 2's fill did not wait for room (waited $(prepares waited), ready $(prepares ready))"
ready=$(prepares ready)
exec 3<&-
wait_until 10 test "$(prepares ready)" -gt "$ready" || fail "shard 2 was not prepared after shard 1 was closed"
verify big/shard_000002.tar
expect prepared 2
expect filled 0
pass "a fill ahead with no room waits for a close, then prepares the next file (no copy at its open)"
umount "$mnt"; expect_daemon_gone

# Opens of one cached file at once, with room for one fill: one fills and passes it through,
# and every other open must either join it or, if it came first, keep the whole inode on the page
# cache (an open of the other kind beside them fails with EIO in the kernel). Eight openers a
# round, spread over a few milliseconds so that some come during a fill; each round a file whose
# backing file, if any, the previous round's evicted. (The interleaving that broke this once, an
# open that filled nothing answered after another's attach, is pinned in test_passthrough_files.)
: >"$tmp/daemon.err"
VALKYRIE_LOG_LEVEL=info start_valkyrie data "$url" --passthrough-pool 5MiB --cache-size 256MiB --lookahead 0
for i in 0 1 2 3; do verify "big/shard_00000$i.tar"; done  # through the page cache: now cached
settle
/usr/bin/python3 - "$mnt/big" "$tmp" "$BUILD_ROOT" "$url" <<'PY' || fail "concurrent opens of a cached file failed or differ"
import os, random, subprocess, sys, threading, time
root, tmp, build, url = sys.argv[1:]
want = {}
for i in range(4):
    name = f"shard_00000{i}.tar"
    ref = os.path.join(tmp, "ref-" + name)
    subprocess.run([build + "/tools/valkyrie-s3", "--endpoint", url, "--bucket", "data", "get", "big/" + name,
                    "-o", ref], check=True, stdout=subprocess.DEVNULL)
    want[name] = open(ref, "rb").read()
rng = random.Random(13)
for r in range(16):
    name = f"shard_00000{r % 4}.tar"
    start, done, errors = threading.Barrier(8), threading.Barrier(8), []
    def reader(delay):
        try:
            start.wait(10)
            time.sleep(delay)  # (spreads the opens over a fill; nothing waits on it)
            with open(os.path.join(root, name), "rb") as f:
                if f.read() != want[name]: errors.append(f"{name}: bytes differ")
                done.wait(10)  # every open overlaps the others
        except Exception as e:
            errors.append(f"{name}: {e!r}")
    threads = [threading.Thread(target=reader, args=(rng.uniform(0, 0.004),)) for _ in range(8)]
    for t in threads: t.start()
    for t in threads: t.join()
    if errors: sys.exit(f"round {r}: " + "; ".join(sorted(set(errors))))
PY
(( $(opens filled) >= 1 )) || fail "no concurrent open was passed through (filled $(opens filled), shared $(opens shared), page_cache $(opens page_cache))"
pass "8 opens at once of a cached file, room for one fill, 16 rounds: no EIO, bytes exact (filled $(opens filled), shared $(opens shared), page cache $(opens page_cache))"
umount "$mnt"; expect_daemon_gone

# The defaults (--passthrough-pool auto): an eighth of --cache-size, taken from it.
: >"$tmp/daemon.err"
VALKYRIE_LOG_LEVEL=info VALKYRIE_PASSTHROUGH_POOL= start_valkyrie data "$url" --cache-size 256MiB --lookahead 1
grep -q "FUSE passthrough on" "$tmp/daemon.err" || { cat "$tmp/daemon.err"; fail "passthrough is not on by default"; }
grep -q '"passthrough_pool_bytes":33554432' "$tmp/daemon.err" || { cat "$tmp/daemon.err"; fail "the default pool is not 32 MiB of 256"; }
verify big/shard_000002.tar
settle
verify big/shard_000002.tar
expect filled 1
pass "by default an eighth of --cache-size is the pool, and a cached object is passed through"
umount "$mnt"; expect_daemon_gone

# auto with a --manifest that reads its objects again over more than the chunk cache holds
# beside the pool (32 MiB of 1 MiB chunks twice; a 32 MiB cache: a 4 MiB pool would leave 28):
# the pool's room goes to the chunk cache, and the mount line says why. One pass keeps the pool.
for k in 0 1 2 3; do echo "big/shard_00000$k.tar"; done >"$tmp/once.txt"
echo "huge/shard_000000.tar" >>"$tmp/once.txt"
cat "$tmp/once.txt" "$tmp/once.txt" >"$tmp/twice.txt"
: >"$tmp/daemon.err"
VALKYRIE_LOG_LEVEL=info VALKYRIE_PASSTHROUGH_POOL= start_valkyrie data "$url" --cache-size 32MiB \
  --chunk-size 1MiB --manifest "$tmp/twice.txt"
grep -q '"passthrough":"off: the training order reads 32.0 MiB again of 32.0 MiB of objects' "$tmp/daemon.err" ||
  { cat "$tmp/daemon.err"; fail "an order read twice over twice the cache kept the pool"; }
grep -q '"passthrough_pool_bytes":0' "$tmp/daemon.err" || { cat "$tmp/daemon.err"; fail "the pool is not 0"; }
verify big/shard_000001.tar
verify huge/shard_000000.tar
pass "auto, an order read twice over more than the cache: no pool, bytes exact"
umount "$mnt"; expect_daemon_gone
: >"$tmp/daemon.err"
VALKYRIE_LOG_LEVEL=info VALKYRIE_PASSTHROUGH_POOL= start_valkyrie data "$url" --cache-size 32MiB \
  --chunk-size 1MiB --manifest "$tmp/once.txt"
grep -q '"passthrough_pool_bytes":4194304' "$tmp/daemon.err" || { cat "$tmp/daemon.err"; fail "one pass lost the pool"; }
grep -q '"passthrough":"asked of the kernel"' "$tmp/daemon.err" || { cat "$tmp/daemon.err"; fail "one pass: passthrough not asked"; }
pass "auto, the same order read once: the pool stays (4 MiB of 32)"
umount "$mnt"; expect_daemon_gone
# auto with a --manifest of objects no backing file takes (all under 1 MiB): no pool either.
printf 'small/shard_000000.tar\nsmall/shard_000001.tar\n' >"$tmp/small.txt"
: >"$tmp/daemon.err"
VALKYRIE_LOG_LEVEL=info VALKYRIE_PASSTHROUGH_POOL= start_valkyrie data "$url" --cache-size 256MiB \
  --manifest "$tmp/small.txt"
grep -q '"passthrough":"off: no object of the training order is of a size a backing file takes' "$tmp/daemon.err" ||
  { cat "$tmp/daemon.err"; fail "an order of small objects kept the pool"; }
verify small/shard_000001.tar
pass "auto, an order of objects under 1 MiB: no pool, bytes exact"
umount "$mnt"; expect_daemon_gone

# --passthrough-pool 0: nothing asks the kernel for passthrough (on /dev/fuse; the own decoder
# reads the requests, as direct I/O above 40 MiB needs: mount-sim-libfuse covers libfuse's loop).
: >"$tmp/daemon.err"
VALKYRIE_LOG_LEVEL=info start_valkyrie data "$url" --cache-size 256MiB --passthrough-pool 0
verify big/shard_000002.tar
settle
verify big/shard_000002.tar
grep -q "FUSE passthrough on" "$tmp/daemon.err" && fail "--passthrough-pool 0 turned passthrough on"
grep -q '"passthrough":"off: --passthrough-pool 0"' "$tmp/daemon.err" || { cat "$tmp/daemon.err"; fail "the mount line does not say passthrough is off"; }
pass "--passthrough-pool 0: off, and bytes exact through the page cache"
umount "$mnt"; expect_daemon_gone
