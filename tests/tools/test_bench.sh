#!/usr/bin/env bash
# valkyrie-bench, short: every scenario produces figures, the JSON parses, the SVG is
# well-formed XML with a curve per scenario, and a corruption injected by the simulator after
# the reference copies were fetched is caught (exit 1, the file and offset named).
# Exit 77 without /dev/fuse or root.
set -euo pipefail
[[ -c /dev/fuse && $(id -u) == 0 ]] || { echo "no /dev/fuse or not root: skipped"; exit 77; }
tmp=$(mktemp -d /tmp/valkyrie-bench-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
bench="$BUILD_ROOT/tools/valkyrie-bench"
small=(--shards 4 --shard-size 8MiB --objects 500 --single-get-objects 1 --ttfb-files 3 --epochs 2
       --random-seconds 0.5 --cache-size 64MiB --first-byte-latency 5ms)

"$bench" "${small[@]}" --json "$tmp/run.json" --plot "$tmp/run.svg" >"$tmp/table.txt" 2>"$tmp/err.txt" ||
  { cat "$tmp/table.txt" "$tmp/err.txt"; fail "valkyrie-bench exited $?"; }
cat "$tmp/table.txt"
[[ ! -s $tmp/err.txt ]] || { cat "$tmp/err.txt"; fail "output on stderr without a terminal"; }
/usr/bin/python3 - "$tmp/run.json" "$tmp/run.svg" <<'PY' || fail "figures"
import json, sys, xml.etree.ElementTree as ET
r = json.load(open(sys.argv[1]))
s = r["scenarios"]
def number(path):
    v = s
    for k in path.split("."):
        v = v[k] if not isinstance(v, list) else v[int(k)]
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        sys.exit(f"{path} is {v!r}, not a number")
    return v
for p in ("baseline-single.mb_per_s", "baseline-parallel.mb_per_s", "cold.mb_per_s", "warm.mb_per_s",
          "ttfb.cold.p50_ms", "ttfb.cold.p99_ms", "ttfb.warm.p50_ms", "ttfb.warm.p99_ms",
          "random.iops", "random.p50_ms", "random.p99_ms", "ls.seconds", "ls.s3_requests"):
    if number(p) <= 0 and not p.startswith("ttfb.warm"): sys.exit(f"{p} is not positive")
for t in ("training-listing-order", "training-manifest", "training-order-hint", "training-local-copy"):
    busy = number(t + ".compute_busy_pct")
    if not 0 < busy <= 100: sys.exit(f"{t}: compute-busy {busy}")
    number(t + ".stall_s"); number(t + ".stall_p99_ms")
    if sum(s[t]["stall_histogram_ms"]["count"]) != 4: sys.exit(f"{t}: stall histogram does not count 4 shards")
epochs = s["epochs"]["per_epoch"]
if len(epochs) != 2: sys.exit("not two epochs")
for e in epochs:
    for k in ("mb_per_s", "hit_ratio", "s3_byte_hit_ratio"):
        if not isinstance(e.get(k), (int, float)): sys.exit(f"epoch {e['epoch']}: {k} = {e.get(k)!r}")
if s["ls"]["entries"] != 500: sys.exit(f"ls saw {s['ls']['entries']} entries, not 500")
if r["integrity"]["mismatches"] or r["integrity"]["checked_bytes"] < 8 * 4 * 2**20 * 5:
    sys.exit(f"integrity: {r['integrity']}")
svg = ET.parse(sys.argv[2]).getroot()
if svg.tag != "{http://www.w3.org/2000/svg}svg": sys.exit("not an SVG document")
curves = svg.findall(".//{http://www.w3.org/2000/svg}polyline")
with_series = [k for k, v in s.items() if isinstance(v, dict) and v.get("series", {}).get("t")]
if len(curves) != len(with_series) or len(curves) < 6: sys.exit(f"{len(curves)} curves for {with_series}")
print(f"ok - every scenario has figures; JSON and SVG ({len(curves)} curves) well-formed")
PY

# Silent corruption after the reference copies: the run must fail and say where.
status=0
"$bench" "${small[@]}" --scenarios cold --corrupt-after-reference --json "$tmp/bad.json" \
  >"$tmp/bad.txt" 2>"$tmp/bad.err" || status=$?
[[ $status == 1 ]] || { cat "$tmp/bad.txt" "$tmp/bad.err"; fail "a corrupted run exited $status, not 1"; }
grep -q "MISMATCH: shard_0000" "$tmp/bad.err" || { cat "$tmp/bad.err"; fail "the mismatch was not named"; }
grep -q "MISMATCHES" "$tmp/bad.txt" || fail "the table does not report the mismatches"
echo "ok - injected corruption caught: $(head -1 "$tmp/bad.err")"

# Many small objects: every variant reads its files whole, 1 and 8 readers, and compares every
# byte; a corruption is caught there too.
tiny=(--scenarios small --small-objects 120 --small-reads 60 --cache-size 64MiB --first-byte-latency 5ms)
"$bench" "${tiny[@]}" --json "$tmp/small.json" >"$tmp/small.txt" 2>"$tmp/small.err" ||
  { cat "$tmp/small.txt" "$tmp/small.err"; fail "valkyrie-bench --scenarios small exited $?"; }
/usr/bin/python3 - "$tmp/small.json" <<'PY' || fail "small-object figures"
import json, sys
r = json.load(open(sys.argv[1]))
s = r["scenarios"]
for how in ("manifest", "order-hint", "listing"):
    for n in (1, 8):
        v = s[f"small-{how}-{n}"]
        if v["files"] != 60 or v["readers"] != n or not v["files_per_s"] > 0:
            sys.exit(f"small-{how}-{n}: {v}")
if r["integrity"]["mismatches"] or r["integrity"]["checked_bytes"] < 10 * 60 * 110 * 1024:
    sys.exit(f"integrity: {r['integrity']}")
print("ok - small objects: six variants of 60 files each, every byte compared")
PY
status=0
"$bench" "${tiny[@]}" --corrupt-after-reference >"$tmp/small-bad.txt" 2>"$tmp/small-bad.err" || status=$?
[[ $status == 1 ]] || { cat "$tmp/small-bad.txt" "$tmp/small-bad.err"; fail "a corrupted small-object run exited $status, not 1"; }
grep -q "MISMATCH: small/shard_0000" "$tmp/small-bad.err" || { cat "$tmp/small-bad.err"; fail "the small-object mismatch was not named"; }
echo "ok - injected corruption caught by the small-object readers"
