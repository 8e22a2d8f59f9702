#!/usr/bin/env bash
# The main job (README): brings up the lab, installs the CRDs into the management API server,
# applies the seed's ClusterPolicy unchanged and runs the operator against it (it reports the
# policy in its status); then the state path end to end with real parts: a runc + CRIU checkpoint
# of a running counter, uploaded by the agent to S3, turned into a checkpoint image in the
# registry, pulled back and restored — the counter continues. The full failover demo (a node dies,
# Git is rewritten, the target restores) grows from here.
#
#   hack/demo.sh          run the demo, then stop the operator and the lab
#   hack/demo.sh --keep   leave the lab and the operator running (stop: hack/lab.sh down)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
keep=0
[ "${1:-}" = "--keep" ] && keep=1

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$TRANSITION_CACHE/target}"
bash hack/install.sh all
log "building the operator, the agent and the image builder"
cargo build --quiet --locked --bin transition-operator --bin checkpoint-agent --bin checkpoint-image

export TRANSITION_LAB_DIR="${TRANSITION_LAB_DIR:-/tmp/transition-lab}"
bash hack/lab.sh up >/dev/null
# shellcheck disable=SC1091
source "$TRANSITION_LAB_DIR/env"
KUBECTL=("$LAB_KUBECTL" --kubeconfig "$LAB_MGMT_KUBECONFIG")

operator_pid=""
cleanup() {
  [ -n "$operator_pid" ] && kill "$operator_pid" 2>/dev/null || true
  [ "$keep" = 1 ] || bash hack/lab.sh down >/dev/null 2>&1 || true
}
trap cleanup EXIT

log "1/8 installing the CRDs into the management cluster ($LAB_MGMT_URL)"
"${KUBECTL[@]}" apply --server-side --force-conflicts --field-manager transition-demo -f crds/yaml/
"${KUBECTL[@]}" wait --for condition=Established --timeout 60s -f crds/yaml/ >/dev/null

log "2/8 applying the seed's ClusterPolicy unchanged (catalog/policies/clusterpolicy-sample.yaml)"
"${KUBECTL[@]}" apply -f catalog/policies/clusterpolicy-sample.yaml

metrics_port=$(free_port)
log "3/8 starting transition-operator (metrics on 127.0.0.1:$metrics_port)"
"$CARGO_TARGET_DIR/debug/transition-operator" --kubeconfig "$LAB_MGMT_KUBECONFIG" \
  --metrics-addr "127.0.0.1:$metrics_port" >"$TRANSITION_LAB_DIR/operator.log" 2>&1 &
operator_pid=$!

log "4/8 waiting for the operator to report the policy"
ready() { [ "$("${KUBECTL[@]}" get clusterpolicy clusterpolicy-sample -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" = True ]; }
wait_for "ClusterPolicy clusterpolicy-sample Ready" 60 ready
echo
"${KUBECTL[@]}" get clusterpolicies -o wide
echo
"${KUBECTL[@]}" get clusterpolicy clusterpolicy-sample -o jsonpath='{.status}' | python3 -m json.tool
echo
curl -fsS "http://127.0.0.1:$metrics_port/metrics" | grep -E '^transition_reconciles' || true

demo="$TRANSITION_LAB_DIR/demo"
rm -rf "$demo" && mkdir -p "$demo/checkpoints"
log "5/8 checkpointing a running counter container with runc + CRIU (what the kubelet does on request)"
archive=$(bash hack/make-checkpoint.sh "$demo/checkpoints" --pod counter-7d9f5 --container counter)
ls -l "$archive"

log "6/8 checkpoint-agent uploads it to S3 (s3s-fs), sha256 computed in the same read"
"$CARGO_TARGET_DIR/debug/checkpoint-agent" --once --node-name worker-1 --cluster-name cluster1-azure --no-kube \
  --s3-endpoint "$LAB_S3_ENDPOINT" --s3-access-key "$LAB_S3_ACCESS_KEY" --s3-secret-key-file <(printf %s "$LAB_S3_SECRET_KEY") \
  --checkpoint-dir "$demo/checkpoints" --state-dir "$demo/agent-state" 2>&1 | grep -E "archive in S3" | sed 's/\x1b\[[0-9;]*m//g'
find "$LAB_S3_ROOT/checkpoints/checkpoints/v1/cluster1-azure/worker-1" -name '*.tar' | sed "s|$LAB_S3_ROOT/|  s3://|"

log "7/8 building the checkpoint OCI image and pushing it to the registry (by digest)"
printf %s "$LAB_REGISTRY_PASSWORD" >"$demo/registry-password" && chmod 0600 "$demo/registry-password"
pushed=$("$CARGO_TARGET_DIR/debug/checkpoint-image" --archive "$archive" --registry "$LAB_REGISTRY" --insecure \
  --repository checkpoints/default/counter-7d9f5-counter --username "$LAB_REGISTRY_USER" --password-file "$demo/registry-password")
reference=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["reference"])' "$pushed")
echo "$pushed" | python3 -m json.tool

log "8/8 pulling the image back and restoring it with runc + CRIU: the counter continues"
skopeo copy -q --src-tls-verify=false --src-creds "$LAB_REGISTRY_USER:$LAB_REGISTRY_PASSWORD" "docker://$reference" "dir:$demo/pulled"
layer=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["layers"][0]["digest"].split(":")[1])' "$demo/pulled/manifest.json")
mkdir -p "$demo/restore" && tar -C "$demo/restore" -xf "$demo/pulled/$layer"
bash hack/restore-checkpoint.sh "$demo/restore"
log "demo done (operator log: $TRANSITION_LAB_DIR/operator.log)"
if [ "$keep" = 1 ]; then
  operator_pid=""
  log "lab and operator left running; source $TRANSITION_LAB_DIR/env; stop with: hack/lab.sh down"
fi
