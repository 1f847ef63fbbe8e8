"""The training loop (read a shard, compute) and the epochs with a cache of half the dataset."""
import bisect
import os
import random
import time

from .common import MiB, READ_SIZE, Recorder, drop_caches, ms, percentile, read_file

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


