#!/usr/bin/env bash
# The SMTP acceptance benchmark, with Postfix measured in the same run as the peer.
#
#   bench/smtp.sh
#
# 1. Builds the release `smtp-ingress`, `mailstore` and `kubemail` binaries.
# 2. Provisions NATS with JetStream (scripts/lib/provision.sh), a mailstore on SQLite for the
#    recipient lookups, the domain bench.test with the mailbox bench2@bench.test, and starts
#    smtp-ingress on a free loopback port (MX listener, no TLS, no inbound SPF/DKIM/DMARC, no
#    per-address limits: one client address sends everything), and a second smtp-ingress that
#    discards what it accepts (the SMTP exchange alone, compared with smtp-sink), and a third
#    on a second NATS server that fsyncs every write (sync_interval: always), as Postfix does.
# 3. Starts Postfix (accept-only port: each message written and fsync'd into the hold queue)
#    and smtp-sink (the SMTP exchange alone) from the shared peer scripts, on free ports.
# 4. For each target, `smtp-bench.py` (Postfix's smtp-source) sends MSGS messages of SIZE
#    octets at each session count in SESSIONS, RUNS times; ours and the peers alternate per run
#    set so a slow phase of the shared machine hits all.
# 5. Memory per idle connection after EHLO (`idle-mem.py --proto smtp`, CONNS connections),
#    ours on a fresh process each run, Postfix restarted each run.
# 6. Writes raw outputs and summary.md to bench/results/smtp-<UTC date-time>/.
#
# Everything listens on 127.0.0.1 only; every loop is bounded; everything started is stopped
# on exit, also on failure or Ctrl-C.
#
# Environment (defaults): RUNS=3 MSGS=5000 SIZE=4096 SESSIONS=1,10,50 CONNS=500 MEM_RUNS=3
#   PEERS_DIR=/work/shared/bench/peers OUT=bench/results/smtp-<date-time>
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/lib/provision.sh"
source "$root/bench/lib.sh"

RUNS=${RUNS:-3}
MSGS=${MSGS:-5000}
SIZE=${SIZE:-4096}
SESSIONS=${SESSIONS:-1,10,50}
CONNS=${CONNS:-500}
MEM_RUNS=${MEM_RUNS:-3}
PEERS_DIR=${PEERS_DIR:-/work/shared/bench/peers}
OUT=${OUT:-$root/bench/results/smtp-$(date -u +%Y-%m-%dT%H%M%SZ)}

mkdir -p "$OUT"
work=$(mktemp -d /var/tmp/kubemail-smtp-bench.XXXXXX)
chmod 755 "$work"
pids=()
peer_root=$work/peers

cleanup() {
  set +e
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
  [ -d "$peer_root" ] && BENCH_ROOT=$peer_root "$PEERS_DIR/bin/peers.sh" stop >/dev/null 2>&1
  provision_cleanup "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

take_port grpc_port admin_grpc_port mailstore_http_port ours_port ingress_http_port submission_port \
  discard_port discard_http_port discard_submission_port \
  fsync_port fsync_http_port fsync_submission_port fsync_nats_port \
  hold_port sink_port postfix_full_port imap_port lmtp_port

record_machine
build_release kubemail-smtp-ingress kubemail-mailstore kubemail
bin=$root/target/release

# ---------------------------------------------------------------- NATS, mailstore, smtp-ingress
ensure_nats
ensure_mail_clients
start_nats "$work"
# JetStream's defaults, as the services use them: file storage, an acknowledged write is in the
# server's page cache and synced to disk every 2 minutes (sync_interval). Postfix fsyncs every
# queue file before its 250.
echo "NATS JetStream file storage, default sync_interval (2 min): acknowledged = written, not yet fsync'd" \
  >"$OUT/durability.txt"
# The same with every write fsync'd before JetStream acknowledges it.
mkdir -p "$work/nats-fsync"
cat >"$work/nats-fsync.conf" <<CONF
listen: 127.0.0.1:$fsync_nats_port
jetstream { store_dir: "$work/nats-fsync", sync_interval: always }
CONF
"$NATS_SERVER" -c "$work/nats-fsync.conf" >"$OUT/nats-fsync.log" 2>&1 &
pids+=($!)
wait_for_port "$fsync_nats_port"
echo "kubemail-fsync: a second NATS server with sync_interval: always (fsync before every acknowledgement)" \
  >>"$OUT/durability.txt"

grpc=127.0.0.1:$grpc_port
admin_grpc=127.0.0.1:$admin_grpc_port
mailstore_http=127.0.0.1:$mailstore_http_port
"$bin/mailstore" --database-url "sqlite://$work/mailstore.db?mode=rwc" --nats-url "$NATS_URL" \
  --grpc-listen "$grpc" --admin-grpc-listen "$admin_grpc" --http-listen "$mailstore_http" >"$OUT/mailstore.log" 2>&1 &
pids+=($!)
wait_ready "http://$mailstore_http/readyz" "${pids[-1]}" "$OUT/mailstore.log"
"$bin/kubemail" admin --mailstore "http://$admin_grpc" domain add bench.test >/dev/null
echo benchpass | "$bin/kubemail" admin --mailstore "http://$admin_grpc" mailbox add bench2@bench.test --password-stdin >/dev/null

ours=127.0.0.1:$ours_port
discard=127.0.0.1:$discard_port
# start_ingress SMTP_PORT SUBMISSION_PORT HTTP_PORT LOG NATS_URL [flags]: sets ingress_pid.
start_ingress() {
  local smtp=$1 submission=$2 http=$3 logfile=$4 nats=$5
  shift 5
  "$bin/smtp-ingress" --smtp-listen "127.0.0.1:$smtp" --submission-listen "127.0.0.1:$submission" \
    --http-listen "127.0.0.1:$http" --hostname bench.local --mailstore "http://$grpc" --nats-url "$nats" \
    --verify-inbound false --max-connections-per-ip 0 --connection-rate-per-ip 0 "$@" >>"$logfile" 2>&1 &
  ingress_pid=$!
  pids+=("$ingress_pid")
  wait_ready "http://127.0.0.1:$http/readyz" "$ingress_pid" "$logfile"
}
start_durable_ingress() { # sets durable_pid
  start_ingress "$ours_port" "$submission_port" "$ingress_http_port" "$OUT/smtp-ingress.log" "$NATS_URL"
  durable_pid=$ingress_pid
}
start_durable_ingress
log "smtp-ingress ready on $ours (NATS $NATS_URL)"
start_ingress "$discard_port" "$discard_submission_port" "$discard_http_port" "$OUT/smtp-ingress-discard.log" \
  "$NATS_URL" --discard-accepted-mail
log "smtp-ingress discarding accepted mail on $discard"
fsync=127.0.0.1:$fsync_port
start_ingress "$fsync_port" "$fsync_submission_port" "$fsync_http_port" "$OUT/smtp-ingress-fsync.log" \
  "nats://127.0.0.1:$fsync_nats_port"
log "smtp-ingress on NATS with fsync on $fsync"

# ---------------------------------------------------------------- Postfix and smtp-sink
hold=127.0.0.1:$hold_port
sink=127.0.0.1:$sink_port
# The peer scripts read their ports from the environment, at setup (Postfix's master.cf) and
# at start (smtp-sink's command line).
export BENCH_ROOT=$peer_root SMTP_PORT=$postfix_full_port SMTP_HOLD_PORT=$hold_port SINK_PORT=$sink_port \
  IMAP_PORT=$imap_port LMTP_PORT=$lmtp_port BENCH_USERS=10
"$PEERS_DIR/bin/peers.sh" setup >"$OUT/peers-setup.log" 2>&1
"$PEERS_DIR/bin/peers.sh" start postfix >>"$OUT/peers-setup.log" 2>&1
"$PEERS_DIR/bin/peers.sh" start sink >>"$OUT/peers-setup.log" 2>&1
wait_for_port "$hold_port"
wait_for_port "$sink_port"
log "postfix accept-only on $hold, smtp-sink on $sink"

# ---------------------------------------------------------------- acceptance throughput
smtp_bench() { # LABEL TARGET [extra smtp-bench.py arguments]
  local label=$1 target=$2
  shift 2
  python3 "$PEERS_DIR/bin/smtp-bench.py" --target "$target" --label "$label" --sessions "$SESSIONS" \
    --msgs "$MSGS" --size "$SIZE" --runs 1 --rcpt bench2@bench.test --run-timeout 600 "$@" \
    >>"$OUT/smtp-$label.jsonl" 2>>"$OUT/smtp-$label.log"
}
for run in $(seq 1 "$RUNS"); do
  log "acceptance run $run of $RUNS: $MSGS × $SIZE B at $SESSIONS sessions"
  smtp_bench kubemail "$ours"
  smtp_bench kubemail-fsync "$fsync"
  smtp_bench postfix-hold "$hold" --after "$PEERS_DIR/bin/peers.sh postfix-hold-clear"
  smtp_bench kubemail-discard "$discard"
  smtp_bench smtp-sink "$sink"
done

# ---------------------------------------------------------------- memory per idle connection
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
for run in $(seq 1 "$MEM_RUNS"); do
  # A fresh process each run: freed memory reused from an earlier run would hide the cost.
  kill "$durable_pid"; wait "$durable_pid" 2>/dev/null || true
  start_durable_ingress
  python3 "$PEERS_DIR/bin/idle-mem.py" --proto smtp --target "$ours" --conns "$CONNS" --runs 1 \
    --server-pid "$durable_pid" >>"$OUT/mem-kubemail.jsonl" 2>>"$OUT/mem-kubemail.log"
done
peers=$PEERS_DIR/bin/peers.sh
python3 "$PEERS_DIR/bin/idle-mem.py" --proto smtp --target "$hold" --conns "$CONNS" --runs "$MEM_RUNS" \
  --server-pid-cmd "$peers pids postfix" --before-run "$peers stop postfix && $peers start postfix" \
  >>"$OUT/mem-postfix.jsonl" 2>>"$OUT/mem-postfix.log"

drop_accepted_lines "$OUT"/smtp-ingress*.log

python3 "$root/bench/summarize-smtp.py" "$OUT" | tee "$OUT/summary.md"
log "raw results in $OUT"
