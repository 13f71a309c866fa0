# A node for the local cluster (scripts/cluster up --node): the control plane's kubelet and
# kube-proxy, containerd with runc and the CNI plugins, and CoreDNS for cluster DNS, built from
# their Go modules at pinned releases and cached outside the checkout like the control plane.
# Source it after provision.sh and kubernetes.sh; every function reports through variables.
#
# What it takes to run a kubelet on these machines (cgroup v1 with no systemd as PID 1, no
# dummy network interfaces in the kernel, no container registry):
# - kubelet with `failCgroupV1: false` and `cgroupDriver: cgroupfs`, runc with `SystemdCgroup`
#   off; the pods' cgroups go under /kubepods of each v1 hierarchy.
# - The node's address is 10.250.0.1 on a bridge with no ports (`kubemail0`) that only this
#   machine reaches: the API server listens there (pods reach it through the `kubernetes`
#   Service) and so do the servers the tests run outside the cluster. Pods live in network
#   namespaces of their own on a second bridge (`kubemail-cni0`, 10.244.0.0/24), and
#   kube-proxy (iptables mode) opens NodePorts on 127.0.0.1 and the node's address.
# - Images are imported into containerd from files (scripts/lib/image.sh), the pause image
#   among them, built from Kubernetes' own pause.c; nothing is pulled.
# One node runs on a machine at a time: its iptables chains and bridges are the machine's.

CONTAINERD_VERSION=v2.4.2
RUNC_VERSION=v1.5.3
CNI_PLUGINS_VERSION=v1.10.0
COREDNS_VERSION=v1.15.0
CRI_TOOLS_VERSION=v1.37.0
CRANE_VERSION=v0.22.1
# The pause image of this Kubernetes release (build/pause/Makefile's TAG).
PAUSE_VERSION=3.10.2
PAUSE_IMAGE=kubemail.local/pause:$PAUSE_VERSION
COREDNS_IMAGE=kubemail.local/coredns:$COREDNS_VERSION

NODE_NAME=kubemail-node
NODE_IP=10.250.0.1
NODE_BRIDGE=kubemail0
POD_BRIDGE=kubemail-cni0
POD_CIDR=10.244.0.0/24
CLUSTER_DNS_IP=10.96.0.10
# A port nothing listens on (discard's, which no one runs), where every image pull goes.
NO_REGISTRY_PORT=9
# Which cluster directory owns the machine's node, while one runs.
NODE_OWNER=/run/kubemail-node

TOOLS_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/kubemail/tools"

# ensure_go_tool NAME MODULE VERSION PACKAGE...: sets TOOL_DIR to a directory holding the
# commands PACKAGE... of MODULE@VERSION, built once and kept in $TOOLS_CACHE/NAME-VERSION.
# CGO_ENABLED, GO_TAGS and GO_LDFLAGS in the environment reach the build (static, no tags and
# stripped unless given).
ensure_go_tool() {
  local name=$1 module=$2 version=$3
  shift 3
  TOOL_DIR="$TOOLS_CACHE/$name-$version"
  [ -f "$TOOL_DIR/.complete" ] && return 0
  mkdir -p "$TOOLS_CACHE"
  (
    flock 9
    [ -f "$TOOL_DIR/.complete" ] && exit 0
    local started=$SECONDS build="$TOOLS_CACHE/build-$name-$version" staging="$TOOL_DIR.staging"
    echo "building $name $version (Go module $module)"
    rm -rf "$staging" && mkdir -p "$staging"
    write_build_module "$build" "$module" "$version" "$version" || exit 1
    (cd "$build" && CGO_ENABLED=${CGO_ENABLED:-0} GOFLAGS="-mod=mod -buildvcs=false" \
      GOCACHE="$build/go-build" \
      go build -trimpath -tags "${GO_TAGS:-}" -ldflags "-s -w ${GO_LDFLAGS:-}" -o "$staging/" "$@") || exit 1
    rm -rf "$build" "$TOOL_DIR"
    touch "$staging/.complete"
    mv "$staging" "$TOOL_DIR"
    echo "built $name in $((SECONDS - started)) s"
  ) 9>"$TOOLS_CACHE/$name.lock"
}

# Sets CONTAINERD_DIR (containerd, ctr, the runc shim), RUNC, CNI_BIN, CRICTL, COREDNS, CRANE
# and PAUSE to where ensure_node_tools puts them, built or not (for stopping a node).
node_tool_paths() {
  CONTAINERD_DIR="$TOOLS_CACHE/containerd-$CONTAINERD_VERSION"
  RUNC="$TOOLS_CACHE/runc-$RUNC_VERSION/runc"
  CNI_BIN="$TOOLS_CACHE/cni-plugins-$CNI_PLUGINS_VERSION"
  CRICTL="$TOOLS_CACHE/cri-tools-$CRI_TOOLS_VERSION/crictl"
  COREDNS="$TOOLS_CACHE/coredns-$COREDNS_VERSION/coredns"
  CRANE="$TOOLS_CACHE/crane-$CRANE_VERSION/crane"
  PAUSE="$TOOLS_CACHE/pause-$PAUSE_VERSION/pause"
  KUBERNETES_BIN="$KUBERNETES_CACHE/bin"
}

# The same, building what is missing.
ensure_node_tools() {
  GO_LDFLAGS="-X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION" \
    ensure_go_tool containerd github.com/containerd/containerd/v2 "$CONTAINERD_VERSION" \
    github.com/containerd/containerd/v2/cmd/containerd github.com/containerd/containerd/v2/cmd/ctr \
    github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 || return 1
  # runc needs cgo (its nsexec is C) and libseccomp for the RuntimeDefault seccomp profile.
  [ -f /usr/include/seccomp.h ] || { echo "installing libseccomp-dev"; apt_install libseccomp-dev; }
  CGO_ENABLED=1 GO_TAGS=seccomp GO_LDFLAGS="-X main.version=${RUNC_VERSION#v}" \
    ensure_go_tool runc github.com/opencontainers/runc "$RUNC_VERSION" \
    github.com/opencontainers/runc || return 1
  local plugin packages=()
  for plugin in main/bridge main/loopback ipam/host-local meta/portmap; do
    packages+=("github.com/containernetworking/plugins/plugins/$plugin")
  done
  ensure_go_tool cni-plugins github.com/containernetworking/plugins "$CNI_PLUGINS_VERSION" \
    "${packages[@]}" || return 1
  GO_LDFLAGS="-X sigs.k8s.io/cri-tools/pkg/version.Version=$CRI_TOOLS_VERSION" \
    ensure_go_tool cri-tools sigs.k8s.io/cri-tools "$CRI_TOOLS_VERSION" sigs.k8s.io/cri-tools/cmd/crictl || return 1
  ensure_go_tool coredns github.com/coredns/coredns "$COREDNS_VERSION" github.com/coredns/coredns || return 1
  ensure_crane || return 1
  ensure_pause || return 1
  # kube-proxy programs iptables (Debian's, on the kernel's nf_tables).
  command -v iptables >/dev/null || { echo "installing iptables"; apt_install iptables; }
  node_tool_paths
}

# Sets CRANE to go-containerregistry's crane, which assembles the images.
ensure_crane() {
  ensure_go_tool crane github.com/google/go-containerregistry "$CRANE_VERSION" \
    github.com/google/go-containerregistry/cmd/crane || return 1
  CRANE=$TOOL_DIR/crane
}

# Sets PAUSE to the pause binary of this Kubernetes release, compiled from its pause.c (static,
# as its own image has it).
ensure_pause() {
  PAUSE="$TOOLS_CACHE/pause-$PAUSE_VERSION/pause"
  [ -x "$PAUSE" ] && return 0
  local source
  source=$(module_dir k8s.io/kubernetes "$KUBERNETES_VERSION")/build/pause/linux/pause.c || return 1
  mkdir -p "${PAUSE%/*}"
  gcc -Os -static -DVERSION="$PAUSE_VERSION" -o "$PAUSE.tmp" "$source" && strip "$PAUSE.tmp" &&
    mv "$PAUSE.tmp" "$PAUSE"
}

# prepare_node DIR: claims the machine's node for the cluster in DIR and sets up its network;
# before the control plane starts, which listens on the node's address.
prepare_node() {
  claim_node "$1" && node_network
}

# start_node DIR: a node for the control plane running from DIR (prepare_node, then
# start_control_plane with NODE_IP as its address): containerd, the kubelet and kube-proxy,
# their data and logs in DIR, their PIDs in DIR/pids, and CoreDNS in kube-system. Waits until
# the node is Ready and CoreDNS is.
start_node() {
  local dir=$1 node=$1/node
  mkdir -p "$node/kubelet" "$node/pod-logs" "$node/cni" "$node/images"
  write_node_pki "$dir" || return 1
  : >"$node/resolv.conf"

  write_containerd_config "$node"
  # The shim and runc are found on PATH.
  start_daemon "$dir" containerd env PATH="$CONTAINERD_DIR:${RUNC%/*}:$PATH" \
    "$CONTAINERD_DIR/containerd" --config "$node/containerd.toml"
  wait_for_containerd "$dir" || return 1
  build_image "$node/images/pause.tar" "$PAUSE_IMAGE" pause "" "$PAUSE" || return 1
  build_image "$node/images/coredns.tar" "$COREDNS_IMAGE" coredns 1053 "$COREDNS" || return 1
  import_image "$node" "$node/images/pause.tar" || return 1
  import_image "$node" "$node/images/coredns.tar" || return 1

  write_kubelet_config "$dir"
  start_daemon "$dir" kubelet "$KUBERNETES_BIN/kubelet" --config "$node/kubelet.yaml" \
    --kubeconfig "$dir/kubelet.kubeconfig" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" \
    --root-dir "$node/kubelet" --cert-dir "$node/kubelet/pki"
  write_kube_proxy_config "$dir"
  start_daemon "$dir" kube-proxy "$KUBERNETES_BIN/kube-proxy" --config "$node/kube-proxy.yaml"
  wait_for_node "$dir" || return 1
  start_cluster_dns "$dir" || return 1
}

# claim_node DIR: fails when another cluster's node runs on this machine, else records DIR as
# the owner of the machine's node.
claim_node() {
  local owner
  if [ -f "$NODE_OWNER" ]; then
    owner=$(cat "$NODE_OWNER")
    if [ "$owner" != "$1" ] && [ -f "$owner/pids" ] && daemon_running "$owner" kubelet; then
      echo "a node of the cluster in $owner runs on this machine: one node at a time (scripts/cluster down, with KUBEMAIL_CLUSTER_DIR=$owner)" >&2
      return 1
    fi
  fi
  echo "$1" >"$NODE_OWNER"
}

# The node's address on a bridge of its own, and the kernel settings pods need: forwarding
# between them (through a Service) and iptables seeing bridged traffic (a pod reaching a
# Service that lands on a pod of the same bridge).
node_network() {
  ip link show "$NODE_BRIDGE" >/dev/null 2>&1 || ip link add "$NODE_BRIDGE" type bridge || return 1
  ip addr replace "$NODE_IP/32" dev "$NODE_BRIDGE" && ip link set "$NODE_BRIDGE" up || return 1
  sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1
}

# The node's certificates and kubeconfigs: the kubelet's client (the Node authorizer's
# system:node:NAME) and serving certificates, and kube-proxy's client.
write_node_pki() {
  local dir=$1 pki=$1/pki server
  server=$(cat "$dir/server")
  write_certificate "$pki" kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" || return 1
  write_certificate "$pki" kubelet-serving "/CN=$NODE_NAME" "IP:$NODE_IP,DNS:$NODE_NAME" || return 1
  write_certificate "$pki" kube-proxy "/CN=system:kube-proxy" || return 1
  write_kubeconfig "$dir/kubelet.kubeconfig" "$server" "$pki" kubelet
  write_kubeconfig "$dir/kube-proxy.kubeconfig" "$server" "$pki" kube-proxy
}

write_containerd_config() {
  local node=$1
  # Everything under the node's directory, nothing from /etc/containerd; the pods' network
  # namespaces under its state directory too, so that stopping the node finds them all.
  cat >"$node/containerd.toml" <<CONFIG
version = 4
root = "$node/containerd/root"
state = "$node/containerd/state"
imports = []
[plugins.'io.containerd.server.v1.grpc']
  address = "$node/containerd.sock"
[plugins.'io.containerd.server.v1.ttrpc']
  address = "$node/containerd.sock.ttrpc"
[plugins.'io.containerd.nri.v1.nri']
  disable = true
[plugins.'io.containerd.internal.v1.opt']
  path = "$node/containerd/opt"
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "$PAUSE_IMAGE"
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = "$node/registries"
[plugins.'io.containerd.cri.v1.runtime']
  netns_mounts_under_state_dir = true
  # Root here lacks CAP_SYS_RESOURCE, so no process may lower its OOM score: the kubelet's
  # scores for pods (-998 for the pause container) are raised to containerd's own.
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "$RUNC"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["$CNI_BIN"]
    conf_dir = "$node/cni"
CONFIG
  # Every registry is a closed port on loopback: an image that was not imported fails to pull
  # at once, and no pull ever leaves the machine.
  mkdir -p "$node/registries/_default"
  cat >"$node/registries/_default/hosts.toml" <<HOSTS
server = "http://127.0.0.1:$NO_REGISTRY_PORT"
HOSTS
  # One network: a bridge with the pods' addresses, the node its gateway; portmap for
  # hostPort. Nothing is masqueraded: pods reach only this machine.
  cat >"$node/cni/10-kubemail.conflist" <<CNI
{
  "cniVersion": "1.0.0",
  "name": "kubemail",
  "plugins": [
    {
      "type": "bridge", "bridge": "$POD_BRIDGE", "isGateway": true, "hairpinMode": true,
      "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]],
               "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$node/cni-ipam"}
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
CNI
}

# Waits up to 30 s for containerd to answer on its socket.
wait_for_containerd() {
  local dir=$1 i
  for i in $(seq 1 150); do
    if "$CONTAINERD_DIR/ctr" --address "$dir/node/containerd.sock" version >/dev/null 2>&1; then return 0; fi
    daemon_running "$dir" containerd || break
    sleep 0.2
  done
  echo "containerd did not start; its log ends:" >&2
  tail -n 30 "$dir/logs/containerd.log" >&2
  return 1
}

# import_image NODE FILE: an image file (build_image) into the node's containerd, where the
# kubelet finds it.
import_image() {
  local printed
  printed=$("$CONTAINERD_DIR/ctr" --address "$1/containerd.sock" --namespace k8s.io images import \
    --local "$2" 2>&1) || { echo "containerd could not import $2: $printed" >&2; return 1; }
}

# image_loaded NODE REF: whether the node's containerd has the image REF.
image_loaded() {
  "$CONTAINERD_DIR/ctr" --address "$1/containerd.sock" --namespace k8s.io images list --quiet "name==$2" 2>/dev/null |
    grep -qx "$2"
}

write_kubelet_config() {
  local dir=$1 node=$1/node
  cat >"$node/kubelet.yaml" <<CONFIG
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# These machines have cgroup v1 and no systemd: Kubernetes deprecated v1 in 1.35 and refuses
# it unless told.
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$node/containerd.sock
address: $NODE_IP
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $dir/pki/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $dir/pki/kubelet-serving.crt
tlsPrivateKeyFile: $dir/pki/kubelet-serving.key
clusterDomain: cluster.local
clusterDNS: [$CLUSTER_DNS_IP]
# Pods with dnsPolicy Default get no name servers: nothing outside the machine is asked.
resolvConf: $node/resolv.conf
podLogsDir: $node/pod-logs
failSwapOn: false
# Without CAP_SYS_RESOURCE (root here lacks it) a process cannot lower its OOM score.
oomScoreAdj: 0
# The machine is shared: neither evict pods nor collect the imported images (nothing could
# pull them back) because of what others put on its disk.
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, nodefs.inodesFree: 1%, imagefs.available: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
CONFIG
}

write_kube_proxy_config() {
  local dir=$1 node=$1/node
  cat >"$node/kube-proxy.yaml" <<CONFIG
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $dir/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $POD_CIDR
# NodePorts on loopback (so a mail client on this machine reaches them at 127.0.0.1) and on
# the node's address.
nodePortAddresses: [127.0.0.1/32, $NODE_IP/32]
iptables: {localhostNodePorts: true}
healthzBindAddress: 127.0.0.1:$(free_port)
metricsBindAddress: 127.0.0.1:$(free_port)
# Leave the machine's conntrack table size alone; the OOM score too (as for the kubelet).
conntrack: {maxPerCore: 0}
oomScoreAdj: 0
CONFIG
}

# Waits up to 90 s for the node to be Ready.
wait_for_node() {
  local dir=$1 i name
  for i in $(seq 1 450); do
    for name in kubelet kube-proxy containerd; do
      daemon_running "$dir" "$name" || {
        echo "$name exited; its log ends:" >&2
        tail -n 30 "$dir/logs/$name.log" >&2
        return 1
      }
    done
    if [ "$("$KUBECTL" get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]; then
      return 0
    fi
    sleep 0.2
  done
  echo "node $NODE_NAME not Ready within 90 s; the kubelet's log ends:" >&2
  tail -n 30 "$dir/logs/kubelet.log" >&2
  return 1
}

# CoreDNS in kube-system as the `kube-dns` Service at CLUSTER_DNS_IP, answering for
# cluster.local only (nothing is forwarded off the machine). It runs as the image's non-root
# user, so it listens on 1053 behind the Service's 53. Waits until it is ready.
start_cluster_dns() {
  "$KUBECTL" apply -f - >/dev/null <<MANIFEST || return 1
apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: system:coredns}
rules:
- apiGroups: [""]
  resources: [namespaces, services, pods]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: system:coredns}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:coredns}
subjects: [{kind: ServiceAccount, name: coredns, namespace: kube-system}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: kube-system}
data:
  Corefile: |
    .:1053 {
        errors
        health :8080
        ready :8181
        kubernetes cluster.local in-addr.arpa ip6.arpa {
            pods insecure
            fallthrough in-addr.arpa ip6.arpa
        }
        cache 30
    }
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  replicas: 1
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec:
      serviceAccountName: coredns
      priorityClassName: system-cluster-critical
      dnsPolicy: Default
      securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
      containers:
      - name: coredns
        image: $COREDNS_IMAGE
        imagePullPolicy: Never
        command: [coredns, -conf, /etc/coredns/Corefile]
        ports:
        - {name: dns, containerPort: 1053, protocol: UDP}
        - {name: dns-tcp, containerPort: 1053, protocol: TCP}
        securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
        resources: {requests: {cpu: 50m, memory: 32Mi}, limits: {memory: 128Mi}}
        livenessProbe: {httpGet: {path: /health, port: 8080}, periodSeconds: 10}
        readinessProbe: {httpGet: {path: /ready, port: 8181}, periodSeconds: 2}
        volumeMounts: [{name: config, mountPath: /etc/coredns, readOnly: true}]
      volumes: [{name: config, configMap: {name: coredns}}]
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  clusterIP: $CLUSTER_DNS_IP
  selector: {k8s-app: kube-dns}
  ports:
  - {name: dns, port: 53, targetPort: 1053, protocol: UDP}
  - {name: dns-tcp, port: 53, targetPort: 1053, protocol: TCP}
MANIFEST
  "$KUBECTL" -n kube-system rollout status deployment/coredns --timeout 90s >/dev/null || {
    echo "CoreDNS did not get ready within 90 s:" >&2
    "$KUBECTL" -n kube-system describe pods -l k8s-app=kube-dns | tail -n 20 >&2
    return 1
  }
}

# stop_node DIR: stops the node of the cluster in DIR and undoes what it did to the machine:
# every pod (through the CRI, so each network namespace is torn down), the kubelet, kube-proxy
# and containerd, the mounts left under DIR/node, kube-proxy's iptables rules, the bridges and
# the pods' cgroups.
stop_node() {
  local dir=$1 node=$1/node mount
  [ -d "$node" ] || [ "$(cat "$NODE_OWNER" 2>/dev/null)" = "$dir" ] || return 0
  stop_daemon "$dir" kube-proxy
  stop_daemon "$dir" kubelet
  if daemon_running "$dir" containerd; then
    timeout 120 "$CRICTL" --runtime-endpoint "unix://$node/containerd.sock" rmp --force --all >/dev/null 2>&1 ||
      echo "some pods could not be removed through containerd; stopping it anyway" >&2
  fi
  stop_daemon "$dir" containerd
  # What a pod's removal did not unmount (deepest first).
  awk -v prefix="$node/" 'index($2, prefix) == 1 {print $2}' /proc/mounts | sort -r |
    while read -r mount; do umount -l "$mount" 2>/dev/null || true; done
  "$KUBERNETES_BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
  remove_kubelet_iptables
  ip link del "$POD_BRIDGE" 2>/dev/null || true
  ip link del "$NODE_BRIDGE" 2>/dev/null || true
  find /sys/fs/cgroup/*/kubepods -depth -type d -exec rmdir {} + 2>/dev/null || true
  [ "$(cat "$NODE_OWNER" 2>/dev/null)" = "$dir" ] && rm -f "$NODE_OWNER"
  return 0
}

# What the kubelet leaves in iptables (kube-proxy --cleanup removes its own): its KUBE- chains
# and the rules of the built-in chains that jump to them.
remove_kubelet_iptables() {
  local tool table rule chains chain
  for tool in iptables ip6tables; do
    command -v "$tool" >/dev/null || continue
    for table in filter nat mangle; do
      { "$tool-save" -t "$table" 2>/dev/null || true; } | { grep -E '^-A [A-Z]+ .*-j KUBE-' || true; } |
        sed 's/^-A/-D/' | while read -r rule; do eval "$tool -t $table $rule" 2>/dev/null || true; done
      chains=$("$tool-save" -t "$table" 2>/dev/null | sed -n 's/^:\(KUBE-[^ ]*\).*/\1/p')
      for chain in $chains; do "$tool" -t "$table" -F "$chain" 2>/dev/null || true; done
      for chain in $chains; do "$tool" -t "$table" -X "$chain" 2>/dev/null || true; done
    done
  done
}
