#!/usr/bin/env bash
# Makes a REAL kubelet-format checkpoint archive by checkpointing a running busybox container with
# runc + CRIU 4.1.1 (the kubelet + CRI runtime stand-in; no kubelet runs here).
#
#   hack/make-checkpoint.sh OUT_DIR [--pod P] [--namespace NS] [--container C] [--state-mib N] [--name FILE]
#
# The container runs a counter whose value lives in shell memory (mirrored atomically to
# /tmp/count, so rootfs-diff.tar is real too); --state-mib N also fills N MiB of its tmpfs /dev/shm
# with random bytes, which CRIU dumps, to make large archives. The archive holds, as the kubelet
# writes them: config.dump spec.dump status.dump checkpoint/ (CRIU images) rootfs-diff.tar
# deleted.files network.status container.log, and is named
# checkpoint-<pod>_<namespace>-<container>-<RFC3339>.tar (mode 0600: it holds process memory).
# Prints the archive path on stdout. Needs root, runc and hack/install.sh criu.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
out="${1:-}"
[ -n "$out" ] || die "usage: make-checkpoint.sh OUT_DIR [--pod P] [--namespace NS] [--container C] [--state-mib N] [--name FILE]"
shift
start_args=() name_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --pod|--namespace|--container|--state-mib) start_args+=("$1" "$2"); shift 2 ;;
    --name) name_args=(--name "$2"); shift 2 ;;
    *) die "unknown option $1" ;;
  esac
done
work=$(mktemp -d /tmp/make-checkpoint.XXXXXX)
pod_sh="$(dirname "${BASH_SOURCE[0]}")/runc-pod.sh"
trap 'bash "$pod_sh" stop "$work" >/dev/null 2>&1; rm -rf "$work"' EXIT
bash "$pod_sh" start "$work" "${start_args[@]}" >/dev/null
bash "$pod_sh" checkpoint "$work" "$out" "${name_args[@]}"
