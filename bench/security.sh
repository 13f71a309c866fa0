#!/usr/bin/env bash
# What security costs: the same platform with its internal security off and on, measured in one
# run, the two modes alternating step by step.
#
#   bench/security.sh           # release build (~10 min on 2 cores when stale), then about 9–10 minutes
#   bench/summarize-security.py bench/results/security-<time>    # the tables again
#
# "Security on" is what a deployment runs: gRPC between the services is mutual TLS (every
# service started with the same --service-ca-dir; the first makes the CA, each issues itself an
# identity), and NATS speaks only TLS and lets in only kubemail's components, each with the user
# and subject permissions of charts/kubemail/examples/nats-values.yaml (config.merge.authorization,
# each placeholder password replaced by a generated one, as tests/testkit/src/nats.rs does), the
# server certificate for 127.0.0.1 signed by a CA of the run's own (openssl); every service gets
# --nats-credentials-dir and --nats-ca-file. "Security off": no --service-ca-dir (plain-text
# gRPC), a NATS server without users or TLS, as the other benchmarks run it. Clients reach
# smtp-ingress and imap-frontend in plain text in both modes: only the platform's inside changes.
#
# 1. Builds the release `kubemail`, `mailstore`, `smtp-ingress`, `imap-frontend` and
#    `delivery-queue` binaries (bench/lib.sh build_release, under nice).
# 2. One PostgreSQL (durable defaults, as in mailstore.sh) with a database per mode, and two NATS
#    servers with JetStream (default sync_interval), one plain, one secured; each with its
#    monitoring port (/varz, /jsz) on loopback. Per mode, its own mailstore on its own database,
#    imap-frontend (plaintext LOGIN on loopback, no per-address limits) and smtp-ingress (MX, no
#    inbound SPF/DKIM/DMARC, no per-address limits, the default 5 s recipient cache), all on
#    127.0.0.1. Mailboxes bench1 (the IMAP INBOX) and bench2 (the SMTP recipient) @bench.test,
#    argon2id hashes (the default). Both stacks stay up; the one not measured is idle.
# 3. Per mode: bench1's INBOX filled to MAILBOX_MSGS messages by APPEND (imapbench.py fill, the
#    corpus of imap.sh: gen-corpus.py --count 1000 --seed 1); an untimed warm-up of every step.
# 4. RUNS rounds; in each, every step runs once per mode, back to back (off first in odd rounds,
#    on first in even ones, so neither always follows the other):
#    a. SMTP acceptance: smtp-bench.py (Postfix's smtp-source, one connection per message, as
#       smtp.sh) sends SMTP_MSGS messages of SIZE octets at SESSIONS sessions to bench2.
#    b. Queue → mailbox (a secondary figure): a delivery-queue of the mode starts with its
#       defaults and delivers what (a) queued; the clock runs from its start until bench2's
#       INBOX (STATUS over imap-frontend, every 200 ms) holds every message; then it is stopped.
#       Its CPU row counts the delivery-queue from its start.
#    c. IMAP mixed: imapbench.py mixed (imaptest's state machine, as imap.sh) on bench1's INBOX
#       kept around MAILBOX_MSGS messages, MIXED_SECS s at each client count in MIXED_CLIENTS.
#    Around every step: CPU seconds of every server process tree (cpu.jsonl), and in
#    connections.jsonl the TCP connections opened to each mailstore's gRPC port during the step
#    (distinct client ports seen with `ss` before and after; a closed one stays in TIME-WAIT
#    for 60 s), NATS's accepted connections and messages (/varz), and the mailstore's gRPC calls
#    by method (/metrics): with connections reused, mutual TLS costs a handshake per connection,
#    not per call.
# 5. Writes raw outputs and summary.md (bench/summarize-security.py: medians per mode, on ÷ off)
#    to bench/results/security-<UTC date-time>/.
#
# Everything listens on 127.0.0.1 only; every loop is bounded (each step also by STEP_TIMEOUT
# seconds); everything started is stopped by its PID on exit, also on failure or Ctrl-C.
#
# Environment (defaults): RUNS=3 SMTP_MSGS=20000 SIZE=4096 SESSIONS=50 MAILBOX_MSGS=10000
#   FILL_CONNS=4 MIXED_CLIENTS=10,50 MIXED_SECS=30 WARMUP_MSGS=2000 STEP_TIMEOUT=900
#   PEERS_DIR=/work/shared/bench/peers OUT=bench/results/security-<date-time>
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/lib/provision.sh"
source "$root/bench/lib.sh"

RUNS=${RUNS:-3}
SMTP_MSGS=${SMTP_MSGS:-20000}
SIZE=${SIZE:-4096}
SESSIONS=${SESSIONS:-50}
MAILBOX_MSGS=${MAILBOX_MSGS:-10000}
FILL_CONNS=${FILL_CONNS:-4}
MIXED_CLIENTS=${MIXED_CLIENTS:-10,50}
MIXED_SECS=${MIXED_SECS:-30}
WARMUP_MSGS=${WARMUP_MSGS:-2000}
STEP_TIMEOUT=${STEP_TIMEOUT:-900}
PEERS_DIR=${PEERS_DIR:-/work/shared/bench/peers}
OUT=${OUT:-$root/bench/results/security-$(date -u +%Y-%m-%dT%H%M%SZ)}

DOMAIN=bench.test
PASSWORD=benchpass
IMAP_USER=bench1@$DOMAIN
SMTP_RCPT=bench2@$DOMAIN
MODES=(off on)

mkdir -p "$OUT"
work=$(mktemp -d /var/tmp/kubemail-security-bench.XXXXXX)
chmod 755 "$work"
pids=()     # every long-running process started here, stopped by PID on exit
queue_pid="" # the delivery-queue of a drain step, while it runs

cleanup() {
  set +e
  local i
  # The services first (the latest started first), then NATS.
  for pid in $queue_pid; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill "${pids[$i]}" 2>/dev/null
    wait "${pids[$i]}" 2>/dev/null
  done
  provision_cleanup "$work" # PostgreSQL (pg_ctl stop) and the work directory
}
trap cleanup EXIT
trap 'exit 130' INT TERM

declare -A grpc_port admin_port store_http imap_port imaps_port frontend_http smtp_port submission_port \
  submissions_port ingress_http queue_http nats_port nats_monitor
for mode in "${MODES[@]}"; do
  take_port "grpc_port[$mode]" "admin_port[$mode]" "store_http[$mode]" "imap_port[$mode]" "imaps_port[$mode]" \
    "frontend_http[$mode]" "smtp_port[$mode]" "submission_port[$mode]" "submissions_port[$mode]" \
    "ingress_http[$mode]" "queue_http[$mode]" "nats_port[$mode]" "nats_monitor[$mode]"
done

record_machine
echo "working tree: $(git -C "$root" status --short 2>/dev/null | wc -l) paths differ from the commit (git status --short)" \
  >>"$OUT/machine.txt"
# The shared machine: the build (a no-op when the binaries are fresh) runs at a lower priority.
cargo() { nice -n 10 "$(type -P cargo)" "$@"; }
build_release kubemail kubemail-mailstore kubemail-smtp-ingress kubemail-imap-frontend kubemail-delivery-queue
unset -f cargo
bin=$root/target/release

# ---------------------------------------------------------------- PostgreSQL and the two NATS
ensure_postgres
ensure_nats
ensure_mail_clients # smtp-source
start_postgres "$work" bench fsync=on synchronous_commit=on full_page_writes=on \
  shared_buffers=1GB max_wal_size=4GB
pg_dir=$(echo "$PG_DIRS" | awk '{print $NF}')
declare -A database_url
for mode in "${MODES[@]}"; do
  "$PG_BIN/psql" -q "$POSTGRES_URL" -c "CREATE DATABASE security_$mode" >/dev/null
  database_url[$mode]=${POSTGRES_URL%/*}/security_$mode
done

# The secured NATS: a CA and a server certificate for 127.0.0.1 (openssl), and the chart
# example's authorization block with a generated password per user.
secure=$work/nats-secure
mkdir -p "$secure"
(
  cd "$secure"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj "/CN=kubemail bench NATS CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' \
    >server.ext
  openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 \
    -extfile server.ext 2>/dev/null
)
python3 - "$root/charts/kubemail/examples/nats-values.yaml" "$secure" >"$secure/authorization.json" <<'EOF'
import json, os, secrets, sys, yaml
values = yaml.safe_load(open(sys.argv[1]))
authorization = values["config"]["merge"]["authorization"]
names = [user["user"] for user in authorization["users"]]
assert names == ["smtp-ingress", "delivery-queue", "mailstore", "imap-frontend"], names
for user in authorization["users"]:
    password = secrets.token_hex(16)
    user["password"] = password
    credentials = os.path.join(sys.argv[2], "credentials", user["user"])
    os.makedirs(credentials)
    open(os.path.join(credentials, "username"), "w").write(user["user"])
    open(os.path.join(credentials, "password"), "w").write(password + "\n")
print(json.dumps(authorization))
EOF
declare -A nats_pid
for mode in "${MODES[@]}"; do
  mkdir -p "$work/nats-$mode"
  {
    echo "listen: \"127.0.0.1:${nats_port[$mode]}\""
    echo "http: \"127.0.0.1:${nats_monitor[$mode]}\""
    echo "jetstream { store_dir: \"$work/nats-$mode\" }"
    if [ "$mode" = on ]; then
      echo "tls { cert_file: \"$secure/server.crt\", key_file: \"$secure/server.key\" }"
      echo "authorization: $(cat "$secure/authorization.json")"
    fi
  } >"$work/nats-$mode.conf"
  "$NATS_SERVER" -c "$work/nats-$mode.conf" >"$OUT/nats-$mode.log" 2>&1 &
  pids+=($!)
  nats_pid[$mode]=$!
  wait_for_port "${nats_port[$mode]}"
done
# The configurations as run, the passwords left out.
for mode in "${MODES[@]}"; do
  python3 - "$work/nats-$mode.conf" >"$OUT/nats-$mode.conf" <<'EOF'
import re, sys
print(re.sub(r'"password": "[^"]*"', '"password": "<generated>"', open(sys.argv[1]).read()), end="")
EOF
done
{
  echo "PostgreSQL: fsync=on synchronous_commit=on full_page_writes=on (every commit on disk); one database per mode"
  echo "NATS JetStream file storage, default sync_interval (2 min), in both modes"
  echo "off: gRPC plain text (no --service-ca-dir); NATS without users or TLS"
  echo "on: gRPC mutual TLS (--service-ca-dir, one CA for all services); NATS TLS only (server cert for 127.0.0.1, RSA 2048, from the run's own CA) and a user per component with the chart example's permissions (nats-on.conf)"
  echo "$("$NATS_SERVER" --version)"
} >"$OUT/durability.txt"

# ---------------------------------------------------------------- the two stacks
# security_flags MODE ROLE: sets `flags` to the service's identity and NATS flags in MODE.
security_flags() {
  local mode=$1 role=$2
  flags=(--nats-url "nats://127.0.0.1:${nats_port[$mode]}")
  if [ "$mode" = on ]; then
    flags+=(--service-ca-dir "$work/service-ca" --nats-credentials-dir "$secure/credentials/$role"
      --nats-ca-file "$secure/ca.crt")
  fi
}
# admin MODE ARGS...: `kubemail admin` against MODE's mailstore, with an identity when on.
admin() {
  local mode=$1
  shift
  if [ "$mode" = on ]; then
    KUBEMAIL_SERVICE_CA_DIR=$work/service-ca "$bin/kubemail" admin --mailstore "http://127.0.0.1:${admin_port[$mode]}" "$@"
  else
    "$bin/kubemail" admin --mailstore "http://127.0.0.1:${admin_port[$mode]}" "$@"
  fi
}
declare -A mailstore_pid frontend_pid ingress_pid
for mode in "${MODES[@]}"; do
  grpc=http://127.0.0.1:${grpc_port[$mode]}
  security_flags "$mode" mailstore
  "$bin/mailstore" --database-url "${database_url[$mode]}" --grpc-listen "127.0.0.1:${grpc_port[$mode]}" \
    --admin-grpc-listen "127.0.0.1:${admin_port[$mode]}" --http-listen "127.0.0.1:${store_http[$mode]}" \
    "${flags[@]}" >"$OUT/mailstore-$mode.log" 2>&1 &
  pids+=($!)
  mailstore_pid[$mode]=$!
  wait_ready "http://127.0.0.1:${store_http[$mode]}/readyz" "${mailstore_pid[$mode]}" "$OUT/mailstore-$mode.log"

  security_flags "$mode" imap-frontend
  "$bin/imap-frontend" --imap-listen "127.0.0.1:${imap_port[$mode]}" --imaps-listen "127.0.0.1:${imaps_port[$mode]}" \
    --http-listen "127.0.0.1:${frontend_http[$mode]}" --hostname bench.local --mailstore "$grpc" \
    --imap-allow-plaintext-login --max-connections-per-ip 0 --connection-rate-per-ip 0 "${flags[@]}" \
    >"$OUT/imap-frontend-$mode.log" 2>&1 &
  pids+=($!)
  frontend_pid[$mode]=$!
  wait_ready "http://127.0.0.1:${frontend_http[$mode]}/readyz" "${frontend_pid[$mode]}" "$OUT/imap-frontend-$mode.log"

  security_flags "$mode" smtp-ingress
  "$bin/smtp-ingress" --smtp-listen "127.0.0.1:${smtp_port[$mode]}" \
    --submission-listen "127.0.0.1:${submission_port[$mode]}" --submissions-listen "127.0.0.1:${submissions_port[$mode]}" \
    --http-listen "127.0.0.1:${ingress_http[$mode]}" --hostname bench.local --mailstore "$grpc" \
    --verify-inbound false --max-connections-per-ip 0 --connection-rate-per-ip 0 "${flags[@]}" \
    >"$OUT/smtp-ingress-$mode.log" 2>&1 &
  pids+=($!)
  ingress_pid[$mode]=$!
  wait_ready "http://127.0.0.1:${ingress_http[$mode]}/readyz" "${ingress_pid[$mode]}" "$OUT/smtp-ingress-$mode.log"

  admin "$mode" domain add "$DOMAIN" >/dev/null
  for user in "$IMAP_USER" "$SMTP_RCPT"; do
    echo "$PASSWORD" | admin "$mode" mailbox add "$user" --password-stdin >/dev/null
  done
  log "security $mode: mailstore 127.0.0.1:${grpc_port[$mode]}, imap 127.0.0.1:${imap_port[$mode]}, smtp 127.0.0.1:${smtp_port[$mode]}, NATS 127.0.0.1:${nats_port[$mode]}"
done
# Proof that "on" is on: the mailstore refuses a plain-text client, and NATS a client without
# a user. Kept in security-check.txt.
{
  echo "## plain-text gRPC to the 'on' mailstore (expected: refused; mailstore-on.log records the refused handshakes)"
  "$bin/kubemail" admin --mailstore "http://127.0.0.1:${admin_port[on]}" domain list 2>&1 | tail -n 2 || true
  echo "## the 'on' NATS without TLS (expected: TLS required)"
  timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/${nats_port[on]}; head -c 600 <&3" 2>&1 | tr ',' '\n' \
    | grep -E 'tls_required|auth_required' || true
  echo "## the 'off' NATS"
  timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/${nats_port[off]}; head -c 600 <&3" 2>&1 | tr ',' '\n' \
    | grep -E 'tls_required|auth_required' || echo "(neither tls_required nor auth_required)"
  echo "## the 'on' NATS's client connections: name, user, TLS (/connz?auth=true)"
  curl -fsS "http://127.0.0.1:${nats_monitor[on]}/connz?auth=true" | python3 -c '
import json, sys
for c in json.load(sys.stdin).get("connections", []):
    print(c.get("name"), "user:", c.get("authorized_user"), "TLS:", c.get("tls_version"), c.get("tls_cipher_suite"))'
} >"$OUT/security-check.txt" 2>&1

# ---------------------------------------------------------------- CPU and connection accounting
cpu_watch=()
watch_servers() {
  cpu_watch=("postgres=$(head -n 1 "$pg_dir/postmaster.pid")")
  local mode
  for mode in "${MODES[@]}"; do
    cpu_watch+=("nats_$mode=${nats_pid[$mode]}" "mailstore_$mode=${mailstore_pid[$mode]}"
      "imap_frontend_$mode=${frontend_pid[$mode]}" "smtp_ingress_$mode=${ingress_pid[$mode]}")
  done
}
watch_servers

cat >"$work/probe.py" <<'EOF'
"""probe.py snapshot FILE NAME=GRPC_PORT,METRICS_URL,NATS_MONITOR_URL ...: what is open and
counted now. probe.py diff LABEL BEFORE AFTER: one JSON line of what the step added."""
import json, re, subprocess, sys, urllib.request

def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode()
    except OSError:
        return ""

def snapshot(path, specs):
    sockets = subprocess.run(["ss", "-Htan"], capture_output=True, text=True).stdout.splitlines()
    state = {}
    for spec in specs:
        name, rest = spec.split("=", 1)
        port, metrics, monitor = rest.split(",")
        clients = set()
        for line in sockets:
            fields = line.split()
            if len(fields) < 5 or fields[0] == "LISTEN":
                continue
            local, peer = fields[3].rsplit(":", 1)[1], fields[4].rsplit(":", 1)[1]
            if local == port:
                clients.add(peer)
            elif peer == port:
                clients.add(local)
        established = sum(1 for line in sockets if line.startswith("ESTAB") and line.split()[3].endswith(":" + port))
        calls = {}
        for line in get(metrics).splitlines():
            match = re.match(r'kubemail_grpc_server_requests_total\{(.*)\} (\S+)', line)
            if match:
                method = re.search(r'method="([^"]*)"', match.group(1)).group(1)
                calls[method] = calls.get(method, 0) + float(match.group(2))
        varz = json.loads(get(monitor + "/varz") or "{}")
        jsz = json.loads(get(monitor + "/jsz") or "{}")
        state[name] = {"grpc_clients": sorted(clients), "grpc_established": established, "grpc_calls": calls,
                       "nats": {key: varz.get(key, 0) for key in
                                ("total_connections", "connections", "in_msgs", "out_msgs", "in_bytes", "out_bytes")},
                       "jetstream_messages": jsz.get("messages", 0)}
    json.dump(state, open(path, "w"))

def diff(label, before_path, after_path):
    before, after = json.load(open(before_path)), json.load(open(after_path))
    row = {"label": label}
    for name, now in after.items():
        then = before.get(name, {})
        calls = {m: int(n - then.get("grpc_calls", {}).get(m, 0)) for m, n in now["grpc_calls"].items()}
        row[name] = {
            "grpc_connections_opened": len(set(now["grpc_clients"]) - set(then.get("grpc_clients", []))),
            "grpc_connections_established_after": now["grpc_established"],
            "grpc_calls": sum(calls.values()),
            "grpc_calls_by_method": {m: n for m, n in sorted(calls.items()) if n},
            "nats_connections_accepted": now["nats"]["total_connections"] - then.get("nats", {}).get("total_connections", 0),
            "nats_connections_after": now["nats"]["connections"],
            "nats_in_msgs": now["nats"]["in_msgs"] - then.get("nats", {}).get("in_msgs", 0),
            "nats_out_msgs": now["nats"]["out_msgs"] - then.get("nats", {}).get("out_msgs", 0),
            "nats_in_bytes": now["nats"]["in_bytes"] - then.get("nats", {}).get("in_bytes", 0),
            "jetstream_messages_after": now["jetstream_messages"],
        }
    print(json.dumps(row, sort_keys=True))

if sys.argv[1] == "snapshot":
    snapshot(sys.argv[2], sys.argv[3:])
else:
    diff(*sys.argv[2:5])
EOF
probe_specs() { # the probe's view of MODE
  echo "$1=${grpc_port[$1]},http://127.0.0.1:${store_http[$1]}/metrics,http://127.0.0.1:${nats_monitor[$1]}"
}
# step LABEL MODE COMMAND...: `measure` (bench/lib.sh) with MODE's connections counted around it.
step() {
  local label=$1 mode=$2
  shift 2
  python3 "$work/probe.py" snapshot "$work/before.json" "$(probe_specs "$mode")"
  measure "$label" "$@"
  python3 "$work/probe.py" snapshot "$work/after.json" "$(probe_specs "$mode")"
  python3 "$work/probe.py" diff "$label" "$work/before.json" "$work/after.json" >>"$OUT/connections.jsonl"
}

# ---------------------------------------------------------------- the load tools
corpus=$work/corpus.mbox
python3 "$PEERS_DIR/bin/gen-corpus.py" --out "$corpus" --count 1000 --seed 1 >/dev/null
# imapbench.py through bench/imapbench-logged.py: each command not answered OK is written
# to stderr with the server's reply.
imapbench=(python3 "$root/bench/imapbench-logged.py" "$PEERS_DIR/bin/imapbench.py")

# inbox_count MODE USER: the messages in USER's INBOX, through MODE's imap-frontend.
inbox_count() {
  "${imapbench[@]}" status --target "127.0.0.1:${imap_port[$1]}" --user "$2" 2>/dev/null \
    | sed -n 's/^RESULT //p' | python3 -c 'import json, sys; print(json.load(sys.stdin)["messages"])'
}
# smtp_load LABEL MODE MSGS: smtp-source through MODE's smtp-ingress to bench2.
smtp_load() {
  step "$1" "$2" python3 "$PEERS_DIR/bin/smtp-bench.py" --target "127.0.0.1:${smtp_port[$2]}" --label "$1" \
    --sessions "$SESSIONS" --msgs "$3" --size "$SIZE" --runs 1 --pause 0 --rcpt "$SMTP_RCPT" --run-timeout 600
}
# drain LABEL MODE ROUND: a delivery-queue of MODE delivers what is queued; timed from its start
# until bench2's INBOX holds every message accepted so far (drain-times-MODE.jsonl), then stopped.
# Its row in cpu.jsonl spans the same time and counts the delivery-queue from its start.
drain() {
  local label=$1 mode=$2 round=$3 before queued wanted t0 t1 cpu_before cpu_after rc=0
  before=$(inbox_count "$mode" "$SMTP_RCPT")
  queued=$(curl -fsS "http://127.0.0.1:${nats_monitor[$mode]}/jsz?accounts=true&streams=true" | python3 -c '
import json, sys
jsz = json.load(sys.stdin)
print(sum(s["state"]["messages"] for a in jsz.get("account_details", []) for s in a.get("stream_detail", []) if s["name"] == "QUEUE"))')
  wanted=$((before + queued))
  security_flags "$mode" delivery-queue
  python3 "$work/probe.py" snapshot "$work/before.json" "$(probe_specs "$mode")"
  cpu_before=$(cpu_seconds "${cpu_watch[@]}")
  t0=$(date +%s.%N)
  "$bin/delivery-queue" --mailstore "http://127.0.0.1:${grpc_port[$mode]}" --http-listen "127.0.0.1:${queue_http[$mode]}" \
    --hostname bench.local "${flags[@]}" >>"$OUT/delivery-queue-$mode.log" 2>&1 &
  queue_pid=$!
  timeout "$STEP_TIMEOUT" "${imapbench[@]}" wait-count --target "127.0.0.1:${imap_port[$mode]}" --user "$SMTP_RCPT" \
    --count "$wanted" --interval 0.2 --timeout $((STEP_TIMEOUT - 30)) >>"$OUT/$label.jsonl" 2>>"$OUT/$label.log" || rc=$?
  t1=$(date +%s.%N)
  cpu_after=$(cpu_seconds "${cpu_watch[@]}" "delivery_queue=$queue_pid")
  python3 "$work/probe.py" snapshot "$work/after.json" "$(probe_specs "$mode")"
  kill "$queue_pid" 2>/dev/null || true
  wait "$queue_pid" 2>/dev/null || true
  queue_pid=""
  python3 "$work/probe.py" diff "$label" "$work/before.json" "$work/after.json" >>"$OUT/connections.jsonl"
  python3 - "$label" "$mode" "$round" "$queued" "$t0" "$t1" "$rc" "$cpu_before" "$cpu_after" \
    "$OUT/drain-times-$mode.jsonl" "$OUT/cpu.jsonl" <<'EOF'
import json, sys
label, mode, rnd, queued, t0, t1, rc, before, after, times, cpu = sys.argv[1:]
seconds = float(t1) - float(t0)
with open(times, "a") as f:
    print(json.dumps({"label": label, "mode": mode, "round": int(rnd), "messages": int(queued), "exit": int(rc),
                      "seconds": round(seconds, 3), "msgs_per_s": round(int(queued) / seconds, 1)}), file=f)
row = {"label": label, "exit": int(rc), "wall_s": round(seconds, 3)}
start = dict(item.split("=") for item in before.split())
for item in after.split():
    name, value = item.split("=")
    if value == "NA":
        continue
    if name in start and start[name] != "NA":
        row[f"{name}_cpu_s"] = round(float(value) - float(start[name]), 2)
    elif name == "delivery_queue":  # started within the step: all of its CPU
        row[f"{name}_cpu_s"] = round(float(value), 2)
with open(cpu, "a") as f:
    print(json.dumps(row), file=f)
EOF
  if [ "$rc" != 0 ]; then
    { echo "## $label: exit $rc (wait-count for $wanted messages)"; echo '```'; tail -n 15 "$OUT/$label.log"; echo '```'; } \
      >>"$OUT/failures.txt"
    log "$label FAILED (exit $rc): see failures.txt"
  fi
}
mixed_load() { # LABEL MODE CLIENTS SECONDS SEED
  step "$1" "$2" "${imapbench[@]}" mixed --target "127.0.0.1:${imap_port[$2]}" --user "$IMAP_USER" --clients "$3" \
    --duration "$4" --msgs "$MAILBOX_MSGS" --seed "$5" --corpus "$corpus"
}

# ---------------------------------------------------------------- fill and warm up
for mode in "${MODES[@]}"; do
  log "security $mode: filling bench1's INBOX to $MAILBOX_MSGS messages ($FILL_CONNS connections)"
  step "fill-$mode" "$mode" "${imapbench[@]}" fill --target "127.0.0.1:${imap_port[$mode]}" --user "$IMAP_USER" \
    --count "$MAILBOX_MSGS" --conns "$FILL_CONNS" --corpus "$corpus"
done
for mode in "${MODES[@]}"; do
  log "security $mode: warm-up (untimed): $WARMUP_MSGS messages, their delivery, 5 s of mixed"
  smtp_load "warmup-smtp-$mode" "$mode" "$WARMUP_MSGS"
  drain "warmup-drain-$mode" "$mode" 0
  mixed_load "warmup-mixed-$mode" "$mode" 10 5 0
done

# ---------------------------------------------------------------- the rounds
for run in $(seq 1 "$RUNS"); do
  if [ $((run % 2)) = 1 ]; then order=(off on); else order=(on off); fi
  log "round $run of $RUNS (${order[*]}): SMTP $SMTP_MSGS × $SIZE B at $SESSIONS sessions"
  for mode in "${order[@]}"; do smtp_load "smtp-$mode" "$mode" "$SMTP_MSGS"; done
  log "round $run of $RUNS: queue → mailbox"
  for mode in "${order[@]}"; do drain "drain-$mode" "$mode" "$run"; done
  for clients in ${MIXED_CLIENTS//,/ }; do
    log "round $run of $RUNS: IMAP mixed, $clients clients, $MIXED_SECS s"
    for mode in "${order[@]}"; do mixed_load "mixed-c$clients-$mode" "$mode" "$clients" "$MIXED_SECS" "$run"; done
  done
done

# ---------------------------------------------------------------- summary
drop_accepted_lines "$OUT"/smtp-ingress-*.log
python3 "$root/bench/summarize-security.py" "$OUT" | tee "$OUT/summary.md"
log "raw results in $OUT"
