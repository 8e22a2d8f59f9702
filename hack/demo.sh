#!/usr/bin/env bash
# The main job (README): brings up the lab, installs the CRDs into the management API server,
# applies the seed's ClusterPolicy unchanged and runs the operator against it, which reports the
# policy in its status. Later issues grow this into the full failover demo.
#
#   hack/demo.sh          run the demo, then stop the operator and the lab
#   hack/demo.sh --keep   leave the lab and the operator running (stop: hack/lab.sh down)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
keep=0
[ "${1:-}" = "--keep" ] && keep=1

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$TRANSITION_CACHE/target}"
bash hack/install.sh all
log "building the operator"
cargo build --quiet --locked --bin transition-operator

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

log "1/4 installing the CRDs into the management cluster ($LAB_MGMT_URL)"
"${KUBECTL[@]}" apply --server-side --force-conflicts --field-manager transition-demo -f crds/yaml/
"${KUBECTL[@]}" wait --for condition=Established --timeout 60s -f crds/yaml/ >/dev/null

log "2/4 applying the seed's ClusterPolicy unchanged (catalog/policies/clusterpolicy-sample.yaml)"
"${KUBECTL[@]}" apply -f catalog/policies/clusterpolicy-sample.yaml

metrics_port=$(free_port)
log "3/4 starting transition-operator (metrics on 127.0.0.1:$metrics_port)"
"$CARGO_TARGET_DIR/debug/transition-operator" --kubeconfig "$LAB_MGMT_KUBECONFIG" \
  --metrics-addr "127.0.0.1:$metrics_port" >"$TRANSITION_LAB_DIR/operator.log" 2>&1 &
operator_pid=$!

log "4/4 waiting for the operator to report the policy"
ready() { [ "$("${KUBECTL[@]}" get clusterpolicy clusterpolicy-sample -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" = True ]; }
wait_for "ClusterPolicy clusterpolicy-sample Ready" 60 ready
echo
"${KUBECTL[@]}" get clusterpolicies -o wide
echo
"${KUBECTL[@]}" get clusterpolicy clusterpolicy-sample -o jsonpath='{.status}' | python3 -m json.tool
echo
curl -fsS "http://127.0.0.1:$metrics_port/metrics" | grep -E '^transition_reconciles' || true
log "demo done (operator log: $TRANSITION_LAB_DIR/operator.log)"
if [ "$keep" = 1 ]; then
  operator_pid=""
  log "lab and operator left running; source $TRANSITION_LAB_DIR/env; stop with: hack/lab.sh down"
fi
