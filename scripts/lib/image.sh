# Container images without a Docker daemon: kubemail's (the release binaries, laid out as the
# Dockerfile lays them out), and the node's own (pause, CoreDNS) and NATS', each assembled with
# go-containerregistry's crane onto an empty base and written as a tarball that
# `ctr images import` loads. Source it after node.sh (for CRANE); every function reports
# through variables.

# The image's user: distroless' nonroot, which the Dockerfile's base runs as too.
IMAGE_USER=65532
IMAGE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# kubemail's image: what the Dockerfile's final stage says, and the binaries it copies.
KUBEMAIL_IMAGE_REPOSITORY=kubemail.local/kubemail
KUBEMAIL_IMAGE_TAG=dev
KUBEMAIL_IMAGE=$KUBEMAIL_IMAGE_REPOSITORY:$KUBEMAIL_IMAGE_TAG
KUBEMAIL_BINARIES=(operator mailstore smtp-ingress delivery-queue imap-frontend kubemail)

# build_kubemail_image FILE: kubemail's image from target/release (built when missing or
# older than the sources: `cargo build --release` decides) into the tarball FILE.
build_kubemail_image() {
  local file=$1 packages=() binary
  for binary in "${KUBEMAIL_BINARIES[@]}"; do
    case $binary in
      kubemail) packages+=(-p kubemail) ;;
      operator) packages+=(-p kubemail-operator) ;;
      *) packages+=(-p "kubemail-$binary") ;;
    esac
  done
  (cd "$root" && cargo build --release --locked "${packages[@]}") || return 1
  # The release profile keeps line tables for backtraces: compressed, they cost a quarter.
  local compressed
  compressed=$(mktemp -d "${TMPDIR:-/tmp}/kubemail-binaries.XXXXXX")
  for binary in "${KUBEMAIL_BINARIES[@]}"; do
    objcopy --compress-debug-sections=zlib "$root/target/release/$binary" "$compressed/$binary" ||
      { rm -rf "$compressed"; return 1; }
  done
  build_image "$file" "$KUBEMAIL_IMAGE" operator 9090 "${KUBEMAIL_BINARIES[@]/#/$compressed/}"
  local built=$?
  rm -rf "$compressed"
  return $built
}

# build_image FILE REF CMD PORTS BINARY...: an image named REF holding BINARY... in
# /usr/local/bin over the base layer (write_base_layer), run as the nonroot user with command
# CMD and the TCP ports PORTS (comma-separated) exposed, written to the tarball FILE. crane
# edits images in a registry, so it gets one of its own on loopback for the time it takes.
build_image() {
  local file=$1 ref=$2 cmd=$3 ports=$4
  shift 4
  local work
  work=$(mktemp -d "${TMPDIR:-/tmp}/kubemail-image.XXXXXX")
  (
    # (set +e: a registry killed makes `wait` fail, which must not fail the build.)
    trap 'set +e; [ -z "$registry" ] || { kill "$registry"; wait "$registry"; } 2>/dev/null; rm -rf "$work"' EXIT
    registry=""
    write_base_layer "$work/base.tar" "$@" || exit 1
    mkdir -p "$work/app/usr/local/bin"
    install -m 0755 "$@" "$work/app/usr/local/bin/"
    write_layer "$work/app.tar" "$work/app"
    local port
    port=$(free_port)
    "$CRANE" registry serve --address "127.0.0.1:$port" >"$work/registry.log" 2>&1 &
    registry=$!
    wait_for_port "$port" || exit 1
    local staged="127.0.0.1:$port/image:staged" exposed=() p
    for p in ${ports//,/ }; do exposed+=(--exposed-ports "$p/tcp"); done
    "$CRANE" append --oci-empty-base -f "$work/base.tar" -f "$work/app.tar" -t "$staged" >/dev/null 2>&1 &&
      "$CRANE" mutate "$staged" --user "$IMAGE_USER:$IMAGE_USER" --cmd "$cmd" "${exposed[@]}" \
        --set-platform "linux/$(go env GOARCH)" --workdir / --env "PATH=$IMAGE_PATH" --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
        --tag "$ref" --output "$file.tmp" >/dev/null 2>&1 ||
      { echo "crane could not assemble $ref; its registry's log:" >&2; cat "$work/registry.log" >&2; exit 1; }
    mv "$file.tmp" "$file"
  )
}

# write_base_layer FILE BINARY...: the files every image has — the nonroot user, CA
# certificates, /tmp — and the shared libraries BINARY... load (the machine's, which they were
# linked against), as a layer tarball.
write_base_layer() {
  local file=$1 base
  shift
  base=$(mktemp -d "${TMPDIR:-/tmp}/kubemail-base.XXXXXX")
  mkdir -p "$base/etc/ssl/certs" "$base/tmp" "$base/home/nonroot"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%s:%s:nonroot:/home/nonroot:/sbin/nologin\n' \
    "$IMAGE_USER" "$IMAGE_USER" >"$base/etc/passwd"
  printf 'root:x:0:\nnonroot:x:%s:\n' "$IMAGE_USER" >"$base/etc/group"
  printf 'hosts: files dns\n' >"$base/etc/nsswitch.conf"
  [ -f /etc/ssl/certs/ca-certificates.crt ] || apt_install ca-certificates
  cp /etc/ssl/certs/ca-certificates.crt "$base/etc/ssl/certs/"
  chmod 1777 "$base/tmp"
  chown "$IMAGE_USER:$IMAGE_USER" "$base/home/nonroot" && chmod 0700 "$base/home/nonroot"
  local binary library
  for binary in "$@"; do
    # ldd names each library and the dynamic loader by the path the binary will look for.
    for library in $(ldd "$binary" 2>/dev/null | grep -o '/[^ ]*'); do
      mkdir -p "$base${library%/*}" && cp -L "$library" "$base$library"
    done
  done
  write_layer "$file" "$base"
  rm -rf "$base"
}

# write_layer FILE DIR: DIR's contents as a layer tarball, the same bytes for the same files.
write_layer() {
  tar --sort=name --mtime=@0 --numeric-owner --format=posix --pax-option=delete=atime,delete=ctime \
    -C "$2" -cf "$1" .
}
