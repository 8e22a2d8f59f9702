#!/usr/bin/env bash
# The main job (README): the local lab demo. A worker node of cluster1-azure dies and its
# stateful counter comes back on cluster2-aws with its memory state, driven by Git — all real
# parts (three kube-apiservers, s3s-fs, docker-registry, git http-backend, runc + CRIU 4.1.1, the
# checkpoint agent and transition-operator as Pods installed from images built here; kubelet shims
# stand in for the kubelets, one per cluster). See
# hack/e2e.sh for the steps; it prints a timeline and checks the result.
#
#   hack/demo.sh                                  run the demo, then stop the lab
#   hack/demo.sh --keep                           leave the lab, operator and worker-2 running
#   hack/demo.sh --kill-operator-in-each-phase    also SIGKILL the operator in every phase
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
keep=0
for arg in "$@"; do [ "$arg" = --keep ] && keep=1; done
export TRANSITION_LAB_DIR="${TRANSITION_LAB_DIR:-/tmp/transition-lab}"
# The operator and the agents run as Pods, installed with `kubectl apply -k` from images built from
# this checkout (docs/install.md); the kill loop needs host processes, so it runs them that way.
export E2E_PODS="${E2E_PODS:-1}"
for arg in "$@"; do [ "$arg" = --kill-operator-in-each-phase ] && E2E_PODS=0; done
rc=0
bash hack/e2e.sh "$@" || rc=$?
if [ "$keep" = 0 ]; then
  bash hack/lab.sh down >/dev/null 2>&1 || true
else
  log "lab left running: source $TRANSITION_LAB_DIR/env; stop with: hack/lab.sh down"
fi
exit "$rc"
