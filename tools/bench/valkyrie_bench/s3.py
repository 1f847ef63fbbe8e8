"""The S3 side: the simulator, direct GETs with valkyrie-s3, the simulator's counters."""
import json
import os
import subprocess
import sys
import urllib.request

from .common import find_binary

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

