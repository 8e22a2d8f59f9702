#!/usr/bin/env bash
# Makes a REAL kubelet-format checkpoint archive by checkpointing a running busybox container with
# runc + CRIU 4.1.1 (the kubelet + CRI runtime stand-in; no kubelet runs here).
#
#   hack/make-checkpoint.sh OUT_DIR [--pod P] [--namespace NS] [--container C] [--state-mib N] [--name FILE]
#
# The container runs a counter whose value lives in shell memory (and is mirrored to /tmp/count, so
# rootfs-diff.tar is real too); --state-mib N also fills N MiB of its tmpfs /dev/shm with random bytes,
# which CRIU dumps, to make large archives. The archive holds, as the kubelet writes them:
#   config.dump  spec.dump  status.dump  checkpoint/ (CRIU images)  rootfs-diff.tar  deleted.files
#   network.status  container.log
# and is named checkpoint-<pod>_<namespace>-<container>-<RFC3339>.tar (mode 0600: it holds process
# memory). Prints the archive path on stdout. Needs root, runc and hack/install.sh criu.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

out="${1:-}"
[ -n "$out" ] || die "usage: make-checkpoint.sh OUT_DIR [--pod P] [--namespace NS] [--container C] [--state-mib N] [--name FILE]"
shift
pod=counter-7d9f5 ns=default ctr=counter state_mib=0 name=""
while [ $# -gt 0 ]; do
  case "$1" in
    --pod) pod="$2"; shift 2 ;;
    --namespace) ns="$2"; shift 2 ;;
    --container) ctr="$2"; shift 2 ;;
    --state-mib) state_mib="$2"; shift 2 ;;
    --name) name="$2"; shift 2 ;;
    *) die "unknown option $1" ;;
  esac
done
CRIU="${LAB_CRIU:-$TRANSITION_BIN/criu}"
[ -x "$CRIU" ] || die "CRIU not installed ($CRIU): run hack/install.sh criu"
command -v runc >/dev/null || die "runc not installed: run hack/install.sh criu"

mkdir -p "$out"
work=$(mktemp -d /tmp/make-checkpoint.XXXXXX)
id="ckpt-$$-$RANDOM"
cleanup() {
  runc --root "$work/runc" kill "$id" KILL >/dev/null 2>&1 || true
  sleep 0.1
  runc --root "$work/runc" delete -f "$id" >/dev/null 2>&1 || true
  [ -n "${logpid:-}" ] && kill "$logpid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Root filesystem: busybox-static and its applets.
rootfs="$work/bundle/rootfs"
make_busybox_rootfs "$rootfs"
touch "$work/marker"
sleep 0.01

(cd "$work/bundle" && runc spec)
shm_kib=$(( (state_mib + 8) * 1024 ))
script='i=0; if [ "$STATE_MIB" -gt 0 ]; then dd if=/dev/urandom of=/dev/shm/state bs=1M count="$STATE_MIB" 2>/dev/null; fi; while true; do i=$((i+1)); echo $i > /tmp/count.new; mv /tmp/count.new /tmp/count; echo "count $i"; sleep 0.1; done'
jq --arg script "$script" --arg mib "$state_mib" --arg pod "$pod" --arg ns "$ns" --arg ctr "$ctr" --arg shm "size=${shm_kib}k" '
  .process.terminal = false
  | .process.args = ["/bin/sh", "-c", $script]
  | .process.env += ["STATE_MIB=" + $mib]
  | .root.readonly = false
  | .mounts = [.mounts[] | if .destination == "/dev/shm" then .options = ["nosuid","noexec","nodev","mode=1777",$shm] else . end]
  | .annotations = {
      "io.kubernetes.pod.name": $pod, "io.kubernetes.pod.namespace": $ns, "io.kubernetes.container.name": $ctr,
      "io.kubernetes.cri.sandbox-name": $pod, "io.kubernetes.cri.sandbox-namespace": $ns,
      "io.kubernetes.cri.container-name": $ctr, "io.kubernetes.cri.container-type": "container"
    }' "$work/bundle/config.json" >"$work/config.json"
mv "$work/config.json" "$work/bundle/config.json"

# stdout must be a pipe, not a host file (CRIU cannot dump a host regular file fd).
created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
# Anonymous pipes (process substitution) for stdin and stdout/stderr.
runc --root "$work/runc" --criu "$CRIU" run -d --bundle "$work/bundle" "$id" < <(:) > >(cat >"$work/container.log") 2>&1 \
  || { sleep 0.2; cat "$work/container.log" >&2; die "runc run failed"; }

# Let the counter run (and the state fill up) before checkpointing.
deadline=$((SECONDS + 60))
until [ -s "$rootfs/tmp/count" ] && [ "$(cat "$rootfs/tmp/count")" -ge 20 ]; do
  [ $SECONDS -lt $deadline ] || die "container counter did not start"
  sleep 0.1
done
if [ "$state_mib" -gt 0 ]; then sleep 0.3; fi
count_at_checkpoint=$(cat "$rootfs/tmp/count")
mkdir -p "$work/archive/checkpoint"
# The container stops at the checkpoint (no --leave-running), so rootfs-diff.tar below is taken
# from a quiet filesystem and matches the dumped memory exactly.
runc --root "$work/runc" --criu "$CRIU" checkpoint --image-path "$work/archive/checkpoint" \
  --work-path "$work/criu-work" "$id" >"$work/checkpoint.log" 2>&1 \
  || { cat "$work/checkpoint.log" "$work/criu-work"/*.log >&2 2>/dev/null; die "runc checkpoint failed"; }
checkpointed=$(date -u +%Y-%m-%dT%H:%M:%SZ)

a="$work/archive"
cp "$work/bundle/config.json" "$a/spec.dump"
runc --root "$work/runc" state "$id" >"$a/status.dump" 2>/dev/null || echo '{"status":"stopped"}' >"$a/status.dump"
jq -n --arg id "$id" --arg ctr "$ctr" --arg created "$created" --arg ckpt "$checkpointed" '{
  id: $id, name: $ctr,
  rootfsImage: "docker.io/library/busybox:1.36", rootfsImageRef: "sha256:busybox-static-lab",
  rootfsImageName: "docker.io/library/busybox:1.36", runtime: "runc", createdTime: $created,
  checkpointedTime: $ckpt
}' >"$a/config.dump"
(cd "$rootfs" && find . -newer "$work/marker" -type f ! -name '*.new' ! -path './proc/*' ! -path './sys/*' ! -path './dev/*' -printf '%P\n' \
  | tar -cf "$a/rootfs-diff.tar" --no-recursion -T -)
echo '[]' >"$a/deleted.files"
echo '{"interfaces":[]}' >"$a/network.status"
cp "$work/container.log" "$a/container.log" 2>/dev/null || : >"$a/container.log"
log "checkpointed container $id at counter value $count_at_checkpoint"

[ -n "$name" ] || name="checkpoint-${pod}_${ns}-${ctr}-${checkpointed}.tar"
umask 077
tar -C "$a" -cf "$out/.$name.tmp" config.dump spec.dump status.dump checkpoint rootfs-diff.tar deleted.files network.status container.log
chmod 0600 "$out/.$name.tmp"
mv "$out/.$name.tmp" "$out/$name"
echo "$out/$name"
