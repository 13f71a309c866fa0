# Helpers shared by the benchmark scripts (sourced after scripts/lib/provision.sh, with $root
# and $OUT set).

log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

# Writes the machine, its load and the commit into $OUT/machine.txt and shows them.
record_machine() {
  {
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "nproc: $(nproc)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
    echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
    echo "kernel: $(uname -r)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "commit: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  } >"$OUT/machine.txt"
  cat "$OUT/machine.txt" >&2
}

# build_release PACKAGE...: the release build of the packages, its output in $OUT/build.log.
build_release() {
  local args=()
  for package in "$@"; do args+=(-p "$package"); done
  log "building release binaries"
  (cd "$root" && cargo build --release --locked "${args[@]}") >"$OUT/build.log" 2>&1 \
    || { tail -n 20 "$OUT/build.log" >&2; exit 1; }
}

# take_port NAME...: sets each NAME to a free loopback port, each different from every port
# taken before in this run (free_port alone only knows a port is free now, not that it was not
# handed out a moment ago for a server that has not bound it yet).
taken_ports=" "
take_port() {
  local name candidate
  for name in "$@"; do
    for _ in $(seq 1 100); do
      candidate=$(free_port)
      case "$taken_ports" in *" $candidate "*) continue ;; esac
      break
    done
    taken_ports="$taken_ports$candidate "
    printf -v "$name" '%s' "$candidate"
  done
}

# wait_ready URL PID LOG: waits up to 30 s for URL to answer; fails early, showing LOG, if the
# process PID exits.
wait_ready() {
  for _ in $(seq 1 300); do
    curl -fsS "$1" >/dev/null 2>&1 && return 0
    kill -0 "$2" 2>/dev/null || { tail -n 20 "$3" >&2; return 1; }
    sleep 0.1
  done
  log "not ready after 30 s: $1"
  return 1
}

# drop_accepted_lines LOG...: smtp-ingress logs a line per accepted message (as an MTA should),
# tens of thousands in a benchmark; keeps the other lines and the count of those removed.
drop_accepted_lines() {
  local logfile accepted
  for logfile in "$@"; do
    accepted=$(grep -c ' message accepted ' "$logfile" || true)
    grep -v ' message accepted ' "$logfile" >"$logfile.kept" || true
    echo "($accepted 'message accepted' lines removed)" >>"$logfile.kept"
    mv "$logfile.kept" "$logfile"
  done
}
