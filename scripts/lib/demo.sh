# kubemail on the local cluster's node as the README deploys it (scripts/cluster demo, and the
# node tests' platform): PostgreSQL outside the cluster behind a Service, as a managed database
# is reached; NATS with JetStream inside it; the chart's operator release and platform release;
# one domain with the mailboxes alice and bob. Source it after image.sh.

DEMO_NAMESPACE=mail
DEMO_DOMAIN=example.test
DEMO_HOSTNAME=mail.example.test
NATS_IMAGE=kubemail.local/nats:local
# The NATS users of charts/kubemail/examples/nats-values.yaml: one per component.
NATS_USERS=(smtp-ingress delivery-queue mailstore imap-frontend)

# install_demo DIR: the platform on the node of the cluster in DIR; ends by printing the line
# `smtp=HOST:PORT submission=HOST:PORT imap=HOST:PORT domain=DOMAIN password=PASSWORD`.
install_demo() {
  local dir=$1 started=$SECONDS
  prepare_demo "$dir" && install_demo_platform "$dir" && wait_for_demo "$dir" || return 1
  echo "kubemail ready on $NODE_NAME in $((SECONDS - started)) s" >&2
  echo "smtp=127.0.0.1:$(node_port mail-smtp smtp) submission=127.0.0.1:$(node_port mail-smtp submission)" \
    "imap=127.0.0.1:$(node_port mail-imap imap) domain=$DEMO_DOMAIN password=$(demo_password "$dir")"
}

# The images' settings of both releases: the image `scripts/cluster image` loaded.
demo_image_values=(--set "image.repository=$KUBEMAIL_IMAGE_REPOSITORY" --set "image.tag=$KUBEMAIL_IMAGE_TAG"
  --set image.pullPolicy=Never)

# prepare_demo DIR: what the platform's release needs: NATS, the database and its Service, the
# mailboxes' password Secret, and the operator's release (ready).
prepare_demo() {
  local dir=$1
  install_nats "$dir" || return 1
  start_cluster_database "$dir" || return 1
  "$KUBECTL" create namespace "$DEMO_NAMESPACE" --dry-run=client -o yaml | "$KUBECTL" apply -f - >/dev/null
  apply_nats_client_secrets "$dir" "$DEMO_NAMESPACE" || return 1
  apply_database_service "$dir" "$DEMO_NAMESPACE" || return 1
  "$KUBECTL" -n "$DEMO_NAMESPACE" create secret generic mailbox-password \
    --from-literal=password="$(demo_password "$dir")" --dry-run=client -o yaml | "$KUBECTL" apply -f - >/dev/null
  "$HELM" upgrade --install kubemail "$root/charts/kubemail" -n kubemail-system --create-namespace \
    "${demo_image_values[@]}" --wait --timeout 5m >/dev/null
}

# install_demo_platform DIR: the platform's release, not waiting for it.
install_demo_platform() {
  "$HELM" upgrade --install mail "$root/charts/kubemail" -n "$DEMO_NAMESPACE" "${demo_image_values[@]}" \
    -f - >/dev/null <<VALUES
operator: {enabled: false}
cluster:
  enabled: true
  hostname: $DEMO_HOSTNAME
  nats:
    url: tls://nats.nats.svc:4222
    credentials: {smtpIngress: mail-nats-smtp-ingress, deliveryQueue: mail-nats-delivery-queue,
      mailstore: mail-nats-mailstore, imapFrontend: mail-nats-imap-frontend}
    caSecretRef: {name: nats-ca, key: ca.crt}
domains:
- {name: example-test, domain: $DEMO_DOMAIN}
mailboxes:
- {name: alice, address: alice@$DEMO_DOMAIN, passwordSecret: {name: mailbox-password, key: password}}
- {name: bob, address: bob@$DEMO_DOMAIN, passwordSecret: {name: mailbox-password, key: password}}
VALUES
}

# wait_for_demo DIR: waits up to 5 minutes until the MailCluster, its domain and both mailboxes
# are Ready, then up to 3 more until alice can read her mail over IMAP with STARTTLS: the
# frontends serve before the kubelet has mounted their certificate, and offer STARTTLS once
# it is there (the kubelet syncs a Secret's volume within about a minute).
wait_for_demo() {
  "$KUBECTL" -n "$DEMO_NAMESPACE" wait --for=condition=Ready --timeout 5m \
    mailcluster/mail maildomain/example-test mailbox/alice mailbox/bob >/dev/null || {
    echo "the platform did not get Ready within 5 minutes:" >&2
    "$KUBECTL" -n "$DEMO_NAMESPACE" get mail,pods >&2
    return 1
  }
  local imap="127.0.0.1:$(node_port mail-imap imap)" attempt
  for attempt in $(seq 180); do
    python3 "$root/scripts/lib/imap-subjects.py" "$imap" "alice@$DEMO_DOMAIN" "$(demo_password "$1")" \
      >/dev/null 2>&1 && return 0
    sleep 1
  done
  echo "alice could not read her mail over IMAP with STARTTLS at $imap within 3 minutes" >&2
  return 1
}

# node_port SERVICE PORT-NAME: the NodePort of a Service of the demo's namespace.
node_port() {
  "$KUBECTL" -n "$DEMO_NAMESPACE" get service "$1" -o jsonpath="{.spec.ports[?(@.name==\"$2\")].nodePort}"
}

# The mailboxes' password: made once per cluster, kept in DIR.
demo_password() {
  [ -f "$1/demo-password" ] || openssl rand -hex 12 >"$1/demo-password"
  cat "$1/demo-password"
}

# install_nats DIR: the NATS image (the nats-server the tests run, as a static binary) loaded
# into the node; its configuration (the example's users, each with a password made here) and
# certificate (from a CA made here) as Secrets; scripts/manifests/nats.yaml applied; waits
# until it is ready. The passwords and the CA are kept in DIR/nats.
install_nats() {
  local nats="$1/nats" authorization user variable
  ensure_nats || return 1
  build_image "$1/node/images/nats.tar" "$NATS_IMAGE" nats-server 4222,8222 "$NATS_SERVER" || return 1
  import_image "$1/node" "$1/node/images/nats.tar" || return 1
  write_nats_tls "$nats" || return 1
  authorization=$("$HELM" template nats-users "$root/scripts/manifests/nats-users" \
    -f "$root/charts/kubemail/examples/nats-values.yaml" --show-only templates/authorization.json | grep '^{') \
    || { echo "cannot read the NATS users of charts/kubemail/examples/nats-values.yaml" >&2; return 1; }
  for user in "${NATS_USERS[@]}"; do
    [ -f "$nats/$user.password" ] || openssl rand -hex 16 >"$nats/$user.password"
    variable=$(echo "$user" | tr 'a-z-' 'A-Z_')_PASSWORD
    authorization=${authorization//"<< \$$variable >>"/$(cat "$nats/$user.password")}
  done
  case $authorization in *'<<'*) echo "a NATS user of the example has no password here" >&2; return 1 ;; esac
  cat >"$nats/nats.conf" <<CONF
port: 4222
http_port: 8222
jetstream { store_dir: /data, sync_interval: always }
tls { cert_file: /etc/nats-tls/tls.crt, key_file: /etc/nats-tls/tls.key }
authorization: $authorization
CONF
  "$KUBECTL" create namespace nats --dry-run=client -o yaml | "$KUBECTL" apply -f - >/dev/null
  "$KUBECTL" -n nats create secret generic nats-config --from-file=nats.conf="$nats/nats.conf" \
    --dry-run=client -o yaml | "$KUBECTL" apply -f - >/dev/null || return 1
  "$KUBECTL" -n nats create secret tls nats-tls --cert="$nats/tls.crt" --key="$nats/tls.key" \
    --dry-run=client -o yaml | "$KUBECTL" apply -f - >/dev/null || return 1
  "$KUBECTL" apply -f "$root/scripts/manifests/nats.yaml" >/dev/null || return 1
  "$KUBECTL" -n nats rollout status deployment/nats --timeout 2m >/dev/null
}

# write_nats_tls DIR: a CA (DIR/ca.crt) and the NATS server's certificate for its Service's
# names, signed by it (DIR/tls.crt, DIR/tls.key); kept when already there.
write_nats_tls() {
  local dir=$1
  [ -f "$dir/tls.crt" ] && return 0
  mkdir -p "$dir"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 -subj "/CN=kubemail demo NATS CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null || return 1
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=nats.nats.svc" \
    -keyout "$dir/tls.key" -out "$dir/tls.csr" 2>/dev/null || return 1
  printf 'subjectAltName=DNS:nats.nats.svc,DNS:nats.nats.svc.cluster.local\nextendedKeyUsage=serverAuth\n' \
    >"$dir/tls.ext"
  openssl x509 -req -in "$dir/tls.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial -days 365 \
    -extfile "$dir/tls.ext" -out "$dir/tls.crt" 2>/dev/null
}

# apply_nats_client_secrets DIR NAMESPACE: what the MailCluster of NAMESPACE names in
# spec.nats: a kubernetes.io/basic-auth Secret per component (mail-nats-<component>) and the
# NATS server's CA (nats-ca, key ca.crt).
apply_nats_client_secrets() {
  local dir=$1 namespace=$2 user
  for user in "${NATS_USERS[@]}"; do
    "$KUBECTL" -n "$namespace" create secret generic "mail-nats-$user" --type=kubernetes.io/basic-auth \
      --from-literal=username="$user" --from-file=password=<(tr -d '\n' <"$dir/nats/$user.password") \
      --dry-run=client -o yaml | "$KUBECTL" apply -f - >/dev/null || return 1
  done
  "$KUBECTL" -n "$namespace" create secret generic nats-ca --from-file=ca.crt="$dir/nats/ca.crt" \
    --dry-run=client -o yaml | "$KUBECTL" apply -f - >/dev/null
}

# start_cluster_database DIR: a PostgreSQL for the cluster in DIR (unless one runs), on the
# node's address: the role `kubemail` with a password, and its database, reachable from the
# pods' addresses only with that password. Sets CLUSTER_DATABASE_DIR, CLUSTER_DATABASE_PORT and
# CLUSTER_DATABASE_PASSWORD (also kept in DIR/database.env). Its data lives under /var/tmp:
# the server runs as `postgres`, which cannot reach into root's home.
start_cluster_database() {
  local dir=$1
  if [ -f "$dir/database.env" ]; then
    source "$dir/database.env"
    [ -f "$CLUSTER_DATABASE_DIR/pg-cluster/postmaster.pid" ] && return 0
  fi
  ensure_postgres
  CLUSTER_DATABASE_DIR=$(mktemp -d /var/tmp/kubemail-cluster-db.XXXXXX)
  chmod 755 "$CLUSTER_DATABASE_DIR"
  echo "CLUSTER_DATABASE_DIR=$CLUSTER_DATABASE_DIR" >"$dir/database.env"
  start_postgres "$CLUSTER_DATABASE_DIR" cluster "listen_addresses=127.0.0.1,$NODE_IP" || return 1
  CLUSTER_DATABASE_PORT=${POSTGRES_URL##*:}; CLUSTER_DATABASE_PORT=${CLUSTER_DATABASE_PORT%%/*}
  CLUSTER_DATABASE_PASSWORD=$(openssl rand -hex 16)
  psql -q "$POSTGRES_URL" -c "CREATE ROLE kubemail LOGIN PASSWORD '$CLUSTER_DATABASE_PASSWORD'" \
    -c "CREATE DATABASE kubemail OWNER kubemail" || return 1
  echo "host kubemail kubemail $POD_CIDR scram-sha-256" >>"$CLUSTER_DATABASE_DIR/pg-cluster/pg_hba.conf"
  psql -q "$POSTGRES_URL" -c "SELECT pg_reload_conf()" >/dev/null || return 1
  printf 'CLUSTER_DATABASE_PORT=%s\nCLUSTER_DATABASE_PASSWORD=%s\n' \
    "$CLUSTER_DATABASE_PORT" "$CLUSTER_DATABASE_PASSWORD" >>"$dir/database.env"
}

# apply_database_service DIR NAMESPACE: scripts/manifests/database.yaml for the cluster's
# database in NAMESPACE.
apply_database_service() {
  sed -e "s/\${NAMESPACE}/$2/g" -e "s/\${ADDRESS}/$NODE_IP/g" \
    -e "s/\${PORT}/$CLUSTER_DATABASE_PORT/g" -e "s/\${PASSWORD}/$CLUSTER_DATABASE_PASSWORD/g" \
    "$root/scripts/manifests/database.yaml" | "$KUBECTL" apply -f - >/dev/null
}

# stop_demo DIR: stops the cluster's database, if one runs, and removes its data.
stop_demo() {
  [ -f "$1/database.env" ] || return 0
  source "$1/database.env"
  ensure_postgres
  PG_DIRS="$CLUSTER_DATABASE_DIR/pg-cluster" provision_cleanup "$CLUSTER_DATABASE_DIR"
}
