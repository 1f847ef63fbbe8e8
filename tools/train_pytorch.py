#!/usr/bin/env python3
"""A PyTorch training loop over tar shards: is the GPU kept busy?

DataLoader workers read tar shards (WebDataset layout: one member per sample) either from a
mounted directory (valkyrie, s3fs, ...) or directly from S3 with one streaming GET per shard
(the baseline: what `aws s3 cp - | tar` pipelines do). The main process runs a fixed GPU step
per batch (matrix multiplications calibrated to --step-ms) and measures, with CUDA events, how
much of the wall time the GPU spent computing.

  # 1. shards: real tar files (served by valkyrie-s3sim --data DIR, bucket = subdirectory)
  tools/train_pytorch.py make-shards /srv/sim/train-bucket/shards --shards 64 --shard-size 256MiB
  # 2. the same loop through a mount, and directly over S3
  tools/train_pytorch.py run --dir /mnt/valkyrie/shards --workers 8 --step-ms 100 --epochs 2 --shuffle --order-hint
  tools/train_pytorch.py run --endpoint http://127.0.0.1:9000 --bucket train-bucket --prefix shards/ ...

Output: one JSON line per run (gpu_busy, wall time, samples/s, bytes/s, per-epoch figures).
`run` needs torch (Debian: python3-torch); without CUDA the step is a sleep of --step-ms (the
GPU's time, during which the host is free) and the figure is the compute-busy fraction of that
sleep. `make-shards` needs only the standard library. tools/bench-pytorch.sh runs the comparison.
"""
import argparse
import datetime
import hashlib
import hmac
import io
import json
import os
import random
import sys
import tarfile
import time
import urllib.parse
import urllib.request

MiB = 1 << 20


def parse_size(text):
    t = text.strip().lower()
    for suffix, mult in (("gib", 1 << 30), ("mib", MiB), ("kib", 1 << 10), ("g", 1 << 30), ("m", MiB), ("k", 1 << 10)):
        if t.endswith(suffix):
            return int(float(t[: -len(suffix)]) * mult)
    return int(t)


# ---- shards ---------------------------------------------------------------------------------
def make_shards(args):
    os.makedirs(args.dir, exist_ok=True)
    rng = random.Random(args.seed)
    per_shard = max(1, args.shard_size // args.sample_size)
    for s in range(args.shards):
        path = os.path.join(args.dir, f"shard_{s:06d}.tar")
        with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
            for i in range(per_shard):
                data = rng.randbytes(args.sample_size)
                info = tarfile.TarInfo(f"{s:06d}_{i:06d}.bin")
                info.size = len(data)
                info.mtime = 0
                tar.addfile(info, io.BytesIO(data))
        print(path, os.path.getsize(path))


# ---- direct S3 (the baseline): SigV4 with the standard library ------------------------------
class S3Reader:
    """One streaming GET per object, signed with SigV4 (credentials from AWS_* variables)."""

    def __init__(self, endpoint, bucket, region):
        self.endpoint = endpoint.rstrip("/")
        self.bucket = bucket
        self.region = region
        self.key_id = os.environ.get("AWS_ACCESS_KEY_ID", "")
        self.secret = os.environ.get("AWS_SECRET_ACCESS_KEY", "")
        self.token = os.environ.get("AWS_SESSION_TOKEN", "")

    def _signed(self, method, key, query=None):
        url = urllib.parse.urlsplit(self.endpoint)
        path = "/" + self.bucket + ("/" + urllib.parse.quote(key, safe="/~") if key else "")
        q = sorted((urllib.parse.quote(k, safe="~"), urllib.parse.quote(v, safe="~")) for k, v in (query or {}).items())
        canonical_query = "&".join(f"{k}={v}" for k, v in q)
        now = datetime.datetime.now(datetime.timezone.utc)
        amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        payload = "UNSIGNED-PAYLOAD"
        headers = {"host": url.netloc, "x-amz-content-sha256": payload, "x-amz-date": amz_date}
        if self.token:
            headers["x-amz-security-token"] = self.token
        signed = ";".join(sorted(headers))
        canonical = "\n".join([method, path, canonical_query,
                               "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)), signed, payload])
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        k = ("AWS4" + self.secret).encode()
        for part in (day, self.region, "s3", "aws4_request"):
            k = hmac.new(k, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={self.key_id}/{scope}, "
                                    f"SignedHeaders={signed}, Signature={signature}")
        full = self.endpoint + path + ("?" + canonical_query if canonical_query else "")
        return urllib.request.Request(full, method=method, headers={k: v for k, v in headers.items() if k != "host"})

    def open(self, key):
        return urllib.request.urlopen(self._signed("GET", key), timeout=60)

    def list(self, prefix):
        import xml.etree.ElementTree as ET
        keys, token = [], None
        while True:
            q = {"list-type": "2", "prefix": prefix}
            if token:
                q["continuation-token"] = token
            with urllib.request.urlopen(self._signed("GET", "", q), timeout=60) as r:
                root = ET.fromstring(r.read())
            ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
            keys += [c.find(ns + "Key").text for c in root.findall(ns + "Contents")]
            if root.findtext(ns + "IsTruncated") != "true":
                return sorted(k for k in keys if k.endswith(".tar"))
            token = root.findtext(ns + "NextContinuationToken")


class CountingReader(io.RawIOBase):
    """Counts the bytes a tar reader pulls (shared with the main process through a Value)."""

    def __init__(self, f, counter):
        self.f, self.counter = f, counter

    def readable(self):
        return True

    def readinto(self, b):
        n = self.f.readinto(b)
        if n:
            with self.counter.get_lock():
                self.counter.value += n
        return n


# ---- the training loop ----------------------------------------------------------------------
def run(args):
    import torch
    from torch.utils.data import DataLoader, IterableDataset, get_worker_info

    if args.dir:
        shards = sorted(os.path.join(args.dir, n) for n in os.listdir(args.dir) if n.endswith(".tar"))
        source = f"dir {args.dir}"
    else:
        s3 = S3Reader(args.endpoint, args.bucket, args.region)
        shards = s3.list(args.prefix)
        source = f"direct S3 {args.endpoint}/{args.bucket}/{args.prefix}"
    if not shards:
        sys.exit("no .tar shards found")
    bytes_read = torch.multiprocessing.Value("Q", 0)
    order_hint = None
    if args.order_hint:
        if not args.dir:
            sys.exit("--order-hint needs --dir (a valkyrie mount)")
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import valkyrie_order  # tools/valkyrie_order.py, or the installed module
        order_hint = valkyrie_order

    def epoch_order(epoch):
        """The shards of one epoch: a new shuffle per epoch, as a sampler's set_epoch does."""
        order = list(shards)
        if args.shuffle:
            random.Random(args.seed * 1000 + epoch).shuffle(order)
        return order

    class Shards(IterableDataset):
        order = shards  # set before each epoch; workers start afresh every epoch and see it

        def __iter__(self):
            info = get_worker_info()
            mine = self.order[info.id:: info.num_workers] if info else self.order
            reader = None if args.dir else S3Reader(args.endpoint, args.bucket, args.region)
            for shard in mine:
                raw = open(shard, "rb", buffering=0) if args.dir else reader.open(shard)
                with raw, tarfile.open(fileobj=io.BufferedReader(CountingReader(raw, bytes_read), MiB), mode="r|") as tar:
                    for member in tar:
                        if member.isfile():
                            data = tar.extractfile(member).read()
                            # A "decoded sample": the first sample_elems bytes as a uint8 tensor.
                            yield torch.frombuffer(bytearray(data[: args.sample_elems]), dtype=torch.uint8)

    dataset = Shards()
    loader = DataLoader(dataset, batch_size=args.batch_size, num_workers=args.workers, pin_memory=True,
                        prefetch_factor=args.prefetch_factor if args.workers else None, persistent_workers=False)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    weight = torch.randn(args.matrix, args.matrix, device=device)

    def gpu_step(batch):
        x = batch.to(device, non_blocking=True).float()[:, : args.matrix]
        x = torch.nn.functional.pad(x, (0, args.matrix - x.shape[1]))
        for _ in range(iters):
            x = torch.tanh(x @ weight)
        return x.sum()

    # Calibrate: how many matmuls make one step of --step-ms on this GPU.
    iters = 1
    if cuda:
        probe = torch.zeros(args.batch_size, args.sample_elems, dtype=torch.uint8)
        for _ in range(3):
            gpu_step(probe)
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        iters = 50
        start.record()
        gpu_step(probe)
        end.record()
        torch.cuda.synchronize()
        iters = max(1, int(round(50 * args.step_ms / start.elapsed_time(end))))

    result = {"source": source + (" + order hint" if order_hint else ""), "shards": len(shards),
              "workers": args.workers, "batch_size": args.batch_size,
              "step_ms": args.step_ms, "device": torch.cuda.get_device_name() if cuda else "cpu (sleep step)",
              "epochs": []}
    total_busy = total_wall = 0.0
    for epoch in range(args.epochs):
        events, busy_cpu = [], 0.0
        samples = 0
        b0 = bytes_read.value
        t0 = time.monotonic()
        dataset.order = epoch_order(epoch)
        if args.drop_page_cache:
            # A dataset larger than the node's memory: no epoch finds the last one in the page cache.
            os.sync()
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("3\n")
        if order_hint:
            # The workers read order[i::workers] side by side: roughly the list's own order.
            order_hint.write_order(dataset.order)
        for batch in loader:
            samples += batch.shape[0]
            if cuda:
                s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                s.record()
                gpu_step(batch)
                e.record()
                events.append((s, e))
            else:
                ts = time.monotonic()
                time.sleep(args.step_ms / 1000)
                busy_cpu += time.monotonic() - ts
        if cuda:
            torch.cuda.synchronize()
        wall = time.monotonic() - t0
        busy = sum(s.elapsed_time(e) for s, e in events) / 1000 if cuda else busy_cpu
        total_busy += busy
        total_wall += wall
        nbytes = bytes_read.value - b0
        result["epochs"].append({"epoch": epoch + 1, "wall_s": round(wall, 3), "gpu_busy": round(busy / wall, 4),
                                 "samples": samples, "samples_per_s": round(samples / wall, 1),
                                 "mb_per_s": round(nbytes / wall / 1e6, 1)})
        print(f"epoch {epoch + 1}: gpu busy {busy / wall:.1%}, {samples / wall:.0f} samples/s, "
              f"{nbytes / wall / 1e6:.0f} MB/s, {wall:.1f} s", file=sys.stderr)
    result["gpu_busy"] = round(total_busy / total_wall, 4)
    print(json.dumps(result))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make-shards", help="write tar shards of random samples")
    m.add_argument("dir")
    m.add_argument("--shards", type=int, default=64)
    m.add_argument("--shard-size", type=parse_size, default=parse_size("256MiB"))
    m.add_argument("--sample-size", type=parse_size, default=parse_size("512KiB"))
    m.add_argument("--seed", type=int, default=1)
    r = sub.add_parser("run", help="the training loop")
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument("--dir", help="directory of .tar shards (a mount)")
    src.add_argument("--endpoint", help="S3 endpoint: read the shards directly (baseline)")
    r.add_argument("--bucket")
    r.add_argument("--prefix", default="")
    r.add_argument("--region", default=os.environ.get("AWS_REGION", "us-east-1"))
    r.add_argument("--workers", type=int, default=8, help="DataLoader worker processes")
    r.add_argument("--prefetch-factor", type=int, default=4)
    r.add_argument("--batch-size", type=int, default=32)
    r.add_argument("--sample-elems", type=int, default=4096, help="bytes of each sample fed to the GPU")
    r.add_argument("--matrix", type=int, default=4096, help="side of the step's square matrices")
    r.add_argument("--step-ms", type=float, default=100, help="GPU time per batch")
    r.add_argument("--epochs", type=int, default=2)
    r.add_argument("--shuffle", action="store_true", help="a new shuffle of the shards every epoch (fixed seeds)")
    r.add_argument("--drop-page-cache", action="store_true",
                   help="drop the kernel page cache before each epoch (root), as if the dataset outgrew memory")
    r.add_argument("--order-hint", action="store_true",
                   help="before each epoch, hand its shard order to the valkyrie mount (/.valkyrie/order)")
    r.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    if args.cmd == "make-shards":
        make_shards(args)
    else:
        if args.endpoint and not args.bucket:
            p.error("--endpoint needs --bucket")
        run(args)


if __name__ == "__main__":
    main()
