"""The first scenarios: direct S3 baselines, cold and warm sequential reads, time to first byte,
random 256 KiB reads, ls -l."""
import os
import random
import threading
import time

from .common import MiB, READ_SIZE, Recorder, ms, percentile, read_file, run_threads

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
    wall = run_threads([lambda i=i: worker(i) for i in range(ctx.args.random_threads)])
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
    # The cache's memory backed in the background meanwhile would count as the entries' RSS.
    backed = ctx.mount.wait_backed()
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
        if not backed:
            out["rss_note"] = "the cache was still being backed: its memory counts in the RSS"
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


