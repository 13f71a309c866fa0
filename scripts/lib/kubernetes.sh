# A real Kubernetes control plane for the tests and for trying the chart locally: builds etcd,
# kube-apiserver, kube-controller-manager and kube-scheduler (and the node's kubelet and
# kube-proxy, see node.sh) from their Go modules at one pinned release, caches them outside the
# checkout, and starts them on 127.0.0.1 (or the node's address) with TLS, RBAC and
# service-account signing. Source it after provision.sh; every function reports through
# variables.

KUBERNETES_VERSION=v1.37.2
# The etcd minor release this Kubernetes release is tested with (its build/dependencies.yaml),
# at its newest patch.
ETCD_VERSION=v3.7.4
KUBERNETES_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/kubemail/kubernetes-$KUBERNETES_VERSION"

# The binaries ensure_kubernetes builds into $KUBERNETES_CACHE/bin: the control plane's, and
# the node's (scripts/lib/node.sh).
kubernetes_commands=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)

# Sets KUBERNETES_BIN to a directory holding etcd and the control plane's commands, building
# what is missing. A machine that has built them once pays nothing: they are kept under
# $KUBERNETES_CACHE, keyed by the release. A build holds a lock there, so two runs started at
# once build once; binaries appear only whole (built aside, then renamed into place).
ensure_kubernetes() {
  KUBERNETES_BIN="$KUBERNETES_CACHE/bin"
  kubernetes_missing || return 0
  command -v go >/dev/null || { echo "building Kubernetes needs Go (go1.26 or later)" >&2; return 1; }
  mkdir -p "$KUBERNETES_BIN"
  (
    flock 9
    kubernetes_missing || exit 0
    local started=$SECONDS
    echo "building ${to_build[*]} ($KUBERNETES_VERSION, etcd $ETCD_VERSION) into $KUBERNETES_BIN"
    local staging="$KUBERNETES_CACHE/staging"
    rm -rf "$staging" && mkdir -p "$staging"
    # A build cache of its own, removed once the binaries are in place: it grows by ~3.8 GB
    # and would only speed up building these same binaries again.
    export GOCACHE="$KUBERNETES_CACHE/go-build"
    if [[ " ${to_build[*]} " == *" etcd "* ]]; then
      build_etcd "$staging" || exit 1
    fi
    if [ ${#to_build[@]} -gt 1 ] || [ "${to_build[0]}" != etcd ]; then
      build_kubernetes_commands "$staging" || exit 1
    fi
    mv "$staging"/* "$KUBERNETES_BIN/" && rmdir "$staging"
    rm -rf "$GOCACHE"
    echo "built in $((SECONDS - started)) s"
  ) 9>"$KUBERNETES_CACHE/build.lock"
}

# Sets `to_build` to the binaries not yet in $KUBERNETES_BIN; true if there are any.
kubernetes_missing() {
  local c
  to_build=()
  for c in etcd "${kubernetes_commands[@]}"; do
    [ -x "$KUBERNETES_BIN/$c" ] || to_build+=("$c")
  done
  [ ${#to_build[@]} -gt 0 ]
}

# The Go module both builds below start from: it requires the released module and replaces
# what that module's own go.mod points at a directory inside its repository (Go ignores a
# dependency's replace directives) with the published version of the same code.
# write_build_module DIR MODULE VERSION REPLACED-VERSION
write_build_module() {
  local dir=$1 module=$2 version=$3 replaced=$4 gomod
  mkdir -p "$dir"
  gomod=$(cd "$dir" && GOFLAGS=-mod=mod go mod download -json "$module@$version" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
  [ -f "$gomod" ] || { echo "could not download $module@$version" >&2; return 1; }
  {
    echo "module kubemail.local/build"
    echo
    sed -n 's/^go \(.*\)/go \1/p' "$gomod"
    echo
    echo "require $module $version"
    echo
    echo "replace ("
    # `path => ./relative/dir` inside the replace block: one line each.
    sed -n 's|^[[:space:]]*\([^[:space:]]*\) => \.\.*/.*|\t\1 => \1 '"$replaced"'|p' "$gomod"
    echo ")"
  } >"$dir/go.mod"
}

# build_etcd OUT: etcd into the directory OUT.
build_etcd() {
  local dir="$KUBERNETES_CACHE/build-etcd"
  write_build_module "$dir" go.etcd.io/etcd/server/v3 "$ETCD_VERSION" "$ETCD_VERSION" || return 1
  (cd "$dir" && CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false" \
    go build -trimpath -ldflags "-s -w" -o "$1/etcd" go.etcd.io/etcd/server/v3)
}

# build_kubernetes_commands OUT: the commands of `to_build` into the directory OUT.
build_kubernetes_commands() {
  local dir="$KUBERNETES_CACHE/build-kubernetes"
  local minor=${KUBERNETES_VERSION#v1.}; minor=${minor%%.*}
  local staging="v0.${KUBERNETES_VERSION#v1.}"
  write_build_module "$dir" k8s.io/kubernetes "$KUBERNETES_VERSION" "$staging" || return 1
  # Stamp the release as its own build does (hack/lib/version.sh): otherwise the server says
  # v0.0.0-master and helm refuses charts with a kubeVersion constraint.
  local ldflags="-s -w" pkg key
  for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    for key in gitVersion=$KUBERNETES_VERSION gitMajor=1 gitMinor=$minor gitTreeState=clean \
               buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ); do
      ldflags="$ldflags -X $pkg.$key"
    done
  done
  local packages=() c
  for c in "${to_build[@]}"; do [ "$c" = etcd ] || packages+=("k8s.io/kubernetes/cmd/$c"); done
  # One go build, so the packages the commands share compile once; the profile kube-apiserver
  # ships only slows the build down.
  (cd "$dir" && CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false" \
    go build -trimpath -pgo=off -ldflags "$ldflags" -o "$1/" "${packages[@]}")
}

# The API server's address range for Services: its first address is the `kubernetes` Service,
# which the serving certificate names too.
SERVICE_CLUSTER_IP_RANGE=10.96.0.0/16
KUBERNETES_SERVICE_IP=10.96.0.1

# write_certificate DIR NAME SUBJECT [SUBJECT-ALT-NAMES]: a key and a certificate signed by
# DIR/ca, for a server (with names) or a client (the subject's CN is the user, O its groups).
write_certificate() {
  local dir=$1 name=$2 subject=$3 names=${4:-} extensions
  extensions="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=${names:+serverAuth,}clientAuth"
  [ -n "$names" ] && extensions="$extensions
subjectAltName=$names"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "$subject" \
    -keyout "$dir/$name.key" -out "$dir/$name.csr" 2>/dev/null &&
    openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
      -days 365 -extfile <(echo "$extensions") -out "$dir/$name.crt" 2>/dev/null &&
    rm "$dir/$name.csr"
}

# write_kubeconfig FILE SERVER PKI USER: a kubeconfig for USER's certificate in PKI.
write_kubeconfig() {
  cat >"$1" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: kubemail
  cluster: {server: "$2", certificate-authority: "$3/ca.crt"}
users:
- name: $4
  user: {client-certificate: "$3/$4.crt", client-key: "$3/$4.key"}
contexts:
- name: kubemail
  context: {cluster: kubemail, user: $4, namespace: default}
current-context: kubemail
KUBECONFIG
}

# The certificates, keys and kubeconfigs of a control plane in DIR/pki, for an API server at
# SERVER on ADDRESS. The CA and every key are the harness's own, made fresh for each cluster.
# write_pki DIR SERVER ADDRESS
write_pki() {
  local dir=$1/pki server=$2 address=$3
  mkdir -p "$dir"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -subj "/CN=kubemail-local-ca" -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null || return 1
  write_certificate "$dir" apiserver "/CN=kube-apiserver" \
    "IP:$address,IP:127.0.0.1,IP:$KUBERNETES_SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local" || return 1
  # The clients: an administrator, the controller manager and the scheduler (the names RBAC's
  # bootstrap policy grants their rights to), and the user the tests impersonate service
  # accounts with, kept apart so the audit log records exactly what impersonated clients do.
  write_certificate "$dir" admin "/O=system:masters/CN=kubemail-admin" || return 1
  write_certificate "$dir" impersonator "/O=system:masters/CN=kubemail-impersonator" || return 1
  write_certificate "$dir" controller-manager "/CN=system:kube-controller-manager" || return 1
  write_certificate "$dir" scheduler "/CN=system:kube-scheduler" || return 1
  # The API server's client certificate towards kubelets (for logs and exec), for the node;
  # kubelets ask the API server whether it may, and this group may.
  write_certificate "$dir" apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" || return 1
  openssl genrsa -out "$dir/service-accounts.key" 2048 2>/dev/null &&
    openssl rsa -in "$dir/service-accounts.key" -pubout -out "$dir/service-accounts.pub" 2>/dev/null || return 1
  local user
  for user in admin impersonator controller-manager scheduler; do
    write_kubeconfig "$1/$user.kubeconfig" "$server" "$dir" "$user"
  done
}

# What the API server's audit log keeps: who did what (no bodies) for the impersonated clients
# the tests run the operator as; nothing for anyone else.
write_audit_policy() {
  cat >"$1" <<'POLICY'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  users: [kubemail-impersonator]
- level: None
POLICY
}

# start_control_plane DIR [ADDRESS]: etcd, kube-apiserver, kube-controller-manager and
# kube-scheduler with their data and logs in DIR, etcd on a free port of 127.0.0.1 and the API
# server on one of ADDRESS (127.0.0.1 unless given; a node's pods need an address that is not
# loopback); waits until the API server is ready and the controllers work. Sets KUBECONFIG (an
# administrator's) and records each process's PID in DIR/pids.
start_control_plane() {
  local dir=$1 address=${2:-127.0.0.1} etcd_port etcd_peer_port port
  etcd_port=$(free_port); etcd_peer_port=$(free_port); port=$(free_port)
  local server="https://$address:$port"
  mkdir -p "$dir/etcd" "$dir/logs"
  write_pki "$dir" "$server" "$address" || { echo "could not make the cluster's certificates" >&2; return 1; }
  write_audit_policy "$dir/audit-policy.yaml"
  echo "$server" >"$dir/server"

  # etcd on loopback only; its data is thrown away with the cluster, so it need not sync. Its
  # space quota is raised from 2 GiB to 8: one test fills the cluster with 500 MB of Secrets,
  # and etcd gives space back only when compacted and defragmented.
  start_daemon "$dir" etcd "$KUBERNETES_BIN/etcd" --name kubemail --data-dir "$dir/etcd" \
    --quota-backend-bytes 8589934592 \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster "kubemail=http://127.0.0.1:$etcd_peer_port" \
    --unsafe-no-fsync --log-level warn
  wait_for_port "$etcd_port" || return 1

  # The endpoint reconciler publishes the API server's address as the `kubernetes` Service's
  # endpoint, for pods; it refuses a loopback address, which no pod could reach anyway. The
  # kubelet client certificate and the privileged pods are for a node, and the API server
  # reaches a kubelet at its node's address, never through a name the machine's DNS resolves.
  local pki="$dir/pki" reconciler=lease
  [ "$address" = 127.0.0.1 ] && reconciler=none
  start_daemon "$dir" kube-apiserver "$KUBERNETES_BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address "$address" --advertise-address "$address" --secure-port "$port" \
    --endpoint-reconciler-type "$reconciler" \
    --enable-admission-plugins NodeRestriction \
    --cert-dir "$dir/apiserver" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" \
    --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$pki/ca.crt" \
    --kubelet-preferred-address-types InternalIP \
    --authorization-mode Node,RBAC \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$pki/service-accounts.pub" \
    --service-account-signing-key-file "$pki/service-accounts.key" \
    --service-cluster-ip-range "$SERVICE_CLUSTER_IP_RANGE" \
    --allow-privileged=true \
    --audit-policy-file "$dir/audit-policy.yaml" --audit-log-path "$dir/logs/audit.log" \
    --audit-log-maxsize 200 --audit-log-maxbackup 1 \
    --profiling=false
  export KUBECONFIG="$dir/admin.kubeconfig"
  wait_for_api_server "$dir" "$server" || return 1

  # Each controller with its own ServiceAccount, as in a real cluster; one controller manager
  # and one scheduler, so no leader election; no serving port (nothing scrapes them).
  start_daemon "$dir" kube-controller-manager "$KUBERNETES_BIN/kube-controller-manager" \
    --kubeconfig "$dir/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$dir/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$dir/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port 0 \
    --use-service-account-credentials \
    --service-account-private-key-file "$pki/service-accounts.key" \
    --root-ca-file "$pki/ca.crt" \
    --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
    --service-cluster-ip-range "$SERVICE_CLUSTER_IP_RANGE" \
    --leader-elect=false
  start_daemon "$dir" kube-scheduler "$KUBERNETES_BIN/kube-scheduler" \
    --kubeconfig "$dir/scheduler.kubeconfig" \
    --authentication-kubeconfig "$dir/scheduler.kubeconfig" \
    --authorization-kubeconfig "$dir/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port 0 \
    --leader-elect=false
  wait_for_controllers "$dir" || return 1
}

# start_daemon DIR NAME COMMAND...: COMMAND in the background in a session of its own (so a
# Ctrl-C in the shell that started it does not reach it), its output in DIR/logs/NAME.log, its
# PID appended to DIR/pids.
start_daemon() {
  local dir=$1 name=$2
  shift 2
  setsid "$@" >"$dir/logs/$name.log" 2>&1 </dev/null &
  echo "$! $name" >>"$dir/pids"
  # Stopped by its PID, not as one of this shell's jobs.
  disown
}

# Whether the process NAME recorded in DIR/pids still runs.
daemon_running() {
  local pid
  pid=$(awk -v name="$2" '$2 == name {print $1}' "$1/pids")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# Waits up to 60 s for the API server's /readyz; shows its log if it exits or never gets ready.
wait_for_api_server() {
  local dir=$1 server=$2 i
  for i in $(seq 1 300); do
    if curl -sf --cacert "$dir/pki/ca.crt" --cert "$dir/pki/admin.crt" --key "$dir/pki/admin.key" \
        "$server/readyz" >/dev/null 2>&1; then
      return 0
    fi
    daemon_running "$dir" kube-apiserver || break
    sleep 0.2
  done
  echo "kube-apiserver did not get ready; its log ends:" >&2
  tail -n 30 "$dir/logs/kube-apiserver.log" >&2
  return 1
}

# Waits up to 60 s for the controller manager to do its work (the `default` ServiceAccount it
# makes in every namespace) while the scheduler runs.
wait_for_controllers() {
  local dir=$1 i name
  for i in $(seq 1 300); do
    for name in kube-controller-manager kube-scheduler; do
      daemon_running "$dir" "$name" || {
        echo "$name exited; its log ends:" >&2
        tail -n 30 "$dir/logs/$name.log" >&2
        return 1
      }
    done
    if "$KUBECTL" get serviceaccount default --namespace default >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "kube-controller-manager made no ServiceAccount within 60 s; its log ends:" >&2
  tail -n 30 "$dir/logs/kube-controller-manager.log" >&2
  return 1
}

# Stops every process recorded in DIR/pids (the API server before etcd) and waits for it.
stop_control_plane() {
  local dir=$1 name
  [ -f "$dir/pids" ] || return 0
  for name in $(tac "$dir/pids" | awk '{print $2}'); do stop_daemon "$dir" "$name"; done
  rm -f "$dir/pids"
}

# stop_daemon DIR NAME: stops the process NAME recorded in DIR/pids (SIGTERM, SIGKILL after
# 10 s) and waits for it.
stop_daemon() {
  local dir=$1 name=$2 pid i
  pid=$(awk -v name="$name" '$2 == name {print $1}' "$dir/pids" 2>/dev/null)
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || return 0
  for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}

# Other projects' CRDs that kubemail's resources meet in a cluster, at pinned releases from the
# Go module proxy (their repositories' modules carry them as plain YAML): cert-manager's
# Certificate, which a MailDomain with an issuer asks for, and the Prometheus Operator's
# ServiceMonitor, which the chart makes with metrics.serviceMonitor.enabled. Sets
# CERT_MANAGER_CRDS and PROMETHEUS_OPERATOR_CRDS to the directories holding them.
CERT_MANAGER_VERSION=v1.21.2
PROMETHEUS_OPERATOR_VERSION=v0.85.0
ensure_third_party_crds() {
  CERT_MANAGER_CRDS=$(module_dir github.com/cert-manager/cert-manager "$CERT_MANAGER_VERSION")/deploy/crds || return 1
  PROMETHEUS_OPERATOR_CRDS=$(module_dir github.com/prometheus-operator/prometheus-operator \
    "$PROMETHEUS_OPERATOR_VERSION")/example/prometheus-operator-crd || return 1
}

# module_dir MODULE VERSION: the directory of MODULE@VERSION in Go's module cache, downloaded
# when missing.
module_dir() {
  local dir
  dir=$(cd /tmp && go mod download -json "$1@$2" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
  [ -d "$dir" ] || { echo "could not download $1@$2 from the Go module proxy" >&2; return 1; }
  echo "$dir"
}
