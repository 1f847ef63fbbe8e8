#!/usr/bin/env bash
# The PyTorch training loop (tools/train_pytorch.py) over tar shards served by valkyrie-s3sim
# behind the S3 link model, read: directly over S3 (the baseline), through valkyrie without and
# with live order hints (a new shuffle every epoch, handed over through /.valkyrie/order), with
# a cache that holds the whole dataset and with one of half of it, and from a local tmpfs copy
# (the bound). Prints a markdown table: GPU-busy per epoch (CUDA events; on a machine without
# CUDA the step is a sleep and this is its share of wall time), samples/s, and the ratio of
# epoch-2 samples/s to the direct-S3 baseline of the same run.
# Usage: tools/bench-pytorch.sh [BUILD_DIR]   (root, /dev/fuse, python3-torch)
# Sizes (environment): SHARDS=32 SHARD_SIZE=32MiB SAMPLE_SIZE=256KiB BATCH=32 WORKERS=2
#   TOTAL_BW=256MiB (the link; per connection 64MiB, first byte 30ms) EPOCHS=2.
#   STEP_MS defaults to the time the link needs for one batch at 80% of TOTAL_BW.
#   VALKYRIE_ARGS: more valkyrie flags (e.g. "--lookahead 4").
set -euo pipefail
cd "$(dirname "$0")/.."
build=$(realpath "${1:-build}")
py=/usr/bin/python3
$py -c 'import torch' 2>/dev/null || { echo "no torch for $py (Debian: apt install python3-torch)" >&2; exit 1; }
SHARDS=${SHARDS:-32} SHARD_SIZE=${SHARD_SIZE:-32MiB} SAMPLE_SIZE=${SAMPLE_SIZE:-256KiB} BATCH=${BATCH:-32}
WORKERS=${WORKERS:-2} TOTAL_BW=${TOTAL_BW:-256MiB} EPOCHS=${EPOCHS:-2}
bytes() { $py -c "import sys; sys.path.insert(0, 'tools'); import train_pytorch as t; print(t.parse_size('$1'))"; }
shard_bytes=$(bytes "$SHARD_SIZE") sample_bytes=$(bytes "$SAMPLE_SIZE") bw_bytes=$(bytes "$TOTAL_BW")
STEP_MS=${STEP_MS:-$($py -c "print(round($BATCH * $sample_bytes / (0.8 * $bw_bytes) * 1000, 1))")}
export AWS_ACCESS_KEY_ID=AKIDTORCH AWS_SECRET_ACCESS_KEY=torch-secret AWS_EC2_METADATA_DISABLED=true
source tools/bench-lib.sh
bench_init pytorch
mkdir -p "$tmp/data/train"
shm=/dev/shm/valkyrie-pytorch-copy
bench_remove_on_exit "$shm"

$py tools/train_pytorch.py make-shards "$tmp/data/train/shards" --shards "$SHARDS" --shard-size "$SHARD_SIZE" \
  --sample-size "$SAMPLE_SIZE" >/dev/null
dataset_bytes=$(du -sb "$tmp/data/train/shards" | cut -f1)
bench_start_sim --data "$tmp/data" --first-byte-latency 30ms --conn-bandwidth 64MiB --total-bandwidth "$TOTAL_BW"

# The page cache is dropped before every epoch: datasets outgrow a node's memory, and otherwise
# epoch 2 would come from the kernel whatever the mount does.
loop=(--workers "$WORKERS" --batch-size "$BATCH" --step-ms "$STEP_MS" --epochs "$EPOCHS" --shuffle
      --sample-elems 4096 --matrix 1024 --drop-page-cache)
train() {  # label, then train_pytorch.py source arguments
  local label=$1
  shift
  $py tools/train_pytorch.py run "$@" "${loop[@]}" 2>/dev/null | tail -1 | sed "s/^{/{\"label\": \"$label\", /" >>"$tmp/results.jsonl"
}
echo "training over $SHARDS shards of $SHARD_SIZE ($((dataset_bytes >> 20)) MiB), step $STEP_MS ms per batch of $BATCH..." >&2
train "direct S3 (baseline)" --endpoint "$url" --bucket train --prefix shards/
half=$(( (dataset_bytes / 2) >> 20 ))MiB
whole=$(( (dataset_bytes * 2) >> 20 ))MiB
for cache in "$whole" "$half"; do
  for hint in no yes; do
    bench_mount train --cache-size "$cache" ${VALKYRIE_ARGS:-}
    flags=(); [[ $hint == yes ]] && flags=(--order-hint)
    train "valkyrie, cache $cache, order hint: $hint" --dir "$mnt/shards" "${flags[@]}"
    bench_unmount
  done
done
mkdir -p "$shm"; cp "$tmp"/data/train/shards/*.tar "$shm"/
train "local tmpfs copy (bound)" --dir "$shm"

$py - "$tmp/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
base = rows[0]["epochs"][-1]["samples_per_s"]
print(f"device: {rows[0]['device']}; {rows[0]['shards']} shards, {rows[0]['workers']} DataLoader workers, "
      f"batch {rows[0]['batch_size']}, step {rows[0]['step_ms']} ms\n")
epochs = len(rows[0]["epochs"])
print("| source | " + " | ".join(f"epoch {e + 1} busy" for e in range(epochs)) +
      " | last epoch samples/s | vs direct S3 |")
print("| --- |" + " --- |" * (epochs + 2))
for r in rows:
    last = r["epochs"][-1]["samples_per_s"]
    print(f"| {r['label']} | " + " | ".join(f"{e['gpu_busy']:.1%}" for e in r["epochs"]) +
          f" | {last:.0f} | {last / base:.2f}x |")
PY
