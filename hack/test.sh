#!/usr/bin/env bash
# The test command (README, CI): installs what it needs, starts a lab of real servers, runs
# fmt, clippy, the CRD drift check, every test, the end-to-end run with the installed pods, the
# images' and the kubelet shim's own checks and the chaos scenarios (hack/chaos.sh), then stops
# the labs.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

# Persistent build cache outside the clone keeps warm runs fast.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$TRANSITION_CACHE/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Tests find scripts in THIS checkout (not one baked in by another clone sharing the build cache).
export TRANSITION_REPO_ROOT="$REPO_ROOT"

log "installing prerequisites (cached under $TRANSITION_CACHE)"
bash hack/install.sh all

# A lab of its own, so a running demo lab is left alone.
export TRANSITION_LAB_DIR="${TRANSITION_LAB_DIR:-/tmp/transition-lab-test}"
# The source cluster runs kube-controller-manager so node-lifecycle marks silent Nodes NotReady
# (grace shortened from 40 s to keep the detection test quick).
export LAB_CONTROLLERS="${LAB_CONTROLLERS:-cluster1-azure}"
export LAB_NODE_MONITOR_GRACE="${LAB_NODE_MONITOR_GRACE:-15s}"
# The end-to-end test (hack/e2e.sh) brings up a second lab with controllers on both workload clusters.
export TRANSITION_E2E_LAB_DIR="${TRANSITION_E2E_LAB_DIR:-/tmp/transition-lab-e2e-test}"
cleanup() {
  bash hack/lab.sh down >/dev/null 2>&1 || true
  TRANSITION_LAB_DIR="$TRANSITION_E2E_LAB_DIR" bash hack/lab.sh down >/dev/null 2>&1 || true
}
trap cleanup EXIT
log "starting the lab in $TRANSITION_LAB_DIR"
bash hack/lab.sh up >/dev/null
bash hack/lab.sh status

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "CRD drift check"
cargo run --quiet --locked --bin crdgen -- --check
log "tests"
cargo build --quiet --locked --bins
cargo nextest run --workspace --locked --no-fail-fast
# The demo's run: operator and agents as Pods installed with kubectl apply -k from images built here.
log "end to end with the installed pods (hack/e2e.sh, E2E_PODS=1)"
TRANSITION_LAB_DIR="$TRANSITION_E2E_LAB_DIR" E2E_SKIP_BUILD=1 E2E_PODS=1 bash hack/e2e.sh
# The images it just built, checked with skopeo, umoci and runc; the kubelet shim running pulled images.
log "images (hack/test-images.sh) and the kubelet shim's pulled images (hack/test-shim-images.sh)"
bash hack/test-images.sh --skip-build
bash hack/test-shim-images.sh
# Faults survived (docs/reliability.md): ≈5 min on this 2-core machine, after the ≈8 min above.
log "chaos scenarios"
bash hack/chaos.sh --skip-build
