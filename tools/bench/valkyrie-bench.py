#!/usr/bin/env python3
"""valkyrie-bench: every headline claim of Valkyrie-FS, measured side by side in one run.

With no arguments: starts valkyrie-s3sim with a synthetic dataset behind the S3 link model
(30 ms first byte, 64 MiB/s per connection, 1 GiB/s total), mounts valkyrie on a temporary
directory (a fresh mount per scenario, so nothing is warm by accident), runs every scenario,
unmounts, prints a table, and exits 1 if any byte read differed from the source.

Scenarios (docs/benchmarks.md explains each figure):
  baseline-single   direct S3, one GET per object (as `aws s3 cp` of small files)
  baseline-parallel direct S3, 16 ranged GETs of 8 MiB in flight per object
  cold              sequential read of every shard through a fresh mount
  warm              the same again, on the same mount
  ttfb              time to the first 4 KiB of a file, cold and warm (p50, p99)
  training          read a shard, compute; compute-busy %, stall time and histogram;
                    in listing order without a manifest, in shuffled order with one, in
                    shuffled order handed over as a live order hint (/.valkyrie/order), and
                    over a local copy (the bound no filesystem can beat)
  epochs            two epochs in shuffled order with a manifest and a cache of half the
                    dataset: hit ratio per epoch
  random            random 256 KiB reads by 4 threads: IOPS and latency
  ls                `ls -l` of a directory of 10,000 objects: time and S3 requests

Elsewhere: --endpoint/--bucket/--prefix use a real S3 (or any S3-compatible server) instead
of the simulator; --dir PATH benchmarks a filesystem that is already mounted (s3fs, rclone,
mountpoint-s3) with the same scenarios. Every byte read is compared with a reference copy
fetched directly from S3 (with --dir and no endpoint: with the first read of it).
"""
import argparse
import bisect
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

MiB = 1 << 20
READ_SIZE = 1 * MiB


# ---------------------------------------------------------------------------------------------
# Small helpers
def parse_size(text):
    units = {"": 1, "k": 1 << 10, "kb": 1000, "kib": 1 << 10, "m": MiB, "mb": 1000**2, "mib": MiB,
             "g": 1 << 30, "gb": 1000**3, "gib": 1 << 30}
    t = text.strip().lower()
    num = t.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = t[len(num):]
    if not num or unit not in units:
        raise argparse.ArgumentTypeError(f"bad size '{text}' (examples: 64MiB, 1GiB)")
    return int(float(num) * units[unit])


def percentile(values, p):
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def ms(seconds):
    return None if seconds is None else round(seconds * 1000, 3)


def find_binary(name, build_subdir):
    """The project's binaries: $VALKYRIE_BUILD, next to this script (build tree or install), PATH."""
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = []
    if os.environ.get("VALKYRIE_BUILD"):
        candidates.append(os.path.join(os.environ["VALKYRIE_BUILD"], build_subdir, name))
    candidates += [os.path.join(here, "..", build_subdir, name), os.path.join(here, name),
                   os.path.join(here, "..", "..", "build", build_subdir, name)]
    for c in candidates:
        if os.access(c, os.X_OK):
            return os.path.abspath(c)
    found = shutil.which(name)
    if found:
        return found
    sys.exit(f"valkyrie-bench: cannot find {name} (build the project, or set VALKYRIE_BUILD)")


class Progress:
    """A one-line progress display on a terminal; silent otherwise."""

    def __init__(self, enabled):
        self.enabled = enabled and sys.stderr.isatty()
        self.total = 0
        self.done = 0

    def plan(self, total):
        self.total = total

    def step(self, label, fraction=None):
        if not self.enabled:
            return
        width = 30
        frac = (self.done + (fraction or 0)) / max(1, self.total)
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        sys.stderr.write(f"\r[{bar}] {frac:4.0%} {label[:50]:<50}")
        sys.stderr.flush()

    def next(self):
        self.done += 1

    def finish(self):
        if self.enabled:
            sys.stderr.write("\r" + " " * 92 + "\r")
            sys.stderr.flush()


class Recorder:
    """Bytes over time and stall intervals of one scenario, for the plot."""

    def __init__(self):
        self.start = time.monotonic()
        self.reads = []   # (t, bytes)
        self.stalls = []  # (t0, t1)
        self.lock = threading.Lock()

    def read(self, nbytes):
        with self.lock:
            self.reads.append((time.monotonic() - self.start, nbytes))

    def stall(self, t0, t1):
        with self.lock:
            self.stalls.append((t0 - self.start, t1 - self.start))

    def series(self, bins=60):
        if not self.reads:
            return {"t": [], "mb_per_s": [], "stalls": []}
        end = max(t for t, _ in self.reads)
        width = max(end / bins, 0.01)
        counts = [0] * (int(end / width) + 1)
        for t, n in self.reads:
            counts[min(len(counts) - 1, int(t / width))] += n
        return {"t": [round(i * width, 4) for i in range(len(counts))],
                "mb_per_s": [round(c / width / 1e6, 2) for c in counts],
                "stalls": [[round(a, 4), round(b, 4)] for a, b in self.stalls]}


class Verifier:
    """Compares every byte read with a reference copy of the object (fetched directly from S3, or
    the first read when there is no S3 to ask)."""

    def __init__(self):
        self.refs = {}  # name -> path of the reference copy
        self.fds = {}
        self.checked_bytes = 0
        self.mismatches = []
        self.lock = threading.Lock()

    def check(self, name, offset, data):
        """data: bytes or a memoryview of what was read at offset."""
        path = self.refs.get(name)
        if path is None:
            return
        with self.lock:
            fd = self.fds.get(path)
            if fd is None:
                fd = self.fds[path] = os.open(path, os.O_RDONLY)
        # bytes == bytes is one memcmp (memoryview comparison goes element by element).
        data = bytes(data)
        want = os.pread(fd, len(data), offset)
        got = len(want)
        ok = want == data
        with self.lock:
            self.checked_bytes += len(data)
            if not ok and len(self.mismatches) < 20:
                at = next((i for i in range(min(got, len(data))) if want[i] != data[i]), min(got, len(data)))
                self.mismatches.append({"file": name, "offset": offset + at,
                                        "expected_length": got, "got_length": len(data)})

    def close(self):
        for fd in self.fds.values():
            os.close(fd)
        self.fds = {}


# ---------------------------------------------------------------------------------------------
# The S3 side: the simulator, direct GETs, the simulator's counters
class S3:
    def __init__(self, args, tmp):
        self.args = args
        self.tmp = tmp
        self.sim = None
        self.url = args.endpoint
        self.bucket = args.bucket
        self.s3cli = find_binary("valkyrie-s3", "tools")
        self.env = dict(os.environ)

    def start_simulator(self):
        a = self.args
        self.bucket = "bench"
        self.env.update(AWS_ACCESS_KEY_ID="AKIDBENCH", AWS_SECRET_ACCESS_KEY="bench-secret",
                        AWS_EC2_METADATA_DISABLED="true")
        self.env.pop("AWS_SESSION_TOKEN", None)
        cmd = [find_binary("valkyrie-s3sim", "tools"), "--listen", "127.0.0.1:0",
               "--credentials", "AKIDBENCH:bench-secret",
               "--synthetic", f"bench:{a.shards}:{a.shard_size}:train/",
               "--synthetic", f"bench:{a.objects}:1KiB:many/",
               "--first-byte-latency", a.first_byte_latency, "--conn-bandwidth", a.conn_bandwidth,
               "--total-bandwidth", a.total_bandwidth, "--log-level", "warn"]
        if a.fault:
            for f in a.fault:
                cmd += ["--fault", f]
        self.sim = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open(os.path.join(self.tmp, "sim.err"), "w"),
                                    env=self.env, text=True)
        line = self.sim.stdout.readline()
        if not line:
            sys.exit("valkyrie-bench: valkyrie-s3sim did not start: " + open(os.path.join(self.tmp, "sim.err")).read())
        self.url = line.split()[2]

    def stop(self):
        if self.sim:
            self.sim.terminate()
            try:
                self.sim.wait(5)
            except subprocess.TimeoutExpired:
                self.sim.kill()
            self.sim = None

    def is_simulator(self):
        return self.stats() is not None

    def stats(self):
        if not self.url:
            return None
        try:
            with urllib.request.urlopen(self.url.rstrip("/") + "/_sim/stats", timeout=2) as r:
                return json.load(r)
        except Exception:
            return None

    def set_faults(self, query):
        req = urllib.request.Request(self.url.rstrip("/") + "/_sim/faults?" + query, method="POST")
        urllib.request.urlopen(req, timeout=2).read()

    def cli(self, *args):
        cmd = [self.s3cli, "--bucket", self.bucket]
        if self.url:
            cmd += ["--endpoint", self.url]
        if self.args.region:
            cmd += ["--region", self.args.region]
        return subprocess.run(cmd + list(args), env=self.env, capture_output=True, text=True)

    def list(self, prefix):
        r = self.cli("ls", "--prefix", prefix)
        if r.returncode != 0:
            sys.exit(f"valkyrie-bench: cannot list s3://{self.bucket}/{prefix}: {r.stderr.strip()}")
        out = []
        for line in r.stdout.splitlines():
            parts = line.split(None, 2)
            if len(parts) == 3 and parts[0] != "PRE":
                out.append((parts[2], int(parts[1])))
        return out

    def get(self, key, output, parallel, part_size):
        """Seconds the GETs took (valkyrie-s3's own clock: without process start and HEAD, so
        the baseline is the strongest direct client can be)."""
        r = self.cli("--json", "get", key, "-o", output, "--parallel", str(parallel), "--part-size", part_size)
        if r.returncode != 0:
            sys.exit(f"valkyrie-bench: direct GET of {key} failed: {r.stderr.strip()}")
        return json.loads(r.stdout.strip().splitlines()[-1])["seconds"]


# ---------------------------------------------------------------------------------------------
# The filesystem side: a valkyrie mount per scenario, or a directory mounted by someone else
class Mount:
    def __init__(self, args, s3, tmp):
        self.args = args
        self.s3 = s3
        self.tmp = tmp
        self.dir = args.dir
        self.proc = None
        self.metrics_url = None
        self.count = 0
        self.valkyrie = None if args.dir else find_binary("valkyrie", os.path.join("src", "cli"))

    def managed(self):
        return self.args.dir is None

    def mount(self, extra=()):
        """A fresh valkyrie mount (or the given --dir, with the kernel's caches dropped)."""
        if not self.managed():
            drop_caches()
            return self.args.dir
        self.unmount()
        self.count += 1
        self.dir = os.path.join(self.tmp, "mnt")
        os.makedirs(self.dir, exist_ok=True)
        log = os.path.join(self.tmp, f"valkyrie.{self.count}.log")
        cmd = [self.valkyrie, "--mount", self.dir, "--bucket", self.s3.bucket, "--foreground",
               "--metrics-addr", "127.0.0.1:0", "--log-level", "info"]
        if "--cache-size" not in extra:
            cmd += ["--cache-size", self.args.cache_size]
        if self.s3.url:
            cmd += ["--endpoint", self.s3.url]
        if self.args.region:
            cmd += ["--region", self.args.region]
        cmd += list(self.args.valkyrie_arg or []) + list(extra)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(log, "w"), env=self.s3.env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not os.path.ismount(self.dir):
            if self.proc.poll() is not None:
                sys.exit(f"valkyrie-bench: valkyrie exited: {open(log).read().strip()}")
            time.sleep(0.02)
        if not os.path.ismount(self.dir):
            sys.exit("valkyrie-bench: the mount did not come up")
        # The kernel shows the mount a moment before valkyrie logs "mounted" (with its metrics
        # address): wait for the line.
        self.metrics_url = None
        while time.monotonic() < deadline:
            mounted = [e for e in map(json_or_none, open(log)) if e and e.get("msg") == "mounted"]
            if mounted:
                if mounted[-1].get("metrics", "off") != "off":
                    self.metrics_url = f"http://{mounted[-1]['metrics']}/metrics"
                break
            time.sleep(0.02)
        return self.dir

    def unmount(self):
        if self.proc is None:
            return
        subprocess.run(["umount", self.dir], capture_output=True)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            subprocess.run(["umount", "-l", self.dir], capture_output=True)
        self.proc = None

    def metrics(self):
        """valkyrie's counters (name{labels} -> value), or {} for other filesystems."""
        if not self.metrics_url:
            return {}
        out = {}
        with urllib.request.urlopen(self.metrics_url, timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line and not line.startswith("#"):
                    k, v = line.rsplit(" ", 1)
                    out[k] = float(v)
        return out


def json_or_none(line):
    try:
        return json.loads(line)
    except ValueError:
        return None


def drop_caches():
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        pass  # not root: a warm page cache may flatter --dir runs (noted in the JSON)


# ---------------------------------------------------------------------------------------------
# Reading
def read_file(path, name, verifier, rec=None, buf=None):
    buf = buf or bytearray(READ_SIZE)
    view = memoryview(buf)
    offset = 0
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            verifier.check(name, offset, view[:n])
            offset += n
            if rec:
                rec.read(n)
    return offset


def scenario_baselines(ctx):
    s3, files, refs = ctx.s3, ctx.files, ctx.refdir
    out = {}
    # Parallel ranged GETs of every object: also the reference copies every read is checked against.
    # Parts of at most 8 MiB, at least 16 per object when it is big enough (1 MiB minimum).
    total, t = 0, 0.0
    for i, (name, key, size) in enumerate(files):
        ctx.progress.step("direct S3, 16 ranged GETs", i / len(files))
        path = os.path.join(refs, name)
        part = min(8 * MiB, max(MiB, size // 16))
        t += s3.get(key, path, 16, str(part))
        total += size
        ctx.verifier.refs[name] = path
    out["baseline-parallel"] = {"bytes": total, "seconds": round(t, 4), "mb_per_s": round(total / t / 1e6, 1),
                                "objects": len(files), "parallel": 16,
                                "part_size": min(8 * MiB, max(MiB, ctx.shard_size // 16))}
    ctx.progress.next()
    # One GET per object, one object at a time (a few objects: this is the slow one).
    sample = files[: max(1, min(len(files), ctx.args.single_get_objects))]
    total, t = 0, 0.0
    for i, (name, key, size) in enumerate(sample):
        ctx.progress.step("direct S3, one GET per object", i / len(sample))
        scratch = os.path.join(ctx.tmp, "single.get")
        t += s3.get(key, scratch, 1, "0")
        with open(scratch, "rb") as a, open(os.path.join(refs, name), "rb") as b:
            if a.read() != b.read():
                ctx.verifier.mismatches.append({"file": name, "offset": None, "what": "direct GETs disagree"})
        os.unlink(scratch)
        total += size
    out["baseline-single"] = {"bytes": total, "seconds": round(t, 4), "mb_per_s": round(total / t / 1e6, 1),
                              "objects": len(sample)}
    ctx.progress.next()
    return out


def scenario_cold_warm(ctx):
    out = {}
    root = ctx.mount.mount()
    for label in ("cold", "warm"):
        rec = Recorder()
        total = 0
        t0 = time.monotonic()
        buf = bytearray(READ_SIZE)
        for i, (name, _, _) in enumerate(ctx.files):
            ctx.progress.step(f"{label} sequential read", i / len(ctx.files))
            total += read_file(os.path.join(root, ctx.data_subdir, name), name, ctx.verifier, rec, buf)
        t = time.monotonic() - t0
        out[label] = {"bytes": total, "seconds": round(t, 4), "mb_per_s": round(total / t / 1e6, 1),
                      "series": rec.series()}
        ctx.progress.next()
    return out


def scenario_ttfb(ctx):
    # Next-file prefetch off in valkyrie, so that "cold" is a cache miss and not a file that an
    # earlier open already fetched.
    root = ctx.mount.mount(["--lookahead", "0"])
    # The directory is listed first (as a data loader does): the figure is the data's first byte,
    # not a metadata miss, whatever each filesystem caches about names.
    os.listdir(os.path.join(root, ctx.data_subdir))
    names = [n for n, _, _ in ctx.files]
    random.Random(3).shuffle(names)
    names = names[: ctx.args.ttfb_files]
    out = {}
    for label in ("cold", "warm"):
        times = []
        for i, name in enumerate(names):
            ctx.progress.step(f"time to first byte, {label}", i / len(names))
            t0 = time.monotonic()
            fd = os.open(os.path.join(root, ctx.data_subdir, name), os.O_RDONLY)
            data = os.pread(fd, 4096, 0)
            times.append(time.monotonic() - t0)
            os.close(fd)
            ctx.verifier.check(name, 0, data)
        out[label] = {"files": len(names), "p50_ms": ms(percentile(times, 0.5)), "p99_ms": ms(percentile(times, 0.99)),
                      "max_ms": ms(max(times))}
    ctx.progress.next()
    return {"ttfb": out}


STALL_BUCKETS_MS = [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000]


def training_loop(ctx, root, order, label, compute_s):
    rec = Recorder()
    buf = bytearray(READ_SIZE)
    busy = stall = 0.0
    stalls = []
    start = time.monotonic()
    for i, name in enumerate(order):
        ctx.progress.step(label, i / len(order))
        t0 = time.monotonic()
        read_file(os.path.join(root, name), name, ctx.verifier, rec, buf)
        t1 = time.monotonic()
        stall += t1 - t0
        stalls.append(t1 - t0)
        rec.stall(t0, t1)
        time.sleep(compute_s)  # the GPU step: the CPU is free meanwhile
        busy += time.monotonic() - t1
    wall = time.monotonic() - start
    hist = [0] * (len(STALL_BUCKETS_MS) + 1)
    for s in stalls:
        hist[bisect.bisect_left(STALL_BUCKETS_MS, s * 1000)] += 1
    return {"shards": len(order), "compute_s_per_shard": round(compute_s, 4), "wall_s": round(wall, 3),
            "compute_busy_pct": round(100 * busy / wall, 2), "stall_s": round(stall, 3),
            "stall_p50_ms": ms(percentile(stalls, 0.5)), "stall_p99_ms": ms(percentile(stalls, 0.99)),
            "stall_histogram_ms": {"le": STALL_BUCKETS_MS + ["+Inf"], "count": hist}, "series": rec.series()}


def shuffled_order(ctx, filename, epochs=1):
    """The data files in a fixed shuffled order (a sampler's), and a --manifest of `epochs`
    passes over it (keys relative to the mount)."""
    shuffled = [n for n, _, _ in ctx.files]
    random.Random(7).shuffle(shuffled)
    manifest = os.path.join(ctx.tmp, filename)
    with open(manifest, "w") as f:
        f.write("".join(os.path.normpath(os.path.join(ctx.data_subdir, n)) + "\n" for n in shuffled) * epochs)
    return shuffled, manifest


def scenario_training(ctx):
    names = [n for n, _, _ in ctx.files]
    shuffled, manifest = shuffled_order(ctx, "order.txt")
    # Compute per shard: the time the link needs to deliver one shard at 80% of its total bandwidth.
    compute_s = ctx.shard_size / (0.8 * ctx.link_bytes_per_s)
    out = {}
    root = ctx.mount.mount()
    out["training-listing-order"] = training_loop(ctx, os.path.join(root, ctx.data_subdir), names,
                                                  "training, listing order, no manifest", compute_s)
    ctx.progress.next()
    if ctx.mount.managed():
        root = ctx.mount.mount(["--manifest", manifest])
        out["training-manifest"] = training_loop(ctx, os.path.join(root, ctx.data_subdir), shuffled,
                                                 "training, shuffled, --manifest", compute_s)
        ctx.progress.next()
        # The same order handed over while mounted, as a data loader does before an epoch.
        root = ctx.mount.mount()
        with open(os.path.join(root, ".valkyrie", "order"), "w") as f:
            f.write(open(manifest).read())
        out["training-order-hint"] = training_loop(ctx, os.path.join(root, ctx.data_subdir), shuffled,
                                                   "training, shuffled, live order hint", compute_s)
    else:
        root = ctx.mount.mount()
        out["training-shuffled"] = training_loop(ctx, os.path.join(root, ctx.data_subdir), shuffled,
                                                 "training, shuffled", compute_s)
    ctx.progress.next()
    # The bound: the same loop (byte comparison included) over the local reference copies.
    out["training-local-copy"] = training_loop(ctx, ctx.refdir, shuffled, "training, local copy (bound)", compute_s)
    ctx.progress.next()
    return out


def scenario_epochs(ctx):
    shuffled, manifest = shuffled_order(ctx, "epochs.txt", ctx.args.epochs)
    dataset = sum(s for _, _, s in ctx.files)
    extra = []
    if ctx.mount.managed():
        extra = ["--cache-size", str(max(dataset // 2, 2 * 8 * MiB)), "--manifest", manifest]
    root = ctx.mount.mount(extra)
    epochs = []
    buf = bytearray(READ_SIZE)
    for e in range(ctx.args.epochs):
        # The kernel's page cache would answer epoch 2 whole (the dataset fits in this machine's
        # RAM, unlike a real one): drop it, so the filesystem's own cache is what is measured.
        drop_caches()
        m0, s0 = ctx.mount.metrics(), ctx.s3.stats()
        t0 = time.monotonic()
        total = 0
        for i, name in enumerate(shuffled):
            ctx.progress.step(f"epoch {e + 1} with the cache at half the dataset", i / len(shuffled))
            total += read_file(os.path.join(root, ctx.data_subdir, name), name, ctx.verifier, None, buf)
        t = time.monotonic() - t0
        time.sleep(0.2)  # let in-flight prefetches land before counting
        m1, s1 = ctx.mount.metrics(), ctx.s3.stats()
        ep = {"epoch": e + 1, "bytes": total, "seconds": round(t, 3), "mb_per_s": round(total / t / 1e6, 1)}
        if m0 and m1:
            lookups = m1["valkyrie_cache_lookups_total"] - m0["valkyrie_cache_lookups_total"]
            hits = m1["valkyrie_cache_hits_total"] - m0["valkyrie_cache_hits_total"]
            ep["hit_ratio"] = round(hits / lookups, 4) if lookups else None
        if s0 and s1:
            fetched = s1["bytes_sent"] - s0["bytes_sent"]
            ep["s3_bytes"] = fetched
            ep["s3_byte_hit_ratio"] = round(max(0.0, 1 - fetched / total), 4) if total else None
        epochs.append(ep)
    ctx.progress.next()
    return {"epochs": {"cache_bytes": dataset // 2 if ctx.mount.managed() else None, "dataset_bytes": dataset,
                       "per_epoch": epochs}}


def scenario_random(ctx):
    root = ctx.mount.mount()
    block = 256 * 1024
    # Every block at most once, in random order, with kernel read-ahead off (POSIX_FADV_RANDOM):
    # each read is a first touch, as for a dataset far bigger than memory.
    blocks = [(n, off) for n, _, s in ctx.files for off in range(0, s - block + 1, block)]
    random.Random(5).shuffle(blocks)
    deadline_s = ctx.args.random_seconds
    lat = []
    lock = threading.Lock()
    rec = Recorder()
    stop = time.monotonic() + deadline_s
    queue = iter(blocks)

    def worker(seed):
        fds = {}
        mine = []
        while time.monotonic() < stop:
            with lock:
                name, off = next(queue, (None, None))
            if name is None:
                break
            if name not in fds:
                fds[name] = os.open(os.path.join(root, ctx.data_subdir, name), os.O_RDONLY)
                os.posix_fadvise(fds[name], 0, 0, os.POSIX_FADV_RANDOM)
            t0 = time.monotonic()
            data = os.pread(fds[name], block, off)
            mine.append(time.monotonic() - t0)
            rec.read(len(data))
            ctx.verifier.check(name, off, data)
        for fd in fds.values():
            os.close(fd)
        with lock:
            lat.extend(mine)

    ctx.progress.step("random 256 KiB reads")
    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(ctx.args.random_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    ctx.progress.next()
    return {"random": {"threads": ctx.args.random_threads, "block": block, "reads": len(lat),
                       "distinct_blocks_available": len(blocks),
                       "iops": round(len(lat) / wall, 1), "mb_per_s": round(len(lat) * block / wall / 1e6, 1),
                       "p50_ms": ms(percentile(lat, 0.5)), "p99_ms": ms(percentile(lat, 0.99)),
                       "series": rec.series()}}


def daemon_rss(ctx):
    """VmRSS of the mounted valkyrie daemon in bytes (None with --dir)."""
    proc = getattr(ctx.mount, "proc", None)
    if proc is None:
        return None
    try:
        for line in open(f"/proc/{proc.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def scenario_ls(ctx):
    root = ctx.mount.mount()
    path = os.path.join(root, ctx.ls_subdir)
    ctx.progress.step("ls -l of the many-objects directory")
    s0 = ctx.s3.stats()
    m0 = ctx.mount.metrics()
    rss0 = daemon_rss(ctx)
    t0 = time.monotonic()
    n = 0
    with os.scandir(path) as it:
        for e in it:
            os.lstat(e.path)  # what ls -l does per entry
            n += 1
    t = time.monotonic() - t0
    rss1 = daemon_rss(ctx)
    s1, m1 = ctx.s3.stats(), ctx.mount.metrics()
    out = {"entries": n, "seconds": round(t, 4)}
    if rss0 is not None and rss1 is not None and n:
        # VmRSS of the daemon before and after: what the metadata of the entries costs.
        out["rss_bytes_per_entry"] = round((rss1 - rss0) / n, 1)
    # Again within --metadata-ttl: answered from the cached listing and inodes.
    t1 = time.monotonic()
    with os.scandir(path) as it:
        for e in it:
            os.lstat(e.path)
    out["seconds_within_ttl"] = round(time.monotonic() - t1, 4)
    if s0 and s1:
        out["s3_requests"] = sum(s1["requests"][k] - s0["requests"][k] for k in ("get", "head", "list"))
    elif m0 and m1:
        out["s3_requests"] = int(sum(v - m0.get(k, 0) for k, v in m1.items()
                                     if k.startswith("valkyrie_s3_requests_total{")))
    ctx.progress.next()
    return {"ls": out}


# ---------------------------------------------------------------------------------------------
# Output: table, JSON, SVG
def fmt(v, unit=""):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:,.1f}{unit}"
    return f"{v:,}{unit}"


def ratio_text(v):
    return "n/a" if v is None else f"{v:.2f}"


def table(results):
    r = results["scenarios"]
    rows = []
    for k, v in r.items():
        if isinstance(v, dict) and "error" in v:
            rows.append((f"{k}: FAILED", v["error"]))
    base = r.get("baseline-parallel", {}).get("mb_per_s")

    def ratio(v):
        return f"  ({v / base:.2f} x parallel GETs)" if base and v else ""

    if "baseline-single" in r:
        rows.append(("direct S3, one GET per object", fmt(r["baseline-single"]["mb_per_s"], " MB/s")))
    if "baseline-parallel" in r:
        rows.append(("direct S3, 16 ranged GETs in flight", fmt(base, " MB/s")))
    for k, label in (("cold", "cold sequential read"), ("warm", "warm re-read")):
        if k in r:
            rows.append((label, fmt(r[k]["mb_per_s"], " MB/s") + ratio(r[k]["mb_per_s"])))
    if "ttfb" in r:
        for k in ("cold", "warm"):
            t = r["ttfb"][k]
            rows.append((f"time to first byte, {k} (p50 / p99)", f"{t['p50_ms']:.1f} / {t['p99_ms']:.1f} ms"))
    for k, label in (("training-listing-order", "training, listing order"),
                     ("training-manifest", "training, shuffled + manifest"),
                     ("training-order-hint", "training, shuffled + live order hint"),
                     ("training-shuffled", "training, shuffled"),
                     ("training-local-copy", "training, local copy (bound)")):
        if k in r:
            t = r[k]
            rows.append((label, f"compute-busy {t['compute_busy_pct']:.1f} %, stall {t['stall_s']:.2f} s "
                                f"(p50 {t['stall_p50_ms']:.0f} ms, p99 {t['stall_p99_ms']:.0f} ms)"))
    if "epochs" in r:
        for ep in r["epochs"]["per_epoch"]:
            rows.append((f"epoch {ep['epoch']}, cache = 1/2 dataset",
                         f"{ratio_text(ep.get('s3_byte_hit_ratio'))} of bytes without S3, reader hit ratio "
                         f"{ratio_text(ep.get('hit_ratio'))}, {fmt(ep['mb_per_s'], ' MB/s')}"))
    if "random" in r:
        t = r["random"]
        rows.append((f"random 256 KiB reads, {t['threads']} threads",
                     f"{t['iops']:,.0f} IOPS, p50 {t['p50_ms']:.1f} ms, p99 {t['p99_ms']:.1f} ms"))
    if "ls" in r:
        t = r["ls"]
        rows.append((f"ls -l of {t['entries']:,} objects",
                     f"{t['seconds']:.2f} s, {fmt(t.get('s3_requests'))} S3 requests"))
    i = results["integrity"]
    rows.append(("integrity", f"{i['checked_bytes']:,} bytes compared, " +
                 ("all identical" if not i["mismatches"] else f"{len(i['mismatches'])} MISMATCHES")))
    width = max(len(a) for a, _ in rows)
    return "\n".join(f"{a:<{width}}  {b}" for a, b in rows)


def svg_escape(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def plot(results, path):
    """Throughput over time per scenario, stalls as red bars under the curve."""
    panels = [(k, v) for k, v in results["scenarios"].items() if isinstance(v, dict) and v.get("series", {}).get("t")]
    W, H, pad = 760, 150, 50
    height = 40 + len(panels) * (H + 30)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W + 2 * pad}" height="{height}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect width="100%" height="100%" fill="white"/>',
           f'<text x="{pad}" y="22" font-size="14">valkyrie-bench: throughput over time (MB/s), stalls in red</text>']
    y0 = 40
    for name, v in panels:
        s = v["series"]
        tmax = max(s["t"][-1], max((b for _, b in s["stalls"]), default=0), 0.001)
        vmax = max(max(s["mb_per_s"]), 1)
        out.append(f'<text x="{pad}" y="{y0 + 12}">{svg_escape(name)}</text>')
        top = y0 + 18
        out.append(f'<rect x="{pad}" y="{top}" width="{W}" height="{H - 30}" fill="none" stroke="#999"/>')
        pts = " ".join(f"{pad + W * t / tmax:.1f},{top + (H - 30) * (1 - m / vmax):.1f}"
                       for t, m in zip(s["t"], s["mb_per_s"]))
        out.append(f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{pts}"/>')
        for a, b in s["stalls"]:
            out.append(f'<rect x="{pad + W * a / tmax:.1f}" y="{top + H - 28}" width="{max(0.5, W * (b - a) / tmax):.1f}" '
                       f'height="6" fill="#d62728"/>')
        out.append(f'<text x="{pad - 4}" y="{top + 8}" text-anchor="end">{vmax:.0f}</text>')
        out.append(f'<text x="{pad - 4}" y="{top + H - 30}" text-anchor="end">0</text>')
        out.append(f'<text x="{pad + W}" y="{top + H - 8}" text-anchor="end">{tmax:.2f} s</text>')
        y0 += H + 30
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


# ---------------------------------------------------------------------------------------------
class Context:
    pass


ALL = ["baseline", "cold", "ttfb", "training", "epochs", "random", "ls"]


def main():
    p = argparse.ArgumentParser(prog="valkyrie-bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--endpoint", help="S3 endpoint URL (default: start valkyrie-s3sim)")
    p.add_argument("--bucket", help="bucket (with --endpoint; default: AWS)")
    p.add_argument("--region", help="region")
    p.add_argument("--prefix", default=None, help="key prefix of the data files (default: train/)")
    p.add_argument("--ls-prefix", default="many/", help="prefix of the many-objects directory (default: many/)")
    p.add_argument("--dir", help="benchmark this already-mounted filesystem (the bucket's root) instead of valkyrie")
    p.add_argument("--scenarios", default=",".join(ALL), help="comma-separated subset of: " + ", ".join(ALL))
    p.add_argument("--shards", type=int, default=16, help="simulated data files (default 16)")
    p.add_argument("--shard-size", default="64MiB", help="size of each (default 64MiB)")
    p.add_argument("--objects", type=int, default=10000, help="objects in the ls directory (default 10000)")
    p.add_argument("--first-byte-latency", default="30ms")
    p.add_argument("--conn-bandwidth", default="64MiB")
    p.add_argument("--total-bandwidth", default="1GiB")
    p.add_argument("--fault", action="append", help="simulator fault KIND=P (repeatable)")
    p.add_argument("--cache-size", default="2GiB", help="valkyrie --cache-size (default 2GiB)")
    p.add_argument("--valkyrie-arg", action="append", help="extra flag for valkyrie (repeatable)")
    p.add_argument("--single-get-objects", type=int, default=4, help="objects fetched one GET at a time (default 4)")
    p.add_argument("--ttfb-files", type=int, default=16)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--random-seconds", type=float, default=5)
    p.add_argument("--random-threads", type=int, default=4)
    p.add_argument("--json", help="write every figure to this file")
    p.add_argument("--plot", help="draw throughput and stalls to this SVG file")
    p.add_argument("--corrupt-after-reference", action="store_true",
                   help="(self-test) make the simulator flip a byte in every GET once the reference copies "
                        "are fetched: the run must report mismatches and exit 1")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args()
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    bad = [s for s in scenarios if s not in ALL]
    if bad:
        p.error(f"unknown scenario(s) {bad}; choose from {ALL}")
    if args.dir and not os.path.isdir(args.dir):
        p.error(f"--dir {args.dir} is not a directory")
    if not args.dir and os.geteuid() != 0:
        p.error("mounting needs root (or pass --dir of an existing mount)")
    if args.endpoint and not args.bucket:
        p.error("--endpoint needs --bucket")

    tmp = tempfile.mkdtemp(prefix="valkyrie-bench.")
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else tmp
    refdir = tempfile.mkdtemp(prefix="valkyrie-bench-ref.", dir=shm)
    ctx = Context()
    ctx.args, ctx.tmp, ctx.refdir = args, tmp, refdir
    ctx.progress = Progress(not args.quiet)
    ctx.verifier = Verifier()
    ctx.s3 = S3(args, tmp)
    ctx.mount = Mount(args, ctx.s3, tmp)

    def on_signal(signum, _):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    results = {"tool": "valkyrie-bench", "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "machine": {"host": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count(),
                           "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)},
               "scenarios": {}}
    status = 0
    try:
        simulated = not args.endpoint and not args.bucket
        if simulated and not args.dir:
            ctx.s3.start_simulator()
        elif simulated and args.dir:
            ctx.s3.url = None
        behind_simulator = simulated or ctx.s3.is_simulator()  # (asks the endpoint: once)
        prefix = args.prefix if args.prefix is not None else ("train/" if behind_simulator else "")
        ctx.data_subdir = prefix.rstrip("/") or "."
        ctx.ls_subdir = args.ls_prefix.rstrip("/") or "."
        if ctx.s3.url or args.bucket:
            listing = ctx.s3.list(prefix)
            ctx.files = [(k[len(prefix):], k, s) for k, s in listing if "/" not in k[len(prefix):] and s > 0]
        else:
            d = os.path.join(args.dir, ctx.data_subdir)
            ctx.files = [(n, None, os.path.getsize(os.path.join(d, n))) for n in sorted(os.listdir(d))
                         if os.path.isfile(os.path.join(d, n))]
        if not ctx.files:
            sys.exit("valkyrie-bench: no data files to read")
        ctx.shard_size = max(s for _, _, s in ctx.files)
        ctx.link_bytes_per_s = parse_size(args.total_bandwidth) if behind_simulator else 1 << 30
        results["config"] = {"endpoint": "valkyrie-s3sim " + ctx.s3.url if simulated and ctx.s3.url else ctx.s3.url,
                             "bucket": ctx.s3.bucket, "prefix": prefix, "files": len(ctx.files),
                             "dataset_bytes": sum(s for _, _, s in ctx.files),
                             "filesystem": args.dir or "valkyrie", "cache_size": args.cache_size if not args.dir else None,
                             "link": {"first_byte_latency": args.first_byte_latency, "conn_bandwidth": args.conn_bandwidth,
                                      "total_bandwidth": args.total_bandwidth} if simulated else None,
                             "scenarios": scenarios}
        steps = {"baseline": 2, "cold": 2, "ttfb": 1, "training": 4 if not args.dir else 3, "epochs": 1, "random": 1,
                 "ls": 1}
        has_s3 = bool(ctx.s3.url or args.bucket)
        ctx.progress.plan(sum(steps[s] for s in scenarios) + (0 if "baseline" in scenarios or not has_s3 else 1))
        if has_s3:
            if "baseline" in scenarios:
                results["scenarios"].update(scenario_baselines(ctx))
            else:  # the reference copies are still needed
                for name, key, _ in ctx.files:
                    path = os.path.join(refdir, name)
                    ctx.s3.get(key, path, 16, str(MiB))
                    ctx.verifier.refs[name] = path
                ctx.progress.next()
        else:
            # No S3 to ask: the first read of each file is the reference.
            results["note"] = "no S3 endpoint: no direct baseline; later reads compared with the first"
            root = ctx.mount.mount()
            for name, _, _ in ctx.files:
                shutil.copyfile(os.path.join(root, ctx.data_subdir, name), os.path.join(refdir, name))
                ctx.verifier.refs[name] = os.path.join(refdir, name)
        if args.corrupt_after_reference:
            if not ctx.s3.is_simulator():
                sys.exit("valkyrie-bench: --corrupt-after-reference needs valkyrie-s3sim")
            ctx.s3.set_faults("corrupt=1")
        runners = {"cold": scenario_cold_warm, "ttfb": scenario_ttfb, "training": scenario_training,
                   "epochs": scenario_epochs, "random": scenario_random, "ls": scenario_ls}
        for s in scenarios:
            if s in runners:
                try:
                    results["scenarios"].update(runners[s](ctx))
                except OSError as e:
                    # A filesystem that fails a read: recorded, the run goes on, the exit is 1.
                    results["scenarios"][s] = {"error": f"{e.strerror or e} ({e.filename or ''})".strip()}
                    status = 1
                    ctx.progress.next()
        ctx.mount.unmount()
    except KeyboardInterrupt:
        status = 130
        results["interrupted"] = True
    finally:
        ctx.progress.finish()
        ctx.verifier.close()
        ctx.mount.unmount()
        ctx.s3.stop()
        shutil.rmtree(refdir, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    results["integrity"] = {"checked_bytes": ctx.verifier.checked_bytes, "mismatches": ctx.verifier.mismatches}
    if ctx.verifier.mismatches:
        status = 1
    print(table(results))
    for m in ctx.verifier.mismatches[:5]:
        print(f"MISMATCH: {m['file']} at byte {m['offset']}", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    if args.plot:
        plot(results, args.plot)
    return status


if __name__ == "__main__":
    sys.exit(main())
