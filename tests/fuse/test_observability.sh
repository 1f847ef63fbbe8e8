#!/usr/bin/env bash
# Observability through a real mount: a real Prometheus scrapes /metrics while files are read
# through valkyrie from valkyrie-s3sim (with 500 and SlowDown faults); the series arrive in
# Prometheus, `promtool check metrics` passes, counters never go down, the S3 bytes and retries
# valkyrie counts equal what the simulator counts, hits + misses = lookups. Every log line is a
# JSON object and none holds the secret key or the session token; SIGUSR2 cycles the level. The
# trace file (rotated at a small size) parses, has balanced spans and names the operations.
# Exit 77 without /dev/fuse or root.
set -euo pipefail
[[ -c /dev/fuse && $(id -u) == 0 ]] || { echo "no /dev/fuse or not root: skipped"; exit 77; }
tmp=$(mktemp -d /tmp/valkyrie-obs.XXXXXX)
mnt="$tmp/mnt"; mkdir -p "$mnt"
source "$(dirname "$0")/lib.sh"
command -v prometheus >/dev/null && command -v promtool >/dev/null ||
  fail "prometheus and promtool are needed (Debian package prometheus; tools/install-deps.sh installs it)"
py=/usr/bin/python3

export AWS_ACCESS_KEY_ID=AKIDOBSERVE AWS_SECRET_ACCESS_KEY=obs/Secret+Key9 AWS_SESSION_TOKEN=obs-Session-Token-77
export AWS_EC2_METADATA_DISABLED=true
SIM_CREDENTIALS="$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY:$AWS_SESSION_TOKEN" \
  start_sim --synthetic obs:8:12MiB:train/ --first-byte-latency 5ms --fault error500=0.05 --fault slowdown=0.05 \
  --fault-seed 11
VALKYRIE_LOG_LEVEL=debug start_valkyrie obs "$url" --cache-size 64MiB --chunk-size 2MiB \
  --trace-output "$tmp/trace.json" --trace-max-size 64KiB
port=$(metrics_port)
[[ -n $port ]] || fail "the daemon serves no metrics: $(head -3 "$tmp/daemon.err")"
scrape() { curl -sf "http://127.0.0.1:$port/metrics"; }
scrape >"$tmp/scrape.0" || fail "GET /metrics failed"

# A real Prometheus, scraping every second.
pport=$($py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$tmp/prometheus.yml" <<YML
global: {scrape_interval: 1s, scrape_timeout: 1s}
scrape_configs:
  - job_name: valkyrie
    static_configs: [{targets: ['127.0.0.1:$port']}]
YML
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/prometheus" \
  --web.listen-address="127.0.0.1:$pport" --log.level=warn 2>"$tmp/prometheus.err" &
extra_pids+=($!)
wait_until 10 curl -sf -o /dev/null "http://127.0.0.1:$pport/-/ready" ||
  fail "prometheus did not start: $(tail -3 "$tmp/prometheus.err")"

# Read everything, scraping between files.
i=0
for f in "$mnt"/train/*; do
  sha256sum "$f" | awk '{print $1}' >>"$tmp/got.sha" || fail "reading $f"
  i=$((i + 1))
  scrape >"$tmp/scrape.$i"
done
settle  # the last read-ahead lands: the counts below compare finished requests
ra_kb=$(cat "/sys/class/bdi/$(mountpoint -d "$mnt")/read_ahead_kb")
[[ $ra_kb == 4096 ]] || fail "the mount's kernel read-ahead is $ra_kb KiB, not 4096"
scrape >"$tmp/final"
curl -s "$url/_sim/stats" >"$tmp/sim.json"
pass "read 8 files while scraping"

# promtool lints the exposition (names, types, help).
promtool check metrics <"$tmp/final" >"$tmp/promtool.out" 2>&1 || { cat "$tmp/promtool.out"; fail "promtool check metrics"; }
pass "promtool check metrics"

$py - "$tmp" <<'PY' || fail "metric checks"
import json, re, sys, glob
tmp = sys.argv[1]
def parse(path):
    samples, types = {}, {}
    for line in open(path):
        line = line.rstrip("\n")
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
        elif line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            samples[key] = float(value)
    return samples, types
scrapes = sorted(glob.glob(tmp + "/scrape.*"), key=lambda p: int(p.rsplit(".", 1)[1])) + [tmp + "/final"]
final, types = parse(tmp + "/final")
def family(key):
    name = key.split("{")[0]
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and types.get(name[: -len(suffix)]) == "histogram":
            return name[: -len(suffix)]
    return name
# Counters (and histogram parts) never go down between scrapes.
previous = None
for path in scrapes:
    s, _ = parse(path)
    if previous:
        for k, v in s.items():
            if types.get(family(k)) in ("counter", "histogram") and k in previous and v < previous[k]:
                sys.exit(f"{k} went down: {previous[k]} -> {v} ({path})")
    previous = s
print(f"ok - {len(scrapes)} scrapes, counters monotonic")
required = ["valkyrie_fuse_requests_total", "valkyrie_fuse_request_duration_seconds", "valkyrie_read_stall_seconds",
            "valkyrie_read_stall_seconds_total", "valkyrie_cache_hits_total", "valkyrie_cache_misses_total",
            "valkyrie_cache_hit_ratio", "valkyrie_cache_bytes", "valkyrie_cache_evictions_total",
            "valkyrie_prefetch_chunks_issued_total", "valkyrie_prefetch_chunks_used_total",
            "valkyrie_prefetch_chunks_wasted_total",
            "valkyrie_cache_evictions_total", "valkyrie_prefetch_lead_seconds", "valkyrie_s3_requests_total",
            "valkyrie_s3_request_duration_seconds", "valkyrie_s3_retries_total", "valkyrie_s3_received_bytes_total",
            "valkyrie_s3_requests_in_flight", "valkyrie_s3_connections", "valkyrie_credential_refreshes_total"]
missing = [n for n in required if n not in types]
if missing: sys.exit(f"missing families: {missing}")
sim = json.load(open(tmp + "/sim.json"))
def val(key): return final.get(key, 0.0)
got = val("valkyrie_s3_received_bytes_total")
if got != sim["bytes_sent"]: sys.exit(f"S3 bytes: valkyrie counted {got}, the simulator sent {sim['bytes_sent']}")
print(f"ok - S3 bytes equal: {int(got)}")
for reason, fault in (("server_error", "error500"), ("slow_down", "slowdown")):
    r = val('valkyrie_s3_retries_total{reason="%s"}' % reason)
    if r != sim["faults"][fault] or r == 0:
        sys.exit(f"retries {reason}: valkyrie {r}, simulator injected {sim['faults'][fault]}")
print(f"ok - retries equal the injected faults: {sim['faults']}")
gets = sum(v for k, v in final.items() if k.startswith('valkyrie_s3_requests_total{operation="GetObject"'))
if gets != sim["requests"]["get"]: sys.exit(f"GETs: valkyrie {gets}, simulator {sim['requests']['get']}")
l, h, m = val("valkyrie_cache_lookups_total"), val("valkyrie_cache_hits_total"), val("valkyrie_cache_misses_total")
if l == 0 or h + m != l: sys.exit(f"hits {h} + misses {m} != lookups {l}")
ratio = val("valkyrie_cache_hit_ratio")
if abs(ratio - h / l) > 1e-9: sys.exit(f"hit ratio {ratio} != {h / l}")
print(f"ok - hits {int(h)} + misses {int(m)} = lookups {int(l)}")
reads = val('valkyrie_fuse_requests_total{op="read"}')
if reads == 0 or val("valkyrie_read_bytes_total") < 8 * 12 * 2**20:
    sys.exit("reads not counted")
if val('valkyrie_fuse_request_duration_seconds_count{op="read"}') != reads: sys.exit("read latency count != reads")
if val("valkyrie_s3_requests_in_flight") != 0: sys.exit("requests still in flight after the reads")
if val('valkyrie_cache_bytes{zone="filling"}') != 0: sys.exit("bytes still filling")
held = sum(v for k, v in final.items() if k.startswith("valkyrie_cache_bytes{"))
if held > val("valkyrie_cache_capacity_bytes"): sys.exit("cache holds more than its capacity")
print(f"ok - {int(reads)} FUSE reads counted and timed")
# The kernel reads ahead 4 MiB (--kernel-read-ahead): sequential readers arrive in requests of
# up to 1 MiB, not the 128 KiB a FUSE mount starts with (which would be 768 reads here).
if reads > 8 * 12 * 2**20 / (512 * 1024): sys.exit(f"{int(reads)} FUSE reads for 96 MiB: requests under 512 KiB on average")
print(f"ok - {int(reads)} FUSE reads for 96 MiB read sequentially")
issued, used = val("valkyrie_prefetch_chunks_issued_total"), val("valkyrie_prefetch_chunks_used_total")
wasted = val("valkyrie_prefetch_chunks_wasted_total")
if issued == 0 or used + wasted > issued: sys.exit(f"prefetch: issued {issued}, used {used}, wasted {wasted}")
print(f"ok - prefetch issued {int(issued)}, used {int(used)}, wasted {int(wasted)}")
PY

# The series arrived in Prometheus.
query() { curl -sf --get "http://127.0.0.1:$pport/api/v1/query" --data-urlencode "query=$1"; }
want=$(grep '^valkyrie_s3_received_bytes_total ' "$tmp/final" | awk '{print $2}')
seen=
prometheus_has_it() {
  seen=$(query valkyrie_s3_received_bytes_total | $py -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")')
  [[ $seen == "$want" ]]
}
wait_until 15 prometheus_has_it || fail "prometheus has valkyrie_s3_received_bytes_total=$seen, want $want"
n=$(query 'count({__name__=~"valkyrie_.*"})' | $py -c 'import json,sys; print(json.load(sys.stdin)["data"]["result"][0]["value"][1])')
((n > 100)) || fail "prometheus holds only $n valkyrie series"
up=$(query 'up{job="valkyrie"}' | $py -c 'import json,sys; print(json.load(sys.stdin)["data"]["result"][0]["value"][1])')
[[ $up == 1 ]] || fail "prometheus sees the target down"
pass "prometheus scraped $n series; its S3 byte count matches"

# SIGUSR2 cycles the level: debug -> info.
kill -USR2 "$daemon_pid"
wait_until 5 grep -q '"level_now":"info"' "$tmp/daemon.err" || true  # (checked just below)
grep -q '"msg":"log level changed (SIGUSR2)","level_now":"info"' "$tmp/daemon.err" || fail "SIGUSR2 did not change the level"
pass "SIGUSR2 cycles the log level"

umount "$mnt"
expect_daemon_gone
for i in $(seq 0 7); do
  "$BUILD_ROOT/tools/valkyrie-s3" --endpoint "$url" --bucket obs get "train/shard_$(printf %06d "$i").tar" \
    -o "$tmp/ref" >/dev/null || fail "reference download"
  sha256sum "$tmp/ref" | awk '{print $1}' >>"$tmp/want.sha"
done
diff "$tmp/want.sha" "$tmp/got.sha" >&2 || fail "bytes read through the mount differ from the objects"
pass "every byte as in S3"

# Logs: JSON objects with the common keys, never a secret.
$py - "$tmp/daemon.err" <<'PY' || fail "log lines"
import json, sys
n, retries, opens = 0, 0, 0
for line in open(sys.argv[1], encoding="utf-8", errors="strict"):
    e = json.loads(line)
    for k in ("time", "level", "component", "msg"):
        if k not in e: sys.exit(f"no {k} in {line}")
    n += 1
    if e["msg"] == "retrying S3 request" and e["operation"] == "GetObject" and e["attempt"] >= 1: retries += 1
    if e["msg"] == "opened" and e["key"].startswith("train/"): opens += 1
if retries == 0 or opens != 8: sys.exit(f"expected debug lines with fields: {retries} retries, {opens} opens")
print(f"ok - {n} log lines, all JSON, fields included")
PY
for secret in "$AWS_SECRET_ACCESS_KEY" "$AWS_SESSION_TOKEN"; do
  ! grep -rqF -- "$secret" "$tmp/daemon.err" "$tmp"/trace.json* || fail "a secret appears in the logs or the trace"
done
pass "no secret key or session token in logs or traces"

# The trace: rotated at 64 KiB, each file complete, balanced, the operations named.
[[ -f $tmp/trace.json.1 ]] || fail "the trace did not rotate"
for f in "$tmp"/trace.json*; do (($(stat -c %s "$f") <= 64 * 1024)) || fail "$f is over its size limit"; done
"$BUILD_ROOT/tests/core/trace-check" --require=fuse.read --require=s3.GetObject --require=cache.fill \
  --require=prefetch.readahead "$tmp/trace.json.1" "$tmp/trace.json" || fail "trace check"
pass "trace files parse, spans balance"
