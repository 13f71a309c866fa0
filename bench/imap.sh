#!/usr/bin/env bash
# The IMAP benchmark, with Dovecot (mdbox) measured in the same run as the peer.
#
#   bench/imap.sh
#
# 1. Builds the release `kubemail`, `mailstore`, `smtp-ingress`, `delivery-queue`,
#    `imap-frontend` and `mailstore-bench` binaries.
# 2. Distributed kubemail, each service its own process: PostgreSQL (durable defaults, as in
#    mailstore.sh) and NATS with JetStream (scripts/lib/provision.sh), the mailstore on
#    PostgreSQL, imap-frontend (plaintext LOGIN allowed on loopback, no per-address connection
#    limits), smtp-ingress and one delivery-queue (for the end-to-end latency). The domain
#    bench.test and the mailboxes bench1..bench<MEM_USERS>@bench.test, password benchpass,
#    hashed with the mailstore's default (argon2id).
# 3. Dovecot with MAIL_FORMAT=mdbox and Postfix (full pipeline, LMTP into Dovecot) from the
#    shared peer scripts, under the work directory and on free ports; its users are
#    bench1..bench<MEM_USERS> (Dovecot logs in by local part, ours by address).
# 4. The same corpus on both sides (`gen-corpus.py --count 1000 --seed 1`): bench1's INBOX is
#    filled to MAILBOX_MSGS messages by APPEND (`imapbench.py fill`, FILL_CONNS connections).
# 5. login-fetch on that INBOX: after one untimed session, RUNS batches of LOGIN_FETCH_ITERATIONS
#    sequential sessions of connect, LOGIN, SELECT INBOX, FETCH 1:* (FLAGS), LOGOUT; p50 per
#    phase and in total. Its connect and LOGIN phases are the connect + LOGIN latency. Ours also
#    against a second imap-frontend with its login cache off (--login-cache-ttl 0): every LOGIN
#    verified with argon2id at the mailstore. Then, on both, the same FETCH read by a reader that
#    does not parse (bench/imap-fetch-raw.py): the time to the first and the last octet of the
#    answer, the server's share of the FETCH phase.
# 6. Mixed workload (`imapbench.py mixed`, imaptest's default state machine) on the same INBOX,
#    kept around MAILBOX_MSGS messages, MIXED_SECS seconds at each client count in
#    MIXED_CLIENTS, RUNS times: commands per second and failed commands.
# 7. APPEND throughput (`imapbench.py append`): APPEND_MSGS corpus messages into a new mailbox
#    of bench4 at each connection count in APPEND_CONNS, RUNS times.
# 8. Delivery → IDLE notification (`e2e.py --method idle`, E2E_MSGS messages to bench3, one at
#    a time): distributed (smtp-ingress → NATS → delivery-queue → mailstore → NATS event →
#    imap-frontend), `kubemail dev` (one process, SQLite; started for this step only) and
#    Postfix → LMTP → Dovecot; RUNS times.
# 9. Memory per idle selected connection (`idle-mem.py --proto imap --state selected`,
#    MEM_CONNS connections over MEM_USERS users): the imap-frontend process alone, a fresh one
#    for each of MEM_RUNS runs; Dovecot's whole process tree, restarted for each run.
# 10. SORT and THREAD on bench1's INBOX (`bench/imap-sort.py`): `UID SORT (DATE) UTF-8 ALL` and
#    `UID THREAD REFERENCES UTF-8 ALL`, the first time each is sent and SORT_ITERATIONS more
#    sessions of each, RUNS times.
# 11. COMPRESS=DEFLATE (`bench/imap-compress.py`): `FETCH 1:* (BODY.PEEK[HEADER])` of bench1's
#    INBOX without and with COMPRESS, COMPRESS_ITERATIONS sessions of each, RUNS times: octets on
#    the wire and time. Dovecot gets its imap_zlib plugin for this step.
# 12. Persistent mixes (`imapbench.py mixed --persistent`: each client logs in and selects once,
#    then repeats the selected-state round and a NOOP, as mail clients that keep their
#    connection do), MIXED_SECS seconds, RUNS times: on PERSISTENT_USERS users (as many clients
#    as users), each its own INBOX of PERSISTENT_MSGS messages (users user1..userN, filled on
#    both sides before the first run); and on bench1's shared INBOX at each client count in
#    MIXED_CLIENTS. PostgreSQL runs with pg_stat_statements for these steps: the statements of
#    every kubemail run, by execution and planning time, go to pg-<step>-run<N>.txt.
# 13. The cost of each kind of command (`bench/imap-cost.py`): COST_CLIENTS persistent clients on
#    their own users send only FETCH, FETCH of a body, STORE, the DELETE + EXPUNGE + APPEND round,
#    or NOOP, for COST_SECS seconds each, RUNS times: with each server's CPU seconds over the run,
#    the CPU per command of each kind and service. Then the PostgreSQL floor of each kind but
#    NOOP: `pgbench` runs the least a design keeping each message's state in PostgreSQL rows
#    must do for that command (bench/pg-floor/, in a database of its own on the same server),
#    with as many clients for as long, and PostgreSQL's CPU per command is the floor no such
#    design goes below. With PERF=SECONDS, steps 12 and 13 also record where the servers spent
#    their CPU (`perf record`): perf-<step>-run<N>.txt.
# 14. Writes raw outputs, cpu.jsonl (wall time and CPU seconds of the client and of every server
#    process tree during each step) and summary.md to bench/results/imap-<UTC date-time>/.
#
# Ours and the peer alternate within every measurement, so a slow phase of the shared machine
# hits both. A step that fails (non-zero exit, timeout) is recorded in failures.txt with the
# end of its output, and the run goes on. Everything listens on 127.0.0.1 only; every loop is
# bounded (each step also by STEP_TIMEOUT seconds); everything started is stopped on exit, also
# on failure or Ctrl-C.
#
# STEPS picks the measurements after the fill (default: all of them), e.g. STEPS=sort or
# STEPS=login-fetch,mixed; the others are skipped.
#
# Environment (defaults):
#   STEPS=login-fetch,mixed,append,e2e,memory,sort,compress,persistent,shared,cost RUNS=3
#   MAILBOX_MSGS=10000 FILL_CONNS=4 LOGIN_FETCH_ITERATIONS=50 SORT_ITERATIONS=20
#   COMPRESS_ITERATIONS=5
#   MIXED_CLIENTS=10,50 MIXED_SECS=30 APPEND_MSGS=2000 APPEND_CONNS=1,4 E2E_MSGS=50
#   MEM_CONNS=500 MEM_USERS=50 MEM_RUNS=3 STEP_TIMEOUT=900
#   PERSISTENT_USERS=10,50 PERSISTENT_MSGS=1000 COST_CLIENTS=10 COST_SECS=20 PERF= (unset)
#   PEERS_DIR=/work/shared/bench/peers OUT=bench/results/imap-<date-time>
#   PG_EXTRA= (unset): PostgreSQL settings for a what-if run, after the durable ones, e.g.
#   PG_EXTRA=synchronous_commit=off to see what waiting for the disk at each commit costs;
#   durability.txt names them.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/lib/provision.sh"
source "$root/bench/lib.sh"

STEPS=${STEPS:-login-fetch,mixed,append,e2e,memory,sort,compress,persistent,shared,cost}
RUNS=${RUNS:-3}
SORT_ITERATIONS=${SORT_ITERATIONS:-20}
COMPRESS_ITERATIONS=${COMPRESS_ITERATIONS:-5}
MAILBOX_MSGS=${MAILBOX_MSGS:-10000}
FILL_CONNS=${FILL_CONNS:-4}
LOGIN_FETCH_ITERATIONS=${LOGIN_FETCH_ITERATIONS:-50}
MIXED_CLIENTS=${MIXED_CLIENTS:-10,50}
MIXED_SECS=${MIXED_SECS:-30}
APPEND_MSGS=${APPEND_MSGS:-2000}
APPEND_CONNS=${APPEND_CONNS:-1,4}
E2E_MSGS=${E2E_MSGS:-50}
MEM_CONNS=${MEM_CONNS:-500}
MEM_USERS=${MEM_USERS:-50}
MEM_RUNS=${MEM_RUNS:-3}
PERSISTENT_USERS=${PERSISTENT_USERS:-10,50}
PERSISTENT_MSGS=${PERSISTENT_MSGS:-1000}
COST_CLIENTS=${COST_CLIENTS:-10}
COST_SECS=${COST_SECS:-20}
STEP_TIMEOUT=${STEP_TIMEOUT:-900}
PEERS_DIR=${PEERS_DIR:-/work/shared/bench/peers}
OUT=${OUT:-$root/bench/results/imap-$(date -u +%Y-%m-%dT%H%M%SZ)}

# step NAME: whether STEPS asks for the measurement NAME.
step() { [[ ,$STEPS, == *,$1,* ]]; }

# step_any NAME...: whether STEPS asks for any of the measurements NAME.
step_any() {
  local name
  for name in "$@"; do step "$name" && return 0; done
  return 1
}

# Accounts: bench1 holds the big INBOX, bench3 receives the end-to-end probes, bench4 appends;
# user1..user<most users> hold the INBOXes of the persistent mixes and the command costs.
per_user_users=0
if step persistent; then
  for users in ${PERSISTENT_USERS//,/ }; do
    [ "$users" -gt "$per_user_users" ] && per_user_users=$users
  done
fi
if step cost && [ "$COST_CLIENTS" -gt "$per_user_users" ]; then per_user_users=$COST_CLIENTS; fi
# Where each statement's time goes, for the profile of the persistent steps.
pg_profile=""
if step_any persistent shared cost; then
  pg_profile="shared_preload_libraries=pg_stat_statements pg_stat_statements.track=top pg_stat_statements.track_planning=on"
fi
PG_SETTINGS="$pg_profile${PG_EXTRA:+ $PG_EXTRA}"
[ "$MEM_USERS" -ge 4 ] || { echo "MEM_USERS must be at least 4" >&2; exit 2; }
DOMAIN=bench.test
PASSWORD=benchpass

mkdir -p "$OUT"
# Under /var: the peer configs log to files there (Postfix only accepts maillog paths in /var).
work=$(mktemp -d /var/tmp/kubemail-imap-bench.XXXXXX)
chmod 755 "$work"
pids=()
dev_pid=""
frontend_pid=""
nocache_pid=""
peer_root=$work/peers

cleanup() {
  set +e
  for pid in $dev_pid $nocache_pid $frontend_pid "${pids[@]}"; do
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  [ -d "$peer_root" ] && BENCH_ROOT=$peer_root "$PEERS_DIR/bin/peers.sh" stop >/dev/null 2>&1
  provision_cleanup "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 500 idle connections, each a socket in the server and in the client.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

take_port grpc_port mailstore_http_port imap_port imaps_port frontend_http_port \
  nocache_imap_port nocache_imaps_port nocache_http_port \
  smtp_port submission_port ingress_http_port worker_http_port \
  dev_grpc_port dev_admin_grpc_port dev_http_port dev_smtp_port dev_submission_port dev_submissions_port \
  dev_imap_port dev_imaps_port dev_pop3_port dev_pop3s_port \
  peer_imap_port peer_lmtp_port postfix_full_port hold_port sink_port

record_machine
build_release kubemail kubemail-mailstore kubemail-smtp-ingress kubemail-delivery-queue \
  kubemail-imap-frontend kubemail-bench
bin=$root/target/release

# ---------------------------------------------------------------- CPU accounting
# cpu_watch holds NAME=PID entries: each step (`measure`, bench/lib.sh) records the CPU seconds
# of those process trees.
cpu_watch=()

# ---------------------------------------------------------------- PostgreSQL, NATS, kubemail
start_distributed_store
{
  echo "PostgreSQL: fsync=on synchronous_commit=on full_page_writes=on (every commit on disk)"
  echo "NATS JetStream file storage, default sync_interval (2 min): acknowledged = written, not yet fsync'd"
  echo "kubemail dev: SQLite in its data directory (the embedded default)"
  echo "Postfix: queue files fsync'd; Dovecot mdbox: mail_fsync = optimized (the peer scripts' defaults)"
  echo "Passwords: ours argon2id (the mailstore's default hash); Dovecot {PLAIN} (the peer scripts' users file)"
  if [ -n "$pg_profile" ]; then echo "PostgreSQL also: $pg_profile (the profile of the persistent steps)"; fi
  if [ -n "${PG_EXTRA:-}" ]; then echo "PostgreSQL in this run, overriding the above (PG_EXTRA): $PG_EXTRA"; fi
} >"$OUT/durability.txt"

# run_frontend IMAP_PORT IMAPS_PORT HTTP_PORT LOG [flags]: an imap-frontend process with
# plaintext LOGIN on loopback (the load tools) and no per-address limits (all load comes from
# 127.0.0.1); sets started_pid.
run_frontend() {
  local imap=$1 imaps=$2 http=$3 logfile=$4
  shift 4
  "$bin/imap-frontend" --imap-listen "127.0.0.1:$imap" --imaps-listen "127.0.0.1:$imaps" \
    --http-listen "127.0.0.1:$http" --hostname bench.local --mailstore "http://$grpc" --nats-url "$NATS_URL" \
    --imap-allow-plaintext-login --max-connections-per-ip 0 --connection-rate-per-ip 0 "$@" >>"$logfile" 2>&1 &
  started_pid=$!
  wait_ready "http://127.0.0.1:$http/readyz" "$started_pid" "$logfile"
}
# start_frontend: a fresh imap-frontend with its defaults; sets frontend_pid.
start_frontend() {
  run_frontend "$imap_port" "$imaps_port" "$frontend_http_port" "$OUT/imap-frontend.log"
  frontend_pid=$started_pid
}
start_frontend
"$bin/smtp-ingress" --smtp-listen "127.0.0.1:$smtp_port" --submission-listen "127.0.0.1:$submission_port" \
  --http-listen "127.0.0.1:$ingress_http_port" --hostname bench.local --mailstore "http://$grpc" \
  --nats-url "$NATS_URL" --verify-inbound false --max-connections-per-ip 0 --connection-rate-per-ip 0 \
  >"$OUT/smtp-ingress.log" 2>&1 &
pids+=($!)
ingress_pid=${pids[-1]}
wait_ready "http://127.0.0.1:$ingress_http_port/readyz" "$ingress_pid" "$OUT/smtp-ingress.log"
"$bin/delivery-queue" --mailstore "http://$grpc" --nats-url "$NATS_URL" --http-listen "127.0.0.1:$worker_http_port" \
  --hostname bench.local >"$OUT/delivery-queue.log" 2>&1 &
pids+=($!)
worker_pid=${pids[-1]}
wait_ready "http://127.0.0.1:$worker_http_port/readyz" "$worker_pid" "$OUT/delivery-queue.log"

# add_accounts ADMIN_GRPC: the domain, bench1..bench<MEM_USERS> and user1..user<per_user_users>
# with the default (argon2id) hash.
add_accounts() {
  "$bin/kubemail" admin --mailstore "http://$1" domain add "$DOMAIN" >/dev/null
  local name
  for name in $(seq -f "bench%g" 1 "$MEM_USERS") $(seq -f "user%g" 1 "$per_user_users"); do
    echo "$PASSWORD" | "$bin/kubemail" admin --mailstore "http://$1" mailbox add "$name@$DOMAIN" \
      --password-stdin >/dev/null
  done
}
add_accounts "$admin_grpc"
ours_imap=127.0.0.1:$imap_port
ours_smtp=127.0.0.1:$smtp_port
log "kubemail: imap-frontend on $ours_imap, smtp-ingress on $ours_smtp, mailstore on PostgreSQL at $grpc"

# ---------------------------------------------------------------- Dovecot mdbox and Postfix
if ! command -v dovecot >/dev/null || ! command -v postfix >/dev/null; then
  log "installing Postfix and Dovecot (peers.sh install)"
  "$PEERS_DIR/bin/peers.sh" install >"$OUT/peers-install.log" 2>&1
fi
# The peer scripts read their ports at setup (the rendered configs) and at start.
export BENCH_ROOT=$peer_root MAIL_FORMAT=mdbox SMTP_PORT=$postfix_full_port SMTP_HOLD_PORT=$hold_port \
  SINK_PORT=$sink_port IMAP_PORT=$peer_imap_port LMTP_PORT=$peer_lmtp_port BENCH_USERS=$MEM_USERS
peers=$PEERS_DIR/bin/peers.sh
"$peers" setup >"$OUT/peers-setup.log" 2>&1
# The peer scripts make bench1..benchN; the users of the persistent steps are added the same way.
for i in $(seq 1 "$per_user_users"); do
  echo "user$i:{PLAIN}$PASSWORD::::::" >>"$peer_root/dovecot/users"
done
# COMPRESS=DEFLATE for the compress step: Dovecot 2.3 offers it through its imap_zlib plugin.
if step compress; then
  printf '%s\n' 'mail_plugins = $mail_plugins zlib' 'protocol imap {' '  mail_plugins = $mail_plugins imap_zlib' '}' \
    >>"$peer_root/dovecot/dovecot.conf"
  echo "Dovecot: mail_plugins zlib, imap_zlib (COMPRESS=DEFLATE)" >>"$OUT/durability.txt"
fi
"$peers" start dovecot >>"$OUT/peers-setup.log" 2>&1
"$peers" start postfix >>"$OUT/peers-setup.log" 2>&1
wait_for_port "$peer_imap_port"
wait_for_port "$postfix_full_port"
peer_imap=127.0.0.1:$peer_imap_port
peer_smtp=127.0.0.1:$postfix_full_port
log "peer: Dovecot mdbox IMAP on $peer_imap, Postfix on $peer_smtp → LMTP → Dovecot"
{
  echo "dovecot: $(dovecot --version)"
  echo "postfix: $(postconf -h mail_version 2>/dev/null)"
  echo "python: $(python3 --version)"
} >>"$OUT/machine.txt"

# watch_servers: the server process trees running now, for the CPU accounting.
watch_servers() {
  cpu_watch=("postgres=$(head -n 1 "$pg_dir/postmaster.pid")" "nats=$nats_pid" "mailstore=$mailstore_pid"
    "imap_frontend=$frontend_pid" "smtp_ingress=$ingress_pid" "delivery_queue=$worker_pid"
    "dovecot=$("$peers" pids dovecot)" "postfix=$("$peers" pids postfix)")
  if [ -n "$nocache_pid" ]; then cpu_watch+=("imap_frontend_nocache=$nocache_pid"); fi
  if [ -n "$dev_pid" ]; then cpu_watch+=("kubemail_dev=$dev_pid"); fi
}
watch_servers

# ---------------------------------------------------------------- the INBOX of 10,000 messages
corpus=$work/corpus.mbox
python3 "$PEERS_DIR/bin/gen-corpus.py" --out "$corpus" --count 1000 --seed 1 >/dev/null
# imapbench.py through bench/imapbench-logged.py: each command not answered OK is written
# to stderr with the server's reply.
imapbench=(python3 "$root/bench/imapbench-logged.py" "$PEERS_DIR/bin/imapbench.py")
ours_user=bench1@$DOMAIN
peer_user=bench1

log "filling bench1's INBOX to $MAILBOX_MSGS messages on both ($FILL_CONNS connections)"
measure fill-kubemail "${imapbench[@]}" fill --target "$ours_imap" --user "$ours_user" \
  --count "$MAILBOX_MSGS" --conns "$FILL_CONNS" --corpus "$corpus"
measure fill-dovecot "${imapbench[@]}" fill --target "$peer_imap" --user "$peer_user" \
  --count "$MAILBOX_MSGS" --conns "$FILL_CONNS" --corpus "$corpus"

if [ "$per_user_users" -gt 0 ]; then
  log "filling the INBOXes of user1..user$per_user_users to $PERSISTENT_MSGS messages on both"
  for i in $(seq 1 "$per_user_users"); do
    measure fill-users-kubemail "${imapbench[@]}" fill --target "$ours_imap" --user "user$i@$DOMAIN" \
      --count "$PERSISTENT_MSGS" --conns "$FILL_CONNS" --corpus "$corpus"
    measure fill-users-dovecot "${imapbench[@]}" fill --target "$peer_imap" --user "user$i" \
      --count "$PERSISTENT_MSGS" --conns "$FILL_CONNS" --corpus "$corpus"
  done
fi
psql_bench() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 "$POSTGRES_URL" "$@"; }
if [ -n "$pg_profile" ]; then
  psql_bench -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null
fi

# profiled LABEL COMMAND...: `measure LABEL COMMAND...`, with PostgreSQL's statements over the
# step by time, its WAL and the rows each table took written to pg-LABEL-run<run>.txt. With
# PERF=SECONDS, `perf record` also samples the mailstore, imap-frontend and every PostgreSQL
# process for that long from the step's start, and the functions that took the most go to
# perf-LABEL-run<run>.txt. perf costs
# CPU of its own: a run with PERF set is for the profile, not for the figures.
profiled() {
  local label=$1 perf_pid=""
  psql_bench -c "SELECT pg_stat_statements_reset(), pg_stat_reset(), pg_stat_reset_shared('wal')" >/dev/null
  if [ -n "${PERF:-}" ]; then
    local postmaster
    postmaster=$(head -n 1 "$pg_dir/postmaster.pid")
    local watched="$mailstore_pid,$frontend_pid,$postmaster,$(pgrep -d, -P "$postmaster")"
    perf record -F 499 -o "$work/perf.data" -p "$watched" -- sleep "$PERF" >/dev/null 2>&1 &
    perf_pid=$!
  fi
  measure "$@"
  psql_bench -c "SELECT calls, round(total_exec_time::numeric, 1) AS total_ms,
      round(mean_exec_time::numeric, 3) AS mean_ms, plans, round(total_plan_time::numeric, 1) AS plan_ms, rows,
      regexp_replace(query, '\s+', ' ', 'g') AS query
    FROM pg_stat_statements ORDER BY total_exec_time + total_plan_time DESC LIMIT 25" \
    -c "SELECT wal_records, wal_fpi, wal_bytes, wal_sync FROM pg_stat_wal" \
    -c "SELECT schemaname, relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del, autovacuum_count,
      autoanalyze_count FROM pg_stat_all_tables WHERE n_tup_ins + n_tup_upd + n_tup_del + autovacuum_count > 0
      ORDER BY n_tup_ins + n_tup_upd + n_tup_del DESC" >"$OUT/pg-$label-run$run.txt"
  if [ -n "$perf_pid" ]; then
    wait "$perf_pid" || true
    perf report -i "$work/perf.data" --stdio --no-children --sort comm,dso,symbol --percent-limit 0.05 \
      >"$OUT/perf-$label-run$run.txt" 2>/dev/null || true
    rm -f "$work/perf.data"
  fi
}

# ---------------------------------------------------------------- login-fetch
if step login-fetch; then
log "login-fetch: $RUNS batches × $LOGIN_FETCH_ITERATIONS sessions"
# One untimed session each first (caches, connection pools).
"${imapbench[@]}" login-fetch --target "$ours_imap" --user "$ours_user" --iterations 1 \
  >"$OUT/login-fetch-warmup.log" 2>&1 || true
"${imapbench[@]}" login-fetch --target "$peer_imap" --user "$peer_user" --iterations 1 \
  >>"$OUT/login-fetch-warmup.log" 2>&1 || true
# imap-frontend remembers a successful login for a while (--login-cache-ttl, default 5m), so
# after the first session LOGIN skips the argon2id verification. A second imap-frontend with the
# cache off shows the cost of a LOGIN that is verified (a client's first, or after the TTL).
frontend_help=$("$bin/imap-frontend" --help)
if [[ $frontend_help == *--login-cache-ttl* ]]; then
  run_frontend "$nocache_imap_port" "$nocache_imaps_port" "$nocache_http_port" "$OUT/imap-frontend-nocache.log" \
    --login-cache-ttl 0
  nocache_pid=$started_pid
  watch_servers
  "${imapbench[@]}" login-fetch --target "127.0.0.1:$nocache_imap_port" --user "$ours_user" --iterations 1 \
    >>"$OUT/login-fetch-warmup.log" 2>&1 || true
fi
for run in $(seq 1 "$RUNS"); do
  measure login-fetch-kubemail "${imapbench[@]}" login-fetch --target "$ours_imap" --user "$ours_user" \
    --iterations "$LOGIN_FETCH_ITERATIONS"
  if [ -n "$nocache_pid" ]; then
    measure login-fetch-kubemail-nocache "${imapbench[@]}" login-fetch --target "127.0.0.1:$nocache_imap_port" \
      --user "$ours_user" --iterations "$LOGIN_FETCH_ITERATIONS"
  fi
  measure login-fetch-dovecot "${imapbench[@]}" login-fetch --target "$peer_imap" --user "$peer_user" \
    --iterations "$LOGIN_FETCH_ITERATIONS"
  # The server's share of the FETCH phase: a reader that does not parse the 10,000 lines.
  measure fetch-raw-kubemail python3 "$root/bench/imap-fetch-raw.py" --target "$ours_imap" --user "$ours_user" \
    --password "$PASSWORD" --iterations "$LOGIN_FETCH_ITERATIONS"
  measure fetch-raw-dovecot python3 "$root/bench/imap-fetch-raw.py" --target "$peer_imap" --user "$peer_user" \
    --password "$PASSWORD" --iterations "$LOGIN_FETCH_ITERATIONS"
done
if [ -n "$nocache_pid" ]; then
  kill "$nocache_pid"
  wait "$nocache_pid" 2>/dev/null || true
  nocache_pid=""
  watch_servers
fi
fi

# ---------------------------------------------------------------- mixed workload
step mixed && for run in $(seq 1 "$RUNS"); do
  for clients in ${MIXED_CLIENTS//,/ }; do
    log "mixed, run $run of $RUNS: $clients clients, $MIXED_SECS s"
    measure "mixed-c$clients-kubemail" "${imapbench[@]}" mixed --target "$ours_imap" --user "$ours_user" \
      --clients "$clients" --duration "$MIXED_SECS" --msgs "$MAILBOX_MSGS" --seed "$run" --corpus "$corpus"
    measure "mixed-c$clients-dovecot" "${imapbench[@]}" mixed --target "$peer_imap" --user "$peer_user" \
      --clients "$clients" --duration "$MIXED_SECS" --msgs "$MAILBOX_MSGS" --seed "$run" --corpus "$corpus"
  done
done

# ---------------------------------------------------------------- persistent mixes
step persistent && for run in $(seq 1 "$RUNS"); do
  for users in ${PERSISTENT_USERS//,/ }; do
    log "persistent mix, run $run of $RUNS: $users clients on $users users, $MIXED_SECS s"
    profiled "persistent-c$users-kubemail" "${imapbench[@]}" mixed --persistent --target "$ours_imap" \
      --user "user1@$DOMAIN" --users "$users" --user-prefix user --user-suffix "@$DOMAIN" --clients "$users" \
      --duration "$MIXED_SECS" --msgs "$PERSISTENT_MSGS" --seed "$run" --corpus "$corpus"
    measure "persistent-c$users-dovecot" "${imapbench[@]}" mixed --persistent --target "$peer_imap" \
      --user user1 --users "$users" --user-prefix user --clients "$users" \
      --duration "$MIXED_SECS" --msgs "$PERSISTENT_MSGS" --seed "$run" --corpus "$corpus"
  done
done
step shared && for run in $(seq 1 "$RUNS"); do
  for clients in ${MIXED_CLIENTS//,/ }; do
    log "persistent mix on one shared INBOX, run $run of $RUNS: $clients clients, $MIXED_SECS s"
    profiled "shared-c$clients-kubemail" "${imapbench[@]}" mixed --persistent --target "$ours_imap" \
      --user "$ours_user" --clients "$clients" --duration "$MIXED_SECS" --msgs "$MAILBOX_MSGS" --seed "$run" \
      --corpus "$corpus"
    measure "shared-c$clients-dovecot" "${imapbench[@]}" mixed --persistent --target "$peer_imap" \
      --user "$peer_user" --clients "$clients" --duration "$MIXED_SECS" --msgs "$MAILBOX_MSGS" --seed "$run" \
      --corpus "$corpus"
  done
done

# ---------------------------------------------------------------- the cost of each command
if step cost; then
  floor_url="${POSTGRES_URL%/*}/floor"
  psql_bench -c "CREATE DATABASE floor" >/dev/null
  "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -v mailboxes="$COST_CLIENTS" -v messages="$PERSISTENT_MSGS" \
    -f "$root/bench/pg-floor/schema.sql" "$floor_url" >/dev/null
fi
step cost && for run in $(seq 1 "$RUNS"); do
  for kind in fetch fetch2 store expunge noop; do
    log "cost of $kind, run $run of $RUNS: $COST_CLIENTS clients, $COST_SECS s"
    cost=(python3 "$root/bench/imap-cost.py" "$PEERS_DIR/bin/imapbench.py" --kind "$kind" --clients "$COST_CLIENTS"
      --duration "$COST_SECS" --seed "$run" --corpus "$corpus")
    profiled "cost-$kind-kubemail" "${cost[@]}" --target "$ours_imap" --user-suffix "@$DOMAIN"
    measure "cost-$kind-dovecot" "${cost[@]}" --target "$peer_imap"
    [ -f "$root/bench/pg-floor/$kind.sql" ] || continue
    measure "cost-$kind-floor" "$PG_BIN/pgbench" -n -M prepared -c "$COST_CLIENTS" -j 2 -T "$COST_SECS" \
      -D messages="$PERSISTENT_MSGS" -f "$root/bench/pg-floor/$kind.sql" "$floor_url"
  done
done

# ---------------------------------------------------------------- APPEND
step append && for run in $(seq 1 "$RUNS"); do
  for conns in ${APPEND_CONNS//,/ }; do
    log "append, run $run of $RUNS: $APPEND_MSGS messages over $conns connection(s)"
    measure "append-c$conns-kubemail" "${imapbench[@]}" append --target "$ours_imap" --user "bench4@$DOMAIN" \
      --count "$APPEND_MSGS" --conns "$conns" --runs 1 --corpus "$corpus"
    measure "append-c$conns-dovecot" "${imapbench[@]}" append --target "$peer_imap" --user bench4 \
      --count "$APPEND_MSGS" --conns "$conns" --runs 1 --corpus "$corpus"
  done
done

# ---------------------------------------------------------------- SORT and THREAD
if step sort; then
  for run in $(seq 1 "$RUNS"); do
    log "SORT and THREAD, run $run of $RUNS: $SORT_ITERATIONS sessions of each command"
    measure sort-kubemail python3 "$root/bench/imap-sort.py" --target "$ours_imap" --user "$ours_user" \
      --password "$PASSWORD" --iterations "$SORT_ITERATIONS"
    measure sort-dovecot python3 "$root/bench/imap-sort.py" --target "$peer_imap" --user "$peer_user" \
      --password "$PASSWORD" --iterations "$SORT_ITERATIONS"
  done
fi

# ---------------------------------------------------------------- COMPRESS=DEFLATE
if step compress; then
  for run in $(seq 1 "$RUNS"); do
    log "COMPRESS, run $run of $RUNS: $COMPRESS_ITERATIONS header fetches of the INBOX, plain and compressed"
    measure compress-kubemail python3 "$root/bench/imap-compress.py" --target "$ours_imap" --user "$ours_user" \
      --password "$PASSWORD" --iterations "$COMPRESS_ITERATIONS"
    measure compress-dovecot python3 "$root/bench/imap-compress.py" --target "$peer_imap" --user "$peer_user" \
      --password "$PASSWORD" --iterations "$COMPRESS_ITERATIONS"
  done
fi

# ---------------------------------------------------------------- delivery → IDLE
if step e2e; then
dev_data=$work/dev
dev_args=(--data-dir "$dev_data" --hostname bench.local --grpc-listen "127.0.0.1:$dev_grpc_port"
  --admin-grpc-listen "127.0.0.1:$dev_admin_grpc_port"
  --http-listen "127.0.0.1:$dev_http_port" --smtp-listen "127.0.0.1:$dev_smtp_port"
  --submission-listen "127.0.0.1:$dev_submission_port" --submissions-listen "127.0.0.1:$dev_submissions_port"
  --imap-listen "127.0.0.1:$dev_imap_port" --imaps-listen "127.0.0.1:$dev_imaps_port"
  --imap-allow-plaintext-login --max-connections-per-ip 0 --connection-rate-per-ip 0)
# POP3 listeners only where this build has them, so none lands on its default port.
dev_help=$("$bin/kubemail" dev --help)
if [[ $dev_help == *--pop3-listen* ]]; then
  dev_args+=(--pop3-listen "127.0.0.1:$dev_pop3_port" --pop3s-listen "127.0.0.1:$dev_pop3s_port")
fi
"$bin/kubemail" dev "${dev_args[@]}" >"$OUT/kubemail-dev.log" 2>&1 &
dev_pid=$!
wait_ready "http://127.0.0.1:$dev_http_port/readyz" "$dev_pid" "$OUT/kubemail-dev.log"
"$bin/kubemail" admin --mailstore "http://127.0.0.1:$dev_admin_grpc_port" domain add "$DOMAIN" >/dev/null
echo "$PASSWORD" | "$bin/kubemail" admin --mailstore "http://127.0.0.1:$dev_admin_grpc_port" \
  mailbox add "bench3@$DOMAIN" --password-stdin >/dev/null
watch_servers
log "kubemail dev on SQLite: smtp 127.0.0.1:$dev_smtp_port, imap 127.0.0.1:$dev_imap_port"

e2e=(python3 "$PEERS_DIR/bin/e2e.py" --method idle --count "$E2E_MSGS" --rcpt "bench3@$DOMAIN")
for run in $(seq 1 "$RUNS"); do
  log "delivery → IDLE, run $run of $RUNS: $E2E_MSGS messages each"
  measure e2e-kubemail "${e2e[@]}" --smtp "$ours_smtp" --imap "$ours_imap" --user "bench3@$DOMAIN"
  measure e2e-kubemail-dev "${e2e[@]}" --smtp "127.0.0.1:$dev_smtp_port" --imap "127.0.0.1:$dev_imap_port" \
    --user "bench3@$DOMAIN"
  measure e2e-dovecot "${e2e[@]}" --smtp "$peer_smtp" --imap "$peer_imap" --user bench3
done
kill "$dev_pid"
wait "$dev_pid" 2>/dev/null || true
dev_pid=""
watch_servers
fi

# ---------------------------------------------------------------- memory per idle connection
if step memory; then
# idle-mem.py logs in as <prefix><n>; ours needs the address, so this wrapper appends the
# domain to the user names it logs in with (the tool has no option for it).
cat >"$work/idle-mem-address.py" <<'EOF'
import importlib.util, sys
path, domain, args = sys.argv[1], sys.argv[2], sys.argv[3:]
spec = importlib.util.spec_from_file_location("idle_mem", path)
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)
plain_login = tool.ib.Imap.login
async def login(self, user, password):
    return await plain_login(self, user if "@" in user else f"{user}@{domain}", password)
tool.ib.Imap.login = login
sys.argv = [path] + args
tool.main()
EOF
for run in $(seq 1 "$MEM_RUNS"); do
  log "memory, run $run of $MEM_RUNS: $MEM_CONNS selected connections over $MEM_USERS users"
  # A fresh imap-frontend each run: memory freed by an earlier run and reused would hide the cost.
  kill "$frontend_pid"
  wait "$frontend_pid" 2>/dev/null || true
  frontend_pid=""
  start_frontend
  watch_servers
  measure mem-kubemail python3 "$work/idle-mem-address.py" "$PEERS_DIR/bin/idle-mem.py" "$DOMAIN" \
    --proto imap --state selected --target "$ours_imap" --server-pid "$frontend_pid" \
    --conns "$MEM_CONNS" --users "$MEM_USERS" --runs 1
done
measure mem-dovecot python3 "$PEERS_DIR/bin/idle-mem.py" --proto imap --state selected --target "$peer_imap" \
  --server-pid-cmd "$peers pids dovecot" --before-run "$peers stop dovecot && $peers start dovecot" \
  --conns "$MEM_CONNS" --users "$MEM_USERS" --runs "$MEM_RUNS"
fi

# ---------------------------------------------------------------- summary
drop_accepted_lines "$OUT/smtp-ingress.log" "$OUT/kubemail-dev.log"
python3 "$root/bench/summarize-imap.py" "$OUT" | tee "$OUT/summary.md"
log "raw results in $OUT"
