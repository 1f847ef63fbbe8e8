#!/usr/bin/env bash
# The README's first command (Debian 12, as root): installs what is needed, builds, starts
# valkyrie-s3sim with a synthetic dataset behind the S3 link model (30 ms first byte, 64 MiB/s
# per connection, 1 GiB/s total), mounts it with valkyrie, reads it cold and warm with the
# throughput of each, checks every byte, hands the mount a training order, and unmounts.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
[[ -f build/build.ninja ]] || meson setup build --wrap-mode=nodownload >/dev/null
meson compile -C build >/dev/null

export AWS_ACCESS_KEY_ID=AKIDDEMO AWS_SECRET_ACCESS_KEY=demo-secret AWS_EC2_METADATA_DISABLED=true
tmp=$(mktemp -d /tmp/valkyrie-demo.XXXXXX)
mnt="$tmp/mnt"; mkdir -p "$mnt"
sim=
cleanup() {
  mountpoint -q "$mnt" && umount "$mnt"
  [[ -n $sim ]] && kill "$sim" 2>/dev/null
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
build/tools/valkyrie-s3sim --listen 127.0.0.1:0 --credentials "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
  --synthetic demo:4:256MiB:train/ --first-byte-latency 30ms --conn-bandwidth 64MiB \
  --total-bandwidth 1GiB >"$tmp/sim.out" &
sim=$!
for _ in $(seq 100); do [[ -s $tmp/sim.out ]] && break; sleep 0.05; done
url=$(head -1 "$tmp/sim.out" | awk '{print $3}')
echo "valkyrie-s3sim at $url: bucket 'demo', 4 x 256 MiB under train/,"
echo "link model: 30 ms first byte, 64 MiB/s per connection, 1 GiB/s total"

echo; echo "\$ valkyrie --mount $mnt --bucket demo --endpoint $url --cache-size 2GiB"
build/src/cli/valkyrie --mount "$mnt" --bucket demo --endpoint "$url" --cache-size 2GiB --log-level warn
echo; echo "\$ ls -l $mnt/train"; ls -l "$mnt/train"

read_once() {  # label file
  local start end
  start=$(date +%s.%N)
  cat "$2" >/dev/null
  end=$(date +%s.%N)
  awk -v s="$start" -v e="$end" -v l="$1" 'BEGIN { printf "%-28s %7.1f MB/s\n", l, 268435456 / (e - s) / 1e6 }'
}
echo
read_once "cold read of shard_000000:" "$mnt/train/shard_000000.tar"
read_once "warm re-read (page cache):" "$mnt/train/shard_000000.tar"
read_once "cold read of shard_000001:" "$mnt/train/shard_000001.tar"
echo; echo -n "checking every byte of shard_000002.tar against the simulator's pattern... "
cp "$mnt/train/shard_000002.tar" /dev/null
build/tools/valkyrie-s3 --endpoint "$url" --bucket demo get train/shard_000002.tar -o "$tmp/ref" >/dev/null
cmp "$tmp/ref" "$mnt/train/shard_000002.tar" && echo "identical"
echo; echo "A data loader hands the mount its next epoch's order (live order hint):"
echo "\$ printf 'train/shard_000003.tar\\ntrain/shard_000000.tar\\n' | valkyrie-order $mnt -"
printf 'train/shard_000003.tar\ntrain/shard_000000.tar\n' | build/tools/valkyrie-order "$mnt" -
echo "\$ cat $mnt/.valkyrie/order"; cat "$mnt/.valkyrie/order"
echo; echo "\$ umount $mnt"; umount "$mnt"
echo "done"
