#!/usr/bin/env bash
# valkyrie-s3sim serves ListObjects V1 (no list-type=2; what rclone and older SDKs send) as S3
# does: Marker/NextMarker pagination, with and without a delimiter, every key or common prefix
# exactly once. Requests are signed by botocore (the independent signer; the simulator checks).
set -euo pipefail
tmp=$(mktemp -d /tmp/valkyrie-v1.XXXXXX)
trap 'kill $sim 2>/dev/null; rm -rf "$tmp"' EXIT
"$BUILD_ROOT/tools/valkyrie-s3sim" --listen 127.0.0.1:0 --credentials AKIDV1:v1-secret \
  --synthetic b:5:1KiB:a/ --synthetic b:3:1KiB:c/d/ --synthetic b:4:1KiB >"$tmp/out" 2>"$tmp/err" &
sim=$!
for _ in $(seq 100); do [[ -s $tmp/out ]] && break; sleep 0.05; done
/usr/bin/python3 - "$(head -1 "$tmp/out" | awk '{print $3}')" <<'PY'
import sys, urllib.parse, urllib.request, xml.etree.ElementTree as ET
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
base, ns = sys.argv[1], "{http://s3.amazonaws.com/doc/2006-03-01/}"
def get(query):
    url = base + "/b?" + urllib.parse.urlencode(query)
    req = AWSRequest(method="GET", url=url, headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
    SigV4Auth(Credentials("AKIDV1", "v1-secret"), "s3", "us-east-1").add_auth(req)
    return ET.fromstring(urllib.request.urlopen(urllib.request.Request(url, headers=dict(req.headers.items()))).read())
def list_all(extra):
    items, marker = [], ""
    for _ in range(50):
        root = get({"max-keys": "2", "marker": marker, **extra})
        if root.find(ns + "KeyCount") is not None: sys.exit("a V1 answer carries V2 fields")
        keys = [c.findtext(ns + "Key") for c in root.findall(ns + "Contents")]
        items += keys + ["P " + p.findtext(ns + "Prefix") for p in root.findall(ns + "CommonPrefixes")]
        if root.findtext(ns + "IsTruncated") != "true": return sorted(items)
        marker = root.findtext(ns + "NextMarker") or keys[-1]
    sys.exit("V1 pagination does not end")
flat = list_all({})
if len(flat) != 12 or len(set(flat)) != 12: sys.exit(f"flat V1 listing: {flat}")
print("ok - V1 without a delimiter: 12 keys, each once, in pages of 2")
tree = list_all({"delimiter": "/"})
want = sorted(["P a/", "P c/"] + [f"shard_00000{i}.tar" for i in range(4)])
if tree != want: sys.exit(f"V1 listing with a delimiter: {tree}")
print("ok - V1 with a delimiter: 2 common prefixes and 4 keys, each once, NextMarker across prefixes")
PY
