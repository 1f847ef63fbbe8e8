#!/usr/bin/env bash
# The README's first command: installs what is needed (Debian 12, as root), builds, starts
# valkyrie-s3sim with a synthetic dataset and the S3 link model, and shows the S3 client at
# work: a listing, a HEAD, one plain GET and parallel ranged GETs with every byte verified.
# (Until the mount lands, this is the S3 layer's demo.)
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
[[ -f build/build.ninja ]] || meson setup build --wrap-mode=nodownload >/dev/null
meson compile -C build >/dev/null

export AWS_ACCESS_KEY_ID=AKIDDEMO AWS_SECRET_ACCESS_KEY=demo-secret AWS_EC2_METADATA_DISABLED=true
tmp=$(mktemp -d)
build/tools/valkyrie-s3sim --listen 127.0.0.1:0 --credentials "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
  --synthetic demo:8:256MiB:train/ --first-byte-latency 30ms --conn-bandwidth 64MiB \
  --total-bandwidth 1GiB >"$tmp/sim.out" &
sim=$!
trap 'kill $sim 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 100); do [[ -s $tmp/sim.out ]] && break; sleep 0.05; done
url=$(head -1 "$tmp/sim.out" | awk '{print $3}')
s3() { build/tools/valkyrie-s3 --endpoint "$url" --bucket demo "$@"; }

echo "valkyrie-s3sim at $url: bucket 'demo', 8 x 256 MiB, link model 30 ms / 64 MiB/s per connection / 1 GiB/s"
echo; echo "\$ valkyrie-s3 ls --prefix train/"; s3 ls --prefix train/
echo; echo "\$ valkyrie-s3 head train/shard_000000.tar"; s3 head train/shard_000000.tar
echo; echo "one GET, like a plain download:"
s3 get train/shard_000000.tar --parallel 1 --part-size 0 --verify-synthetic
echo; echo "32 parallel 8 MiB ranged GETs:"
s3 get train/shard_000001.tar --parallel 32 --part-size 8MiB --verify-synthetic
