#!/usr/bin/env bash
# kubemail as pods on the local cluster's node: the time from `helm install` to the first
# delivered message, and each pod's memory at rest.
#
#   bench/cluster.sh
#
# 1. A cluster with a node (scripts/cluster up --node) in a scratch directory, kubemail's image
#    from the release binaries (scripts/cluster image), and what the platform's release needs
#    as scripts/cluster demo sets it up: NATS in the cluster, PostgreSQL outside it behind a
#    Service, the operator's release (ready).
# 2. `helm install` of the platform's release (a MailCluster with two replicas of each tier,
#    the domain example.test, the mailboxes alice and bob), and from that moment: swaks to the
#    SMTP Service's NodePort once a second until a message is accepted (`250`), then IMAP
#    until it is in alice's INBOX. The first 250 and the message read are timed from the
#    install; so is the moment every resource is Ready.
# 3. After REST_SECONDS with nothing to do: each container's working set (what the kubelet
#    counts against a memory limit) from the kubelet's summary API, and its process's VmRSS.
# 4. Writes the raw outputs and summary.md to bench/results/cluster-<UTC date-time>/.
#
# There is no peer: no other mail platform runs on this node. Everything listens on loopback
# or the node's own address; every wait is bounded; the cluster is stopped on exit, also on
# failure or Ctrl-C. The machine's node must be free (one node at a time).
#
# Environment (defaults): REST_SECONDS=120 OUT=bench/results/cluster-<date-time>
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/lib/provision.sh"
source "$root/scripts/lib/kubernetes.sh"
source "$root/scripts/lib/node.sh"
source "$root/scripts/lib/image.sh"
source "$root/scripts/lib/demo.sh"
source "$root/bench/lib.sh"

REST_SECONDS=${REST_SECONDS:-120}
OUT=${OUT:-$root/bench/results/cluster-$(date -u +%Y-%m-%dT%H%M%SZ)}

mkdir -p "$OUT"
work=$(mktemp -d /var/tmp/kubemail-cluster-bench.XXXXXX)
export KUBEMAIL_CLUSTER_DIR="$work/cluster"
trap '"$root/scripts/cluster" down; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

record_machine
"$root/scripts/cluster" up --node
"$root/scripts/cluster" image
ensure_kube_clients
ensure_node_tools
export KUBECONFIG="$KUBEMAIL_CLUSTER_DIR/admin.kubeconfig"
prepare_demo "$KUBEMAIL_CLUSTER_DIR"
password=$(demo_password "$KUBEMAIL_CLUSTER_DIR")

log "helm install of the platform"
started=$(date +%s.%N)
elapsed() { awk -v now="$(date +%s.%N)" -v started="$started" 'BEGIN {printf "%.2f", now - started}'; }
install_demo_platform "$KUBEMAIL_CLUSTER_DIR"
smtp_port=""
for _ in $(seq 1 300); do
  smtp_port=$(node_port mail-smtp smtp 2>/dev/null || true)
  [ -n "$smtp_port" ] && break
  sleep 0.2
done
[ -n "$smtp_port" ] || { echo "no SMTP Service within 60 s" >&2; exit 1; }
accepted=""
for attempt in $(seq 1 300); do
  if swaks --server "127.0.0.1:$smtp_port" --helo client.test --from bob@$DEMO_DOMAIN \
      --to alice@$DEMO_DOMAIN --header "Subject: first" --timeout 5 >"$OUT/swaks.txt" 2>&1; then
    accepted=$(elapsed)
    break
  fi
  sleep 1
done
[ -n "$accepted" ] || { echo "no message accepted within 300 attempts" >&2; cat "$OUT/swaks.txt" >&2; exit 1; }
log "first 250 after $accepted s (attempt $attempt)"
imap_port=$(node_port mail-imap imap)
read_at=""
for _ in $(seq 1 300); do
  if python3 "$root/scripts/lib/imap-subjects.py" "127.0.0.1:$imap_port" "alice@$DEMO_DOMAIN" "$password" \
      2>/dev/null | grep -qx first; then
    read_at=$(elapsed)
    break
  fi
  sleep 0.5
done
[ -n "$read_at" ] || { echo "the message never reached alice's INBOX" >&2; exit 1; }
log "in alice's INBOX after $read_at s"
wait_for_demo "$KUBEMAIL_CLUSTER_DIR"
ready_at=$(elapsed)
log "everything Ready after $ready_at s"

log "at rest for $REST_SECONDS s"
sleep "$REST_SECONDS"
"$KUBECTL" get --raw "/api/v1/nodes/$NODE_NAME/proxy/stats/summary" >"$OUT/stats-summary.json"
python3 - "$OUT/stats-summary.json" >"$OUT/memory.tsv" <<'PY'
import json, sys
summary = json.load(open(sys.argv[1]))
print("namespace\tpod\tcontainer\tworking_set_mib")
for pod in sorted(summary["pods"], key=lambda p: (p["podRef"]["namespace"], p["podRef"]["name"])):
    for container in pod.get("containers", []):
        working_set = container.get("memory", {}).get("workingSetBytes", 0) / 1048576
        print(f'{pod["podRef"]["namespace"]}\t{pod["podRef"]["name"]}\t{container["name"]}\t{working_set:.1f}')
PY
"$KUBECTL" get pods -A -o wide >"$OUT/pods.txt"
# And each container's resident set (VmRSS, which counts the mapped binary too), read from its
# process on the node.
crictl() { "$CRICTL" --runtime-endpoint "unix://$KUBEMAIL_CLUSTER_DIR/node/containerd.sock" "$@"; }
echo -e "pod\tcontainer\trss_mib" >"$OUT/rss.tsv"
for id in $(crictl ps -q); do
  pid=$(crictl inspect -o go-template --template '{{.info.pid}}' "$id")
  pod=$(crictl inspect -o go-template --template '{{index .status.labels "io.kubernetes.pod.name"}}' "$id")
  container=$(crictl inspect -o go-template --template '{{.status.metadata.name}}' "$id")
  echo -e "$pod\t$container\t$(awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status")" >>"$OUT/rss.tsv"
done

{
  echo "# kubemail on the local cluster's node"
  echo
  echo "\`bench/cluster.sh\` (REST_SECONDS=$REST_SECONDS), commit $(git -C "$root" rev-parse --short HEAD), $(nproc) cores."
  echo
  echo "| from \`helm install\` of the platform's release | seconds |"
  echo "|---|---|"
  echo "| first message accepted (250) through the SMTP NodePort | $(printf %.1f "$accepted") |"
  echo "| that message in alice's INBOX over IMAP | $(printf %.1f "$read_at") |"
  echo "| MailCluster, domain and mailboxes Ready | $(printf %.1f "$ready_at") |"
  echo
  echo "Memory at rest after $REST_SECONDS s, MiB: the working set the kubelet reports (what a memory"
  echo "limit is held against) and the process's resident set (VmRSS, the mapped binary included):"
  echo
  echo "| namespace | pod | container | working set | RSS |"
  echo "|---|---|---|---|---|"
  tail -n +2 "$OUT/memory.tsv" | while IFS=$'\t' read -r namespace pod container working_set; do
    rss=$(awk -F'\t' -v pod="$pod" -v container="$container" '$1 == pod && $2 == container {print $3}' "$OUT/rss.tsv")
    echo "| $namespace | $pod | $container | $working_set | ${rss:-?} |"
  done
} >"$OUT/summary.md"
cat "$OUT/summary.md"
