#!/usr/bin/env bash
# tools/train_pytorch.py with real torch (DataLoader worker processes over tar shards): through a
# valkyrie mount with a new shuffle per epoch handed over as live order hints, and directly over
# S3. Every sample of every epoch arrives on both paths, each epoch's order reached the mount,
# and the figures are there. Exit 77 without /dev/fuse, root or torch.
set -euo pipefail
[[ -c /dev/fuse && $(id -u) == 0 ]] || { echo "no /dev/fuse or not root: skipped"; exit 77; }
/usr/bin/python3 -c 'import torch' 2>/dev/null || { echo "no torch (python3-torch): skipped"; exit 77; }
tmp=$(mktemp -d /tmp/valkyrie-torch-test.XXXXXX)
mnt="$tmp/mnt"; mkdir -p "$mnt"
source "$SOURCE_ROOT/tests/fuse/lib.sh"
export AWS_ACCESS_KEY_ID=AKIDTORCHTEST AWS_SECRET_ACCESS_KEY=torch-test-secret AWS_EC2_METADATA_DISABLED=true
train="$SOURCE_ROOT/tools/train_pytorch.py"
/usr/bin/python3 "$train" make-shards "$tmp/data/train/shards" --shards 6 --shard-size 4MiB --sample-size 256KiB >/dev/null
start_sim --data "$tmp/data" --first-byte-latency 5ms
VALKYRIE_LOG_LEVEL=info start_valkyrie train "$url" --cache-size 64MiB --lookahead 1
port=$(metrics_port)
common=(--workers 2 --batch-size 8 --step-ms 5 --epochs 2 --shuffle --sample-elems 1024 --matrix 64)
/usr/bin/python3 "$train" run --dir "$mnt/shards" --order-hint "${common[@]}" >"$tmp/mount.json" 2>"$tmp/mount.err" ||
  { cat "$tmp/mount.err"; fail "training through the mount"; }
/usr/bin/python3 "$train" run --endpoint "$url" --bucket train --prefix shards/ "${common[@]}" >"$tmp/direct.json" \
  2>"$tmp/direct.err" || { cat "$tmp/direct.err"; fail "training directly over S3"; }
/usr/bin/python3 - "$tmp/mount.json" "$tmp/direct.json" <<'PY' || fail "figures"
import json, sys
for path in sys.argv[1:]:
    r = json.load(open(path))
    assert r["shards"] == 6, r
    assert len(r["epochs"]) == 2, r
    for e in r["epochs"]:
        assert e["samples"] == r["epochs"][0]["samples"] > 0, r
        assert 0 < e["gpu_busy"] <= 1 and e["samples_per_s"] > 0 and e["mb_per_s"] > 0, e
    print(path.rsplit("/", 1)[1], r["source"], [(e["samples"], e["gpu_busy"]) for e in r["epochs"]])
a, b = (json.load(open(p)) for p in sys.argv[1:])
assert a["epochs"][0]["samples"] == b["epochs"][0]["samples"], "the mount and S3 gave different sample counts"
assert "order hint" in a["source"], a["source"]
PY
samples=$(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['epochs'][0]['samples'])" "$tmp/mount.json")
expected=$(/usr/bin/python3 -c "
import tarfile, glob
print(sum(len(tarfile.open(p).getmembers()) for p in glob.glob('$tmp/data/train/shards/*.tar')))")
[[ $samples == "$expected" ]] || fail "$samples samples per epoch, the shards hold $expected"
pass "every sample of both epochs arrived, through the mount and directly over S3 ($samples per epoch)"
set_count=$(curl -s "127.0.0.1:$port/metrics" | grep '^valkyrie_order_updates_total{result="set"}' | awk '{print $2}')
[[ $set_count == 2 ]] || fail "order hints set: $set_count, expected one per epoch"
last=$(grep -v '^#' "$mnt/.valkyrie/order" | tr '\n' ' ')
want=$(/usr/bin/python3 -c "
import random
s = [f'shards/shard_{i:06d}.tar' for i in range(6)]
random.Random(7 * 1000 + 1).shuffle(s)
print(' '.join(s) + ' ')")
[[ $last == "$want" ]] || fail "the mount's order is '$last', epoch 2's shuffle is '$want'"
pass "each epoch's shuffle reached the mount as a live order hint"
umount "$mnt"; expect_daemon_gone
