"""Helpers shared by every valkyrie-bench module: sizes, percentiles, finding the project's
binaries, the progress line, the per-scenario recorder and the byte verifier."""
import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time

MiB = 1 << 20
READ_SIZE = 1 * MiB


# ---------------------------------------------------------------------------------------------
# Small helpers
def keep_freed_memory():
    """Makes glibc's malloc serve big blocks from its heap and keep what is freed there, so that
    the 1 MiB buffers every read and check allocates reuse memory already touched. By default
    each is a new mmap, and a first touch costs ~10 us per 4 KiB page on this VM (0.4 GB/s):
    the verifier's copies then bounded every reader at ~140 MB/s, valkyrie and the local copy
    alike (docs/benchmarks.md). A no-op where mallopt is missing."""
    try:
        import ctypes
        libc = ctypes.CDLL(None)
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        libc.mallopt(M_MMAP_THRESHOLD, 32 * MiB)  # (glibc's upper limit for it)
        libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)
    except (OSError, AttributeError):
        pass


def parse_size(text):
    units = {"": 1, "k": 1 << 10, "kb": 1000, "kib": 1 << 10, "m": MiB, "mb": 1000**2, "mib": MiB,
             "g": 1 << 30, "gb": 1000**3, "gib": 1 << 30}
    t = text.strip().lower()
    num = t.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = t[len(num):]
    if not num or unit not in units:
        raise argparse.ArgumentTypeError(f"bad size '{text}' (examples: 64MiB, 1GiB)")
    return int(float(num) * units[unit])


def parse_duration(text):
    """Seconds from '30ms', '2s', '500us' (the simulator's syntax)."""
    t = text.strip().lower()
    for unit, scale in (("ms", 1e-3), ("us", 1e-6), ("s", 1.0)):
        if t.endswith(unit):
            return float(t[: -len(unit)]) * scale
    return float(t)


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
    here = os.path.dirname(os.path.abspath(sys.argv[0]))  # the valkyrie-bench entry point
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
        self.compare(name, offset, os.pread(fd, len(data), offset), data)

    def check_file(self, name, data):
        """A whole file read at once (many small objects: no descriptor kept per reference)."""
        path = self.refs.get(name)
        if path is None:
            return
        with open(path, "rb") as f:
            self.compare(name, 0, f.read(), bytes(data))

    def compare(self, name, offset, want, data):
        """data (bytes) read at offset against the reference bytes `want`."""
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


def end_process(proc):
    """Terminates a child process, killing it if it has not exited within 5 s."""
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()


def run_threads(targets):
    """Runs each callable on its own thread, all at once; returns the wall time until all end."""
    t0 = time.monotonic()
    threads = [threading.Thread(target=t) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.monotonic() - t0


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

