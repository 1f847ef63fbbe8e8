# Shared by tools/bench-*.sh (sourced after `set -euo pipefail`, from the repository root, with
# $build set and the AWS_* credentials exported). bench_init makes a scratch directory $tmp with
# a mount point $mnt and a trap that, on any exit, unmounts, stops what was started and removes
# $tmp and the paths given to bench_remove_on_exit.
#   bench_init NAME                   $tmp (/tmp/valkyrie-NAME.XXXXXX), $mnt, the trap
#   bench_remove_on_exit PATH...      also removed on exit (tmpfs copies)
#   bench_start_sim SIM_FLAGS...      valkyrie-s3sim on a free port with the credentials: $url
#   bench_mount BUCKET FLAGS...       valkyrie on $mnt (foreground job, warnings to
#                                     $tmp/daemon.err), waits for the mount: $daemon_pid
#   bench_unmount                     unmounts and waits for the daemon to end
#   bench_fuse_uring                  exits unless this kernel has FUSE over io_uring; its switch,
#                                     the fuse module's enable_uring ($uring_param), is put back
#                                     to what it was ($uring_saved) on exit (after bench_init)
#   bench_cpu_seconds PID             the process's CPU time so far (utime + stime), in seconds
# BENCH_START_SECONDS: how long the simulator and the mount may take to come up (default 5; a
# simulator of a million synthetic objects, or a mount that lists them, takes longer).
bench_cpu_seconds() {
  awk -v t="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / t }' "/proc/$1/stat"
}
bench_init() {
  tmp=$(mktemp -d "/tmp/valkyrie-$1.XXXXXX")
  mnt="$tmp/mnt"
  mkdir -p "$mnt"
  sim_pid= daemon_pid=
  bench_extra_paths=()
  trap bench_cleanup EXIT
}
bench_remove_on_exit() { bench_extra_paths+=("$@"); }
bench_cleanup() {
  set +e
  mountpoint -q "$mnt" && { umount "$mnt" || umount -l "$mnt"; }
  [[ -n $daemon_pid ]] && kill "$daemon_pid" 2>/dev/null
  [[ -n $sim_pid ]] && kill "$sim_pid" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$tmp" "${bench_extra_paths[@]}"
}
bench_start_sim() {
  "$build/tools/valkyrie-s3sim" --listen 127.0.0.1:0 --credentials "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
    "$@" >"$tmp/sim.out" 2>"$tmp/sim.err" &
  sim_pid=$!
  for _ in $(seq $((${BENCH_START_SECONDS:-5} * 20))); do [[ -s $tmp/sim.out ]] && break; sleep 0.05; done
  [[ -s $tmp/sim.out ]] || { cat "$tmp/sim.err" >&2; echo "valkyrie-s3sim did not start" >&2; exit 1; }
  url=$(head -1 "$tmp/sim.out" | awk '{print $3}')
}
bench_mount() {
  local bucket=$1
  shift
  "$build/src/cli/valkyrie" --mount "$mnt" --bucket "$bucket" --endpoint "$url" --foreground --log-level "${BENCH_LOG_LEVEL:-warn}" \
    --no-metrics ${VALKYRIE_ARGS:-} "$@" 2>>"$tmp/daemon.err" &
  daemon_pid=$!
  for _ in $(seq $((${BENCH_START_SECONDS:-5} * 20))); do mountpoint -q "$mnt" && return 0; sleep 0.05; done
  cat "$tmp/daemon.err" >&2
  echo "the mount did not come up" >&2
  exit 1
}
bench_unmount() {
  umount "$mnt"
  wait "$daemon_pid" || true
  daemon_pid=
}
bench_fuse_uring() {
  uring_param=/sys/module/fuse/parameters/enable_uring
  [[ -w $uring_param ]] || { echo "this kernel has no FUSE over io_uring ($uring_param)" >&2; exit 1; }
  uring_saved=$(cat "$uring_param")
  trap 'echo "$uring_saved" >"$uring_param"; bench_cleanup' EXIT
}
