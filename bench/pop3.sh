#!/usr/bin/env bash
# The POP3 benchmark, with Dovecot's POP3 (mdbox) measured in the same run as the peer.
#
#   bench/pop3.sh
#
# 1. Builds the release `kubemail`, `mailstore` and `imap-frontend` binaries.
# 2. Distributed kubemail as bench/imap.sh runs it, each service its own process: PostgreSQL
#    (durable defaults) and NATS with JetStream (scripts/lib/provision.sh), the mailstore on
#    PostgreSQL and imap-frontend serving POP3 beside IMAP (--pop3-listen; plaintext USER/PASS
#    allowed on loopback by --imap-allow-plaintext-login, no per-address connection limits). The
#    domain bench.test and the mailboxes bench1..bench<2+POLL_USERS>@bench.test, password
#    benchpass, hashed with the mailstore's default (argon2id).
# 3. Dovecot with MAIL_FORMAT=mdbox from the shared peer scripts (peers.sh setup under the work
#    directory, on free ports), with POP3 added to the rendered dovecot.conf: `pop3` in
#    protocols and a pop3 inet_listener on 127.0.0.1. Only Dovecot is started, not Postfix. Its
#    users are the same (Dovecot logs in by local part, ours by address).
# 4. The same corpus on both sides (`gen-corpus.py --count 1000 --seed 1`), APPENDed over IMAP
#    (`imapbench.py fill`, FILL_CONNS connections): bench1's INBOX to DOWNLOAD_MSGS messages,
#    the INBOXes of bench3..bench<2+POLL_USERS> to POLL_MSGS each; bench2 is the one emptied by
#    the delete step. Each INBOX's count is then checked over POP3 (STAT, LIST, UIDL).
# 5. download (bench1): after one session whose figures are kept apart (its QUIT marks the
#    500 messages \Seen on both servers), RUNS batches of DOWNLOAD_ITERATIONS sequential sessions
#    of connect, USER/PASS, STAT, UIDL, RETR of every message, QUIT (no DELE); p50 per phase and
#    of the whole session, and octets per second of the RETR phase.
# 6. poll (bench3, POLL_MSGS messages): RUNS batches of POLL_ITERATIONS sequential sessions of
#    connect, USER/PASS, STAT, UIDL, QUIT; p50 and p90 per phase and of the whole session.
# 7. concurrent polls: CLIENTS clients, each repeating the poll session for SECS seconds, spread
#    over the POLL_USERS accounts of POLL_MSGS messages (phones poll their own mailboxes; neither
#    server locks a maildrop, so one account would also work); sessions per second, failed
#    sessions.
# 8. delete (bench2): refilled by APPEND to DELETE_MSGS messages before each run (untimed for the
#    figures), then one session of connect, USER/PASS, STAT, DELE of every message one at a time
#    and QUIT, where the UPDATE state removes them; then a check that none is left.
# 9. Writes raw outputs, cpu.jsonl (wall time and CPU seconds of the client and of every server
#    process tree during each step) and summary.md to bench/results/pop3-<UTC date-time>/.
#
# Ours and the peer alternate within every measurement (ours first in odd runs, Dovecot first in
# even ones), so a slow phase of the shared machine hits both. A step that fails (non-zero exit,
# timeout, a protocol error found by pop3-load.py) is recorded in failures.txt with the end of
# its output, and the run goes on; its figures are left out of the medians. Everything listens on
# 127.0.0.1 only; every loop is bounded (each step also by STEP_TIMEOUT seconds); everything
# started is stopped on exit, also on failure or Ctrl-C.
#
# Environment (defaults): RUNS=3 DOWNLOAD_MSGS=500 DOWNLOAD_ITERATIONS=10 POLL_MSGS=10000
#   POLL_ITERATIONS=50 CLIENTS=10,50 SECS=20 POLL_USERS=5 DELETE_MSGS=200 FILL_CONNS=4
#   STEP_TIMEOUT=900 PEERS_DIR=/work/shared/bench/peers OUT=bench/results/pop3-<date-time>
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/lib/provision.sh"
source "$root/bench/lib.sh"

RUNS=${RUNS:-3}
DOWNLOAD_MSGS=${DOWNLOAD_MSGS:-500}
DOWNLOAD_ITERATIONS=${DOWNLOAD_ITERATIONS:-10}
POLL_MSGS=${POLL_MSGS:-10000}
POLL_ITERATIONS=${POLL_ITERATIONS:-50}
CLIENTS=${CLIENTS:-10,50}
SECS=${SECS:-20}
POLL_USERS=${POLL_USERS:-5}
DELETE_MSGS=${DELETE_MSGS:-200}
FILL_CONNS=${FILL_CONNS:-4}
STEP_TIMEOUT=${STEP_TIMEOUT:-900}
PEERS_DIR=${PEERS_DIR:-/work/shared/bench/peers}
OUT=${OUT:-$root/bench/results/pop3-$(date -u +%Y-%m-%dT%H%M%SZ)}

# Accounts: bench1 is downloaded, bench2 emptied by DELE, bench3.. are polled.
[ "$POLL_USERS" -ge 1 ] || { echo "POLL_USERS must be at least 1" >&2; exit 2; }
USERS=$((2 + POLL_USERS))
DOMAIN=bench.test
PASSWORD=benchpass

mkdir -p "$OUT"
# Under /var, as imap.sh: the peer configs log to files under their root.
work=$(mktemp -d /var/tmp/kubemail-pop3-bench.XXXXXX)
chmod 755 "$work"
pids=()
frontend_pid=""
peer_root=$work/peers

cleanup() {
  set +e
  for pid in $frontend_pid "${pids[@]}"; do
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  [ -d "$peer_root" ] && BENCH_ROOT=$peer_root "$PEERS_DIR/bin/peers.sh" stop dovecot >/dev/null 2>&1
  provision_cleanup "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Up to 50 clients, each a socket in the server and in the client.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

take_port grpc_port mailstore_http_port imap_port imaps_port pop3_port frontend_http_port \
  peer_imap_port peer_lmtp_port peer_pop3_port postfix_full_port hold_port sink_port

record_machine
build_release kubemail kubemail-mailstore kubemail-imap-frontend
bin=$root/target/release

# ---------------------------------------------------------------- CPU accounting
# cpu_watch holds NAME=PID entries: each step (`measure`, bench/lib.sh) records the CPU seconds
# of those process trees.
cpu_watch=()

# ---------------------------------------------------------------- PostgreSQL, NATS, kubemail
start_distributed_store
{
  echo "PostgreSQL: fsync=on synchronous_commit=on full_page_writes=on (every commit on disk)"
  echo "NATS JetStream file storage, default sync_interval (2 min)"
  echo "Dovecot mdbox: mail_fsync = optimized (the peer scripts' defaults)"
  echo "Passwords: ours argon2id (the mailstore's default hash; imap-frontend remembers a verified"
  echo "  login for 5 minutes, --login-cache-ttl); Dovecot {PLAIN} (the peer scripts' users file), no auth cache"
  echo "\\Seen: both servers mark the messages a session retrieved with RETR \\Seen at QUIT"
  echo "  (ours always; Dovecot with its default pop3_no_flag_updates = no)"
} >"$OUT/durability.txt"

# imap-frontend with POP3 beside IMAP: plaintext LOGIN and USER/PASS on loopback (the load
# tools), no per-address limits (all load comes from 127.0.0.1).
"$bin/imap-frontend" --imap-listen "127.0.0.1:$imap_port" --imaps-listen "127.0.0.1:$imaps_port" \
  --pop3-listen "127.0.0.1:$pop3_port" --http-listen "127.0.0.1:$frontend_http_port" --hostname bench.local \
  --mailstore "http://$grpc" --nats-url "$NATS_URL" \
  --imap-allow-plaintext-login --max-connections-per-ip 0 --connection-rate-per-ip 0 >>"$OUT/imap-frontend.log" 2>&1 &
frontend_pid=$!
wait_ready "http://127.0.0.1:$frontend_http_port/readyz" "$frontend_pid" "$OUT/imap-frontend.log"
wait_for_port "$pop3_port"

"$bin/kubemail" admin --mailstore "http://$admin_grpc" domain add "$DOMAIN" >/dev/null
for i in $(seq 1 "$USERS"); do
  echo "$PASSWORD" | "$bin/kubemail" admin --mailstore "http://$admin_grpc" mailbox add "bench$i@$DOMAIN" \
    --password-stdin >/dev/null
done
ours_imap=127.0.0.1:$imap_port
ours_pop3=127.0.0.1:$pop3_port
log "kubemail: imap-frontend with IMAP on $ours_imap and POP3 on $ours_pop3, mailstore on PostgreSQL at $grpc"

# ---------------------------------------------------------------- Dovecot mdbox with POP3
peers=$PEERS_DIR/bin/peers.sh
if ! command -v postfix >/dev/null; then
  # peers.sh setup renders and checks the Postfix configuration too (Postfix is not started).
  log "installing the peer packages (peers.sh install)"
  "$peers" install >"$OUT/peers-install.log" 2>&1
fi
if ! command -v dovecot >/dev/null || [ ! -x /usr/lib/dovecot/pop3 ]; then
  log "installing Dovecot with POP3 (Debian packages; no daemon is started by them)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y dovecot-core dovecot-imapd dovecot-pop3d dovecot-lmtpd \
    >>"$OUT/peers-install.log" 2>&1
fi
export BENCH_ROOT=$peer_root MAIL_FORMAT=mdbox SMTP_PORT=$postfix_full_port SMTP_HOLD_PORT=$hold_port \
  SINK_PORT=$sink_port IMAP_PORT=$peer_imap_port LMTP_PORT=$peer_lmtp_port BENCH_USERS=$USERS
"$peers" setup >"$OUT/peers-setup.log" 2>&1
# The shared template serves IMAP and LMTP; POP3 is added to the rendered copy only.
dovecot_conf=$peer_root/dovecot/dovecot.conf
grep -q '^protocols = imap lmtp$' "$dovecot_conf" \
  || { log "the rendered dovecot.conf has no 'protocols = imap lmtp' line to extend"; exit 1; }
sed -i 's/^protocols = imap lmtp$/protocols = imap lmtp pop3/' "$dovecot_conf"
cat >"$OUT/dovecot-pop3.conf" <<EOF
# Added by bench/pop3.sh to the rendered dovecot.conf (besides 'pop3' in protocols).
# POP3 on loopback; login processes in the default high-security mode, as for IMAP.
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = $peer_pop3_port
  }
  inet_listener pop3s {
    port = 0
  }
}
# Three login services now count against auth's client limit (doveconf warns below 4,400).
service auth {
  client_limit = 5000
}
EOF
cat "$OUT/dovecot-pop3.conf" >>"$dovecot_conf"
dovecot -c "$dovecot_conf" -n >"$OUT/dovecot-config.txt" 2>&1
"$peers" start dovecot >>"$OUT/peers-setup.log" 2>&1
wait_for_port "$peer_imap_port"
wait_for_port "$peer_pop3_port"
peer_imap=127.0.0.1:$peer_imap_port
peer_pop3=127.0.0.1:$peer_pop3_port
log "peer: Dovecot mdbox with IMAP on $peer_imap and POP3 on $peer_pop3"
{
  echo "dovecot: $(dovecot --version)"
  echo "python: $(python3 --version)"
} >>"$OUT/machine.txt"

cpu_watch=("postgres=$(head -n 1 "$pg_dir/postmaster.pid")" "nats=$nats_pid" "mailstore=$mailstore_pid"
  "imap_frontend=$frontend_pid" "dovecot=$("$peers" pids dovecot)")

# ---------------------------------------------------------------- the INBOXes
corpus=$work/corpus.mbox
python3 "$PEERS_DIR/bin/gen-corpus.py" --out "$corpus" --count 1000 --seed 1 >/dev/null
# imapbench.py through bench/imapbench-logged.py: each command not answered OK is written
# to stderr with the server's reply.
imapbench=(python3 "$root/bench/imapbench-logged.py" "$PEERS_DIR/bin/imapbench.py")
load=(python3 "$root/bench/pop3-load.py")

# fill SIDE LABEL N COUNT: bench<N>'s INBOX to COUNT messages on one side, by APPEND over IMAP.
fill() {
  local side=$1 label=$2 n=$3 count=$4
  if [ "$side" = kubemail ]; then
    measure "$label-kubemail" "${imapbench[@]}" fill --target "$ours_imap" --user "bench$n@$DOMAIN" \
      --count "$count" --conns "$FILL_CONNS" --corpus "$corpus"
  else
    measure "$label-dovecot" "${imapbench[@]}" fill --target "$peer_imap" --user "bench$n" \
      --count "$count" --conns "$FILL_CONNS" --corpus "$corpus"
  fi
}
# pop3 SIDE LABEL MODE N ARGS...: `pop3-load.py MODE ARGS` against one side, as bench<N>.
pop3() {
  local side=$1 label=$2 mode=$3 n=$4
  shift 4
  if [ "$side" = kubemail ]; then
    measure "$label-kubemail" "${load[@]}" "$mode" --target "$ours_pop3" --user "bench$n@$DOMAIN" "$@"
  else
    measure "$label-dovecot" "${load[@]}" "$mode" --target "$peer_pop3" --user "bench$n" "$@"
  fi
}
poll_users() { # SIDE: the polled accounts, comma-separated
  local side=$1 list="" i
  for i in $(seq 3 "$USERS"); do
    if [ "$side" = kubemail ]; then list="$list,bench$i@$DOMAIN"; else list="$list,bench$i"; fi
  done
  echo "${list#,}"
}
# sides RUN: the order of the two servers in run RUN.
sides() { if [ $(($1 % 2)) = 1 ]; then echo "kubemail dovecot"; else echo "dovecot kubemail"; fi; }

log "filling the INBOXes: bench1 to $DOWNLOAD_MSGS, bench3..bench$USERS to $POLL_MSGS each, on both"
for side in kubemail dovecot; do
  fill "$side" fill 1 "$DOWNLOAD_MSGS"
  for i in $(seq 3 "$USERS"); do fill "$side" fill "$i" "$POLL_MSGS"; done
done
log "checking the INBOXes over POP3"
for side in kubemail dovecot; do
  pop3 "$side" check check 1 --expect "$DOWNLOAD_MSGS"
  for i in $(seq 3 "$USERS"); do pop3 "$side" check check "$i" --expect "$POLL_MSGS"; done
done

# ---------------------------------------------------------------- the first download
# Kept apart: the first session that retrieves the messages also marks them \Seen at QUIT,
# and warms the caches (Dovecot's index cache of the sizes, our login cache).
log "download: the first session on each side"
for side in kubemail dovecot; do
  pop3 "$side" download-first download 1 --expect "$DOWNLOAD_MSGS" --iterations 1
done
# And one untimed poll session per polled account (their logins, the caches).
for side in kubemail dovecot; do
  for i in $(seq 3 "$USERS"); do
    if [ "$side" = kubemail ]; then user=bench$i@$DOMAIN; target=$ours_pop3; else user=bench$i; target=$peer_pop3; fi
    "${load[@]}" poll --target "$target" --user "$user" --expect "$POLL_MSGS" --iterations 1 \
      >>"$OUT/poll-warmup.log" 2>&1 || true
  done
done

# ---------------------------------------------------------------- the runs
for run in $(seq 1 "$RUNS"); do
  order=$(sides "$run")
  log "run $run of $RUNS ($order): download, $DOWNLOAD_ITERATIONS sessions of $DOWNLOAD_MSGS messages"
  for side in $order; do
    pop3 "$side" download download 1 --expect "$DOWNLOAD_MSGS" --iterations "$DOWNLOAD_ITERATIONS"
  done
  log "run $run of $RUNS: poll, $POLL_ITERATIONS sessions on $POLL_MSGS messages"
  for side in $order; do
    pop3 "$side" poll poll 3 --expect "$POLL_MSGS" --iterations "$POLL_ITERATIONS"
  done
  for clients in ${CLIENTS//,/ }; do
    log "run $run of $RUNS: concurrent polls, $clients clients over $POLL_USERS accounts, $SECS s"
    for side in $order; do
      pop3 "$side" "concurrent-c$clients" concurrent 3 --users "$(poll_users "$side")" --expect "$POLL_MSGS" \
        --clients "$clients" --duration "$SECS"
    done
  done
  log "run $run of $RUNS: delete, $DELETE_MSGS messages"
  for side in $order; do
    fill "$side" refill-delete 2 "$DELETE_MSGS"
    pop3 "$side" delete delete 2 --expect "$DELETE_MSGS"
  done
done

# ---------------------------------------------------------------- summary
python3 "$root/bench/summarize-pop3.py" "$OUT" | tee "$OUT/summary.md"
log "raw results in $OUT"
