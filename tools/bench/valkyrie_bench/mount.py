"""The filesystem side: a valkyrie mount per scenario, or a directory mounted by someone else."""
import os
import subprocess
import sys
import time
import urllib.request

from .common import drop_caches, find_binary, json_or_none

class Mount:
    def __init__(self, args, s3, tmp):
        self.args = args
        self.s3 = s3
        self.tmp = tmp
        self.dir = args.dir
        self.proc = None
        self.metrics_url = None
        self.backing = ""
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
                self.backing = mounted[-1].get("cache_backing", "")
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

    def wait_backed(self, timeout=120):
        """With --cache-backing background, until the cache's memory is backed (the daemon's
        RSS then stops growing by it). False if it was not within `timeout` seconds."""
        if self.backing != "background" or not self.metrics_url:
            return True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = self.metrics()
            if m.get("valkyrie_cache_backed_bytes", 0) >= m.get("valkyrie_cache_capacity_bytes", 1):
                return True
            time.sleep(0.05)
        return False

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

