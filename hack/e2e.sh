#!/usr/bin/env bash
# End to end, all real parts: a worker node dies and its container comes back on another cluster
# with its memory state, driven by Git.
#
#   three kube-apiservers (mgmt, cluster1-azure, cluster2-aws; controller-manager + scheduler on the
#   workload clusters), s3s-fs, docker-registry, git http-backend seeded from catalog/ + clusters/,
#   kubelet shims for worker-1 (cluster1) and worker-2 (cluster2) running pods as runc containers,
#   the checkpoint agent of worker-1, and transition-operator.
#
#   1. cluster1's folder is rendered and applied (the GitOps agent's job): the counter runs on worker-1
#   2. a seed-style ClusterPolicy; the operator discovers the counter, checkpoints it on schedule
#      (kubelet shim -> CRIU archive -> agent -> S3 -> checkpoint image -> registry) and once more
#      on a manual `checkpoint-now` token
#   3. worker-1 dies (agent, kubelet shim and container killed): heartbeats stop, the Lease goes
#      stale -> NodeFailed -> a Transition: Fencing -> Committing (ONE Git commit) -> Syncing ->
#      Verifying -> Completed; cluster2's folder is rendered and applied when the commit lands
#   4. worker-2's shim restores the checkpoint image with runc + CRIU: the counter continues
#
#   hack/e2e.sh [--kill-operator-in-each-phase] [--keep]
#
# E2E_SCHEDULE (default "*/20 * * * * *") sets the policy's checkpoint schedule; E2E_OPERATOR_BIN
# runs another transition-operator binary; E2E_MEASURE_RUNS=N stops after step 2 once N more
# scheduled checkpoint runs completed and prints the requests the source cluster's API server
# counted meanwhile (its own apiserver_request_total) — hack/bench-source-requests.sh uses it.
#
# E2E_CHAOS=1 (hack/chaos.sh) runs two operator replicas behind the Lease (agents reach the leader
# through hack/service-standin.py, the Service's stand-in) and breaks a dependency in each phase of
# the failover: the management API server restarted in Fencing, the Git server down in Committing,
# the leader SIGKILLed in Syncing, the target's API server down in Verifying; then the source node
# returns and must not run the package again. Each fault adds a row to $W/chaos-rows.jsonl.
#
# E2E_PODS=1 (hack/demo.sh) runs the operator and the agents as Pods, installed as docs/install.md
# installs them (kubectl apply -k of overlays of deploy/management and deploy/workload) from the
# images hack/build-images.sh builds and pushes to the lab registry; a kubelet shim is the
# management cluster's node (hack/e2e-pods.sh). Not combined with E2E_CHAOS or the kill loop.
#
# Writes a timeline and $TRANSITION_LAB_DIR/e2e/summary.json; exits non-zero when a check fails.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
kill_phases=0 keep=0
for arg in "$@"; do
  case "$arg" in
    --kill-operator-in-each-phase) kill_phases=1 ;;
    --keep) keep=1 ;;
    *) die "usage: e2e.sh [--kill-operator-in-each-phase] [--keep]" ;;
  esac
done

chaos="${E2E_CHAOS:-0}"
pods="${E2E_PODS:-0}"
# Checkpoints encrypted on the node, in the image, and signed (docs/security.md); E2E_ENCRYPT=0: plaintext.
encrypt="${E2E_ENCRYPT:-1}"
if [ "$pods" = 1 ] && [ "$encrypt" != 1 ]; then
  die "E2E_PODS=1 installs deploy/, which encrypts and signs: E2E_ENCRYPT=0 is for host processes only"
fi
if [ "$pods" = 1 ] && { [ "$chaos" = 1 ] || [ "$kill_phases" = 1 ]; }; then
  die "E2E_PODS=1 runs the installed pods; the chaos mode and --kill-operator-in-each-phase kill host processes"
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$TRANSITION_CACHE/target}"
BIN="$CARGO_TARGET_DIR/debug"
if [ "${E2E_SKIP_BUILD:-0}" != 1 ]; then
  bash hack/install.sh all
  log "building transition-operator and checkpoint-agent"
  cargo build --quiet --locked --bin transition-operator --bin checkpoint-agent --bin kubectl-transition
fi
export TRANSITION_LAB_DIR="${TRANSITION_LAB_DIR:-/tmp/transition-lab}"
export LAB_CONTROLLERS="cluster1-azure cluster2-aws"
# Pods mode: the management cluster schedules the operator's Pod and fills service-account tokens.
[ "$pods" = 1 ] && export LAB_CONTROLLERS="mgmt cluster1-azure cluster2-aws"
export LAB_NODE_MONITOR_GRACE="${LAB_NODE_MONITOR_GRACE:-20s}"
bash hack/lab.sh up >/dev/null
# shellcheck disable=SC1091
source "$TRANSITION_LAB_DIR/env"
MGMT=("$LAB_KUBECTL" --kubeconfig "$LAB_MGMT_KUBECONFIG")
# The command line users reach for (kubectl plugin), against the management cluster.
KT=("$BIN/kubectl-transition" --kubeconfig "$LAB_MGMT_KUBECONFIG" -n default)
C1=("$LAB_KUBECTL" --kubeconfig "$LAB_CLUSTER1_AZURE_KUBECONFIG")
C2=("$LAB_KUBECTL" --kubeconfig "$LAB_CLUSTER2_AWS_KUBECONFIG")

W="$TRANSITION_LAB_DIR/e2e"
run_id="$(date +%s)"
pids=()
operator_pid="" operator_b_pid="" agent_pid="" agent2_pid="" shim1_pid="" shim2_pid="" shim_m_pid=""
cleanup() {
  local rc=$?
  for p in "$operator_pid" "$operator_b_pid" "$agent_pid" "$agent2_pid" "$shim1_pid" "$shim2_pid" "$shim_m_pid" "${pids[@]}"; do
    [ -n "$p" ] && { kill "$p" 2>/dev/null || true; }
  done
  # A fault injected by the chaos mode is never left behind.
  for f in "$TRANSITION_LAB_DIR"/pids/*.cmdline; do
    [ -f "$f" ] && { bash hack/lab.sh revive "$(basename "$f" .cmdline)" >/dev/null 2>&1 || true; }
  done
  for d in "$W"/worker-*/pods/*/ "$W"/mgmt-1/pods/*/; do [ -d "$d" ] && bash hack/runc-pod.sh stop "$d" >/dev/null 2>&1; done
  if [ "$rc" != 0 ]; then
    log "FAILED (exit $rc); logs in $W: operator*.log, shim-*.log, agent.log"
    tail -n 25 "$W/operator.log" >&2 2>/dev/null || true
    if [ "$pods" = 1 ]; then
      "${MGMT[@]}" logs -n transition-system deploy/transition-operator --tail 25 >&2 2>/dev/null || true
      for k in MGMT C1 C2; do declare -n kk=$k; "${kk[@]}" get pods -n transition-system -o wide >&2 2>/dev/null || true; done
    fi
  fi
  if [ "$keep" = 0 ]; then
    "${C1[@]}" delete node worker-1 --wait=false >/dev/null 2>&1 || true
    "${C2[@]}" delete node worker-2 --wait=false >/dev/null 2>&1 || true
  fi
  exit "$rc"
}
trap cleanup EXIT
# Processes and containers of an earlier run in this lab (one killed before its cleanup) would
# keep running — a second kubelet shim of the same node, containers whose folders are gone: stop
# them first (every process of a run names $W in its arguments).
pkill -f -- "--state-dir $W/" 2>/dev/null || true
pkill -f -- "--git-cache-dir $W/" 2>/dev/null || true
pkill -f -- "service-standin.py --for $W " 2>/dev/null || true
for d in "$W"/worker-*/pods/*/ "$W"/mgmt-1/pods/*/; do [ -d "$d" ] && bash hack/runc-pod.sh stop "$d" >/dev/null 2>&1; done
rm -rf "$W" && mkdir -p "$W" && chmod 0700 "$W"
t0=$(date +%s.%N)
stamp() { python3 -c "import sys,time; print(f'{time.time()-float(sys.argv[1]):6.1f}s')" "$t0"; }
step() { log "$(stamp)  $*"; }
jget() { python3 -c 'import json,sys; d=json.load(sys.stdin); exec("v="+sys.argv[1]); print("" if v is None else v)' "$1"; }

# Leftovers of an earlier run in the same lab.
for n in worker-1 worker-2; do
  "${C1[@]}" delete node "$n" --ignore-not-found >/dev/null 2>&1 || true
  "${C2[@]}" delete node "$n" --ignore-not-found >/dev/null 2>&1 || true
done
"${C1[@]}" delete deployment counter -n default --ignore-not-found --wait=false >/dev/null 2>&1 || true
"${C2[@]}" delete deployment counter -n default --ignore-not-found --wait=false >/dev/null 2>&1 || true
"${C1[@]}" delete pods -n default --all --grace-period=0 --force >/dev/null 2>&1 || true
"${C2[@]}" delete pods -n default --all --grace-period=0 --force >/dev/null 2>&1 || true
# Checkpoints carry a cleanup finalizer: the operator started below deletes their objects.
"${MGMT[@]}" delete transitions,checkpoints,clusterpolicies --all -n default --ignore-not-found --wait=false >/dev/null 2>&1 || true

step "Git: seeding repository gitops-$run_id from catalog/ + clusters/"
bash hack/lab.sh git-repo "gitops-$run_id" >/dev/null
GIT_URL="$LAB_GIT_URL/gitops-$run_id.git"
AUTHED="${GIT_URL/http:\/\//http://$LAB_GIT_USER:$LAB_GIT_PASSWORD@}"
seed="$W/seed"
mkdir -p "$seed" && cp -r catalog clusters "$seed/"
# Only the demo package on the source cluster (redis/video need images this machine cannot pull).
printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../../catalog/counter\n' >"$seed/clusters/cluster1-azure/kustomization.yaml"
git -C "$seed" init -q -b main
git -C "$seed" -c user.name=platform -c user.email=platform@example.invalid add -A
git -C "$seed" -c user.name=platform -c user.email=platform@example.invalid commit -qm "seed"
git -C "$seed" push -q "$AUTHED" main

# render_apply CLUSTER KUBECTL...: what Argo CD / Flux do — render clusters/CLUSTER at the
# remote head, apply it, and prune what the folder no longer renders. Like Argo CD's default
# tracking, every object applied for a cluster carries `app.kubernetes.io/instance=CLUSTER`
# (added by a wrapping kustomization, selectors untouched); pruning deletes only objects with
# that label which are absent from the render — nothing is deleted by name here, so a package
# leaves a cluster only if the operator's commit took it out of the folder.
render_apply() {
  local cluster="$1"; shift
  local co="$W/sync-$cluster" sel="app.kubernetes.io/instance=$cluster"
  rm -rf "$co" && git clone -q "$AUTHED" "$co"
  mkdir -p "$co/.gitops-standin"
  printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../clusters/%s\nlabels:\n  - pairs: {app.kubernetes.io/instance: %s}\n' \
    "$cluster" "$cluster" >"$co/.gitops-standin/kustomization.yaml"
  "$LAB_KUBECTL_CURRENT" kustomize "$co/.gitops-standin" >"$W/render-$cluster.yaml" || die "kustomize build of clusters/$cluster failed"
  if [ -s "$W/render-$cluster.yaml" ]; then
    # (The kinds the catalog ships; listing them spares kubectl a pass over every API type.)
    "$@" apply --prune -l "$sel" -f "$W/render-$cluster.yaml" \
      --prune-whitelist=apps/v1/Deployment --prune-whitelist=apps/v1/StatefulSet \
      --prune-whitelist=apps/v1/DaemonSet --prune-whitelist=core/v1/Service \
      --prune-whitelist=core/v1/ConfigMap >"$W/sync-$cluster.log" || die "GitOps sync of $cluster failed"
  else
    # `apply` refuses an empty set: prune everything this cluster's sync applied.
    "$@" delete deployments,statefulsets,daemonsets,services,configmaps -l "$sel" --all-namespaces \
      --wait=false >"$W/sync-$cluster.log" || die "GitOps prune of $cluster failed"
  fi
  git -C "$co" rev-parse --short HEAD
}

# --- checkpoints are secrets (docs/security.md): the lab's keys, on unless E2E_ENCRYPT=0 --------
# age: the agents encrypt for the recipient, the operator holds the identity. RSA node keys per
# cluster: the operator encrypts image layers for the public keys, each cluster's shim (its
# nodes' runtime) decrypts with the private one. OpenPGP: the operator signs, the shims' policy
# requires the signature (served by the operator as a lookaside, written once the port is known).
K="$W/keys"
if [ "$encrypt" = 1 ]; then
  step "keys: age (archives), RSA per cluster (image layers), OpenPGP (signatures)"
  mkdir -p "$K/image-encryption" "$K/gnupg" "$K/registries.d" && chmod 0700 "$K" "$K/gnupg"
  age-keygen -o "$K/archive-identities" 2>/dev/null || die "age-keygen failed"
  age-keygen -y "$K/archive-identities" >"$K/archive-recipients"
  for c in cluster1-azure cluster2-aws; do
    mkdir -p "$K/nodes-$c" && chmod 0700 "$K/nodes-$c"
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$K/nodes-$c/node.pem" 2>/dev/null || die "openssl genpkey failed"
    openssl pkey -in "$K/nodes-$c/node.pem" -pubout -out "$K/image-encryption/$c.pem" 2>/dev/null
  done
  GNUPGHOME="$K/gnupg" gpg --batch --quiet --passphrase '' --quick-gen-key 'transition-operator e2e <ops@example.invalid>' ed25519 sign never 2>/dev/null \
    || die "gpg --quick-gen-key failed"
  GNUPGHOME="$K/gnupg" gpg --batch --quiet --armor --export-secret-keys >"$K/signing-key.asc"
  GNUPGHOME="$K/gnupg" gpg --batch --quiet --export >"$K/signing-pubring.gpg"
  chmod 0600 "$K/archive-identities" "$K/signing-key.asc" "$K"/nodes-*/node.pem
  # Checkpoint images of the lab registry must carry the operator's signature; other images
  # (the operator's and the agent's own, in pods mode) are accepted as they are.
  python3 - "$LAB_REGISTRY" "$K/signing-pubring.gpg" >"$K/policy.json" <<'PY'
import json, sys
reg, key = sys.argv[1:]
print(json.dumps({"default": [{"type": "insecureAcceptAnything"}],
                  "transports": {"docker": {f"{reg}/checkpoints": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": key}]}}}, indent=1))
PY
fi
# shim_secrets CLUSTER — a node's decryption keys and signature policy (CRI-O: decryption_keys_path,
# /etc/containers/policy.json and registries.d).
shim_secrets() {
  [ "$encrypt" = 1 ] || return 0
  printf '%s\n' --decryption-keys-dir "$K/nodes-$1" --signature-policy "$K/policy.json" --registries-d "$K/registries.d"
}
mapfile -t shim1_keys < <(shim_secrets cluster1-azure)
mapfile -t shim2_keys < <(shim_secrets cluster2-aws)

step "starting the kubelet shims: worker-1 on cluster1-azure, worker-2 on cluster2-aws"
printf %s "$LAB_REGISTRY_PASSWORD" >"$W/registry-password" && chmod 0600 "$W/registry-password"
# The counter's shell joins these halves into one variable: the whole mark exists only in its heap
# (hack/runc-pod.sh), so finding it proves an archive holds process memory.
mark_a="mark-$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')-" mark_b="$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
memory_mark="$mark_a$mark_b"
STANDIN_MEMORY_MARK_A="$mark_a" STANDIN_MEMORY_MARK_B="$mark_b" \
python3 hack/kubelet-shim.py --node worker-1 --kubeconfig "$LAB_CLUSTER1_AZURE_KUBECONFIG" \
  --state-dir "$W/worker-1" --registry-user "$LAB_REGISTRY_USER" --registry-password-file "$W/registry-password" \
  "${shim1_keys[@]}" >"$W/shim-1.log" 2>&1 &
shim1_pid=$!
python3 hack/kubelet-shim.py --node worker-2 --kubeconfig "$LAB_CLUSTER2_AWS_KUBECONFIG" \
  --state-dir "$W/worker-2" --registry-user "$LAB_REGISTRY_USER" --registry-password-file "$W/registry-password" \
  "${shim2_keys[@]}" >"$W/shim-2.log" 2>&1 &
shim2_pid=$!
node_ready() { [ "$("$@" get node "$NODE" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" = True ]; }
NODE=worker-1 wait_for "node worker-1 Ready" 60 node_ready "${C1[@]}"
NODE=worker-2 wait_for "node worker-2 Ready" 60 node_ready "${C2[@]}"
hb_port=$(free_port) metrics_port=$(free_port)
hb_token=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
hb_token2=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf 'cluster1-azure=%s\ncluster2-aws=%s\n' "$hb_token" "$hb_token2" >"$W/heartbeat-tokens" && chmod 0600 "$W/heartbeat-tokens"
printf %s "$hb_token" >"$W/heartbeat-token" && printf %s "$hb_token2" >"$W/heartbeat-token2" \
  && chmod 0600 "$W/heartbeat-token" "$W/heartbeat-token2"
printf %s "$LAB_S3_ACCESS_KEY" >"$W/s3-access" && printf %s "$LAB_S3_SECRET_KEY" >"$W/s3-secret" && chmod 0600 "$W/s3-access" "$W/s3-secret"
mkdir -p "$W/kubeconfigs" && cp "$LAB_CLUSTER1_AZURE_KUBECONFIG" "$W/kubeconfigs/cluster1-azure.kubeconfig" \
  && cp "$LAB_CLUSTER2_AWS_KUBECONFIG" "$W/kubeconfigs/cluster2-aws.kubeconfig"
if [ "$pods" = 1 ]; then
  # shellcheck source=hack/e2e-pods.sh
  source hack/e2e-pods.sh
  step "pods: the management cluster's node mgmt-1 (kubelet shim)"
  python3 hack/kubelet-shim.py --node mgmt-1 --kubeconfig "$LAB_MGMT_KUBECONFIG" \
    --state-dir "$W/mgmt-1" --registry-user "$LAB_REGISTRY_USER" --registry-password-file "$W/registry-password" \
    >"$W/shim-mgmt.log" 2>&1 &
  shim_m_pid=$!
  NODE=mgmt-1 wait_for "node mgmt-1 Ready" 60 node_ready "${MGMT[@]}"
  pods_images
  pods_tls
  step "pods: kubectl apply -k of the workload install on cluster1-azure and cluster2-aws (agent DaemonSet, the operator's identity)"
  pods_install_workload cluster1-azure worker-1 "$W/agent-state" "" "${C1[@]}"
  # worker-2 is the target: the shim restores with runc + CRIU (no containerd config to read).
  pods_install_workload cluster2-aws worker-2 "$W/agent2-state" "$(printf '%s\n' \
    '                  - {name: RUNTIME_NAME, value: runc}' \
    '                  - {name: RESTORE_ENABLED, value: "true"}' \
    "                  - {name: WATCH_APIS, value: \"cluster1-azure=$LAB_CLUSTER1_AZURE_URL\"}")" "${C2[@]}"
  # The operator reaches the workload clusters as its own service account there (least privilege).
  pods_operator_kubeconfig cluster1-azure "$LAB_CLUSTER1_AZURE_URL" "$W/kubeconfigs/cluster1-azure.kubeconfig" "${C1[@]}"
  pods_operator_kubeconfig cluster2-aws "$LAB_CLUSTER2_AWS_URL" "$W/kubeconfigs/cluster2-aws.kubeconfig" "${C2[@]}"
fi

step "GitOps sync of cluster1-azure: $(render_apply cluster1-azure "${C1[@]}")"
pod_running() { [ "$("$@" get pods -n default -l app=counter -o 'jsonpath={.items[0].status.phase}')" = Running ]; }
wait_for "counter pod Running on worker-1" 90 pod_running "${C1[@]}"
src_pod=$("${C1[@]}" get pods -n default -l app=counter -o 'jsonpath={.items[0].metadata.name}')
src_dir="$W/worker-1/pods/default_${src_pod}_counter"
count_start=$(bash hack/runc-pod.sh count "$src_dir") t_count_start=$(date +%s.%N)
step "counter runs on worker-1 as pod $src_pod (runc + busybox), count=$count_start"

step "management cluster: CRDs, kubeconfig/registry/Git Secrets, the ClusterPolicy"
"${MGMT[@]}" apply --server-side --force-conflicts --field-manager transition-e2e -k crds/yaml >/dev/null
"${MGMT[@]}" wait --for condition=Established --timeout 60s $(for f in crds/yaml/*.*.yaml; do f=${f##*/}; echo "crd/${f%.yaml}"; done) >/dev/null
"${MGMT[@]}" create namespace transition-system --dry-run=client -o yaml | "${MGMT[@]}" apply -f - >/dev/null
for c in cluster1-azure cluster2-aws; do
  "${MGMT[@]}" create secret generic "$c-kubeconfig" -n default --from-file=value="$W/kubeconfigs/$c.kubeconfig" \
    --dry-run=client -o yaml | "${MGMT[@]}" apply -f - >/dev/null
done
"${MGMT[@]}" create secret generic registry-credentials -n default --from-literal=username="$LAB_REGISTRY_USER" \
  --from-file=password="$W/registry-password" --dry-run=client -o yaml | "${MGMT[@]}" apply -f - >/dev/null
printf %s "$LAB_GIT_PASSWORD" >"$W/git-password" && chmod 0600 "$W/git-password"
"${MGMT[@]}" create secret generic git-credentials -n default --from-literal=username="$LAB_GIT_USER" \
  --from-file=password="$W/git-password" --dry-run=client -o yaml | "${MGMT[@]}" apply -f - >/dev/null
cat >"$W/policy.yaml" <<EOF
apiVersion: transition.dcnlab.ssu.ac.kr/v1
kind: ClusterPolicy
metadata:
  name: counter-policy
  namespace: default
spec:
  clusterSelector:
    name: cluster1-azure
    repo: $GIT_URL
    repoType: git
  selectMode: Specific
  packageSelectors:
    - name: counter
      packagePath: catalog/counter
      packageType: Stateful
      liveStatePackage: true
      backupInformation:
        - name: every-20s
          backupType: Schedule
          schedulePeriod: "${E2E_SCHEDULE:-*/20 * * * * *}"
  targetClusterPolicy:
    preferClusters:
      - name: cluster2-aws
        repoType: git
        weight: 100
  faultDetection:
    leaseFreshSeconds: 8
EOF
"${MGMT[@]}" apply -f "$W/policy.yaml" >/dev/null

operator_runs=0
operator_keys=() agent_keys=()
if [ "$encrypt" = 1 ]; then
  operator_keys=(--archive-identity-file "$K/archive-identities" --image-encryption-keys-dir "$K/image-encryption"
    --image-signing-key-file "$K/signing-key.asc")
  agent_keys=(--encryption-recipients-file "$K/archive-recipients")
fi
# run_operator IDENTITY HEARTBEAT_PORT METRICS_PORT LOG — one operator replica (leader election on).
run_operator() {
  operator_runs=$((operator_runs + 1))
  HOSTNAME="$1" PHASE_PAUSE_MS="${PHASE_PAUSE_MS:-0}" "${E2E_OPERATOR_BIN:-$BIN/transition-operator}" --kubeconfig "$LAB_MGMT_KUBECONFIG" \
    --metrics-addr "127.0.0.1:$3" --heartbeat-addr "127.0.0.1:$2" \
    --heartbeat-tokens-file "$W/heartbeat-tokens" --workload-kubeconfig-dir "$W/kubeconfigs" \
    --registry-url "http://$LAB_REGISTRY" --registry-repository checkpoints --registry-secret registry-credentials \
    --s3-endpoint "$LAB_S3_ENDPOINT" --s3-bucket "$LAB_S3_BUCKET" --s3-access-key-file "$W/s3-access" \
    --s3-secret-key-file "$W/s3-secret" --git-secret git-credentials --git-cache-dir "$W/git-cache" \
    --verify-timeout-seconds 180 --resync-seconds 30 --leader-election --operator-namespace transition-system \
    "${operator_keys[@]}" >>"$W/$4" 2>&1 &
}
start_operator() { run_operator e2e-operator "$hb_port" "$metrics_port" operator.log; operator_pid=$!; }
start_operator_b() { run_operator e2e-operator-b "$hb_port_b" "$metrics_port_b" operator-b.log; operator_b_pid=$!; }
# supervise — in chaos mode the two replicas stand in for a Deployment's Pods: a replica that
# exited (it lost the Lease while the management API was down: the operator then exits, as
# controller-runtime's managers do, and relies on the kubelet) is started again, as the kubelet
# restarts the container.
replica_restarts=0
supervise() {
  [ "$chaos" = 1 ] || return 0
  local rc
  if [ -n "$operator_pid" ] && ! kill -0 "$operator_pid" 2>/dev/null; then
    rc=0; wait "$operator_pid" 2>/dev/null || rc=$?
    step "chaos: replica e2e-operator exited (status $rc); started again, as its Deployment would"
    replica_restarts=$((replica_restarts + 1)); start_operator
  fi
  if [ -n "$operator_b_pid" ] && ! kill -0 "$operator_b_pid" 2>/dev/null; then
    rc=0; wait "$operator_b_pid" 2>/dev/null || rc=$?
    step "chaos: replica e2e-operator-b exited (status $rc); started again, as its Deployment would"
    replica_restarts=$((replica_restarts + 1)); start_operator_b
  fi
}
# Where agents send heartbeats: the operator, or in chaos mode the Service stand-in in front of both.
agent_hb_port=$hb_port
# Each phase pauses 3 s (a requeue, not a sleep) so the kill loop below, which also does the
# GitOps stand-in's renders, sees every phase.
[ "$kill_phases" = 1 ] || [ "$chaos" = 1 ] && export PHASE_PAUSE_MS=3000
if [ "$pods" = 1 ]; then
  step "pods: kubectl apply -k of the management install (CRDs, operator Deployment, Services, RBAC)"
  pods_install_management
  wait_for "the operator's Pod Running and Ready on mgmt-1" 180 pods_ready "${MGMT[@]}"
  wait_for "the checkpoint-agent Pod Running and Ready on worker-1" 120 pods_ready "${C1[@]}"
  wait_for "the checkpoint-agent Pod Running and Ready on worker-2" 120 pods_ready "${C2[@]}"
  agent_metrics_port=""
else
  step "starting transition-operator (heartbeats on :$hb_port, metrics on :$metrics_port)"
  start_operator
  if [ "$chaos" = 1 ]; then
    hb_port_b=$(free_port) metrics_port_b=$(free_port) agent_hb_port=$(free_port)
    step "chaos: a second replica (heartbeats on :$hb_port_b) and the Service stand-in on :$agent_hb_port"
    start_operator_b
    python3 hack/service-standin.py --for "$W" "$agent_hb_port" "$hb_port" "$hb_port_b" >"$W/service-standin.log" 2>&1 &
    pids+=($!)
  fi
  agent_metrics_port=$(free_port)
  step "starting checkpoint-agent on worker-1 (watches the shim's checkpoint folder, heartbeats every 1 s)"
  "$BIN/checkpoint-agent" --node-name worker-1 --cluster-name cluster1-azure --no-kube \
    --s3-endpoint "$LAB_S3_ENDPOINT" --s3-access-key-file "$W/s3-access" --s3-secret-key-file "$W/s3-secret" \
    --checkpoint-dir "$W/worker-1/checkpoints" --state-dir "$W/agent-state" --metrics-addr "127.0.0.1:$agent_metrics_port" \
    --controller-url "http://127.0.0.1:$agent_hb_port/heartbeat" --heartbeat-token-file "$W/heartbeat-token" "${agent_keys[@]}" \
    >"$W/agent.log" 2>&1 &
  agent_pid=$!
  # The agent on the target's worker reports what it can restore: real CRIU and runc versions and
  # the kernel; the lab's "runtime" is the kubelet shim restoring with runc + CRIU directly (no
  # containerd/CRI-O config to read), so restore is declared on. It is also a vantage point: it
  # checks the source API, so the operator can tell a partition from a source outage.
  step "starting checkpoint-agent on worker-2 (cluster2-aws): reports its restore capability"
  mkdir -p "$W/worker-2/checkpoints"
  "$BIN/checkpoint-agent" --node-name worker-2 --cluster-name cluster2-aws --no-kube \
    --s3-endpoint "$LAB_S3_ENDPOINT" --s3-access-key-file "$W/s3-access" --s3-secret-key-file "$W/s3-secret" \
    --checkpoint-dir "$W/worker-2/checkpoints" --state-dir "$W/agent2-state" --metrics-addr "127.0.0.1:$(free_port)" \
    --controller-url "http://127.0.0.1:$agent_hb_port/heartbeat" --heartbeat-token-file "$W/heartbeat-token2" "${agent_keys[@]}" \
    --runtime runc --restore-enabled true --criu-bin "$LAB_CRIU" --runc-bin "$(command -v runc)" \
    --watch-api "cluster1-azure=$LAB_CLUSTER1_AZURE_URL" \
    >"$W/agent2.log" 2>&1 &
  agent2_pid=$!
fi

if [ "$encrypt" = 1 ]; then
  # Where the shims fetch signatures: the operator's lookaside, served by the leader on the
  # address the agents send heartbeats to (in chaos mode the Service stand-in in front of both
  # replicas, so it follows the Lease; HTTPS in pods mode).
  scheme=http; [ "$pods" = 1 ] && scheme=https
  printf 'docker:\n  %s:\n    lookaside: %s://127.0.0.1:%s/sigstore\n' "$LAB_REGISTRY" "$scheme" "$agent_hb_port" >"$K/registries.d/transition.yaml"
fi
ckpt="checkpoint-counter-policy-$src_pod-counter"
ck() { "${MGMT[@]}" get checkpoint "$ckpt" -n default -o json 2>/dev/null; }
has_image() { ck | jget 'd.get("status",{}).get("lastCheckpointImage")' | grep -q '@sha256:'; }
wait_for "the first scheduled checkpoint of $ckpt" 120 has_image
step "scheduled checkpoint done: $(ck | jget 'd["status"]["lastCheckpointImage"]')"
if [ "$encrypt" = 1 ]; then
  # The mark the counter holds only in its heap (above) is in the archive — in CRIU's memory
  # pages — and nowhere in S3's or the registry's files: they hold ciphertext only. The archive is
  # read back from its S3 object with the age CLI (the installed agents delete the node's copy
  # after the upload; where it is still there, it is checked too).
  mark_in_pages() {
    python3 - "$1" "$memory_mark" <<'PY'
import sys, tarfile
with tarfile.open(sys.argv[1]) as t:
    hit = [m.name for m in t if m.isfile() and m.name.startswith("checkpoint/pages-") and sys.argv[2].encode() in t.extractfile(m).read()]
sys.exit(0 if hit else 1)
PY
  }
  # The archive of the run that made the image (a newer one may still be on its way to S3).
  built_key=$(ck | jget '([h.get("archiveKey") or "" for h in d["status"].get("history",[]) if h.get("image") == d["status"].get("lastCheckpointImage")] or [""])[0]')
  [ -n "$built_key" ] || die "the first image's run names no archive key"
  node_archive="$W/worker-1/checkpoints/${built_key##*/}"
  if [ -f "$node_archive" ]; then
    mark_in_pages "$node_archive" || die "the memory mark is not in the memory pages of the node's archive $node_archive"
  fi
  registry_root="$TRANSITION_LAB_DIR/registry/data"
  leaks=$(grep -rlF -- "$memory_mark" "$LAB_S3_ROOT" "$registry_root" 2>/dev/null || true)
  [ -z "$leaks" ] || die "plaintext of a checkpoint found in S3 or the registry: $leaks"
  obj=$(find "$LAB_S3_ROOT" -type f -path "*/$built_key" | head -1)
  [ -n "$obj" ] || die "no S3 object for $built_key"
  age -d -i "$K/archive-identities" -o "$W/decrypted.tar" "$obj" && mark_in_pages "$W/decrypted.tar" \
    || die "the S3 object $built_key does not decrypt (age CLI) to an archive whose memory pages hold the mark"
  rm -f "$W/decrypted.tar"
  step "encrypted: the memory mark is in the archive's memory pages (age decrypts the S3 object to it), in no file of S3 ($(find "$LAB_S3_ROOT" -type f | wc -l) files) or the registry ($(find "$registry_root" -type f | wc -l) files)"
fi

step "kubectl transition checkpoint counter-policy (the CLI's own fresh checkpoint, followed to its image)"
NO_COLOR=1 "${KT[@]}" checkpoint counter-policy --timeout 120 >&2 || die "kubectl transition checkpoint failed"
token="e2e-$run_id"
step "manual trigger: checkpoint-now=$token on the ClusterPolicy"
"${MGMT[@]}" annotate clusterpolicy counter-policy -n default --overwrite "transition.dcnlab.ssu.ac.kr/checkpoint-now=$token" >/dev/null
manual_done() { ck | jget 'sum(1 for h in d["status"].get("history",[]) if h.get("trigger")=="manual:'"$token"'")' | grep -qx 1; }
wait_for "the manual checkpoint" 90 manual_done
image=$(ck | jget '[h for h in d["status"]["history"] if h.get("trigger")=="manual:'"$token"'"][0]["image"]')
step "manual checkpoint done: $image"
sleep 3
manual_runs=$(ck | jget 'sum(1 for h in d["status"].get("history",[]) if h.get("trigger")=="manual:'"$token"'")')
step "kubectl transition status (before the node loss):"
NO_COLOR=1 "${KT[@]}" status >&2 || die "kubectl transition status failed"

if [ -n "${E2E_MEASURE_RUNS:-}" ]; then
  # The source API server's own request counters, by verb and resource (v1.20 has no client label;
  # the kubelet shim and the controllers add the same load to every measurement).
  source_requests() {
    "${C1[@]}" get --raw /metrics | python3 -c '
import re, sys, json
total, by = 0, {}
for line in sys.stdin:
    if not line.startswith("apiserver_request_total{"): continue
    labels, value = line.rsplit(" ", 1)
    d = dict(re.findall(r"(\w+)=\"([^\"]*)\"", labels))
    n = int(float(value)); total += n
    key = d.get("verb", "") + " " + d.get("resource", "") + ("/" + d["subresource"] if d.get("subresource") else "")
    by[key] = by.get(key, 0) + n
print(json.dumps({"total": total, "by": by}))'
  }
  pushed() { curl -s "127.0.0.1:$metrics_port/metrics" | awk '/^transition_checkpoints_total\{outcome="pushed"\}/ {print int($2)}'; }
  before=$(source_requests) p0=$(pushed) t0=$(date +%s.%N)
  want=$((p0 + E2E_MEASURE_RUNS))
  more_runs() { [ "$(pushed)" -ge "$want" ]; }
  wait_for "$E2E_MEASURE_RUNS more checkpoint runs" $((E2E_MEASURE_RUNS * 30 + 60)) more_runs
  after=$(source_requests) t1=$(date +%s.%N)
  python3 - "$before" "$after" "$t0" "$t1" "$E2E_MEASURE_RUNS" <<'PY' | tee "$W/source-requests.json"
import json, sys
b, a = json.loads(sys.argv[1]), json.loads(sys.argv[2])
keys = set(a["by"]) | set(b["by"])
delta = {k: a["by"].get(k, 0) - b["by"].get(k, 0) for k in keys}
print(json.dumps({"runs": int(sys.argv[5]), "seconds": round(float(sys.argv[4]) - float(sys.argv[3]), 1),
                  "source_requests": a["total"] - b["total"],
                  "by": {k: v for k, v in sorted(delta.items()) if v}}))
PY
  exit 0
fi

# --- chaos mode helpers: each fault ends in a row of $W/chaos-rows.jsonl ---------------------
rows="$W/chaos-rows.jsonl"
now() { date +%s.%N; }
since() { python3 -c "import sys,time; print(round(time.time()-float(sys.argv[1]),1))" "$1"; }
failover_commits_now() {
  git -C "$W/seed" fetch -q "$AUTHED" main 2>/dev/null
  git -C "$W/seed" log --format=%s FETCH_HEAD 2>/dev/null | grep -c "^transition: fail over counter from ${1:-cluster1-azure} " || true
}
# row FAULT WHAT_THE_SYSTEM_DID COMMITS STATE_LOST RECOVERY_S LOST_OR_DUPLICATED
row() {
  python3 -c 'import json,sys; k=["fault","did","commits","state_lost","recovery_s","lost_or_duplicated"]; print(json.dumps(dict(zip(k,sys.argv[1:]))))' "$@" >>"$rows"
  log "  chaos row: $1 | $2 | commits $3 | recovered in $5 s | $6"
}
if [ "$chaos" = 1 ]; then
  # --- chaos before the node loss: the checkpoint pipeline's dependencies fail -------------------
  runs_done() { ck | jget 'len(d.get("status",{}).get("history",[]))'; }
  last_image() { ck | jget 'd.get("status",{}).get("lastCheckpointImage")'; }
  metric() { { curl -s --max-time 5 "127.0.0.1:$1/metrics" || true; } | awk -v m="$2" '$1 == m {s += $2} END {print int(s)}'; }
  newest_archive() { { ls -t "$W"/worker-1/checkpoints/*.tar 2>/dev/null || true; } | head -1; }

  # S3 down across a scheduled run: the agent's upload and the operator's read both fail.
  step "chaos: S3 down for 25 s across a scheduled checkpoint run"
  # A run already past the kubelet call would wait for S3 with its archive written before the
  # fault and hold back the next run, so the fault waits for no run to be in flight.
  no_run_in_flight() { [ "$(ck | jget 'd.get("status",{}).get("phase")')" != Running ]; }
  wait_for "no checkpoint run in flight" 90 no_run_in_flight
  img0=$(last_image) before_archive=$(newest_archive)
  agent_req0=$(metric "$agent_metrics_port" checkpoint_agent_s3_requests_total)
  touch "$W/s3-down-marker"
  bash hack/lab.sh fault s3
  ts=$(now)
  # An archive the kubelet wrote after S3 went down (not one already on its way).
  new_archive() { a=$(newest_archive); [ -n "$a" ] && [ "$a" != "$before_archive" ] && [ "$a" -nt "$W/s3-down-marker" ]; }
  wait_for "a checkpoint archive written while S3 is down" 30 new_archive
  held=$(newest_archive)
  while [ "$(python3 -c "import sys,time; print(int(time.time()-float(sys.argv[1])))" "$ts")" -lt 25 ]; do sleep 1; done
  [ -f "$held" ] || die "chaos: the archive $held left the node while S3 was down"
  s3_msg=$(ck | jget '(d.get("status") or {}).get("message") or ""')
  read_retries=$(metric "$metrics_port" transition_archive_read_retries_total)
  agent_req1=$(metric "$agent_metrics_port" checkpoint_agent_s3_requests_total)
  [[ "$s3_msg" == *"S3 unreachable"* ]] || die "chaos: the Checkpoint status does not say S3 is unreachable: $s3_msg"
  [ "${read_retries:-0}" -gt 0 ] || die "chaos: no archive read retries counted while S3 was down"
  bash hack/lab.sh revive s3
  tr3=$(now)
  # image_of NAME: the image recorded for the archive file NAME (empty until its run finished).
  image_of() { ck | jget '([h.get("image") for h in d.get("status",{}).get("history",[]) if (h.get("archiveKey") or "").endswith("/'"$1"'") and h.get("image")] or [""])[0]'; }
  # image_after EPOCH: the newest image recorded by a run that finished after EPOCH.
  image_after() { ck | jget '([h["image"] for h in d.get("status",{}).get("history",[]) if h.get("image") and __import__("datetime").datetime.fromisoformat(h["time"].replace("Z","+00:00")).timestamp() >= int(float('"$1"'))] or [""])[-1]'; }
  held_image() { [ -n "$(image_of "$(basename "$held")")" ]; }
  wait_for "the image of the archive written while S3 was down" 150 held_image
  # The object in S3 (s3s-fs keeps objects as files) is byte for byte the archive on the node.
  obj=$(find "$LAB_S3_ROOT" -type f -name "$(basename "$held")" | head -1)
  same_as_held() {
    if [ "$encrypt" = 1 ]; then age -d -i "$K/archive-identities" "$obj" | cmp -s - "$held"; else cmp -s "$obj" "$held"; fi
  }
  [ -n "$obj" ] && same_as_held || die "chaos: the object for $(basename "$held") is missing or differs from the archive on the node"
  row "S3 down for 25 s across a scheduled checkpoint (agent upload + operator read)" \
    "the agent kept the archive on the node and retried ($((agent_req1 - agent_req0)) S3 requests); the operator waited, status '…${s3_msg#*: S3 unreachable}', $read_retries read retries counted; the run finished after S3 returned; the object equals the archive" \
    "0" "none (the run completed; RPO grew by the outage)" "$(since "$tr3")" "none (one object per archive)"

  # Registry down during the push: no half-written tag; one image once it is back.
  step "chaos: registry down for 25 s during a scheduled run's push"
  img0=$(last_image)
  bash hack/lab.sh fault registry
  treg=$(now)
  sleep 25
  reg_msg=$(ck | jget '(d.get("status") or {}).get("message") or ""')
  reg_phase=$(ck | jget '(d.get("status") or {}).get("phase") or ""')
  bash hack/lab.sh revive registry
  trr=$(now)
  pushed_after() { [ -n "$(image_after "$trr")" ]; }
  wait_for "a checkpoint image pushed after the registry came back" 150 pushed_after
  img1=$(image_after "$trr")
  repo_path=$(echo "$img1" | cut -d@ -f1 | cut -d/ -f2- | sed 's/:[^/]*$//')
  tags=$(curl -fsS -u "$LAB_REGISTRY_USER:$LAB_REGISTRY_PASSWORD" "http://$LAB_REGISTRY/v2/$repo_path/tags/list" | jget '" ".join(d.get("tags") or [])')
  broken=""
  for t in $tags; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -u "$LAB_REGISTRY_USER:$LAB_REGISTRY_PASSWORD" -I \
      -H 'Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json' \
      "http://$LAB_REGISTRY/v2/$repo_path/manifests/$t")
    [ "$code" = 200 ] || broken="$broken $t($code)"
  done
  [ -z "$broken" ] || die "chaos: tags that do not resolve after the registry outage:$broken"
  skopeo inspect --tls-verify=false --creds "$LAB_REGISTRY_USER:$LAB_REGISTRY_PASSWORD" "docker://$img1" >/dev/null \
    || die "chaos: skopeo cannot inspect $img1"
  row "registry down for 25 s during a scheduled run's push" \
    "every push failed and the run retried with backoff (after 25 s: phase $reg_phase, status '…${reg_msg: -110}'; a run gives up after 5 attempts and the next trigger starts afresh); after the registry returned one image was pushed; every tag resolves ($(echo "$tags" | wc -w) tags, skopeo inspects the new one)" \
    "0" "none (RPO grew by the outage)" "$(since "$trr")" "none (no half-written tag)"
  # The node loss below measures the state a failover loses in normal operation: it waits for
  # the image of a run whose slot came after the registry returned (the held run's archive was
  # taken during the outage: its image is older state, which the row above already counts).
  slot_image_after() { ck | jget '([h["image"] for h in d.get("status",{}).get("history",[]) if h.get("image") and (h.get("trigger") or "").startswith("schedule:") and __import__("datetime").datetime.fromisoformat(h["trigger"][9:].replace("Z","+00:00")).timestamp() >= int(float('"$1"'))] or [""])[-1]'; }
  fresh_slot_image() { [ -n "$(slot_image_after "$trr")" ]; }
  wait_for "the image of a scheduled run whose slot came after the registry returned" 120 fresh_slot_image
fi
step "killing worker-1: checkpoint-agent, kubelet shim and the counter container (a node loss)"
count_at_kill=$(bash hack/runc-pod.sh count "$src_dir") t_count_kill=$(date +%s.%N)
chaos_state=""
chaos_before_failover() {
  step "chaos: a human pushes to the GitOps repository as the failover starts"
  local h="$W/human"
  rm -rf "$h" && git clone -q "$AUTHED" "$h"
  printf '# Owned by the platform team; changed during a failover by hack/e2e.sh (chaos mode).\n' >"$h/clusters/OWNERS.md"
  git -C "$h" -c user.name=human -c user.email=human@example.invalid add -A
  git -C "$h" -c user.name=human -c user.email=human@example.invalid commit -qm "platform: OWNERS for clusters/ (racing the failover)"
  git -C "$h" push -q "$AUTHED" main
  human_sha=$(git -C "$h" rev-parse HEAD)
  step "chaos: Git server down until 12 s into Committing"
  bash hack/lab.sh fault git
  chaos_state=git_down
}
[ "$chaos" = 1 ] && chaos_before_failover
rate=$(python3 -c "import sys; a,b,t1,t2=map(float,sys.argv[1:]); print(round((b-a)/max(t2-t1,0.1),2))" "$count_start" "$count_at_kill" "$t_count_start" "$t_count_kill")
{ [ -z "$agent_pid" ] || kill "$agent_pid" 2>/dev/null || true; }; agent_pid=""  # pods mode: the agent Pod dies with its node below
kill -9 "$shim1_pid" 2>/dev/null; shim1_pid=""
for d in "$W"/worker-1/pods/*/; do bash hack/runc-pod.sh stop "$d" >/dev/null 2>&1; done
t_kill=$(date +%s.%N)

tr_name="counter-policy-counter-1"  # <policy>-<package>-<occurrence>
trj() { "${MGMT[@]}" get transitions.transition.dcnlab.ssu.ac.kr "$tr_name" -n default -o json 2>/dev/null; }
tr_exists() { trj >/dev/null; }
wait_for "the fault to become Transition $tr_name" 90 tr_exists
t_detected=$(date +%s.%N)
step "fault detected: Transition $tr_name created ($(trj | jget 'd["spec"]["trigger"].get("reason")'))"

# --- chaos mode: one fault per failover phase, each ending in a row ---------------------------
mgmt_ready() { "${MGMT[@]}" get --raw /readyz >/dev/null 2>&1; }
c2_ready() { "${C2[@]}" get --raw /readyz >/dev/null 2>&1; }
phase_now() { trj | jget 'd.get("status",{}).get("phase")'; }
# wait_phase_leaves PHASE SECONDS — until the Transition is past PHASE; sets $left_to to the phase
# then. (Not run in a $(…) subshell: supervise must restart replicas in this shell.)
left_to=""
wait_phase_leaves() {
  local p end=$((SECONDS + $2))
  while [ $SECONDS -lt $end ]; do
    supervise
    p=$(phase_now)
    if [ -n "$p" ] && [ "$p" != "$1" ]; then left_to=$p; return 0; fi
    sleep 0.5
  done
  left_to=$1; return 1
}
tr_message() { trj | jget 'd.get("status",{}).get("message") or ""' | tr '|' '/' | cut -c1-140; }
# The faults do not depend on catching a phase by polling (a loaded machine can run Fencing to
# Verifying between two polls): each one holds the Transition where it is until the next.
#   node loss  → a human push, then the Git server down: the Transition must wait in Committing;
#   12 s into Committing → the target's API server down, then Git back: it commits once and must
#                wait in Syncing/Verifying (the workload cannot be seen Ready);
#   meanwhile  → the leader SIGKILLed: the standby takes the Lease and resumes;
#   20 s later → the target back: it completes with the workload Ready.
committing_seen_at="" killed_leader="" target_up_at=""
leader() { "${MGMT[@]}" get lease transition-operator -n transition-system -o 'jsonpath={.spec.holderIdentity}' 2>/dev/null; }
chaos_kill_leader() {
  local holder pid tk took new_holder at_phase
  holder=$(leader) at_phase=$(phase_now)
  step "chaos: SIGKILL of the leader ($holder) while the Transition waits in $at_phase"
  tk=$(now)
  if [ "$holder" = e2e-operator-b ]; then pid=$operator_b_pid; else pid=$operator_pid; fi
  kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  other_leads() { local h; h=$(leader); [ -n "$h" ] && [ "$h" != "$holder" ]; }
  wait_for "the standby holding the Lease" 45 other_leads
  new_holder=$(leader) took=$(since "$tk")
  # The Deployment restarts the killed Pod: it comes back as the standby.
  if [ "$holder" = e2e-operator-b ]; then start_operator_b; else start_operator; fi
  killed_leader=$holder
  row "leader replica SIGKILLed in $at_phase (2 replicas behind the Lease)" \
    "$new_holder took the Lease after it expired (Lease 15 s) and resumed the persisted phase; the killed $holder came back as the standby" \
    "$(failover_commits_now)" "none" "$took" "none"
}
# chaos_tick — one step of the state machine above; returns 0 when it acted (re-read the phase).
chaos_tick() {
  local p next tr kept msg
  p=$(phase_now)
  case "$chaos_state" in
    git_down)
      case "$p" in
        "") return 1 ;;
        Pending|Fencing) return 1 ;;
        Committing) [ -n "$committing_seen_at" ] || committing_seen_at=$SECONDS
          [ $((SECONDS - committing_seen_at)) -ge 12 ] || return 1 ;;
        *) die "chaos: the Transition reached $p while the Git server was down" ;;
      esac
      msg=$(tr_message)
      step "chaos: the target's (cluster2-aws) API server down, then the Git server back"
      bash hack/lab.sh fault apiserver-cluster2-aws
      target_down_at=$(now)
      bash hack/lab.sh revive git
      tr=$(now)
      wait_phase_leaves Committing 120 || die "chaos: still Committing 120 s after the Git server came back: $(tr_message)"
      next=$left_to
      kept=no
      git -C "$W/seed" fetch -q "$AUTHED" main && git -C "$W/seed" merge-base --is-ancestor "$human_sha" FETCH_HEAD && kept=yes
      [ "$kept" = yes ] || die "chaos: the human commit $human_sha is not in the history after the failover commit"
      row "Git server down from the node loss until 12 s into Committing, after a human push racing the failover" \
        "held in Committing, no commit, no later phase (status '${msg:0:150}…'); with the server back it fetched, put its commit on top of the human one and pushed, then $next" \
        "$(failover_commits_now)" "none" "$(since "$tr")" "none (human commit ${human_sha:0:8} kept)"
      chaos_state=target_down
      return 0 ;;
    target_down)
      [ "$p" != Completed ] || die "chaos: Completed while the target's API server was down"
      [ "$p" != Failed ] || die "chaos: Failed while the target's API server was down: $(tr_message)"
      if [ -z "$killed_leader" ]; then chaos_kill_leader; return 0; fi
      [ "$(python3 -c "import sys,time; print(int(time.time()-float(sys.argv[1])))" "$target_down_at")" -ge 20 ] || return 1
      target_msg=$(tr_message) target_phase=$p
      bash hack/lab.sh revive apiserver-cluster2-aws
      target_up_at=$(now)
      wait_for "cluster2-aws API server back" 90 c2_ready
      chaos_state=done
      return 0 ;;
  esac
  return 1
}

killed=""
synced=""
deadline=$((SECONDS + 240))
# kill_in_phase PHASE — with --kill-operator-in-each-phase, SIGKILL + restart once per phase.
kill_in_phase() {
  if [ "$kill_phases" = 1 ] && [ -n "$1" ] && [[ " Fencing Committing Syncing Verifying " == *" $1 "* ]] && [[ " $killed " != *" $1 "* ]]; then
    step "kill -9 transition-operator during phase $1, then restart it"
    kill -9 "$operator_pid" 2>/dev/null || true; wait "$operator_pid" 2>/dev/null || true
    killed="$killed $1"
    start_operator
  fi
}
while :; do
  supervise
  phase=$(trj | jget 'd.get("status",{}).get("phase")')
  kill_in_phase "$phase"
  if [ "$chaos" = 1 ] && chaos_tick; then
    deadline=$((SECONDS + 240))
    continue
  fi
  # (The GitOps agent of a cluster whose API server is down cannot apply either.)
  if [ -z "$synced" ] && [ "$chaos_state" != target_down ]; then
    if git -C "$W/seed" fetch -q "$AUTHED" main 2>/dev/null && git -C "$W/seed" show FETCH_HEAD:clusters/cluster2-aws/kustomization.yaml 2>/dev/null | grep -q 'catalog/counter'; then
      synced=$(render_apply cluster2-aws "${C2[@]}")
      step "GitOps sync of cluster2-aws at $synced (standing in for Argo CD / Flux)"
      src_sync=$(render_apply cluster1-azure "${C1[@]}")
      step "GitOps sync of cluster1-azure at $src_sync: the counter left the source (fenced)"
      # The syncs take seconds: look at the phase again so a short one is not missed.
      phase=$(trj | jget 'd.get("status",{}).get("phase")')
      kill_in_phase "$phase"
    fi
  fi
  [ "$phase" = Completed ] || [ "$phase" = Failed ] && break
  [ $SECONDS -lt $deadline ] || die "Transition still in phase $phase after 240s"
  sleep 0.5
done
[ "$phase" = Completed ] || die "Transition $tr_name ended $phase: $(trj | jget 'd["status"].get("message")')"
t_done=$(date +%s.%N)
if [ "$chaos" = 1 ]; then
  [ "$chaos_state" = done ] || die "chaos: the faults did not all run (state $chaos_state)"
  c2_counter_ready() { [ "$("${C2[@]}" get deployment counter -n default -o 'jsonpath={.status.readyReplicas}' 2>/dev/null || echo 0)" -ge 1 ]; }
  wait_for "the counter Ready on cluster2-aws after Completed" 90 c2_counter_ready
  row "target API server (cluster2-aws) down from the commit on (Syncing/Verifying), $(python3 -c "import sys; print(round(float(sys.argv[2])-float(sys.argv[1])))" "$target_down_at" "$target_up_at") s" \
    "waited in $target_phase, never Completed while down (status '${target_msg:0:150}…'); after it returned: the GitOps sync, the restore, Completed with the counter Ready on the target" \
    "$(failover_commits_now)" "none" "$(since "$target_up_at")" "none"
fi

dst_pod=$("${C2[@]}" get pods -n default -l app=counter -o 'jsonpath={.items[0].metadata.name}')
dst_dir="$W/worker-2/pods/default_${dst_pod}_counter"
restored_from=$(cat "$dst_dir/restored-from" 2>/dev/null || echo "")
sleep 2
count_after=$(bash hack/runc-pod.sh count "$dst_dir")
t_running=$(trj | jget 'd["status"]["completedAt"]')

# Checks.
co="$W/final" && rm -rf "$co" && git clone -q "$AUTHED" "$co"
failover_commits=$(git -C "$co" log --format=%s | grep -c '^transition: fail over counter' || true)
# The checkpoint image is pinned to its workload + container in the target's folder (patch file).
digest_git=$(cat "$co"/clusters/cluster2-aws/*.yaml | grep -o 'sha256:[0-9a-f]\{64\}' | head -1)
repo_path=$(echo "$image" | cut -d@ -f1 | cut -d/ -f2-)
digest_registry=$(curl -fsS -u "$LAB_REGISTRY_USER:$LAB_REGISTRY_PASSWORD" -o /dev/null -D - \
  -H 'Accept: application/vnd.oci.image.index.v1+json' \
  "http://$LAB_REGISTRY/v2/$repo_path/manifests/$digest_git" | tr -d '\r' | awk -F': ' 'tolower($1)=="docker-content-digest"{print $2}')
src_left=$("${C1[@]}" get deployment counter -n default --ignore-not-found -o name)
taint=$("${C1[@]}" get node worker-1 -o 'jsonpath={.spec.taints[?(@.key=="node.kubernetes.io/out-of-service")].effect}' 2>/dev/null || true)
can_restore=$(trj | jget '[c["status"] + " " + c["message"] for c in d["status"]["conditions"] if c["type"] == "TargetCanRestore"][0]' 2>/dev/null || true)

trj >"$W/transition.json"
python3 - "$W/transition.json" "$t_kill" "$t_detected" "$t_done" <<'PY' >&2
import json, sys, datetime
t = json.load(open(sys.argv[1])); kill, det, done = map(float, sys.argv[2:5])
s = t["status"]
print("\n  timeline (node killed at t=0)")
print(f"  {'detection (heartbeats stop -> Transition)':<44} {det-kill:7.1f} s")
for p in s.get("phaseTimings", []):
    print(f"  {'  ' + p['phase']:<44} {p.get('durationMs', 0)/1000:7.1f} s")
print(f"  {'total recovery (kill -> Completed)':<44} {done-kill:7.1f} s")
for c in s.get("commits", []):
    print(f"  commit {c['sha'][:12]} in {c['repo']} ({c.get('path')})")
PY

python3 - "$W/summary.json" <<PY
import json, sys
json.dump({
  "counter_at_checkpoint": int("${restored_from:-0}" or 0),
  "counter_at_kill": int("${count_at_kill:-0}" or 0),
  "counter_after": int("${count_after:-0}" or 0),
  "manual_runs_for_token": int("${manual_runs:-0}" or 0),
  "failover_commits": int("${failover_commits:-0}" or 0),
  "digest_in_git": "$digest_git",
  "digest_in_registry": "$digest_registry",
  "image": "$image",
  "phase": "$phase",
  "operator_kills": "${killed# }".split() if "${killed}".strip() else [],
  "operator_runs": $operator_runs,
  "source_deployment_left": "$src_left",
  "out_of_service_taint": "$taint",
  "counts_per_second": $rate,
  "state_lost_seconds": round((int("${count_at_kill:-0}" or 0) - int("${restored_from:-0}" or 0)) / max($rate, 0.01), 1),
  "detection_seconds": round($t_detected - $t_kill, 2),
  "recovery_seconds": round($t_done - $t_kill, 2),
}, open(sys.argv[1], "w"), indent=2)
PY
cat "$W/summary.json" >&2

ok=1
check() { if eval "$2"; then log "  ok    $1"; else log "  FAIL  $1"; ok=0; fi; }
log "checks:"
check "counter continued from its checkpoint ($restored_from -> $count_after)" '[ -n "$restored_from" ] && [ "$count_after" -gt "$restored_from" ]'
lost=$(jget 'd["state_lost_seconds"]' <"$W/summary.json")
check "state lost at most one schedule period + pipeline (${lost}s of counting; $restored_from of $count_at_kill)" '[ "$restored_from" -le "$count_at_kill" ] && python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) <= 25 else 1)" "$lost"'
check "manual token handled exactly once ($manual_runs)" '[ "$manual_runs" = 1 ]'
check "exactly one failover commit ($failover_commits)" '[ "$failover_commits" = 1 ]'
check "digest in Git equals digest in the registry ($digest_git)" '[ -n "$digest_git" ] && [ "$digest_git" = "$digest_registry" ]'
check "Transition Completed" '[ "$phase" = Completed ]'
check "the target's agent said it can restore ($can_restore)" '[[ "$can_restore" == "True node worker-2"* ]]'
check "source fenced: package gone from cluster1 and node tainted out-of-service" '[ -z "$src_left" ] && [ "$taint" = NoExecute ]'
[ "$kill_phases" = 0 ] || check "operator killed in every phase ($killed)" '[ "$(echo $killed | wc -w)" = 4 ]'
[ "$ok" = 1 ] || die "end-to-end checks failed (see $W)"
log "end to end: OK — the counter came back on cluster2-aws with its memory state"
if [ "$pods" = 1 ]; then
  pods_show mgmt "${MGMT[@]}"
  pods_show cluster2-aws "${C2[@]}"
  client_line=$("${MGMT[@]}" logs -n transition-system deploy/transition-operator 2>/dev/null | grep -m1 'management cluster client' || true)
  log "the operator Pod's log: ${client_line:-(no client line)}"
  case "$client_line" in
    *in-cluster*) ;;
    *) die "the operator Pod did not use its in-cluster configuration" ;;
  esac
fi
step "kubectl transition status (after the failover):"
NO_COLOR=1 "${KT[@]}" status >&2 || die "kubectl transition status failed"

# Failback: worker-1 is repaired; the package, protected on cluster2-aws meanwhile, goes home with
# the state it has now (a Planned move: fresh checkpoint on cluster2-aws, cluster1-azure pinned to
# it, verified there, cluster2-aws fenced last; the failover's node taint removed).
step "worker-1 repaired: kubelet shim and checkpoint-agent back"
python3 hack/kubelet-shim.py --node worker-1 --kubeconfig "$LAB_CLUSTER1_AZURE_KUBECONFIG" \
  --state-dir "$W/worker-1" --registry-user "$LAB_REGISTRY_USER" --registry-password-file "$W/registry-password" \
  "${shim1_keys[@]}" >>"$W/shim-1.log" 2>&1 &
shim1_pid=$!
if [ "$pods" = 1 ]; then
  : # the agent is the DaemonSet's Pod on worker-1: the returning shim runs it again
else
  "$BIN/checkpoint-agent" --node-name worker-1 --cluster-name cluster1-azure --no-kube \
    --s3-endpoint "$LAB_S3_ENDPOINT" --s3-access-key-file "$W/s3-access" --s3-secret-key-file "$W/s3-secret" \
    --checkpoint-dir "$W/worker-1/checkpoints" --state-dir "$W/agent-state" --metrics-addr "127.0.0.1:$agent_metrics_port" \
    --controller-url "http://127.0.0.1:$agent_hb_port/heartbeat" --heartbeat-token-file "$W/heartbeat-token" "${agent_keys[@]}" \
    >>"$W/agent.log" 2>&1 &
  agent_pid=$!
fi
NODE=worker-1 wait_for "node worker-1 Ready again" 90 node_ready "${C1[@]}"
[ "$pods" = 1 ] && wait_for "the checkpoint-agent Pod on worker-1 Running and Ready again" 120 pods_ready "${C1[@]}"
# The source node is back with its old pod's state on disk: nothing may start the counter there
# while it runs on cluster2-aws (no dual-active). The fence is Git (the package left
# clusters/cluster1-azure, so the GitOps sync pruned its Deployment) plus the out-of-service taint;
# the returning kubelet finds its old pod deleted or gone and stops instead of restarting it.
t_back=$(now)
running_on_worker1() {
  local d n=0
  # The counter's containers only (folders <namespace>_<pod>_<container>; the agent Pod runs here too).
  for d in "$W"/worker-1/pods/default_*_counter/; do
    [ -d "$d" ] && [ "$(bash hack/runc-pod.sh status "$d" 2>/dev/null)" = running ] && n=$((n + 1))
  done
  echo "$n"
}
dual=0 end=$((SECONDS + 15))
while [ $SECONDS -lt $end ]; do
  r1=$(running_on_worker1)
  # Pods serving: Ready and not being deleted (the dead node's old pod keeps its last status,
  # phase Running, until the returning kubelet finishes deleting it — not a second copy).
  p1=$("${C1[@]}" get pods -n default -l app=counter -o json 2>/dev/null | jget 'sum(1 for p in d["items"] if not p["metadata"].get("deletionTimestamp") and any(c["type"] == "Ready" and c["status"] == "True" for c in (p.get("status") or {}).get("conditions") or []))')
  [ "$r1" = 0 ] && [ "${p1:-0}" = 0 ] || { dual=1 dual_seen="$r1 containers, $p1 pods serving"; }
  sleep 1
done
c2_running=$("${C2[@]}" get deployment counter -n default -o 'jsonpath={.status.readyReplicas}' 2>/dev/null || true)
[ "$dual" = 0 ] && [ "${c2_running:-0}" -ge 1 ] || die "dual-active: the counter ran on worker-1 (at worst ${dual_seen:-?}) while cluster2-aws has ${c2_running:-0} Ready"
step "the returning source node does not run the counter (watched 15 s; cluster2-aws still serves it)"
if [ "$chaos" = 1 ]; then
  row "source node worker-1 returns after the failover (kubelet shim restarts, old pod state on disk)" \
    "no dual-active: Git no longer lists the package for cluster1-azure and its pod is gone, so the returning node started nothing (watched 15 s) while cluster2-aws served the counter" \
    "$(failover_commits_now)" "none" "n/a (nothing restarted)" "none"
fi
away_ckpt() { "${MGMT[@]}" get checkpoints -n default -l transition.dcnlab.ssu.ac.kr/cluster=cluster2-aws -o json 2>/dev/null; }
away_image() { away_ckpt | jget 'sum(1 for c in d["items"] if "@sha256:" in (c.get("status") or {}).get("lastCheckpointImage", ""))' | grep -qv '^0$'; }
wait_for "the package checkpointed in its new home (cluster2-aws)" 120 away_image
step "protected on cluster2-aws: $(away_ckpt | jget '[c["metadata"]["name"] for c in d["items"]][0]')"
count_fb_start=$(bash hack/runc-pod.sh count "$dst_dir")
fb_name="counter-policy-counter-failback"
printf '%s\n' "apiVersion: transition.dcnlab.ssu.ac.kr/v1alpha1" "kind: Transition" \
  "metadata: {name: $fb_name, namespace: default}" "spec:" "  policyRef: {name: counter-policy}" \
  "  package: counter" "  sourceCluster: cluster2-aws" "  targetCluster: cluster1-azure" \
  "  trigger: {type: Planned, reason: \"worker-1 repaired: fail back\"}" >"$W/failback.yaml"
step "failback: Transition $fb_name (Planned, cluster2-aws -> cluster1-azure) at count $count_fb_start"
"${MGMT[@]}" apply -f "$W/failback.yaml" >/dev/null
t_fb=$(date +%s.%N)
fbj() { "${MGMT[@]}" get transitions.transition.dcnlab.ssu.ac.kr "$fb_name" -n default -o json 2>/dev/null; }
home_synced="" old_fenced="" mgmt_restarted=""
deadline=$((SECONDS + 300))
while :; do
  supervise
  fb_phase=$(fbj | jget 'd.get("status",{}).get("phase")')
  if [ "$chaos" = 1 ] && [ -z "$mgmt_restarted" ]; then
    mgmt_restarted=1
    step "chaos: restarting the management API server during the failback (phase ${fb_phase:-none yet})"
    tm=$(now)
    bash hack/lab.sh fault apiserver-mgmt
    sleep 2
    bash hack/lab.sh revive apiserver-mgmt
    # 180 s: on a loaded 2-core machine the v1.20 apiserver has taken 30 s to serve, then 15–30 s per request.
    wait_for "the management API server back" 180 mgmt_ready
    restarts_before=$replica_restarts
    failover_name=$tr_name tr_name=$fb_name
    fb_was=${fb_phase:-Pending}
    wait_phase_leaves "$fb_was" 180 || die "chaos: the failback did not leave $fb_was after the management API server came back"
    fb_next=$left_to
    tr_name=$failover_name
    row "management API server restarted (down ~2 s + its start) during the failback (in $fb_was)" \
      "watches and the Lease reconnected ($((replica_restarts - restarts_before)) replica(s) had lost the Lease, exited and were restarted as by their Deployment); the failback resumed from its persisted phase ($fb_was, then $fb_next) and completed" \
      "$(failover_commits_now) failover, $(failover_commits_now cluster2-aws) failback so far" "none" "$(since "$tm")" "none"
    continue
  fi
  if git -C "$W/seed" fetch -q "$AUTHED" main 2>/dev/null; then
    if [ -z "$home_synced" ] && git -C "$W/seed" show FETCH_HEAD:clusters/cluster1-azure/kustomization.yaml 2>/dev/null | grep -q 'catalog/counter'; then
      home_synced=$(render_apply cluster1-azure "${C1[@]}")
      step "GitOps sync of cluster1-azure at $home_synced: the package is back in its home folder"
    fi
    if [ -n "$home_synced" ] && [ -z "$old_fenced" ] && ! git -C "$W/seed" show FETCH_HEAD:clusters/cluster2-aws/kustomization.yaml 2>/dev/null | grep -q 'catalog/counter'; then
      old_fenced=$(render_apply cluster2-aws "${C2[@]}")
      step "GitOps sync of cluster2-aws at $old_fenced: the counter left its temporary home (fenced)"
    fi
  fi
  [ "$fb_phase" = Completed ] || [ "$fb_phase" = Failed ] && break
  [ $SECONDS -lt $deadline ] || die "failback still in phase $fb_phase after 300s"
  sleep 0.5
done
[ "$fb_phase" = Completed ] || die "failback $fb_name ended $fb_phase: $(fbj | jget 'd["status"].get("message")')"
t_fb_done=$(date +%s.%N)
home_pod=$("${C1[@]}" get pods -n default -l app=counter --field-selector status.phase=Running -o 'jsonpath={.items[0].metadata.name}')
home_dir="$W/worker-1/pods/default_${home_pod}_counter"
fb_restored=$(cat "$home_dir/restored-from" 2>/dev/null || echo "")
sleep 2
fb_after=$(bash hack/runc-pod.sh count "$home_dir")
home_taint=$("${C1[@]}" get node worker-1 -o 'jsonpath={.spec.taints[?(@.key=="node.kubernetes.io/out-of-service")].effect}' 2>/dev/null || true)
c2_left=$("${C2[@]}" get deployment counter -n default --ignore-not-found -o name)
fbj >"$W/failback.json"
python3 - "$W/failback.json" "$t_fb" "$t_fb_done" <<'PY' >&2
import json, sys
t = json.load(open(sys.argv[1])); start, done = map(float, sys.argv[2:4])
print("\n  failback timeline (Transition created at t=0)")
for p in t["status"].get("phaseTimings", []):
    print(f"  {'  ' + p['phase']:<44} {p.get('durationMs', 0)/1000:7.1f} s")
print(f"  {'total (create -> Completed)':<44} {done-start:7.1f} s")
PY
log "failback checks:"
ok=1
check "the counter went home with the state it had on cluster2-aws (restored $fb_restored >= $count_fb_start, now $fb_after)" '[ -n "$fb_restored" ] && [ "$fb_restored" -ge "$count_fb_start" ] && [ "$fb_after" -gt "$fb_restored" ]'
check "state from cluster2-aws, not from the first checkpoint ($fb_restored > $restored_from)" '[ "$fb_restored" -gt "$restored_from" ]'
check "the failover's taint is gone from worker-1 ($home_taint)" '[ -z "$home_taint" ]'
check "the old home is fenced: no counter on cluster2-aws" '[ -z "$c2_left" ]'
[ "$ok" = 1 ] || die "failback checks failed (see $W)"
log "failback: OK — the counter went back to cluster1-azure with its memory state"
[ "$pods" = 1 ] && pods_show cluster1-azure "${C1[@]}"
NO_COLOR=1 "${KT[@]}" history >&2 || die "kubectl transition history failed"
if [ "$keep" = 1 ]; then
  operator_pid="" shim1_pid=""
  log "left running: operator, worker-1 shim and the lab (stop: hack/lab.sh down)"
fi
