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
  ls                `ls -l` of a directory of 10,000 objects: time and S3 requests, the
                    daemon's RSS change per entry, and a second `ls -l` within the TTL
Access patterns (issue 13), run only when named in --scenarios (minutes each):
  small             20,000 objects of 110 KiB read whole: shuffled order given by --manifest
                    and by a live order hint (8 readers, 1 reader), sorted names in listing
                    order with no order (1 reader), the same readers over a tmpfs copy; files/s
  seq4              fio seq_read_4t: 4 jobs each reading its own 4 GiB object, bs=256k, sync
  rand4             fio rand_read_4t: the same with rw=randread for 20 s; against the latency
                    bound, and S3 bytes fetched per byte read

Elsewhere: --endpoint/--bucket/--prefix use a real S3 (or any S3-compatible server) instead
of the simulator; --dir PATH benchmarks a filesystem that is already mounted (s3fs, rclone,
mountpoint-s3) with the same scenarios. Every byte read is compared with a reference copy
fetched directly from S3 (with --dir and no endpoint: with the first read of it).
"""
import argparse
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time

from .common import MiB, Progress, Verifier, keep_freed_memory, parse_size
from .mount import Mount
from .report import plot, table
from .s3 import S3, ReferenceServer
from .scenarios_core import scenario_baselines, scenario_cold_warm, scenario_ls, scenario_random, scenario_ttfb
from .scenarios_patterns import PATTERNS, scenario_rand4, scenario_seq4, scenario_small, synthetic_specs
from .scenarios_patterns import add_arguments as add_pattern_arguments
from .scenarios_training import scenario_epochs, scenario_training

# ---------------------------------------------------------------------------------------------
class Context:
    pass


ALL = ["baseline", "cold", "ttfb", "training", "epochs", "random", "ls"]  # the default set
CHOICES = ALL + PATTERNS  # the access patterns (minutes each) only when named


def main():
    keep_freed_memory()
    p = argparse.ArgumentParser(prog="valkyrie-bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--endpoint", help="S3 endpoint URL (default: start valkyrie-s3sim)")
    p.add_argument("--bucket", help="bucket (with --endpoint; default: AWS)")
    p.add_argument("--region", help="region")
    p.add_argument("--prefix", default=None, help="key prefix of the data files (default: train/)")
    p.add_argument("--ls-prefix", default="many/", help="prefix of the many-objects directory (default: many/)")
    p.add_argument("--dir", help="benchmark this already-mounted filesystem (the bucket's root) instead of valkyrie")
    p.add_argument("--scenarios", default=",".join(ALL), help="comma-separated subset of: " + ", ".join(CHOICES) + " (default: " + ",".join(ALL) + ")")
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
    add_pattern_arguments(p)
    args = p.parse_args()
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    bad = [s for s in scenarios if s not in CHOICES]
    if bad:
        p.error(f"unknown scenario(s) {bad}; choose from {CHOICES}")
    patterns = [s for s in scenarios if s in PATTERNS]
    if patterns and (args.dir or args.endpoint or args.bucket):
        p.error(f"{','.join(patterns)} need valkyrie-s3sim's synthetic objects (no --dir, --endpoint or --bucket)")
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
    ctx.s3.extra_synthetic = synthetic_specs(args, scenarios)
    ctx.ref = ReferenceServer(tmp, ctx.s3.extra_synthetic) if ctx.s3.extra_synthetic else None

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
            if ctx.ref:
                ctx.ref.start()
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
                 "ls": 1, "small": 10, "seq4": 1, "rand4": 1}
        has_s3 = bool(ctx.s3.url or args.bucket)
        needs_train = any(s not in PATTERNS for s in scenarios)  # the patterns read small/ and big/
        ctx.progress.plan(sum(steps[s] for s in scenarios)
                          + (1 if has_s3 and needs_train and "baseline" not in scenarios else 0))
        if has_s3 and not needs_train:
            pass  # no reference copies of the shards to fetch
        elif has_s3:
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
                   "epochs": scenario_epochs, "random": scenario_random, "ls": scenario_ls,
                   "small": scenario_small, "seq4": scenario_seq4, "rand4": scenario_rand4}
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
        if ctx.ref:
            ctx.ref.stop()
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
