#!/usr/bin/env bash
# The main job (README): the local lab demo. A worker node of cluster1-azure dies and its
# stateful counter comes back on cluster2-aws with its memory state, driven by Git — all real
# parts (three kube-apiservers, s3s-fs, docker-registry, git http-backend, runc + CRIU 4.1.1, the
# checkpoint agent and transition-operator; kubelet shims stand in for the two kubelets). See
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
rc=0
bash hack/e2e.sh "$@" || rc=$?
if [ "$keep" = 0 ]; then
  bash hack/lab.sh down >/dev/null 2>&1 || true
else
  log "lab left running: source $TRANSITION_LAB_DIR/env; stop with: hack/lab.sh down"
fi
exit "$rc"
