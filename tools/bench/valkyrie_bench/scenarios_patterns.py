"""Access patterns (issue 13): many small objects read whole, four sequential streams
(mountpoint-s3's fio job seq_read_4t) and four random readers (rand_read_4t).

These need the simulator (synthetic objects: 20,000 small ones under small/, four large ones
under big/ whose bytes are computed, not stored). Reference bytes come from a second, unshaped
simulator (s3.ReferenceServer); the small objects' references are also the tmpfs copy the same
readers read as the bound.
"""
import json
import multiprocessing
import os
import queue
import random
import shutil
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from .common import MiB, Verifier, keep_freed_memory, ms, parse_duration, parse_size, percentile

SMALL_PREFIX = "small/"
BIG_PREFIX = "big/"
BIG_FILES = 4
BLOCK = 256 * 1024  # fio's bs=256k in both jobs
PATTERNS = ["small", "seq4", "rand4"]


def synthetic_specs(args, scenarios):
    """The simulator's extra --synthetic objects for the selected scenarios."""
    specs = []
    if "small" in scenarios:
        specs.append(f"bench:{args.small_objects}:{args.small_size}:{SMALL_PREFIX}")
    if "seq4" in scenarios or "rand4" in scenarios:
        specs.append(f"bench:{BIG_FILES}:{args.big_size}:{BIG_PREFIX}")
    return specs


def add_arguments(p):
    g = p.add_argument_group("access patterns (scenarios small, seq4, rand4; not in the default set)")
    g.add_argument("--small-objects", type=int, default=20000, help="objects under small/ (default 20000)")
    g.add_argument("--small-size", default="110KiB", help="size of each (default 110KiB)")
    # (2,000 files at 4,000-5,000 files/s was a window of under half a second, in which the first
    # round trips weighed: the same build read 3,547-4,675 files/s with 8 readers there, against
    # 4,053-5,489 over 8,000 files; docs/benchmarks.md)
    g.add_argument("--small-reads", type=int, default=8000,
                   help="distinct files each small-object variant reads, from a fresh mount (default 8000)")
    g.add_argument("--small-seconds", type=float, default=30,
                   help="at most this long per small-object variant (default 30)")
    g.add_argument("--big-size", default="4GiB", help="size of each of the 4 objects of seq4/rand4 (default 4GiB)")
    g.add_argument("--seq-seconds", type=float, default=30, help="fio runtime of seq4 (default 30)")
    g.add_argument("--rand-seconds", type=float, default=20, help="fio runtime of rand4 (default 20)")
    g.add_argument("--verify-samples", type=int, default=16,
                   help="256 KiB ranges per file compared with the reference after seq4/rand4 (default 16)")
    g.add_argument("--no-fio", action="store_true", help="use the Python readers even where fio is installed")


def s3_delta(s0, s1):
    if not (s0 and s1):
        return {}
    return {"s3_gets": s1["requests"]["get"] - s0["requests"]["get"], "s3_bytes": s1["bytes_sent"] - s0["bytes_sent"]}


# ---------------------------------------------------------------------------------------------
# Many small objects
def read_whole_files(ctx, root, order, readers, label, seconds):
    """`readers` reader processes (as a DataLoader's workers are processes) take the next name of
    `order` from one shared counter and read it whole: open, read until EOF, close; every byte
    compared with the reference. Stops at the end of `order` or after `seconds`. The readers are
    started fresh (spawn) before the clock starts: threads of this interpreter would take turns
    at its lock for every byte compared, and forked copies of it would fault in pages of its heap
    as they run."""
    spawn = multiprocessing.get_context("spawn")
    nxt = spawn.Value("q", 0)
    go = spawn.Event()
    results = spawn.Queue()
    refs = {SMALL_PREFIX + n: ctx.verifier.refs[SMALL_PREFIX + n]  # (pickled to each reader)
            for n in order if SMALL_PREFIX + n in ctx.verifier.refs}
    ctx.progress.step(label)
    procs = [spawn.Process(target=small_reader, args=(root, order, refs, seconds, nxt, go, results))
             for _ in range(readers)]
    for p in procs:
        p.start()

    def result(within):
        try:
            return results.get(timeout=within)
        except queue.Empty:
            for p in procs:
                p.kill()
            raise RuntimeError(f"{label}: a reader gave no answer in {within:.0f} s") from None

    for _ in procs:  # each reader says when it is up (an interpreter takes ~50 ms to start)
        result(60)
    t0 = time.monotonic()
    go.set()
    lat, nbytes, errors, end = [], 0, [], t0
    for _ in procs:  # before join: a child exits only once the queue has taken its result
        got = result(seconds + 120)  # a file read whole, after the deadline: well within that
        if isinstance(got, str):
            errors.append(got)
            continue
        part, total, checked, bad, done = got
        end = max(end, done)
        lat.extend(part)
        nbytes += total
        ctx.verifier.checked_bytes += checked
        ctx.verifier.mismatches.extend(bad[:max(0, 20 - len(ctx.verifier.mismatches))])
    for p in procs:
        p.join()
    wall = end - t0
    ctx.progress.next()
    if errors or any(p.exitcode != 0 for p in procs):
        raise RuntimeError(f"{label}: a reader failed: {errors[0] if errors else 'exit status'}")
    return {"readers": readers, "files": len(lat), "seconds": round(wall, 3),
            "files_per_s": round(len(lat) / wall, 1), "mb_per_s": round(nbytes / wall / 1e6, 1),
            "p50_ms": ms(percentile(lat, 0.5)), "p99_ms": ms(percentile(lat, 0.99))}


def small_reader(root, order, refs, seconds, nxt, go, results):
    """One reader process of read_whole_files: sends None once started, then its latencies, bytes
    read, bytes compared, mismatches and end time (CLOCK_MONOTONIC: one clock for all processes),
    or the error that stopped it."""
    keep_freed_memory()  # a fresh interpreter: each 1 MiB read buffer would be a new mapping
    results.put(None)
    try:
        go.wait()
        stop = time.monotonic() + seconds
        verifier = Verifier()  # this process's own; the parent adds up what each one found
        verifier.refs = refs
        lat, total = [], 0
        while time.monotonic() < stop:
            with nxt.get_lock():
                i = nxt.value
                nxt.value += 1
            if i >= len(order):
                break
            name = order[i]
            t0 = time.monotonic()
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                parts = []
                while True:
                    b = os.read(fd, MiB)
                    if not b:
                        break
                    parts.append(b)
            finally:
                os.close(fd)
            lat.append(time.monotonic() - t0)
            data = b"".join(parts)
            total += len(data)
            verifier.check_file(SMALL_PREFIX + name, data)
        results.put((lat, total, verifier.checked_bytes, verifier.mismatches, time.monotonic()))
    except BaseException as e:  # the parent waits for one result per reader
        results.put(f"{type(e).__name__}: {e}")


def scenario_small(ctx):
    a = ctx.args
    names = [k[len(SMALL_PREFIX):] for k, _ in ctx.s3.list(SMALL_PREFIX)]  # S3's order: sorted
    shuffled = names[:]
    random.Random(11).shuffle(shuffled)
    n = min(a.small_reads, len(names))
    manifest = os.path.join(ctx.tmp, "small-order.txt")
    with open(manifest, "w") as f:
        f.write("".join(SMALL_PREFIX + x + "\n" for x in shuffled))
    # The tmpfs copy: every object some variant reads, fetched from the reference server; it is
    # both the bound and the reference every read is compared with.
    copy = os.path.join(ctx.refdir, "small")
    os.makedirs(copy, exist_ok=True)
    wanted = sorted(set(shuffled[:n]) | set(names[:n]))
    ctx.progress.step(f"small objects: tmpfs copy of {len(wanted)} objects")

    def fetch(x):
        with open(os.path.join(copy, x), "wb") as f:
            f.write(ctx.ref.get(ctx.s3.bucket, SMALL_PREFIX + x))
        ctx.verifier.refs[SMALL_PREFIX + x] = os.path.join(copy, x)

    t0 = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(fetch, wanted))
    copy_s = time.monotonic() - t0
    # The two servers serve the same bytes: one object checked against a direct GET.
    direct = os.path.join(ctx.tmp, "small.direct")
    ctx.s3.get(SMALL_PREFIX + wanted[0], direct, 1, "0")
    with open(direct, "rb") as f:
        ctx.verifier.check_file(SMALL_PREFIX + wanted[0], f.read())
    os.unlink(direct)
    ctx.progress.next()

    out = {}
    cfg = {"objects": len(names), "object_bytes": parse_size(a.small_size), "reads_per_variant": n,
           "seconds_per_variant": a.small_seconds, "tmpfs_copy_s": round(copy_s, 2)}
    variants = [("manifest", 8), ("manifest", 1), ("order-hint", 8), ("order-hint", 1), ("listing", 1),
                ("listing", 8)]
    # A throwaway first variant: a machine that backs memory lazily makes the first mount's cache
    # memory slow to touch (every later mount reuses what the one before gave back), which would
    # otherwise fall on whichever variant came first. Its bytes are still compared.
    root = ctx.mount.mount(["--manifest", manifest])
    read_whole_files(ctx, os.path.join(root, "small"), shuffled[:n], 8, "small objects, warm-up", a.small_seconds)
    for how, threads in variants:
        root = ctx.mount.mount(["--manifest", manifest] if how == "manifest" else [])
        s0 = ctx.s3.stats()
        if how == "order-hint":
            with open(os.path.join(root, ".valkyrie", "order"), "w") as f:
                f.write(open(manifest).read())
        if how == "listing":
            t0 = time.monotonic()
            order = [e.name for e in os.scandir(os.path.join(root, "small"))]  # readdir's order
            listing_s = time.monotonic() - t0
        else:
            order = shuffled
        r = read_whole_files(ctx, os.path.join(root, "small"), order[:n], threads,
                             f"small objects, {how}, {threads} reader(s)", a.small_seconds)
        r.update(s3_delta(s0, ctx.s3.stats()))
        if how == "listing":
            r["listing_s"] = round(listing_s, 3)
        out[f"small-{how}-{threads}"] = r
    # The same readers over the tmpfs copy: the bound.
    for how, threads, order in (("shuffled", 8, shuffled), ("shuffled", 1, shuffled), ("listing", 1, names),
                                ("listing", 8, names)):
        out[f"small-tmpfs-{how}-{threads}"] = read_whole_files(ctx, copy, order[:n], threads,
                                                               f"small objects, tmpfs, {how}, {threads}", a.small_seconds)
    for how, threads in variants:
        bound = out[f"small-tmpfs-{'listing' if how == 'listing' else 'shuffled'}-{threads}"]["files_per_s"]
        r = out[f"small-{how}-{threads}"]
        r["x_tmpfs"] = round(r["files_per_s"] / bound, 4) if bound else None
    out["small-config"] = cfg
    shutil.rmtree(copy, ignore_errors=True)
    return out


# ---------------------------------------------------------------------------------------------
# Four streams: fio's seq_read_4t and rand_read_4t shapes
def run_fio(ctx, paths, rw, seconds):
    """One fio job per file: bs=256k, ioengine=sync, `rw`, for at most `seconds` (random: exactly).
    Per job: bytes read and the time it ran; clat percentiles over all reads."""
    jobfile = os.path.join(ctx.tmp, f"{rw}.fio")
    with open(jobfile, "w") as f:
        f.write(f"[global]\nioengine=sync\nbs=256k\nrw={rw}\nruntime={seconds:g}s\n"
                + ("time_based=1\n" if rw == "randread" else "") + "\n")
        for i, path in enumerate(paths):
            f.write(f"[job{i}]\nfilename={path}\n\n")
    outfile = os.path.join(ctx.tmp, f"{rw}.json")
    r = subprocess.run(["fio", "--readonly", "--output-format=json", "--output", outfile, jobfile],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise OSError(f"fio exited {r.returncode}: {(r.stderr or r.stdout).strip()[-300:]}")
    jobs = json.load(open(outfile))["jobs"]
    per = [{"bytes": j["read"]["io_bytes"], "seconds": j["read"]["runtime"] / 1000} for j in jobs]
    pct = jobs[0]["read"]["clat_ns"].get("percentile", {})
    # Percentiles of one job (fio merges them only with group_reporting, which drops per-job bytes).
    lat = {"p50_ms": round(pct.get("50.000000", 0) / 1e6, 3), "p99_ms": round(pct.get("99.000000", 0) / 1e6, 3)}
    return per, lat, "fio " + subprocess.run(["fio", "--version"], capture_output=True, text=True).stdout.strip()


def run_python(ctx, paths, rw, seconds):
    """The same jobs without fio: one thread per file, synchronous 256 KiB preads."""
    per = [None] * len(paths)
    lat = []
    lock = threading.Lock()

    def job(i):
        fd = os.open(paths[i], os.O_RDONLY)
        size = os.fstat(fd).st_size
        rnd = random.Random(i)
        if rw == "randread":
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        mine, total, off = [], 0, 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            if rw == "randread":
                off = rnd.randrange(size // BLOCK) * BLOCK
            elif off >= size:
                break
            t = time.monotonic()
            n = len(os.pread(fd, BLOCK, off))
            mine.append(time.monotonic() - t)
            total += n
            off += n
        per[i] = {"bytes": total, "seconds": time.monotonic() - t0}
        os.close(fd)
        with lock:
            lat.extend(mine)

    ts = [threading.Thread(target=job, args=(i,)) for i in range(len(paths))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return per, {"p50_ms": ms(percentile(lat, 0.5)), "p99_ms": ms(percentile(lat, 0.99))}, "python"


def verify_sample(ctx, root, files, per, seed):
    """--verify-samples 256 KiB ranges per file (within what its job read) read through the mount
    and compared with the reference server's bytes."""
    rnd = random.Random(seed)
    for (key, size), job in zip(files, per):
        fd = os.open(os.path.join(root, key), os.O_RDONLY)
        span = max(BLOCK, min(size, job["bytes"]))  # (a time-based random job may loop over its file)
        for _ in range(ctx.args.verify_samples):
            off = rnd.randrange(span // BLOCK) * BLOCK
            data = os.pread(fd, BLOCK, off)
            ctx.verifier.compare(key, off, ctx.ref.get(ctx.s3.bucket, key, off, BLOCK), data)
        os.close(fd)


def streams(ctx, rw, seconds, label):
    files = ctx.s3.list(BIG_PREFIX)[:BIG_FILES]
    root = ctx.mount.mount()
    paths = [os.path.join(root, k) for k, _ in files]
    use_fio = shutil.which("fio") and not ctx.args.no_fio
    ctx.progress.step(label)
    s0 = ctx.s3.stats()
    t0 = time.monotonic()
    per, lat, tool = (run_fio if use_fio else run_python)(ctx, paths, rw, seconds)
    wall = time.monotonic() - t0
    time.sleep(1)  # let fetches the reads started land before counting S3's bytes
    s = s3_delta(s0, ctx.s3.stats())
    total = sum(j["bytes"] for j in per)
    secs = max(j["seconds"] for j in per)
    verify_sample(ctx, root, files, per, 17 if rw == "read" else 19)
    ctx.progress.next()
    out = {"tool": tool, "jobs": len(per), "block": BLOCK, "object_bytes": files[0][1] if files else 0,
           "bytes": total, "seconds": round(secs, 3), "wall_s": round(wall, 3),
           "mb_per_s": round(total / secs / 1e6, 1), "mib_per_s": round(total / secs / MiB, 1),
           "reads": total // BLOCK, "per_job_bytes": [j["bytes"] for j in per], **lat, **s}
    if s.get("s3_bytes") is not None and total:
        out["s3_bytes_per_byte_read"] = round(s["s3_bytes"] / total, 3)
    return out


def scenario_seq4(ctx):
    out = streams(ctx, "read", ctx.args.seq_seconds, "seq4: 4 sequential readers (seq_read_4t)")
    out["link_bytes_per_s"] = ctx.link_bytes_per_s
    out["x_link"] = round(out["bytes"] / out["seconds"] / ctx.link_bytes_per_s, 4)
    return {"seq4": out}


def scenario_rand4(ctx):
    out = streams(ctx, "randread", ctx.args.rand_seconds, "rand4: 4 random readers (rand_read_4t)")
    # The latency bound: each synchronous reader pays one first-byte latency plus its transfer
    # per read (one GET of just its 256 KiB), and 4 readers do that side by side.
    a = ctx.args
    per_read = parse_duration(a.first_byte_latency) + BLOCK / parse_size(a.conn_bandwidth)
    bound = out["jobs"] * BLOCK / per_read
    out["latency_bound_mib_per_s"] = round(bound / MiB, 2)
    out["latency_bound_read_ms"] = round(per_read * 1000, 2)
    out["x_latency_bound"] = round(out["bytes"] / out["seconds"] / bound, 4)
    return {"rand4": out}
