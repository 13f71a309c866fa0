#!/usr/bin/env bash
# The operator at scale on a real control plane: MAILBOXES Mailboxes in one namespace.
#
#   bench/operator.sh
#
# 1. Builds the release `operator` and `mailstore` binaries.
# 2. PostgreSQL (durable defaults) and NATS (scripts/lib/provision.sh), the release mailstore
#    on them, and a Kubernetes control plane (scripts/cluster: etcd, kube-apiserver,
#    kube-controller-manager, kube-scheduler), all on 127.0.0.1 under a scratch directory.
# 3. The chart in the namespace `bench` (its operator's RBAC; no operator pod, there is no
#    node), a MailCluster and the MailDomain bench.test; the release operator as a process
#    acting as the chart's ServiceAccount (an impersonating kubeconfig: the API server's audit
#    log records each of its requests), reconciling that namespace, its usage refresh every
#    USAGE_REFRESH.
# 4. MAILBOXES Mailboxes, each with its own password Secret, applied at once with
#    `kubectl apply --server-side`; the time from the apply until every one is Ready (polled
#    every 2 s), and how many were Ready at each poll (ready.tsv).
# 5. The operator's memory then (VmRSS, and VmHWM, its peak).
# 6. Nothing changes for IDLE_SECONDS (at least two usage refreshes of every Mailbox): the
#    operator's API requests in that window, per second and by verb and resource (from the
#    audit log), and its reconciles (from its /metrics).
# 7. Writes the raw outputs and summary.md to bench/results/operator-<UTC date-time>/.
#
# There is no peer: no other mail operator runs here. Everything listens on 127.0.0.1; every
# wait is bounded; everything started is stopped on exit, also on failure or Ctrl-C.
#
# Environment (defaults): MAILBOXES=1000 USAGE_REFRESH=60s IDLE_SECONDS=180 READY_TIMEOUT=1800
#   OUT=bench/results/operator-<date-time>
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/lib/provision.sh"
source "$root/scripts/lib/kubernetes.sh"
source "$root/bench/lib.sh"

MAILBOXES=${MAILBOXES:-1000}
USAGE_REFRESH=${USAGE_REFRESH:-60s}
IDLE_SECONDS=${IDLE_SECONDS:-180}
READY_TIMEOUT=${READY_TIMEOUT:-1800}
OUT=${OUT:-$root/bench/results/operator-$(date -u +%Y-%m-%dT%H%M%SZ)}

mkdir -p "$OUT"
work=$(mktemp -d /var/tmp/kubemail-operator-bench.XXXXXX)
chmod 755 "$work"
pids=()
export KUBEMAIL_CLUSTER_DIR="$work/cluster"
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  stop_control_plane "$KUBEMAIL_CLUSTER_DIR"
  provision_cleanup "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

record_machine
build_release kubemail-operator kubemail-mailstore
bin=$root/target/release
ensure_kube_clients
ensure_kubernetes
take_port grpc_port mailstore_http_port operator_http_port
start_distributed_store
"$root/scripts/cluster" up >"$OUT/cluster.log" 2>&1 || { cat "$OUT/cluster.log" >&2; exit 1; }
export KUBECONFIG="$KUBEMAIL_CLUSTER_DIR/admin.kubeconfig"
export HELM_CACHE_HOME="$work/helm/cache" HELM_CONFIG_HOME="$work/helm/config" HELM_DATA_HOME="$work/helm/data"
"$KUBECTL" version >"$OUT/versions.txt"

log "the chart, a MailCluster and the domain bench.test in namespace bench"
"$KUBECTL" create namespace bench >/dev/null
"$HELM" install bench "$root/charts/kubemail" -n bench --set operator.replicas=0 >"$OUT/helm.log"
"$KUBECTL" apply -n bench -f - >/dev/null <<'YAML'
apiVersion: v1
kind: Secret
metadata: {name: mail-db-app}
stringData: {uri: "postgres://unused"}
---
apiVersion: kubemail.io/v1alpha1
kind: MailCluster
metadata: {name: mail}
spec:
  hostname: mx.bench.test
  database: {uriSecretRef: {name: mail-db-app, key: uri}}
  nats: {url: "nats://nats:4222"}
---
apiVersion: kubemail.io/v1alpha1
kind: MailDomain
metadata: {name: bench-test}
spec:
  clusterRef: {name: mail}
  domain: bench.test
  dkim: {algorithm: Ed25519}
YAML

# The operator as the chart's ServiceAccount.
user=system:serviceaccount:bench:bench-kubemail-operator
sed "s|client-key: \"\([^\"]*\)\"}|client-key: \"\1\", as: \"$user\"}|" \
  "$KUBEMAIL_CLUSTER_DIR/impersonator.kubeconfig" >"$work/operator.kubeconfig"
KUBECONFIG="$work/operator.kubeconfig" "$bin/operator" --http-listen "127.0.0.1:$operator_http_port" \
  --watch-namespaces bench --lease-namespace bench --mailstore "http://$admin_grpc" \
  --usage-refresh "$USAGE_REFRESH" >"$OUT/operator.log" 2>&1 &
pids+=($!)
operator_pid=${pids[-1]}
wait_ready "http://127.0.0.1:$operator_http_port/readyz" "$operator_pid" "$OUT/operator.log"
"$KUBECTL" wait -n bench maildomain/bench-test --for=condition=Ready --timeout=120s >/dev/null

log "$MAILBOXES Mailboxes, each with its password Secret"
python3 - "$MAILBOXES" >"$work/mailboxes.yaml" <<'PY'
import sys
for i in range(1, int(sys.argv[1]) + 1):
    print(f"""---
apiVersion: v1
kind: Secret
metadata: {{name: user{i}-password}}
stringData: {{password: "password {i}"}}
---
apiVersion: kubemail.io/v1alpha1
kind: Mailbox
metadata: {{name: user{i}}}
spec:
  address: user{i}@bench.test
  passwordSecretRef: {{name: user{i}-password, key: password}}
  quota: {{storage: 1Gi}}""")
PY
audit=$KUBEMAIL_CLUSTER_DIR/logs/audit.log
elapsed() { awk -v from="$1" -v to="$2" 'BEGIN {printf "%.1f", to - from}'; }
started=$(date +%s.%N)
"$KUBECTL" apply --server-side -n bench -f "$work/mailboxes.yaml" >/dev/null
applied=$(date +%s.%N)
printf 'seconds\tready\n' >"$OUT/ready.tsv"
ready=0
deadline=$(($(date +%s) + READY_TIMEOUT))
while :; do
  ready=$("$KUBECTL" get mailboxes -n bench \
    -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c '^True$' || true)
  now=$(date +%s.%N)
  printf '%.1f\t%s\n' "$(elapsed "$started" "$now")" "$ready" >>"$OUT/ready.tsv"
  [ "$ready" -ge "$MAILBOXES" ] && break
  [ "$(date +%s)" -lt "$deadline" ] || { log "only $ready of $MAILBOXES Ready after ${READY_TIMEOUT}s"; break; }
  kill -0 "$operator_pid" 2>/dev/null || { tail -n 20 "$OUT/operator.log" >&2; exit 1; }
  sleep 2
done
all_ready=$(date +%s.%N)
ready_seconds=$(elapsed "$started" "$all_ready")
apply_seconds=$(elapsed "$started" "$applied")
memory() { awk -v key="$1:" '$1 == key {printf "%.1f", $2 / 1024}' "/proc/$operator_pid/status"; }
rss_ready=$(memory VmRSS)
hwm_ready=$(memory VmHWM)
log "$ready of $MAILBOXES Ready after ${ready_seconds}s; operator RSS ${rss_ready} MiB (peak ${hwm_ready} MiB)"

# Settle: the last status writes and Events of the creation are done.
sleep 10
reconciles() {
  curl -fsS "http://127.0.0.1:$operator_http_port/metrics" |
    awk '/^kubemail_operator_reconciles_total/ {sum += $NF} END {print sum + 0}'
}
log "nothing changes for ${IDLE_SECONDS}s"
idle_from=$(wc -l <"$audit")
reconciles_before=$(reconciles)
sleep "$IDLE_SECONDS"
reconciles_after=$(reconciles)
idle_to=$(wc -l <"$audit")
rss_idle=$(memory VmRSS)
sed -n "$((idle_from + 1)),${idle_to}p" "$audit" >"$OUT/audit-idle.jsonl"
sed -n "1,${idle_from}p" "$audit" >"$OUT/audit-creation.jsonl"

python3 - "$OUT" "$user" "$IDLE_SECONDS" <<PY
import collections, json, sys
out, user, idle = sys.argv[1], sys.argv[2], float(sys.argv[3])
def requests(path):
    counts = collections.Counter()
    for line in open(path):
        event = json.loads(line)
        if event.get("impersonatedUser", {}).get("username") != user:
            continue
        ref = event.get("objectRef", {})
        resource = ref.get("resource", "(none)") + ("/" + ref["subresource"] if ref.get("subresource") else "")
        counts[(event["verb"], resource)] += 1
    return counts
creation, quiet = requests(f"{out}/audit-creation.jsonl"), requests(f"{out}/audit-idle.jsonl")
with open(f"{out}/summary.md", "w") as summary:
    summary.write(f"""# The operator with $MAILBOXES Mailboxes

| figure | value |
|---|---|
| \`kubectl apply --server-side\` of the Mailboxes and their Secrets | ${apply_seconds} s |
| from the apply until every Mailbox is Ready | ${ready_seconds} s ($ready of $MAILBOXES) |
| operator memory when all are Ready (VmRSS / VmHWM) | ${rss_ready} MiB / ${hwm_ready} MiB |
| operator memory after ${IDLE_SECONDS} s idle (VmRSS) | ${rss_idle} MiB |
| API requests from the start until all were Ready | {sum(creation.values())} |
| API requests in ${IDLE_SECONDS} s with nothing changing | {sum(quiet.values())} ({sum(quiet.values()) / idle:.3f} per second) |
| reconciles in that time (usage refresh every ${USAGE_REFRESH}) | $((reconciles_after - reconciles_before)) |

Requests while idle, by verb and resource:

| verb | resource | requests |
|---|---|---|
""")
    for (verb, resource), count in sorted(quiet.items()):
        summary.write(f"| {verb} | {resource} | {count} |\n")
    summary.write("\nRequests from the start until all were Ready, by verb and resource:\n\n| verb | resource | requests |\n|---|---|---|\n")
    for (verb, resource), count in sorted(creation.items()):
        summary.write(f"| {verb} | {resource} | {count} |\n")
PY
rm -f "$OUT/audit-creation.jsonl"
cat "$OUT/summary.md"
