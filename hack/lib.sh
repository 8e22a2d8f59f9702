#!/usr/bin/env bash
# Shared helpers for the hack/ scripts. Source it; do not run it.
# Everything heavy is cached OUTSIDE the clone so CI and later sessions stay fast.
set -euo pipefail

TRANSITION_CACHE="${TRANSITION_CACHE:-$HOME/.cache/transition}"
TRANSITION_BIN="$TRANSITION_CACHE/bin"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export TRANSITION_CACHE TRANSITION_BIN REPO_ROOT
mkdir -p "$TRANSITION_BIN"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# apt_install PKG... — installs only what is missing; runs `apt-get update` at most once per run.
_APT_UPDATED=0
apt_update_once() {
  if [ "$_APT_UPDATED" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    _APT_UPDATED=1
  fi
}
apt_install() {
  local missing=()
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ "${#missing[@]}" = 0 ] && return 0
  log "apt-get install ${missing[*]}"
  apt_update_once
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Adds deb-src entries (bookworm for kubernetes, trixie for CRIU 4.1.1) reusing the mirror that the
# machine's own sources already point at, so no host name is hard-coded here.
ensure_deb_src() {
  local f=/etc/apt/sources.list.d/transition-src.sources
  [ -f "$f" ] && return 0
  local uri
  uri=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -n1)
  if [ -z "$uri" ]; then
    uri=$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | grep -v security | head -n1)
  fi
  [ -n "$uri" ] || die "cannot find the Debian mirror in /etc/apt/sources.list*"
  cat >"$f" <<SRC
Types: deb-src
URIs: $uri
Suites: bookworm trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  _APT_UPDATED=0
  apt_update_once
}

# free_port — prints a TCP port on 127.0.0.1 that is free right now.
free_port() {
  python3 - <<'PY'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
PY
}

# wait_for DESCRIPTION TIMEOUT_SECONDS COMMAND... — polls until COMMAND succeeds.
wait_for() {
  local what="$1" timeout="$2"
  shift 2
  local start=$SECONDS
  until "$@" >/dev/null 2>&1; do
    if [ $((SECONDS - start)) -ge "$timeout" ]; then
      die "$what not ready after ${timeout}s"
    fi
    sleep 0.2
  done
  log "$what ready in $((SECONDS - start))s"
}

# make_busybox_rootfs DIR — a minimal root filesystem: busybox-static and its applets (relative
# links, so they resolve inside a container). Stands in for the base image of the lab's workloads.
make_busybox_rootfs() {
  local rootfs="$1" bb applet
  bb=$(command -v busybox || true)
  [ -n "$bb" ] && file -L "$bb" 2>/dev/null | grep -q "statically linked" || bb=/bin/busybox
  [ -x "$bb" ] || die "busybox-static missing: run hack/install.sh criu"
  mkdir -p "$rootfs"/{bin,proc,sys,dev,tmp,etc}
  cp "$bb" "$rootfs/bin/busybox"
  for applet in $("$rootfs/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$rootfs/bin/$applet"
  done
}

# bench_archive STATE_MIB — path of a real checkpoint archive whose container held STATE_MIB MiB of
# state; made once with make-checkpoint.sh and cached under $TRANSITION_CACHE/bench/.
bench_archive() {
  local mib="$1" dir="$TRANSITION_CACHE/bench/archive-$1"
  if ! ls "$dir"/*.tar >/dev/null 2>&1; then
    log "making a real checkpoint archive with $mib MiB of container state (once; cached)"
    bash "$REPO_ROOT/hack/make-checkpoint.sh" "$dir" --pod bench --state-mib "$mib" >/dev/null
  fi
  ls "$dir"/*.tar | head -n1
}
