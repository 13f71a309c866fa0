#!/usr/bin/env bash
# The delivery benchmark, with Postfix → Dovecot measured in the same run as the peer.
#
#   bench/delivery.sh
#
# 1. Builds the release `mailstore`, `smtp-ingress`, `delivery-queue`, `kubemail` and
#    `mailstore-bench` binaries.
# 2. Provisions PostgreSQL (durable defaults, as in mailstore.sh) and NATS with JetStream
#    (scripts/lib/provision.sh), and starts the mailstore on PostgreSQL.
# 3. Queue → mailbox: for each worker count in WORKERS, MSGS envelopes of SIZE octets are queued
#    on NATS as smtp-ingress queues them (body in the spool, envelope in the queue), round-robin
#    over 50 mailboxes; then that many `delivery-queue` processes start and the time until the
#    queue and the spool are empty is measured. RUNS times, alternating worker counts.
# 4. The whole pipeline, SMTP accepted → visible in the mailbox: smtp-ingress and one
#    delivery-queue in front of the same mailstore, against Postfix delivering over LMTP into
#    Dovecot (the shared peer scripts), both with `smtp-bench.py --complete`: PIPELINE_MSGS
#    messages to one mailbox at each session count in SESSIONS, timed until the mailbox holds
#    them all (both polled every 200 ms), the mailbox emptied between runs. RUNS times,
#    alternating.
# 5. Writes raw outputs and summary.md to bench/results/delivery-<UTC date-time>/.
#
# Everything listens on 127.0.0.1 only; every loop is bounded; everything started is stopped
# on exit, also on failure or Ctrl-C.
#
# Environment (defaults): RUNS=3 MSGS=10000 SIZE=4096 WORKERS=1,2 PIPELINE_MSGS=2000
#   SESSIONS=1,10,50 PEERS_DIR=/work/shared/bench/peers OUT=bench/results/delivery-<date-time>
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/lib/provision.sh"
source "$root/bench/lib.sh"

RUNS=${RUNS:-3}
MSGS=${MSGS:-10000}
SIZE=${SIZE:-4096}
WORKERS=${WORKERS:-1,2}
PIPELINE_MSGS=${PIPELINE_MSGS:-2000}
SESSIONS=${SESSIONS:-1,10,50}
PEERS_DIR=${PEERS_DIR:-/work/shared/bench/peers}
OUT=${OUT:-$root/bench/results/delivery-$(date -u +%Y-%m-%dT%H%M%SZ)}

mkdir -p "$OUT"
work=$(mktemp -d /var/tmp/kubemail-delivery-bench.XXXXXX)
chmod 755 "$work"
pids=()
workers=()
peer_root=$work/peers

cleanup() {
  set +e
  for pid in "${workers[@]}" "${pids[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
  [ -d "$peer_root" ] && BENCH_ROOT=$peer_root "$PEERS_DIR/bin/peers.sh" stop >/dev/null 2>&1
  provision_cleanup "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

take_port grpc_port admin_grpc_port mailstore_http_port smtp_port submission_port ingress_http_port pipeline_worker_port \
  worker_port_1 worker_port_2 worker_port_3 worker_port_4 \
  postfix_full_port hold_port sink_port imap_port lmtp_port

record_machine
build_release kubemail-mailstore kubemail-smtp-ingress kubemail-delivery-queue kubemail kubemail-bench
bin=$root/target/release

# ---------------------------------------------------------------- PostgreSQL, NATS, mailstore
ensure_postgres
ensure_nats
ensure_mail_clients
start_postgres "$work" bench fsync=on synchronous_commit=on full_page_writes=on \
  shared_buffers=1GB max_wal_size=4GB
start_nats "$work"
{
  echo "PostgreSQL: fsync=on synchronous_commit=on full_page_writes=on (every commit on disk)"
  echo "NATS JetStream file storage, default sync_interval (2 min): acknowledged = written, not yet fsync'd"
  echo "Postfix: queue files fsync'd; Dovecot: mail_fsync = optimized (the peer scripts' defaults)"
} >"$OUT/durability.txt"

grpc=127.0.0.1:$grpc_port
admin_grpc=127.0.0.1:$admin_grpc_port
"$bin/mailstore" --database-url "$POSTGRES_URL" --nats-url "$NATS_URL" \
  --grpc-listen "$grpc" --admin-grpc-listen "$admin_grpc" --http-listen "127.0.0.1:$mailstore_http_port" >"$OUT/mailstore.log" 2>&1 &
pids+=($!)
wait_ready "http://127.0.0.1:$mailstore_http_port/readyz" "${pids[-1]}" "$OUT/mailstore.log"
log "mailstore on PostgreSQL at $grpc, NATS $NATS_URL"

# start_worker HTTP_PORT LOG: one delivery-queue process; appends its PID to `workers`.
start_worker() {
  "$bin/delivery-queue" --mailstore "http://$grpc" --nats-url "$NATS_URL" --http-listen "127.0.0.1:$1" \
    --hostname bench.local >>"$2" 2>&1 &
  workers+=($!)
  wait_ready "http://127.0.0.1:$1/readyz" "${workers[-1]}" "$2"
}

stop_workers() {
  for pid in "${workers[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; done
  workers=()
}

# ---------------------------------------------------------------- queue → mailbox
worker_ports=("$worker_port_1" "$worker_port_2" "$worker_port_3" "$worker_port_4")
for run in $(seq 1 "$RUNS"); do
  for count in ${WORKERS//,/ }; do
    log "queue → mailbox, run $run of $RUNS: $MSGS × $SIZE B, $count worker(s)"
    "$bin/mailstore-bench" queue-load --admin "http://$admin_grpc" --nats-url "$NATS_URL" --messages "$MSGS" \
      --size "$SIZE" --accounts 50 --run "w$count-r$run" >>"$OUT/queue-load.jsonl" 2>>"$OUT/queue-load.log"
    for i in $(seq 0 $((count - 1))); do
      start_worker "${worker_ports[$i]}" "$OUT/delivery-queue.log"
    done
    "$bin/mailstore-bench" queue-drain --nats-url "$NATS_URL" --messages "$MSGS" --label "workers-$count" \
      >>"$OUT/queue-drain.jsonl" 2>>"$OUT/queue-drain.log"
    tail -n 1 "$OUT/queue-drain.log" >&2
    stop_workers
  done
done

# ---------------------------------------------------------------- the whole pipeline
ours=127.0.0.1:$smtp_port
"$bin/smtp-ingress" --smtp-listen "$ours" --submission-listen "127.0.0.1:$submission_port" \
  --http-listen "127.0.0.1:$ingress_http_port" --hostname bench.local --mailstore "http://$grpc" \
  --nats-url "$NATS_URL" --verify-inbound false --max-connections-per-ip 0 --connection-rate-per-ip 0 \
  >"$OUT/smtp-ingress.log" 2>&1 &
pids+=($!)
wait_ready "http://127.0.0.1:$ingress_http_port/readyz" "${pids[-1]}" "$OUT/smtp-ingress.log"
start_worker "$pipeline_worker_port" "$OUT/delivery-queue.log"
echo benchpass | "$bin/kubemail" admin --mailstore "http://$admin_grpc" mailbox add bench2@bench.test --password-stdin >/dev/null

export BENCH_ROOT=$peer_root SMTP_PORT=$postfix_full_port SMTP_HOLD_PORT=$hold_port SINK_PORT=$sink_port \
  IMAP_PORT=$imap_port LMTP_PORT=$lmtp_port BENCH_USERS=10
peers=$PEERS_DIR/bin/peers.sh
"$peers" setup >"$OUT/peers-setup.log" 2>&1
"$peers" start dovecot >>"$OUT/peers-setup.log" 2>&1
"$peers" start postfix >>"$OUT/peers-setup.log" 2>&1
wait_for_port "$postfix_full_port"
wait_for_port "$imap_port"
log "ours: smtp-ingress on $ours + delivery-queue; peer: Postfix on 127.0.0.1:$postfix_full_port → Dovecot"

imapbench="python3 $PEERS_DIR/bin/imapbench.py"
mailbox="$bin/mailstore-bench"
ours_mailbox="--mailstore http://$grpc --address bench2@bench.test --password benchpass"
"$mailbox" clear $ours_mailbox >/dev/null 2>&1
$imapbench clear --target "127.0.0.1:$imap_port" --user bench2 >/dev/null 2>&1 || true
pipeline() { # LABEL TARGET COMPLETE AFTER
  python3 "$PEERS_DIR/bin/smtp-bench.py" --target "$2" --label "$1" --sessions "$SESSIONS" \
    --msgs "$PIPELINE_MSGS" --size "$SIZE" --runs 1 --rcpt bench2@bench.test --run-timeout 600 \
    --complete "$3" --after "$4" >>"$OUT/pipeline-$1.jsonl" 2>>"$OUT/pipeline-$1.log"
}
for run in $(seq 1 "$RUNS"); do
  log "pipeline run $run of $RUNS: $PIPELINE_MSGS × $SIZE B at $SESSIONS sessions"
  pipeline kubemail "$ours" \
    "$mailbox wait-count $ours_mailbox --count {msgs} --timeout 300" "$mailbox clear $ours_mailbox"
  pipeline postfix-dovecot "127.0.0.1:$postfix_full_port" \
    "$imapbench wait-count --target 127.0.0.1:$imap_port --user bench2 --count {msgs} --timeout 280 --interval 0.2" \
    "$imapbench clear --target 127.0.0.1:$imap_port --user bench2"
done

drop_accepted_lines "$OUT/smtp-ingress.log"

python3 "$root/bench/summarize-delivery.py" "$OUT" | tee "$OUT/summary.md"
log "raw results in $OUT"
