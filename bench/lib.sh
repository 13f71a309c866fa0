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

# ---------------------------------------------------------------- CPU accounting
# For the scripts that measure steps: they set $STEP_TIMEOUT and $work (a scratch directory) and
# keep NAME=PID entries of the server process trees in the array cpu_watch.

# cpu_seconds NAME=PID...: "NAME=SECONDS ..." for each process tree (the process and every
# descendant; children that exited count through their parent's cutime/cstime once reaped);
# NAME=NA when PID is gone.
cpu_seconds() {
  python3 - "$@" <<'EOF'
import os, sys
tick = os.sysconf("SC_CLK_TCK")
children, own = {}, {}
for entry in os.listdir("/proc"):
    if not entry.isdigit():
        continue
    try:
        with open(f"/proc/{entry}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        continue
    pid = int(entry)
    children.setdefault(int(fields[1]), []).append(pid)
    own[pid] = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
out = []
for spec in sys.argv[1:]:
    name, root = spec.split("=")
    if int(root) not in own:  # gone (restarted): no figure
        out.append(f"{name}=NA")
        continue
    total, stack, seen = 0, [int(root)], set()
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += own.get(pid, 0)
        stack.extend(children.get(pid, []))
    out.append(f"{name}={total / tick:.2f}")
print(" ".join(out))
EOF
}

# measure LABEL COMMAND...: runs COMMAND (bounded by STEP_TIMEOUT) with stdout appended to
# $OUT/LABEL.jsonl and stderr to $OUT/LABEL.log; appends the wall time and the CPU seconds of
# the client and of every watched server to cpu.jsonl. A failure is written to failures.txt
# and does not stop the run.
measure() {
  local label=$1
  shift
  local before after timing rc=0
  before=$(cpu_seconds "${cpu_watch[@]}")
  local TIMEFORMAT='%R %U %S'
  { time timeout "$STEP_TIMEOUT" "$@" >>"$OUT/$label.jsonl" 2>>"$OUT/$label.log" || rc=$?; } 2>"$work/time"
  after=$(cpu_seconds "${cpu_watch[@]}")
  timing=$(tail -n 1 "$work/time")
  python3 - "$label" "$rc" "$timing" "$before" "$after" >>"$OUT/cpu.jsonl" <<'EOF'
import json, sys
label, rc, timing, before, after = sys.argv[1:]
wall, user, system = map(float, timing.split())
row = {"label": label, "exit": int(rc), "wall_s": wall, "client_cpu_s": round(user + system, 2)}
start = dict(item.split("=") for item in before.split())
for item in after.split():
    name, seconds = item.split("=")
    # A server restarted during the step (Dovecot in the memory runs) has no figure.
    if seconds != "NA" and start.get(name, "NA") != "NA":
        row[f"{name}_cpu_s"] = round(float(seconds) - float(start[name]), 2)
print(json.dumps(row))
EOF
  if [ "$rc" != 0 ]; then
    {
      echo "## $label: exit $rc$([ "$rc" = 124 ] && echo " (timed out after ${STEP_TIMEOUT} s)")"
      echo "command: $*"
      echo '```'
      tail -n 15 "$OUT/$label.log"
      echo '```'
    } >>"$OUT/failures.txt"
    log "$label FAILED (exit $rc): see failures.txt"
  fi
  grep -v '^RESULT ' "$OUT/$label.log" | tail -n 3 >&2 || true
}

# ---------------------------------------------------------------- the distributed mailstore
# start_distributed_store: a throwaway PostgreSQL with every commit on disk and NATS with
# JetStream (scripts/lib/provision.sh) under $work, and the release mailstore ($bin) on them,
# gRPC on 127.0.0.1:$grpc_port, its Admin API on a port of its own and HTTP on
# $mailstore_http_port, its log in $OUT/mailstore.log. PG_SETTINGS adds server settings (name=value,
# space-separated), such as pg_stat_statements for a profile.
# Sets pg_dir, nats_pid, grpc, admin_grpc and mailstore_pid; the mailstore joins the array pids.
start_distributed_store() {
  ensure_postgres
  ensure_nats
  start_postgres "$work" bench fsync=on synchronous_commit=on full_page_writes=on \
    shared_buffers=1GB max_wal_size=4GB ${PG_SETTINGS:-}
  start_nats "$work"
  pg_dir=$(echo "$PG_DIRS" | awk '{print $NF}')
  nats_pid=$(echo "$NATS_PIDS" | awk '{print $NF}')
  grpc=127.0.0.1:$grpc_port
  take_port admin_grpc_port
  admin_grpc=127.0.0.1:$admin_grpc_port
  "$bin/mailstore" --database-url "$POSTGRES_URL" --nats-url "$NATS_URL" \
    --grpc-listen "$grpc" --admin-grpc-listen "$admin_grpc" --http-listen "127.0.0.1:$mailstore_http_port" >"$OUT/mailstore.log" 2>&1 &
  pids+=($!)
  mailstore_pid=${pids[-1]}
  wait_ready "http://127.0.0.1:$mailstore_http_port/readyz" "$mailstore_pid" "$OUT/mailstore.log"
}
