#!/usr/bin/env bash
# Dead mount points: a valkyrie killed with SIGKILL leaves its FUSE mount behind, dead (opendir,
# and stat once cached attributes expire, answer "Transport endpoint is not connected"). Checks,
# with stat still answering from the attribute cache and with stat failing (--metadata-ttl 0):
# a plain mount there fails (exit 1) with a message that names the dead mount and its fixes and
# mounts nothing; with --replace-dead-mount (command line, foreground as systemd runs it; and
# the config file, as a daemon) the dead mount is detached, logged once, and the new mount takes
# its place (one mount at the path, reads byte-exact). A live mount is refused ("already
# mounted"), also when it is empty, and keeps serving. The systemd unit's ExecStopPost detaches
# a dead mount and leaves a live one. Exit 77 without /dev/fuse or root.
set -euo pipefail
[[ -c /dev/fuse && $(id -u) == 0 ]] || { echo "no /dev/fuse or not root: skipped"; exit 77; }
tmp=$(mktemp -d /tmp/valkyrie-deadmount.XXXXXX)
mnt="$tmp/mnt"; mkdir -p "$mnt" "$tmp/data/data/sub" "$tmp/data/empty"
source "$(dirname "$0")/../fuse/lib.sh"
export AWS_ACCESS_KEY_ID=AKIDDEAD AWS_SECRET_ACCESS_KEY=dead/secret AWS_EC2_METADATA_DISABLED=true
head -c $((3 * 1024 * 1024 + 17)) /dev/urandom >"$tmp/data/data/big.bin"
echo "small" >"$tmp/data/data/sub/small.txt"
start_sim --data "$tmp/data"
v="$BUILD_ROOT/src/cli/valkyrie"

# Unmounts the stacked mounts a failing run may leave (cleanup in lib.sh removes one).
detach_all() { for _ in 1 2 3 4; do grep -q " $mnt " /proc/self/mountinfo && umount -l "$mnt"; done; }
trap 'set +e; detach_all; cleanup' EXIT
mounts_at() { grep -c " $mnt " /proc/self/mountinfo || true; }
daemon_of() { pgrep -f "valkyrie --.*$1" | head -1; }
# (a daemonized valkyrie is not this shell's child: expect_daemon_gone cannot wait for it)
daemon_gone() {
  for _ in $(seq 100); do kill -0 "$daemon_pid" 2>/dev/null || { daemon_pid=; return 0; }; sleep 0.05; done
  fail "the daemon did not exit"
}
same_bytes() {
  cmp -s "$tmp/data/data/big.bin" "$mnt/big.bin" || fail "$1: big.bin differs"
  [[ $(cat "$mnt/sub/small.txt") == small ]] || fail "$1: sub/small.txt differs"
}

# make_dead [FLAGS...]: a foreground valkyrie on $mnt, read from, then killed with SIGKILL.
make_dead() {
  start_valkyrie data "$url" "$@"
  same_bytes "before the kill"
  kill -9 "$daemon_pid"
  wait "$daemon_pid" 2>/dev/null || true
  daemon_pid=
  local errno=
  for _ in $(seq 100); do
    errno=$(/usr/bin/python3 -c 'import os,sys
try: os.listdir(sys.argv[1]); print("answers")
except OSError as e: print(e.errno)' "$mnt")
    [[ $errno == answers ]] || break
    sleep 0.05
  done
  [[ $errno == 107 || $errno == 103 ]] || fail "the killed mount's directory gave '$errno', not ENOTCONN/ECONNABORTED"
  [[ $(mounts_at) == 1 ]] || fail "no dead mount in mountinfo"
}

# expect_refused CODE PATTERN -- CMD...: CMD fails with CODE and a message matching PATTERN; the
# mounts at $mnt are as before. (Output to a file: a daemon that wrongly mounted may hold a pipe.)
expect_refused() {
  local code=$1 pattern=$2 before out status=0
  shift 3
  before=$(mounts_at)
  "$@" >"$tmp/refused.out" 2>&1 || status=$?
  out=$(cat "$tmp/refused.out")
  [[ $status == "$code" ]] || fail "'$*' exited $status, expected $code: $out"
  [[ $out =~ $pattern ]] || fail "'$*' said '$out', expected /$pattern/"
  [[ $(mounts_at) == "$before" ]] || fail "'$*' changed the mounts at $mnt ($before before, $(mounts_at) now)"
  echo "  $out"
}
dead_msg="is a dead FUSE mount \(fuse\.valkyrie from valkyrie:data\): its daemon exited without unmounting.*Detach it with \`fusermount3 -u -z $mnt\` \(or \`umount -l $mnt\` as root\), or start valkyrie with --replace-dead-mount"
args=(--mount "$mnt" --bucket data --endpoint "$url" --metrics-addr 127.0.0.1:0 --log-level warn)

# --- killed after a read: stat still answers from the attribute cache ---
make_dead
# (stat(2), as valkyrie and most tools call it; `stat` the command asks for the birth time too)
/usr/bin/python3 -c 'import os,sys; os.stat(sys.argv[1])' "$mnt" 2>/dev/null ||
  fail "precondition: stat should answer from the attribute cache"
expect_refused 1 "$dead_msg" -- "$v" "${args[@]}"
pass "a dead mount whose stat still answers is named, with its fixes; nothing is mounted on top"
start_valkyrie data "$url" --replace-dead-mount --log-file "$tmp/a.log"
# (start_valkyrie returned at once: the dead mount passes `mountpoint`; wait for the new one)
for _ in $(seq 200); do [[ -e $mnt/big.bin ]] && break; sleep 0.05; done
same_bytes "after --replace-dead-mount"
[[ $(mounts_at) == 1 ]] || fail "the dead mount was not detached: $(mounts_at) mounts at $mnt"
[[ $(grep -c 'detached a dead FUSE mount' "$tmp/a.log") == 1 ]] || fail "detach log line: $(cat "$tmp/a.log")"
grep 'detached a dead FUSE mount' "$tmp/a.log" | grep -q "\"mountpoint\":\"$mnt\",\"type\":\"fuse.valkyrie\"" ||
  fail "detach log line: $(cat "$tmp/a.log")"
pass "--replace-dead-mount (foreground): the dead mount is detached, logged once, reads are byte-exact"

# --- a live mount is never detached ---
expect_refused 1 "mount point $mnt is already mounted \(fuse\.valkyrie from valkyrie:data\) and answers" -- \
  "$v" "${args[@]}" --replace-dead-mount
same_bytes "the live mount after a refused second mount"
kill -0 "$daemon_pid" || fail "the live mount's daemon died"
pass "a live mount is refused, also with --replace-dead-mount, and keeps serving"
umount "$mnt"; expect_daemon_gone
# A live mount of an empty bucket is an empty directory: refused all the same, not mounted over.
start_valkyrie empty "$url"
expect_refused 1 "mount point $mnt is already mounted \(fuse\.valkyrie from valkyrie:empty\) and answers" -- \
  "$v" "${args[@]}"
[[ -d $mnt && $(mounts_at) == 1 ]] && kill -0 "$daemon_pid" || fail "the live mount of an empty bucket broke"
pass "a live mount of an empty bucket is refused too"
umount "$mnt"; expect_daemon_gone

# --- killed with no attribute cache: stat fails too (what old builds took for a missing path) ---
make_dead --metadata-ttl 0
err=$(/usr/bin/python3 -c 'import os,sys
try: os.stat(sys.argv[1]); print("answers")
except OSError as e: print(e.errno)' "$mnt")
[[ $err == 107 || $err == 103 ]] || fail "precondition: stat should fail with ENOTCONN, not '$err'"
expect_refused 1 "$dead_msg" -- "$v" "${args[@]}" --foreground
pass "a dead mount whose stat fails is named, not called missing"
printf 'mount = %s\nbucket = data\nendpoint = %s\nreplace-dead-mount = true\nlog-level = warn\nmetrics-addr = 127.0.0.1:0\n' \
  "$mnt" "$url" >"$tmp/data.conf"
"$v" --config "$tmp/data.conf" >"$tmp/conf.out" 2>&1 || fail "--replace-dead-mount from the config file: $(cat "$tmp/conf.out")"
out=$(cat "$tmp/conf.out")
daemon_pid=$(daemon_of "$tmp/data.conf")
[[ $(grep -c 'detached a dead FUSE mount' <<<"$out") == 1 ]] || fail "detach log line on stderr: $out"
[[ $(mounts_at) == 1 ]] || fail "the dead mount was not detached: $(mounts_at) mounts at $mnt"
same_bytes "after replace-dead-mount from the config file"
pass "replace-dead-mount = true in the config file (a daemon): detached, logged once, byte-exact"

# --- the systemd unit's ExecStopPost: detaches a dead valkyrie mount, never a live one ---
stop_post=$(sed -n 's/^ExecStopPost=-//p' "$BUILD_ROOT/valkyrie@.service")
[[ -n $stop_post ]] || fail "no ExecStopPost in the unit"
stop_post=${stop_post//\/etc\/valkyrie\/%i.conf/$tmp/data.conf}
eval "$stop_post"
[[ $(mounts_at) == 1 ]] && same_bytes "after ExecStopPost on a live mount" || fail "ExecStopPost detached a live mount"
kill -9 "$daemon_pid"
daemon_gone
eval "$stop_post"
[[ $(mounts_at) == 0 ]] || fail "ExecStopPost left the dead mount: $(grep " $mnt " /proc/self/mountinfo)"
pass "the unit's ExecStopPost leaves a live mount alone and detaches a dead one"
echo "all dead-mount checks passed"
