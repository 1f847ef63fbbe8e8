#!/usr/bin/env bash
# Operations: a mount from a config file, the fstab helper, sd_notify READY=1/STOPPING=1 as a
# Type=notify unit sees them, and `meson install` laying out daemon, helper, unit and docs.
# Exit 77 without /dev/fuse or root.
set -euo pipefail
[[ -c /dev/fuse && $(id -u) == 0 ]] || { echo "no /dev/fuse or not root: skipped"; exit 77; }
tmp=$(mktemp -d /tmp/valkyrie-ops.XXXXXX)
mnt="$tmp/mnt"; mkdir -p "$mnt"
source "$(dirname "$0")/../fuse/lib.sh"
export AWS_ACCESS_KEY_ID=AKIDOPS AWS_SECRET_ACCESS_KEY=ops/secret AWS_EC2_METADATA_DISABLED=true
start_sim --synthetic data:2:1MiB --synthetic data:3:4096:sub/
v="$BUILD_ROOT/src/cli/valkyrie"
gone() { for _ in $(seq 100); do pgrep -f "valkyrie --.*$mnt" >/dev/null || return 0; sleep 0.05; done; fail "daemon still running"; }

# --- a config file (as /etc/valkyrie/NAME.conf) ---
cat >"$tmp/data.conf" <<CONF
# as a systemd instance would read it
mount = $mnt
bucket = data
endpoint = $url
cache-size = 64MiB
cache-prefault = true
log-level = warn
CONF
"$v" --config "$tmp/data.conf"
mountpoint -q "$mnt" || fail "config mount did not come up"
[[ $(ls "$mnt" | tr '\n' ' ') == "shard_000000.tar shard_000001.tar sub " ]] || fail "config mount lists: $(ls "$mnt")"
# cache-prefault: the 64 MiB of cache memory are resident before anything was read.
rss_kib=$(awk '/VmRSS/ { print $2 }' "/proc/$(pgrep -f "valkyrie --config $tmp/data.conf")/status")
(( rss_kib >= 64 * 1024 )) || fail "cache-prefault: RSS $rss_kib KiB, less than the 64 MiB cache"
umount "$mnt"; gone
pass "mount from a config file (cache-prefault: RSS $((rss_kib / 1024)) MiB at mount)"
# --- the cache's memory backed in the background (the default) or lazily ---
metric() { curl -sf "127.0.0.1:$(metrics_port)/metrics" | awk -v m="$1" '$1 == m { print $2 + 0; f = 1 } END { if (!f) print 0 }'; }
rss_kib() { awk '/VmRSS/ { print $2 }' "/proc/$daemon_pid/status"; }
start_valkyrie data "$url" --cache-size 64MiB --passthrough-pool 0
all_backed() { (( $(metric valkyrie_cache_backed_bytes) == $(metric valkyrie_cache_capacity_bytes) )); }
wait_until 30 all_backed || fail "background backing: $(metric valkyrie_cache_backed_bytes) of $(metric valkyrie_cache_capacity_bytes) bytes backed after 30 s"
rss=$(rss_kib)
(( rss >= 64 * 1024 )) || fail "background backing: RSS $rss KiB, less than the 64 MiB cache"
"$BUILD_ROOT/tools/valkyrie-s3" --endpoint "$url" --bucket data get shard_000001.tar -o "$tmp/ref" >/dev/null
cmp "$tmp/ref" "$mnt/shard_000001.tar" || fail "background backing: bytes differ"
umount "$mnt"; expect_daemon_gone
pass "by default the cache's memory is backed after the mount, in the background (RSS $((rss / 1024)) MiB); bytes exact"
start_valkyrie data "$url" --cache-size 256MiB --passthrough-pool 0 --cache-backing lazy
cmp "$tmp/ref" "$mnt/shard_000001.tar" || fail "lazy backing: bytes differ"
[[ $(metric valkyrie_cache_backed_bytes) == 0 ]] || fail "lazy backing: $(metric valkyrie_cache_backed_bytes) bytes backed ahead"
# (Not in the sanitizer build: ASan's shadow memory is in the RSS.)
[[ -n ${VALKYRIE_SANITIZER:-} ]] || (( $(rss_kib) < 128 * 1024 )) || fail "lazy backing: RSS $(rss_kib) KiB with 1 MiB read of a 256 MiB cache"
umount "$mnt"; expect_daemon_gone
pass "--cache-backing lazy: nothing backed ahead"
out=$("$v" --mount "$mnt" --bucket data --endpoint "$url" --cache-prefault --cache-backing lazy 2>&1) && fail "--cache-prefault with --cache-backing lazy was accepted"
[[ $out == *"--cache-prefault is --cache-backing start, not lazy"* ]] || fail "--cache-prefault with lazy: $out"
pass "--cache-prefault with another --cache-backing is refused: $out"

echo "cahce-size = 1G" >>"$tmp/data.conf"
out=$("$v" --config "$tmp/data.conf" 2>&1) && fail "a config typo was accepted"
[[ $out == *"unknown setting 'cahce-size'"* ]] || fail "config typo message: $out"
pass "a typo in the config file is refused: $out"

# --- the fstab helper, as mount(8) calls it ---
VALKYRIE_BIN="$v" "$BUILD_ROOT/mount.fuse.valkyrie" data/sub/ "$mnt" -o "rw,_netdev,nofail,endpoint=$url,cache-size=64MiB,log-level=warn"
mountpoint -q "$mnt" || fail "the fstab helper did not mount"
[[ $(ls "$mnt" | wc -l) == 3 && $(stat -c %s "$mnt/shard_000002.tar") == 4096 ]] || fail "helper mount: $(ls "$mnt")"
umount "$mnt"; gone
pass "fstab helper: BUCKET/PREFIX DIR -o options mounts the prefix"

# --- sd_notify, as systemd's Type=notify sees it ---
/usr/bin/python3 - "$v" "$mnt" "$url" "$tmp/notify.sock" <<'PY' || fail "sd_notify"
import os, signal, socket, subprocess, sys, time
v, mnt, url, path = sys.argv[1:5]
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(path)
sock.settimeout(15)
env = dict(os.environ, NOTIFY_SOCKET=path)
p = subprocess.Popen([v, "--mount", mnt, "--bucket", "data", "--endpoint", url, "--foreground",
                      "--cache-size", "64MiB", "--cache-prefault", "--log-level", "warn"], env=env)
# Backing the cache first asks systemd for more start time, then READY=1.
msg = sock.recv(4096).decode()
assert "EXTEND_TIMEOUT_USEC=" in msg and "STATUS=backing" in msg, msg
msg = sock.recv(4096).decode()
assert "READY=1" in msg, msg
assert os.path.ismount(mnt), "READY=1 before the mount answered"
assert len(os.listdir(mnt)) == 3
p.send_signal(signal.SIGTERM)
msg = sock.recv(4096).decode()
assert "STOPPING=1" in msg, msg
assert p.wait(timeout=10) == 0
assert not os.path.ismount(mnt), "still mounted after SIGTERM"
print("notify: EXTEND_TIMEOUT_USEC while the cache is backed, READY=1 once mounted, STOPPING=1 on SIGTERM, exit 0")
PY
pass "sd_notify: READY=1 only once the mount answers; STOPPING=1 and a clean exit on SIGTERM"

# --- meson install ---
meson install -C "$BUILD_ROOT" --no-rebuild --destdir "$tmp/root" >/dev/null
for f in usr/local/bin/valkyrie usr/local/bin/valkyrie-s3sim sbin/mount.fuse.valkyrie \
         usr/local/lib/systemd/system/valkyrie@.service usr/local/share/doc/valkyrie-fs/operations.md \
         usr/local/share/doc/valkyrie-fs/example.conf; do
  [[ -e $tmp/root/$f ]] || fail "meson install did not install $f"
done
grep -q '^ExecStart=/usr/local/bin/valkyrie --config /etc/valkyrie/%i.conf --foreground --replace-dead-mount$' \
  "$tmp/root/usr/local/lib/systemd/system/valkyrie@.service" || fail "unit ExecStart"
if command -v systemd-analyze >/dev/null; then
  systemd-analyze verify --man=no "$tmp/root/usr/local/lib/systemd/system/valkyrie@.service" 2>&1 |
    grep -v -e 'Command /usr/local/bin/valkyrie is not executable' -e '^$' >"$tmp/verify.txt" || true
  [[ ! -s $tmp/verify.txt ]] || { cat "$tmp/verify.txt" >&2; fail "systemd-analyze verify"; }
fi
pass "meson install: daemon, tools, /sbin helper, systemd unit, docs"
echo "all operations checks passed"
