# Several daemons on one machine as the nodes of a cluster (the shared cache tests). Sourced after
# lib.sh; start_node mounts against $origin (set by the test before the first call). Every node's
# mount is unmounted on exit, before lib.sh's cleanup.
node_mnts=()
trap 'for m in "${node_mnts[@]}"; do mountpoint -q "$m" && { umount "$m" || umount -l "$m"; }; done; cleanup' EXIT

# start_node N [FLAGS...]: daemon N on $tmp/mntN, its log in $tmp/daemonN.err; sets $port.
start_node() {
  local n=$1
  shift
  local m="$tmp/mnt$n"
  mkdir -p "$m"
  node_mnts+=("$m")
  "$BUILD_ROOT/src/cli/valkyrie" --mount "$m" --bucket data --endpoint "$origin" --foreground --log-level info \
    --metrics-addr 127.0.0.1:0 --cache-size 256MiB "$@" 2>>"$tmp/daemon$n.err" &
  extra_pids+=("$!")
  wait_until 5 mountpoint -q "$m" || { cat "$tmp/daemon$n.err" >&2; fail "node $n did not mount"; }
  wait_until 5 grep -q '"metrics":"' "$tmp/daemon$n.err" || fail "node $n: no metrics address in its log"
  port=$(grep -o '"metrics":"[^"]*"' "$tmp/daemon$n.err" | tail -1 | sed 's/.*:\([0-9]*\)"$/\1/')
}
