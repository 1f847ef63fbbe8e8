#!/usr/bin/env bash
# Credentials that expire during a long read: the mount takes temporary credentials from an ECS
# endpoint (served here); every 2 s the endpoint and valkyrie-s3sim rotate to a new set valid
# for 4 s, so a slow 12-second read through a small cache is signed with several sets in turn.
# Every byte must come back exact. Exit 77 without /dev/fuse or root.
set -euo pipefail
[[ -c /dev/fuse && $(id -u) == 0 ]] || { echo "no /dev/fuse or not root: skipped"; exit 77; }
tmp=$(mktemp -d /tmp/valkyrie-creds.XXXXXX)
mnt="$tmp/mnt"; mkdir -p "$mnt" "$tmp/data/bkt"
source "$(dirname "$0")/lib.sh"
head -c $((48 * 1024 * 1024)) /dev/urandom >"$tmp/data/bkt/long.bin"

# The ECS credentials endpoint: serves $tmp/creds.json, counts requests.
/usr/bin/python3 - "$tmp" >"$tmp/ecs.out" 2>/dev/null <<'PY' &
import http.server, os, sys
tmp = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = open(os.path.join(tmp, "creds.json"), "rb").read()
        with open(os.path.join(tmp, "ecs.count"), "a") as f:
            f.write("x\n")
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print(s.server_port, flush=True)
s.serve_forever()
PY
extra_pids+=($!)
wait_until 5 test -s "$tmp/ecs.out" || fail "the credential endpoint did not start"
ecs_port=$(head -1 "$tmp/ecs.out")

AWS_ACCESS_KEY_ID=AKIDBOOT AWS_SECRET_ACCESS_KEY=boot/secret start_sim --data "$tmp/data"
rotate() {  # N: a new set valid for 4 s, accepted by the server, handed out by the endpoint
  local id="AKIDGEN$1" secret="secret/$1" token="token+$1"
  local expires
  expires=$(date -u -d '+4 seconds' +%Y-%m-%dT%H:%M:%SZ)
  curl -sf -X POST "$url/_sim/credentials?akid=$id&secret=${secret//\//%2F}&token=${token//+/%2B}&expires_in=4s" >/dev/null
  printf '{"AccessKeyId":"%s","SecretAccessKey":"%s","Token":"%s","Expiration":"%s"}' \
    "$id" "$secret" "$token" "$expires" >"$tmp/creds.json.new"
  mv "$tmp/creds.json.new" "$tmp/creds.json"
}
rotate 0
# The daemon finds no other credential source than the ECS endpoint.
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_PROFILE
export HOME="$tmp" AWS_EC2_METADATA_DISABLED=true
export AWS_CONTAINER_CREDENTIALS_FULL_URI="http://127.0.0.1:$ecs_port/creds"
start_valkyrie bkt "$url" --chunk-size 1MiB --cache-size 8MiB --workers 4
( for n in 1 2 3 4 5 6 7; do sleep 2; rotate "$n"; done ) &  # (the scenario: a new set every 2 s)
rotator=$!
extra_pids+=($rotator)

/usr/bin/python3 - "$mnt/long.bin" "$tmp/data/bkt/long.bin" <<'PY' || fail "the long read failed or differed"
import os, sys, time
f = os.open(sys.argv[1], os.O_RDONLY)
src = open(sys.argv[2], "rb").read()
off, start = 0, time.time()
while off < len(src):
    b = os.pread(f, 1 << 20, off)
    assert b == src[off:off + len(b)], f"bytes differ at {off}"
    off += len(b)
    time.sleep(0.25)          # ~4 MiB/s: the read spans several credential lifetimes
print(f"read {off >> 20} MiB in {time.time() - start:.1f} s, every byte exact")
PY
wait "$rotator"
fetches=$(wc -l <"$tmp/ecs.count")
[[ $fetches -ge 3 ]] || fail "credentials were fetched only $fetches times"
pass "a 12 s read across 7 credential rotations (4 s lifetimes): exact; $fetches credential fetches"
umount "$mnt"; expect_daemon_gone
echo "all credential-expiry checks passed"
