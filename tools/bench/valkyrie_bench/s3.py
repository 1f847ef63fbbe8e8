"""The S3 side: the simulator, direct GETs with valkyrie-s3, the simulator's counters."""
import http.client
import json
import os
import subprocess
import sys
import threading
import urllib.request

from .common import end_process, find_binary

class S3:
    def __init__(self, args, tmp):
        self.args = args
        self.tmp = tmp
        self.sim = None
        self.url = args.endpoint
        self.bucket = args.bucket
        self.s3cli = find_binary("valkyrie-s3", "tools")
        self.env = dict(os.environ)
        self.extra_synthetic = []

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
        for spec in self.extra_synthetic:  # the access-pattern scenarios' objects
            cmd += ["--synthetic", spec]
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
            end_process(self.sim)
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



class ReferenceServer:
    """A second valkyrie-s3sim serving the same synthetic objects, unshaped and anonymous: the
    reference bytes for objects too many (20,000 small ones) or too big (4 x 4 GiB) to fetch one
    `valkyrie-s3 get` process at a time. A synthetic object's bytes are a pure function of
    bucket, key and offset (tools/common/synthetic.hpp), so both servers serve the same bytes;
    the scenarios cross-check one object against a direct GET from the benchmarked simulator."""

    def __init__(self, tmp, specs):
        self.tmp = tmp
        self.specs = specs
        self.proc = None
        self.local = threading.local()
        self.host = self.port = None

    def start(self):
        cmd = [find_binary("valkyrie-s3sim", "tools"), "--listen", "127.0.0.1:0", "--log-level", "warn"]
        for spec in self.specs:
            cmd += ["--synthetic", spec]
        err = os.path.join(self.tmp, "refsim.err")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open(err, "w"), text=True)
        line = self.proc.stdout.readline()
        if not line:
            sys.exit("valkyrie-bench: the reference valkyrie-s3sim did not start: " + open(err).read())
        hostport = line.split()[2].split("//", 1)[-1].rstrip("/")
        self.host, self.port = hostport.rsplit(":", 1)

    def get(self, bucket, key, first=None, length=None):
        """The object's bytes, or `length` bytes from `first`."""
        headers = {} if first is None else {"Range": f"bytes={first}-{first + length - 1}"}
        for attempt in range(3):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = self.local.conn = http.client.HTTPConnection(self.host, int(self.port), timeout=30)
            try:
                conn.request("GET", f"/{bucket}/{key}", headers=headers)
                r = conn.getresponse()
                body = r.read()
                if r.status not in (200, 206):
                    sys.exit(f"valkyrie-bench: reference GET of {key}: HTTP {r.status}")
                return body
            except (OSError, http.client.HTTPException):
                conn.close()
                self.local.conn = None
                if attempt == 2:
                    raise

    def stop(self):
        if self.proc:
            end_process(self.proc)
            self.proc = None
