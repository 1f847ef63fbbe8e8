#!/usr/bin/env python3
"""Readers for tools/bench-soak.sh that check what they read against valkyrie-s3sim's synthetic
content (tools/common/synthetic.{hpp,cpp}: byte i of an object is splitmix64 of its seed, the
FNV-1a hash of "bucket/key", and i / 8), so any range can be checked without a reference copy.

  soak_readers.py random MOUNT BUCKET END_EPOCH_S SEED    256 KiB reads at random offsets of the shards
  soak_readers.py small MOUNT BUCKET END_EPOCH_S SEED     whole small objects in a shuffled order, again

Prints one line per read: "<epoch s> ok|MISMATCH|ERROR <key> [detail]".
"""
import os
import random
import sys
import time

M = (1 << 64) - 1


def seed_for(bucket, key):
    h = 0xcbf29ce484222325
    for c in f"{bucket}/{key}".encode():
        h = ((h ^ c) * 0x100000001b3) & M
    return h


def content(seed, offset, length):
    first, last = offset // 8, (offset + length + 7) // 8
    out = bytearray()
    for i in range(first, last):
        z = (seed + (i + 1) * 0x9E3779B97F4A7C15) & M
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
        out += (z ^ (z >> 31)).to_bytes(8, "little")
    skip = offset - first * 8
    return bytes(out[skip:skip + length])


def check(key, data, seed, offset):
    return "ok" if data == content(seed, offset, len(data)) else "MISMATCH"


def main():
    mode, mnt, bucket, end, seed = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
    rng = random.Random(seed)
    sub = "small" if mode == "small" else ""
    names = sorted(n for n in os.listdir(os.path.join(mnt, sub)) if n.endswith(".tar"))
    keys = [f"{sub}/{n}" if sub else n for n in names]
    while time.time() < end:
        if mode == "small":
            rng.shuffle(keys)
            batch = keys
        else:
            batch = [rng.choice(keys) for _ in range(64)]
        for key in batch:
            if time.time() >= end:
                break
            path = os.path.join(mnt, key)
            try:
                fd = os.open(path, os.O_RDONLY)
                try:
                    if mode == "small":
                        offset, data = 0, b""
                        while chunk := os.read(fd, 1 << 20):
                            data += chunk
                    else:
                        size = os.fstat(fd).st_size
                        offset = rng.randrange(0, size - (256 << 10)) & ~4095
                        data = os.pread(fd, 256 << 10, offset)
                finally:
                    os.close(fd)
                print(f"{int(time.time())} {check(key, data, seed_for(bucket, key), offset)} {key} {offset}", flush=True)
            except OSError as e:
                print(f"{int(time.time())} ERROR {key} {e}", flush=True)


if __name__ == "__main__":
    main()
