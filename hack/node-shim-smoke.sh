#!/usr/bin/env bash
# Smoke test of hack/kubelet-shim.py's node mode against the lab's REAL kube-apiserver,
# kube-scheduler and kube-controller-manager of cluster2-aws:
#
#   1. a REAL checkpoint archive (hack/make-checkpoint.sh: runc + CRIU) pushed as a checkpoint image
#      with the already-built checkpoint-image binary;
#   2. the shim registers Node worker-2 (Lease + Ready heartbeat) — wait for Ready;
#   3. a Deployment (1 replica) whose container image is that checkpoint image: the real scheduler
#      binds the pod to worker-2, the shim pulls and restores it with runc + CRIU — wait for
#      Running/Ready, check the counter continues from its checkpointed value, checkpoint the
#      restored container again through the API server's node proxy;
#   4. delete the Deployment: the pod is deleted (grace 0 by the shim) and the container stopped;
#   5. kill the shim: the Lease is no longer renewed and the controller-manager turns the Node
#      Ready=Unknown after its node-monitor grace period (skip with --quick).
#
#   TRANSITION_LAB_DIR=/tmp/transition-lab-shim LAB_CONTROLLERS=cluster2-aws hack/lab.sh up
#   TRANSITION_LAB_DIR=/tmp/transition-lab-shim hack/node-shim-smoke.sh [--quick] [--keep]
#
# --keep leaves the Node, the namespace and the work folder ($TRANSITION_LAB_DIR/node-shim-smoke).
# The checkpoint-image binary: $CHECKPOINT_IMAGE_BIN, else $CARGO_TARGET_DIR (default
# $TRANSITION_CACHE/target)/debug/checkpoint-image; it is not built here.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
quick=0 keep=0
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    --keep) keep=1 ;;
    *) die "usage: node-shim-smoke.sh [--quick] [--keep]" ;;
  esac
done

LAB="${TRANSITION_LAB_DIR:-/tmp/transition-lab}"
[ -f "$LAB/env" ] || die "no lab in $LAB: TRANSITION_LAB_DIR=$LAB LAB_CONTROLLERS=cluster2-aws hack/lab.sh up"
# shellcheck disable=SC1091
source "$LAB/env"
case " $LAB_CONTROLLERS " in
  *" cluster2-aws "*) ;;
  *) die "the lab in $LAB runs no controllers for cluster2-aws: bring it up with LAB_CONTROLLERS=cluster2-aws" ;;
esac
IMG_BIN="${CHECKPOINT_IMAGE_BIN:-${CARGO_TARGET_DIR:-$TRANSITION_CACHE/target}/debug/checkpoint-image}"
[ -x "$IMG_BIN" ] || die "$IMG_BIN is missing: build it first (cargo build --bin checkpoint-image); this script does not build"
command -v skopeo >/dev/null || die "skopeo missing: apt-get install skopeo"

NODE="${SMOKE_NODE:-worker-2}"
NS="node-shim-smoke-$(date +%s)"
work="$LAB/node-shim-smoke"
K=("$LAB_KUBECTL" --kubeconfig "$LAB_CLUSTER2_AWS_KUBECONFIG")
shim_pid=""
rm -rf "$work" && mkdir -p "$work" && chmod 0700 "$work"

cleanup() {
  local rc=$?
  if [ -n "$shim_pid" ] && kill -0 "$shim_pid" 2>/dev/null; then kill "$shim_pid" 2>/dev/null || true; wait "$shim_pid" 2>/dev/null || true; fi
  local d
  for d in "$work"/node/pods/*/; do [ -d "$d" ] && bash hack/runc-pod.sh stop "$d" >/dev/null 2>&1; done
  if [ "$rc" != 0 ]; then
    log "FAILED; shim log tail ($work/shim.log):"
    tail -n 30 "$work/shim.log" >&2 2>/dev/null || true
  fi
  if [ "$keep" = 0 ]; then
    # No kubelet is left to finish deletions: force them.
    "${K[@]}" delete pods -n "$NS" --all --force --grace-period 0 >/dev/null 2>&1 || true
    "${K[@]}" delete namespace "$NS" --wait=false >/dev/null 2>&1 || true
    "${K[@]}" delete node "$NODE" >/dev/null 2>&1 || true
    "${K[@]}" delete lease -n kube-node-lease "$NODE" >/dev/null 2>&1 || true
    [ "$rc" = 0 ] && rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT

ms() { date +%s%3N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) / 1000 }'; }
# poll TIMEOUT_S COMMAND... — like wait_for, but quiet; returns 1 on timeout.
poll() {
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

"${K[@]}" get node "$NODE" >/dev/null 2>&1 && die "Node $NODE already exists in cluster2-aws (another shim?): delete it first"

log "1/5 a real checkpoint archive (runc + CRIU) pushed as a checkpoint image"
t0=$(ms)
archive=$(bash hack/make-checkpoint.sh "$work/checkpoints" --pod counter-src --namespace default --container counter 2>"$work/make-checkpoint.log") \
  || { cat "$work/make-checkpoint.log" >&2; die "make-checkpoint.sh failed"; }
at_ckpt=$(tar -xOf "$archive" rootfs-diff.tar | tar -xO tmp/count)
(umask 077; printf %s "$LAB_REGISTRY_PASSWORD" >"$work/registry-password")
pushed=$("$IMG_BIN" --archive "$archive" --registry "$LAB_REGISTRY" --insecure --repository "checkpoints/$NS/counter" \
  --username "$LAB_REGISTRY_USER" --password-file "$work/registry-password")
ref=$(jq -r .reference <<<"$pushed")
[ -n "$ref" ] && [ "$ref" != null ] || die "checkpoint-image printed no reference: $pushed"
log "   archive $(basename "$archive") (counter $at_ckpt at checkpoint) -> $ref ($(secs "$t0" "$(ms)") s)"

log "2/5 starting the shim in node mode for $NODE"
t0=$(ms)
python3 hack/kubelet-shim.py --node "$NODE" --kubeconfig "$LAB_CLUSTER2_AWS_KUBECONFIG" --state-dir "$work/node" \
  --insecure-registry "$LAB_REGISTRY" --registry-user "$LAB_REGISTRY_USER" --registry-password-file "$work/registry-password" \
  >"$work/shim.log" 2>&1 &
shim_pid=$!
node_ready() {
  [ "$("${K[@]}" get node "$NODE" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" = True ] \
    && [ -z "$("${K[@]}" get node "$NODE" -o 'jsonpath={.spec.taints}')" ]
}
poll 60 node_ready || die "Node $NODE not Ready (and untainted) after 60 s"
t_node=$(secs "$t0" "$(ms)")
lease_holder=$("${K[@]}" get lease -n kube-node-lease "$NODE" -o 'jsonpath={.spec.holderIdentity}')
[ "$lease_holder" = "$NODE" ] || die "Lease kube-node-lease/$NODE holder is '$lease_holder'"
log "   Node $NODE Ready, untainted, Lease held, in $t_node s"
"${K[@]}" get node "$NODE" -o wide

log "3/5 a Deployment whose image is the checkpoint image: scheduled by kube-scheduler, restored by the shim"
"${K[@]}" create namespace "$NS" >/dev/null
t0=$(ms)
# automountServiceAccountToken: false — the lab runs no token controller, and the v1.20
# ServiceAccount admission refuses pods that would mount a token that does not exist.
"${K[@]}" apply -f - >/dev/null <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: counter, namespace: $NS}
spec:
  replicas: 1
  selector: {matchLabels: {app: counter}}
  template:
    metadata: {labels: {app: counter}}
    spec:
      automountServiceAccountToken: false
      containers:
      - name: counter
        image: $ref
YAML
pod_running_ready() {
  local out
  out=$("${K[@]}" get pods -n "$NS" -l app=counter -o 'jsonpath={range .items[*]}{.spec.nodeName} {.status.phase} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}')
  [ "$out" = "$NODE Running True" ]
}
poll 120 pod_running_ready || { "${K[@]}" get pods -n "$NS" -o wide >&2; die "the pod did not become Running + Ready on $NODE in 120 s"; }
t_pod=$(secs "$t0" "$(ms)")
pod=$("${K[@]}" get pods -n "$NS" -l app=counter -o 'jsonpath={.items[0].metadata.name}')
"${K[@]}" get pods -n "$NS" -o wide
available() { [ "$("${K[@]}" get deploy -n "$NS" counter -o 'jsonpath={.status.availableReplicas}')" = 1 ]; }
poll 60 available || die "Deployment not Available"
cstatus=$("${K[@]}" get pod -n "$NS" "$pod" -o 'jsonpath={.status.containerStatuses[0]}')
cid=$(jq -r .containerID <<<"$cstatus")
[[ "$cid" == runc://* ]] || die "containerID is '$cid'"
[ "$(jq -r .imageID <<<"$cstatus")" = "$ref" ] || die "imageID is $(jq -r .imageID <<<"$cstatus")"
[ "$(jq -r '.state.running.startedAt != null and .ready and .started' <<<"$cstatus")" = true ] || die "container status: $cstatus"
[ "$("${K[@]}" get pod -n "$NS" "$pod" -o 'jsonpath={.status.podIP} {.status.hostIP}')" = "127.0.0.1 127.0.0.1" ] || die "podIP/hostIP"
restore_line=$(grep -F "pod $NS/$pod container counter: restored" "$work/shim.log" | tail -n1)
[ -n "$restore_line" ] || die "the shim did not restore the container (log: $work/shim.log)"
dir="$work/node/pods/${NS}_${pod}_counter"
restored_from=$(cat "$dir/restored-from")
[ "$restored_from" = "$at_ckpt" ] || die "restored-from is $restored_from, the archive holds $at_ckpt"
c1=$(bash hack/runc-pod.sh count "$dir")
sleep 1
c2=$(bash hack/runc-pod.sh count "$dir")
[ "$c1" -ge "$at_ckpt" ] && [ "$c2" -gt "$c1" ] || die "counter did not continue: checkpoint $at_ckpt, then $c1, $c2"
log "   pod $pod Running + Ready in $t_pod s; ${restore_line#*container counter: }"
log "   counter: $at_ckpt at checkpoint -> $c1 -> $c2 (continues; a fresh start counts from 1)"
"${K[@]}" logs -n "$NS" "$pod" --tail 1 | grep -q '^count ' || die "kubectl logs through the node proxy gave no counter line"
t0=$(ms)
items=$(curl -fsS --max-time 90 --cacert "$LAB_CA" -H "Authorization: Bearer $LAB_CLUSTER2_AWS_TOKEN" -X POST \
  "$LAB_CLUSTER2_AWS_URL/api/v1/nodes/$NODE/proxy/checkpoint/$NS/$pod/counter?timeout=60")
again=$(jq -r '.items[0]' <<<"$items")
again_count=$(tar -xOf "$again" rootfs-diff.tar | tar -xO tmp/count)
[ "$again_count" -ge "$c2" ] || die "the new checkpoint holds counter $again_count < $c2"
log "   checkpoint of the restored container through the node proxy: $(basename "$again") (counter $again_count, $(secs "$t0" "$(ms)") s)"

log "4/5 deleting the Deployment: the pod goes, the container stops"
t0=$(ms)
"${K[@]}" delete deployment -n "$NS" counter >/dev/null
no_pods() { [ -z "$("${K[@]}" get pods -n "$NS" -o name)" ]; }
poll 60 no_pods || { "${K[@]}" get pods -n "$NS" -o wide >&2; die "the pod was not deleted in 60 s"; }
[ "$(bash hack/runc-pod.sh status "$dir")" = absent ] || die "container still there: $(bash hack/runc-pod.sh status "$dir")"
[ -f "$dir/stopped" ] || die "no stopped marker in $dir"
c3=$(bash hack/runc-pod.sh count "$dir"); sleep 0.5
[ "$(bash hack/runc-pod.sh count "$dir")" = "$c3" ] || die "counter still advancing after stop"
log "   pod deleted and container stopped in $(secs "$t0" "$(ms)") s"

log "5/5 killing the shim: no more Lease renewals$([ "$quick" = 1 ] || echo ", then the Node turns NotReady")"
renew() { "${K[@]}" get lease -n kube-node-lease "$NODE" -o 'jsonpath={.spec.renewTime}'; }
r0=$(renew); sleep 6
r1=$(renew)
[ "$r1" != "$r0" ] || die "the Lease was not renewed while the shim ran ($r0)"
kill -KILL "$shim_pid"; wait "$shim_pid" 2>/dev/null || true
shim_pid=""
t_kill=$(ms)
r2=$(renew); sleep 12
r3=$(renew)
[ "$r3" = "$r2" ] || die "the Lease was renewed after the shim died ($r2 -> $r3)"
log "   Lease renewTime $r0 -> $r1 while running; stays $r3 after the kill"
if [ "$quick" = 0 ]; then
  grace=$(tr '\0' '\n' <"/proc/$(cat "$LAB/pids/controller-manager-cluster2-aws.pid")/cmdline" 2>/dev/null \
    | grep -A1 -x -- --node-monitor-grace-period | tail -n1 | sed 's/^/--node-monitor-grace-period /') || true
  not_ready() { [ "$("${K[@]}" get node "$NODE" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" != True ]; }
  poll 180 not_ready || die "Node $NODE still Ready 180 s after the shim died"
  log "   Node $NODE Ready=$("${K[@]}" get node "$NODE" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}') $(secs "$t_kill" "$(ms)") s after the kill (controller-manager $grace)"
  "${K[@]}" get node "$NODE"
fi
log "node-shim smoke: PASSED (node Ready ${t_node}s, pod Running+Ready ${t_pod}s)"
