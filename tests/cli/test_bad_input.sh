#!/usr/bin/env bash
# Bad input to the valkyrie daemon: each case checks the exit code and the one-line message, and
# that nothing was mounted. Also: keys that are not UTF-8, and a second mount on the same
# directory. Exit 77 (skip) without /dev/fuse or root.
set -euo pipefail
[[ -c /dev/fuse && $(id -u) == 0 ]] || { echo "no /dev/fuse or not root: skipped"; exit 77; }
tmp=$(mktemp -d /tmp/valkyrie-badinput.XXXXXX)
mnt="$tmp/mnt"; mkdir -p "$mnt"
source "$(dirname "$0")/../fuse/lib.sh"
export AWS_ACCESS_KEY_ID=AKIDBAD AWS_SECRET_ACCESS_KEY=bad/secret AWS_EC2_METADATA_DISABLED=true
start_sim --synthetic data:3:1MiB
v="$BUILD_ROOT/src/cli/valkyrie"

# expect CODE PATTERN -- ARGS...: exit status CODE, a message matching PATTERN, nothing mounted.
expect() {
  local code=$1 pattern=$2
  shift 3
  local out status=0
  out=$("$@" 2>&1) || status=$?
  [[ $status == "$code" ]] || fail "'$*' exited $status, expected $code: $out"
  [[ $out =~ $pattern ]] || fail "'$*' said '$out', expected /$pattern/"
  mountpoint -q "$mnt" && fail "'$*' left a mount"
  pass "exit $code: $pattern"
}
good=(--mount "$mnt" --bucket data --endpoint "$url")
expect 2 "--bogus"                      -- "$v" "${good[@]}" --bogus
expect 2 "mount is required"            -- "$v" --bucket data
expect 2 "bad --cache-size '12XB'"      -- "$v" "${good[@]}" --cache-size 12XB
expect 2 "bad --chunk-size"             -- "$v" "${good[@]}" --chunk-size 1
expect 2 "smaller than two chunks"      -- "$v" "${good[@]}" --cache-size 8MiB
expect 2 "bad --metadata-ttl"           -- "$v" "${good[@]}" --metadata-ttl soon
expect 2 "bad --retry-timeout '-1s'"   -- "$v" "${good[@]}" --retry-timeout -1s
expect 2 "bad --retry-timeout '2000h'" -- "$v" "${good[@]}" --retry-timeout 2000h
expect 2 "bad --metadata-retry-timeout"  -- "$v" "${good[@]}" --metadata-retry-timeout later
expect 2 "bad --file-mode"              -- "$v" "${good[@]}" --file-mode 999
expect 2 "unknown --log-level"          -- "$v" "${good[@]}" --log-level loud
expect 2 "unknown --log-format 'xml'"   -- "$v" "${good[@]}" --log-format xml
expect 2 "bad --metrics-addr 'nowhere'" -- "$v" "${good[@]}" --metrics-addr nowhere
expect 2 "--disk-cache and --disk-cache-size go together" -- "$v" "${good[@]}" --disk-cache "$tmp"
expect 2 "bad --disk-cache-size '1KiB'" -- "$v" "${good[@]}" --disk-cache "$tmp" --disk-cache-size 1KiB
expect 1 "--disk-cache $tmp/nodir: not a directory" -- "$v" "${good[@]}" --disk-cache "$tmp/nodir" --disk-cache-size 1G
expect 2 "bad --trace-max-size"         -- "$v" "${good[@]}" --trace-max-size 1
expect 2 "bad --prefetch-share '0'"    -- "$v" "${good[@]}" --prefetch-share 0
expect 2 "bad --kernel-read-ahead '1k'" -- "$v" "${good[@]}" --kernel-read-ahead 1k
expect 2 "bad --fuse-uring-poll '5ms'" -- "$v" "${good[@]}" --fuse-uring-poll 5ms
expect 2 "bad --passthrough-pool 'some'" -- "$v" "${good[@]}" --passthrough-pool some
expect 2 "--passthrough-pool 600MiB is part of --cache-size 1GiB: at most half" -- "$v" "${good[@]}" \
  --cache-size 1GiB --passthrough-pool 600MiB
expect 2 "--passthrough-pool and --direct-io exclude" -- "$v" "${good[@]}" --passthrough-pool 64MiB --direct-io
expect 2 "bad --direct-io-above 'lots'" -- "$v" "${good[@]}" --direct-io-above lots
expect 2 "bad --prefetch-share '150%'" -- "$v" "${good[@]}" --prefetch-share 150%
expect 2 "--express-session: maybe not in \{auto,on,off\}" -- "$v" "${good[@]}" --express-session maybe
expect 2 "--shared-cache-\* options need --shared-cache" -- "$v" "${good[@]}" --shared-cache-express-session on
expect 2 "--shared-cache-express-session: always not in" -- "$v" "${good[@]}" --shared-cache s3://c --shared-cache-express-session always
expect 2 "bucket 'c--x-s3' ends in --x-s3 but names no zone" -- "$v" "${good[@]}" --shared-cache s3://c--x-s3
# A metrics address the user chose must be free (the default one may be taken: a warning).
/usr/bin/python3 -c 'import socket,time,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", 0)); s.listen(1); print(s.getsockname()[1], flush=True); time.sleep(60)' >"$tmp/busy.port" &
extra_pids+=($!)
for _ in $(seq 50); do [[ -s $tmp/busy.port ]] && break; sleep 0.1; done
busy=$(cat "$tmp/busy.port")
expect 1 "cannot serve metrics on 127.0.0.1:$busy" -- "$v" "${good[@]}" --metrics-addr "127.0.0.1:$busy"
expect 1 "cannot serve metrics on 127.0.0.1:$busy" -- "$v" "${good[@]}" --metrics-port "$busy"
expect 1 "does not exist"               -- "$v" --mount "$tmp/nowhere" --bucket data --endpoint "$url"
touch "$tmp/file"
expect 1 "is not a directory"           -- "$v" --mount "$tmp/file" --bucket data --endpoint "$url"
mkdir -p "$tmp/full"; touch "$tmp/full/x"
expect 1 "is not empty"                 -- "$v" --mount "$tmp/full" --bucket data --endpoint "$url"
expect 1 "no such bucket 'nope'"        -- "$v" --mount "$mnt" --bucket nope --endpoint "$url"
expect 1 "secret key is wrong"          -- env AWS_SECRET_ACCESS_KEY=wrong "$v" "${good[@]}"
expect 1 "access denied"                -- env AWS_ACCESS_KEY_ID=AKIDOTHER "$v" "${good[@]}"
expect 1 "not in region eu-west-1"      -- "$v" "${good[@]}" --region eu-west-1
expect 1 "endpoint unreachable"         -- "$v" --mount "$mnt" --bucket data --endpoint http://127.0.0.1:1
expect 2 "bad --endpoint"               -- "$v" --mount "$mnt" --bucket data --endpoint ftp://example
expect 1 "no AWS credentials"           -- env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY HOME="$tmp" "$v" "${good[@]}"
expect 1 "cannot read --manifest"       -- "$v" "${good[@]}" --manifest "$tmp/missing.txt"
expect 1 "--cache-size 1T is more than the memory available \(.*: [0-9.]+ [KMGT]i?B\)" -- "$v" "${good[@]}" --cache-size 1T --cache-prefault

# A second mount on the same directory is refused; the first keeps working.
start_valkyrie data "$url"
expect_second=$("$v" "${good[@]}" 2>&1) && fail "a second mount succeeded"
[[ $expect_second == *"is already mounted (fuse.valkyrie from valkyrie:data) and answers"* ]] ||
  fail "second mount said: $expect_second"
[[ $(stat -c %s "$mnt/shard_000001.tar") == 1048576 ]] || fail "the first mount broke"
pass "a second mount on the same directory is refused; the first still works"

# Keys that are not UTF-8 are served as the bytes they are.
printf 'latin-1 name' >"$tmp/body"
"$BUILD_ROOT/tools/valkyrie-s3" --endpoint "$url" --bucket data put "$(printf 'caf\xe9.txt')" "$tmp/body" >/dev/null
umount "$mnt"; expect_daemon_gone
start_valkyrie data "$url"
[[ $(cat "$mnt/$(printf 'caf\xe9.txt')") == "latin-1 name" ]] || fail "non-UTF-8 key not readable"
ls "$mnt" | grep -q "shard_000000.tar" || fail "listing broken by a non-UTF-8 key"
pass "a non-UTF-8 key is listed and read as its bytes"
umount "$mnt"; expect_daemon_gone
echo "all bad-input checks passed"
