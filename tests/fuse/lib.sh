# Shared by the mount tests (sourced). Expects $tmp (a scratch directory) and $mnt (the mount
# point); tracks $server_pid and $daemon_pid. Everything started is stopped and the mount
# removed on exit, also when a check fails.
server_pid= daemon_pid= daemon_metrics_port=
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

# wait_until SECONDS CMD [ARGS...]: runs CMD until it succeeds, at most SECONDS (whole seconds);
# returns 1 if it never did. Tests wait for conditions this way, never for a fixed time (a sleep
# is only right where time passing is the scenario, and says so).
wait_until() {
  local deadline=$(($(date +%s%N) + $1 * 1000000000))
  shift
  until "$@"; do
    (($(date +%s%N) < deadline)) || return 1
    sleep 0.05
  done
}

# start_sim [SIM FLAGS...]: valkyrie-s3sim on a free port (or the one named by SIM_PORT),
# checking signatures with $AWS_ACCESS_KEY_ID/$AWS_SECRET_ACCESS_KEY (or $SIM_CREDENTIALS);
# sets $url and $server_pid.
start_sim() {
  : >"$tmp/sim.out"
  "$BUILD_ROOT/tools/valkyrie-s3sim" --listen "127.0.0.1:${SIM_PORT:-0}" \
    --credentials "${SIM_CREDENTIALS:-$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY}" "$@" >"$tmp/sim.out" 2>>"$tmp/sim.err" &
  server_pid=$!
  wait_until 5 test -s "$tmp/sim.out" || fail "valkyrie-s3sim did not start: $(cat "$tmp/sim.err")"
  url=$(head -1 "$tmp/sim.out" | awk '{print $3}')
}

# start_valkyrie BUCKET URL [FLAGS...]: runs the daemon in the foreground (background job) and
# waits for the mount. Metrics go to a free port (tests run in parallel) unless
# VALKYRIE_METRICS_ADDR says otherwise; metrics_port reads it back from the log.
# VALKYRIE_FUSE_TRANSPORT (io-uring, dev-fuse, auto) picks the FUSE transport (default: dev-fuse);
# VALKYRIE_PASSTHROUGH_POOL, when set, is passed as --passthrough-pool (the default: auto), and
# VALKYRIE_DIRECT_IO_ABOVE as --direct-io-above.
start_valkyrie() {
  local bucket=$1 url=$2
  shift 2
  "$BUILD_ROOT/src/cli/valkyrie" --mount "$mnt" --bucket "$bucket" --endpoint "$url" --foreground \
    --log-level "${VALKYRIE_LOG_LEVEL:-warn}" --metrics-addr "${VALKYRIE_METRICS_ADDR:-127.0.0.1:0}" \
    --fuse-transport "${VALKYRIE_FUSE_TRANSPORT:-dev-fuse}" \
    ${VALKYRIE_PASSTHROUGH_POOL:+--passthrough-pool "$VALKYRIE_PASSTHROUGH_POOL"} \
    ${VALKYRIE_DIRECT_IO_ABOVE:+--direct-io-above "$VALKYRIE_DIRECT_IO_ABOVE"} "$@" 2>>"$tmp/daemon.err" &
  daemon_pid=$! daemon_metrics_port=
  wait_until 5 mountpoint -q "$mnt" && return 0
  cat "$tmp/daemon.err" >&2
  fail "the mount did not come up"
}

# metrics_port: the port the daemon ($daemon_pid) serves /metrics on: its listening socket
# (bound before the mount comes up; connections wait in its backlog until it serves).
metrics_port() {
  local port=
  listening() {
    port=$(ss -Hltnp 2>/dev/null | awk -v p="pid=$daemon_pid," 'index($0, p) {n = split($4, a, ":"); print a[n]; exit}')
    [[ -n $port ]]
  }
  wait_until 10 listening || return 0
  echo "$port"
}

# daemon_idle: the daemon has nothing in flight: no S3 request on the wire, no chunk being
# filled, no prefetch queued (read from its /metrics).
daemon_idle() {
  [[ -n $daemon_metrics_port ]] || daemon_metrics_port=$(metrics_port)
  curl -sf "127.0.0.1:$daemon_metrics_port/metrics" | awk '
    $1 == "valkyrie_s3_requests_in_flight" || $1 == "valkyrie_cache_bytes{zone=\"filling\"}" ||
    $1 == "valkyrie_prefetch_chunks_queued" { seen++; if ($2 + 0 != 0) busy = 1 }
    END { exit !(seen == 3 && !busy) }'
}
# settle [SECONDS]: until the daemon is idle at two reads of its metrics in a row (what a step
# set off, such as a prefetch after a read, has started by the first), 30 s at most.
settle() {
  [[ -n $daemon_metrics_port ]] || daemon_metrics_port=$(metrics_port)
  [[ -n $daemon_metrics_port ]] || fail "settle: the daemon serves no metrics"
  idle_twice() { daemon_idle && sleep 0.05 && daemon_idle; }
  wait_until "${1:-30}" idle_twice || fail "the daemon did not become idle within ${1:-30} s"
}

# expect_daemon_gone: the daemon exits (after umount or a signal) within 5 s.
expect_daemon_gone() {
  _daemon_exited() { ! kill -0 "$daemon_pid" 2>/dev/null; }
  wait_until 5 _daemon_exited || fail "the daemon did not exit"
  wait "$daemon_pid" || true
  daemon_pid=
}
