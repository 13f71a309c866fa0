#!/usr/bin/env bash
# The mailstore benchmark, with Dovecot measured in the same run as the peer.
#
#   bench/mailstore.sh
#
# 1. Builds the release `mailstore` and `mailstore-bench` binaries.
# 2. Provisions a throwaway PostgreSQL (durable: fsync, synchronous_commit and full_page_writes
#    on; shared_buffers and max_wal_size raised, max_connections 400) and NATS
#    (scripts/lib/provision.sh), and starts `mailstore` on free loopback ports.
# 3. Starts Dovecot once per mailbox format in PEER_FORMATS with the shared peer scripts
#    ($PEERS_DIR/bin/peers.sh, read-only), each under its own root and on free ports.
# 4. Deliver matrix, 4 KiB and 100 KiB × 1 and 16 clients, RUNS runs each: `mailstore-bench
#    deliver` against the mailstore, then `bench/lmtp-load.py` against each Dovecot's LMTP with
#    the same sizes, counts and concurrency. Ours and the peer alternate per configuration, so
#    a slow phase of the shared machine hits both.
# 5. SELECT on a 10,000-message INBOX: `mailstore-bench select` (SelectMailbox); for Dovecot, the
#    INBOX of bench1 is filled over LMTP and `imapbench.py login-fetch` times SELECT and
#    `FETCH 1:* (FLAGS)` (3 batches × 50 sessions).
# 6. Writes raw outputs and summary.md to bench/results/<UTC date-time>/ and prints the summary.
#
# Everything listens on 127.0.0.1 only; every loop is bounded; everything started is stopped on
# exit, also on failure or Ctrl-C. If Dovecot cannot be set up, our figures are still measured
# and the summary says why the peer is missing.
#
# Environment (defaults): RUNS=3 ACCOUNTS=50 DELIVER_4K=5000 DELIVER_100K=1000
#   SELECT_MESSAGES=10000 SELECT_ITERATIONS=200 PEER_FORMATS="maildir mdbox" (empty: no peer)
#   PEERS_DIR=/work/shared/bench/peers OUT=bench/results/<date-time>
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/lib/provision.sh"
source "$root/bench/lib.sh"

RUNS=${RUNS:-3}
ACCOUNTS=${ACCOUNTS:-50}
DELIVER_4K=${DELIVER_4K:-5000}
DELIVER_100K=${DELIVER_100K:-1000}
SELECT_MESSAGES=${SELECT_MESSAGES:-10000}
SELECT_ITERATIONS=${SELECT_ITERATIONS:-200}
PEER_FORMATS=${PEER_FORMATS-maildir mdbox}
PEERS_DIR=${PEERS_DIR:-/work/shared/bench/peers}
OUT=${OUT:-$root/bench/results/$(date -u +%Y-%m-%dT%H%M%SZ)}
# Dovecot's own users for the LMTP load are bench101.. (bench1 holds the 10k INBOX).
PEER_USER_OFFSET=100

mkdir -p "$OUT"
# Under /var: the peer configs log to files there (Postfix only accepts maillog paths in /var).
work=$(mktemp -d /var/tmp/kubemail-bench.XXXXXX)
chmod 755 "$work"
mailstore_pid=""
peer_roots=()

cleanup() {
  set +e
  if [ -n "$mailstore_pid" ]; then
    kill "$mailstore_pid" 2>/dev/null
    wait "$mailstore_pid" 2>/dev/null
  fi
  for peer_root in "${peer_roots[@]}"; do
    BENCH_ROOT=$peer_root "$PEERS_DIR/bin/peers.sh" stop dovecot >/dev/null 2>&1
  done
  provision_cleanup "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# CPU seconds used so far by the process trees rooted at the given PIDs, one number per PID
# (descendants included; exited children count once their parent has reaped them).
tree_cpu() {
  python3 - "$@" <<'EOF'
import os, sys
hz = os.sysconf("SC_CLK_TCK")
parent, ticks = {}, {}
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        continue  # exited while we looked
    parent[pid] = fields[1]
    ticks[pid] = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
def in_tree(pid, top):
    for _ in range(64):  # bounded walk up the parent chain
        if pid == top:
            return True
        if pid not in parent:
            return False
        pid = parent[pid]
    return False
print(" ".join(f"{sum(t for p, t in ticks.items() if in_tree(p, top)) / hz:.2f}" for top in sys.argv[1:]))
EOF
}

# measure LABEL COMMAND...: runs COMMAND with stdout to $OUT/LABEL.jsonl and stderr to
# $OUT/LABEL.log, and appends to $OUT/cpu.jsonl the wall time and the CPU seconds of the client
# and of every server process tree during the run.
measure() {
  local label=$1
  shift
  local names=() pids=() before after timing
  for entry in "${cpu_watch[@]}"; do names+=("${entry%%=*}"); pids+=("${entry#*=}"); done
  before=$(tree_cpu "${pids[@]}")
  local TIMEFORMAT='%R %U %S'
  { time "$@" >"$OUT/$label.jsonl" 2>"$OUT/$label.log"; } 2>"$work/time.$label" \
    || { log "$label failed:"; tail -n 5 "$OUT/$label.log" >&2; return 1; }
  after=$(tree_cpu "${pids[@]}")
  timing=$(cat "$work/time.$label")
  python3 - "$label" "$timing" "${names[*]}" "$before" "$after" >>"$OUT/cpu.jsonl" <<'EOF'
import json, sys
label, timing, names, before, after = sys.argv[1:]
wall, user, system = map(float, timing.split())
row = {"label": label, "wall_s": wall, "client_cpu_s": round(user + system, 2)}
for name, b, a in zip(names.split(), before.split(), after.split()):
    row[f"{name}_cpu_s"] = round(float(a) - float(b), 2)
print(json.dumps(row))
EOF
  grep -h summary "$OUT/$label.jsonl" >&2 || tail -n 1 "$OUT/$label.jsonl" >&2
}

# ---------------------------------------------------------------- machine and build
record_machine
build_release kubemail-mailstore kubemail-bench
bin=$root/target/release
bench_bin=$bin/mailstore-bench

# ---------------------------------------------------------------- PostgreSQL, NATS, mailstore
# Durability stays at PostgreSQL's defaults, spelled out so the run records them, and
# shared_buffers and max_wal_size are raised for load (start_distributed_store, bench/lib.sh).
take_port grpc_port mailstore_http_port
start_distributed_store
pg_pid=$(head -n 1 "$pg_dir/postmaster.pid")
psql "$POSTGRES_URL" -Atc "SELECT name || ' = ' || setting FROM pg_settings WHERE name IN \
  ('fsync', 'synchronous_commit', 'full_page_writes', 'wal_sync_method', 'shared_buffers', \
   'max_connections', 'max_wal_size', 'server_version')" >"$OUT/postgres-settings.txt"
mailstore_url="http://$grpc"
admin_url="http://$admin_grpc"
log "mailstore ready on $mailstore_url (PostgreSQL $POSTGRES_URL, NATS $NATS_URL)"
cpu_watch=("postgres=$pg_pid" "mailstore=$mailstore_pid" "nats=$nats_pid")

# ---------------------------------------------------------------- Dovecot (the peer)
declare -A peer_lmtp peer_imap
peer_formats=()  # the formats whose Dovecot runs, in PEER_FORMATS order
: >"$OUT/peer-status.txt"
if [ -n "$PEER_FORMATS" ]; then
  if ! command -v dovecot >/dev/null || ! command -v postfix >/dev/null; then
    log "installing Postfix and Dovecot (peers.sh install)"
    "$PEERS_DIR/bin/peers.sh" install >"$OUT/peer-install.log" 2>&1 \
      || echo "peers.sh install failed: see peer-install.log" >>"$OUT/peer-status.txt"
  fi
  for format in $PEER_FORMATS; do
    peer_root=$work/dovecot-$format
    take_port imap_port lmtp_port postfix_port hold_port sink_port
    # peers.sh renders Postfix ports too; Postfix is never started here, the ports only have to
    # differ from the ones in use.
    if env BENCH_ROOT="$peer_root" MAIL_FORMAT="$format" IMAP_PORT="$imap_port" LMTP_PORT="$lmtp_port" \
      SMTP_PORT="$postfix_port" SMTP_HOLD_PORT="$hold_port" SINK_PORT="$sink_port" BENCH_USERS=200 \
      "$PEERS_DIR/bin/peers.sh" setup >"$OUT/peer-$format-setup.log" 2>&1 \
      && BENCH_ROOT=$peer_root "$PEERS_DIR/bin/peers.sh" start dovecot >>"$OUT/peer-$format-setup.log" 2>&1 \
      && wait_for_port "$lmtp_port" && wait_for_port "$imap_port"; then
      peer_roots+=("$peer_root")
      peer_formats+=("$format")
      peer_lmtp[$format]=$lmtp_port
      peer_imap[$format]=$imap_port
      cpu_watch+=("dovecot_$format=$(BENCH_ROOT=$peer_root "$PEERS_DIR/bin/peers.sh" pids dovecot)")
      echo "dovecot-$format: running (imap $imap_port, lmtp $lmtp_port)" >>"$OUT/peer-status.txt"
      log "dovecot ($format) ready: lmtp 127.0.0.1:$lmtp_port, imap 127.0.0.1:$imap_port"
    else
      peer_roots+=("$peer_root")  # stopped on exit in case it got half way
      echo "dovecot-$format: setup or start failed: see peer-$format-setup.log" >>"$OUT/peer-status.txt"
      log "dovecot ($format) could not be started; continuing without it"
      tail -n 5 "$OUT/peer-$format-setup.log" >&2
    fi
  done
fi

# ---------------------------------------------------------------- Deliver vs LMTP
# The recipient accounts are created once, untimed: each new account costs an argon2 hash,
# which would otherwise land in the first invocation's CPU split (Dovecot's users pre-exist).
"$bench_bin" deliver --mailstore "$mailstore_url" --admin "$admin_url" --clients 1 --messages 1 --accounts "$ACCOUNTS" \
  >"$OUT/ours-accounts.jsonl" 2>"$OUT/ours-accounts.log"
for size in 4096 102400; do
  if [ "$size" = 4096 ]; then messages=$DELIVER_4K; else messages=$DELIVER_100K; fi
  for clients in 1 16; do
    log "deliver: $messages × $size B, $clients clients, $RUNS runs"
    measure "ours-deliver-$size-c$clients" "$bench_bin" deliver --mailstore "$mailstore_url" --admin "$admin_url" \
      --clients "$clients" --messages "$messages" --size "$size" --accounts "$ACCOUNTS" --runs "$RUNS"
    for format in "${peer_formats[@]}"; do
      measure "dovecot-$format-lmtp-$size-c$clients" python3 "$root/bench/lmtp-load.py" \
        --target "127.0.0.1:${peer_lmtp[$format]}" --clients "$clients" --messages "$messages" \
        --size "$size" --users "$ACCOUNTS" --offset "$PEER_USER_OFFSET" --runs "$RUNS" \
        || echo "dovecot-$format: LMTP $size B × $clients clients failed" >>"$OUT/peer-status.txt"
    done
  done
done

# ---------------------------------------------------------------- SELECT on 10,000 messages
log "select: filling and timing a $SELECT_MESSAGES-message INBOX"
measure ours-select "$bench_bin" select --mailstore "$mailstore_url" --admin "$admin_url" --messages "$SELECT_MESSAGES" \
  --iterations "$SELECT_ITERATIONS"
for format in "${peer_formats[@]}"; do
  imap="127.0.0.1:${peer_imap[$format]}"
  # Filled over LMTP with the same generator and concurrency as ours (8 clients), no warm-up
  # messages, so the INBOX holds exactly SELECT_MESSAGES.
  measure "dovecot-$format-fill" python3 "$root/bench/lmtp-load.py" --target "127.0.0.1:${peer_lmtp[$format]}" \
    --clients 8 --messages "$SELECT_MESSAGES" --size 4096 --users 1 --offset 0 --warmup 0 --runs 1 \
    || { echo "dovecot-$format: INBOX fill failed" >>"$OUT/peer-status.txt"; continue; }
  # One untimed session first (Maildir moves new/ to cur/ on the first SELECT; caches fill).
  "$PEERS_DIR/bin/imapbench.py" login-fetch --target "$imap" --user bench1 --iterations 1 \
    >"$OUT/dovecot-$format-login-fetch-warmup.jsonl" 2>&1 || true
  for batch in 1 2 3; do
    measure "dovecot-$format-login-fetch-$batch" "$PEERS_DIR/bin/imapbench.py" login-fetch --target "$imap" \
      --user bench1 --iterations 50 \
      || echo "dovecot-$format: login-fetch batch $batch failed" >>"$OUT/peer-status.txt"
  done
done

# ---------------------------------------------------------------- summary
python3 "$root/bench/summarize.py" "$OUT" >"$OUT/summary.md"
cat "$OUT/summary.md"
log "raw results in $OUT"
