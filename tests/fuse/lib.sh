# Shared by the mount tests (sourced). Expects $tmp (a scratch directory) and $mnt (the mount
# point); tracks $server_pid and $daemon_pid. Everything started is stopped and the mount
# removed on exit, also when a check fails.
server_pid= daemon_pid=
extra_pids=()  # other background helpers a test starts
cleanup() {
  set +e
  mountpoint -q "$mnt" && { umount "$mnt" || umount -l "$mnt"; }
  [[ -n $daemon_pid ]] && kill -9 "$daemon_pid" 2>/dev/null
  [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null
  for p in "${extra_pids[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok - $*"; }

# start_sim [SIM FLAGS...]: valkyrie-s3sim on a free port (or the one named by SIM_PORT),
# checking signatures with $AWS_ACCESS_KEY_ID/$AWS_SECRET_ACCESS_KEY (or $SIM_CREDENTIALS);
# sets $url and $server_pid.
start_sim() {
  : >"$tmp/sim.out"
  "$BUILD_ROOT/tools/valkyrie-s3sim" --listen "127.0.0.1:${SIM_PORT:-0}" \
    --credentials "${SIM_CREDENTIALS:-$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY}" "$@" >"$tmp/sim.out" 2>>"$tmp/sim.err" &
  server_pid=$!
  for _ in $(seq 100); do [[ -s $tmp/sim.out ]] && break; sleep 0.05; done
  [[ -s $tmp/sim.out ]] || fail "valkyrie-s3sim did not start: $(cat "$tmp/sim.err")"
  url=$(head -1 "$tmp/sim.out" | awk '{print $3}')
}

# start_valkyrie BUCKET URL [FLAGS...]: runs the daemon in the foreground (background job) and
# waits for the mount. Metrics go to a free port (tests run in parallel) unless
# VALKYRIE_METRICS_ADDR says otherwise; metrics_port reads it back from the log.
start_valkyrie() {
  local bucket=$1 url=$2
  shift 2
  "$BUILD_ROOT/src/cli/valkyrie" --mount "$mnt" --bucket "$bucket" --endpoint "$url" --foreground \
    --log-level "${VALKYRIE_LOG_LEVEL:-warn}" --metrics-addr "${VALKYRIE_METRICS_ADDR:-127.0.0.1:0}" \
    "$@" 2>>"$tmp/daemon.err" &
  daemon_pid=$!
  for _ in $(seq 100); do mountpoint -q "$mnt" && return 0; sleep 0.05; done
  cat "$tmp/daemon.err" >&2
  fail "the mount did not come up"
}

# metrics_port: the port the daemon serves /metrics on (needs VALKYRIE_LOG_LEVEL=info or lower).
# The kernel shows the mount a moment before the daemon logs "mounted": wait for the line.
metrics_port() {
  for _ in $(seq 100); do grep -q '"metrics":"' "$tmp/daemon.err" && break; sleep 0.05; done
  grep -o '"metrics":"[^"]*"' "$tmp/daemon.err" | tail -1 | sed 's/.*:\([0-9]*\)"$/\1/'
}

# expect_daemon_gone: the daemon exits (after umount or a signal) within 5 s.
expect_daemon_gone() {
  for _ in $(seq 100); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.05; done
  kill -0 "$daemon_pid" 2>/dev/null && fail "the daemon did not exit"
  wait "$daemon_pid" || true
  daemon_pid=
}
