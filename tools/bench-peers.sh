#!/usr/bin/env bash
# The peer comparison of docs/benchmarks.md: one valkyrie-s3sim (the S3 link model, synthetic
# dataset), and valkyrie-bench run against it through valkyrie, s3fs and rclone (Debian
# packages), each mounted read-only on the same bucket; the direct-S3 baseline comes with each
# run. Prints one markdown table of the figures; the JSON of each run is kept in OUT_DIR.
# Usage: tools/bench-peers.sh [BUILD_DIR] [OUT_DIR]   (root, /dev/fuse; apt-get install s3fs rclone)
set -euo pipefail
cd "$(dirname "$0")/.."
build=$(realpath "${1:-build}")
out=$(realpath -m "${2:-bench-peers}")
mkdir -p "$out"
for tool in s3fs rclone; do command -v $tool >/dev/null || { echo "install $tool (apt-get install $tool)" >&2; exit 2; }; done
export AWS_ACCESS_KEY_ID=AKIDPEERS AWS_SECRET_ACCESS_KEY=peers-secret AWS_EC2_METADATA_DISABLED=true
tmp=$(mktemp -d /tmp/valkyrie-peers.XXXXXX)
mnt="$tmp/mnt"; mkdir -p "$mnt"
sim=
cleanup() {
  set +e
  mountpoint -q "$mnt" && { umount "$mnt" || umount -l "$mnt"; }
  [[ -n $sim ]] && kill "$sim"
  wait 2>/dev/null; rm -rf "$tmp"
}
trap cleanup EXIT
link=(--first-byte-latency 30ms --conn-bandwidth 64MiB --total-bandwidth 1GiB)
"$build/tools/valkyrie-s3sim" --listen 127.0.0.1:0 --credentials "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
  --synthetic bench:16:64MiB:train/ --synthetic bench:10000:1KiB:many/ "${link[@]}" --log-level warn \
  >"$tmp/sim.out" 2>"$tmp/sim.err" &
sim=$!
for _ in $(seq 100); do [[ -s $tmp/sim.out ]] && break; sleep 0.05; done
url=$(head -1 "$tmp/sim.out" | awk '{print $3}')
bench() { "$build/tools/valkyrie-bench" --endpoint "$url" --bucket bench "${link[@]}" --quiet "$@"; }

echo "== valkyrie" >&2
bench --json "$out/valkyrie.json" --plot "$out/valkyrie.svg" >&2

echo "== s3fs $(s3fs --version 2>&1 | grep -o 'V[0-9.]*' | head -1)" >&2
echo "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" >"$tmp/passwd"; chmod 600 "$tmp/passwd"
s3fs bench "$mnt" -o url="$url" -o use_path_request_style -o passwd_file="$tmp/passwd" -o ro -o endpoint=us-east-1
for _ in $(seq 100); do mountpoint -q "$mnt" && break; sleep 0.05; done
bench --dir "$mnt" --json "$out/s3fs.json" --plot "$out/s3fs.svg" >&2 || echo "(s3fs run: exit $?)" >&2
umount "$mnt"

echo "== rclone $(rclone version | head -1 | awk '{print $2}')" >&2
# rclone's AWS SDK refuses AWS_CA_BUNDLE with its own transport (the endpoint is plain http).
# --use-server-modtime: without it rclone HEADs every object for its mtime (ls -l of 10,000
# objects then takes ~5 minutes at 30 ms per request).
env -u AWS_CA_BUNDLE rclone mount \
  ":s3,provider=Other,env_auth=true,endpoint='$url',force_path_style=true:bench" "$mnt" \
  --read-only --use-server-modtime --daemon --log-file "$tmp/rclone.log"
for _ in $(seq 100); do mountpoint -q "$mnt" && break; sleep 0.05; done
bench --dir "$mnt" --json "$out/rclone.json" --plot "$out/rclone.svg" >&2 || echo "(rclone run: exit $?)" >&2
umount "$mnt"

/usr/bin/python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
runs = [(n, json.load(open(os.path.join(out, n + ".json")))) for n in ("valkyrie", "s3fs", "rclone")
        if os.path.exists(os.path.join(out, n + ".json"))]
def g(r, path):
    v = r["scenarios"]
    top = v.get(path.split(".")[0])
    if isinstance(top, dict) and "error" in top:
        return "failed: " + top["error"].split(" (")[0]
    for k in path.split("."):
        if isinstance(v, list): v = v[int(k)]
        elif isinstance(v, dict) and k in v: v = v[k]
        else: return None
    return v
rows = [("direct S3, one GET per object (MB/s)", "baseline-single.mb_per_s"),
        ("direct S3, 16 ranged GETs (MB/s)", "baseline-parallel.mb_per_s"),
        ("cold sequential read (MB/s)", "cold.mb_per_s"), ("warm re-read (MB/s)", "warm.mb_per_s"),
        ("time to first byte cold, p50 (ms)", "ttfb.cold.p50_ms"), ("time to first byte cold, p99 (ms)", "ttfb.cold.p99_ms"),
        ("time to first byte warm, p50 (ms)", "ttfb.warm.p50_ms"),
        ("training, listing order: compute-busy (%)", "training-listing-order.compute_busy_pct"),
        ("training, shuffled: compute-busy (%)", None),
        ("training, shuffled, live order hint: compute-busy (%)", "training-order-hint.compute_busy_pct"),
        ("training, local copy (bound): compute-busy (%)", "training-local-copy.compute_busy_pct"),
        ("epoch 2, cache 1/2 dataset: bytes without S3", "epochs.per_epoch.1.s3_byte_hit_ratio"),
        ("epoch 2 (MB/s)", "epochs.per_epoch.1.mb_per_s"),
        ("random 256 KiB reads (IOPS)", "random.iops"), ("random 256 KiB, p99 (ms)", "random.p99_ms"),
        ("ls -l of 10,000 objects (s)", "ls.seconds"), ("ls -l: S3 requests", "ls.s3_requests"),
        ("integrity: mismatches", None)]
print("| figure | " + " | ".join(n for n, _ in runs) + " |")
print("| --- |" + " --- |" * len(runs))
for label, path in rows:
    cells = []
    for n, r in runs:
        if label.startswith("training, shuffled"):
            v = g(r, "training-manifest.compute_busy_pct") or g(r, "training-shuffled.compute_busy_pct")
        elif label.startswith("integrity"):
            v = len(r["integrity"]["mismatches"])
        else:
            v = g(r, path)
        if "without S3" in label and isinstance(v, float):
            v = f"{v:.2f}"
        cells.append("n/a" if v is None else v if isinstance(v, str) else (f"{v:,.1f}" if isinstance(v, float) else f"{v:,}"))
    print(f"| {label} | " + " | ".join(cells) + " |")
PY
