# Sourced by hack/e2e.sh in pods mode (E2E_PODS=1, what hack/demo.sh runs): the operator and the
# agents run as Pods, installed the way docs/install.md installs them — `kubectl apply -k` of
# overlays of deploy/management and deploy/workload (a current kubectl, kustomize 5), from the
# images hack/build-images.sh built from this checkout and pushed to the lab registry. The kubelet
# shims pull those images and run them under runc, host-networked (the lab has no CNI), with the
# pods' Secrets, ConfigMaps and service-account tokens: the operator uses its in-cluster
# configuration. What stands in for what: a kubelet shim `mgmt-1` is the management cluster's
# node; 127.0.0.1 and a free port stand in for the heartbeat Service's load-balancer address.
#
# Uses e2e.sh's variables: W, MGMT, C1, C2, LAB_*, hb_port, metrics_port, the token, S3 and
# kubeconfig files under $W.

# apply_k DIR KUBECTL... — `kubectl apply -k DIR`: kustomize 5 (a current kubectl) renders, the
# lab's kubectl applies to its v1.20 API server (a kubectl 1.37 is outside the supported skew).
apply_k() {
  local dir="$1"
  shift
  "$LAB_KUBECTL_CURRENT" kustomize "$dir" >"$dir/rendered.yaml" || die "kustomize build of $dir failed"
  "$@" apply -f "$dir/rendered.yaml" >"$dir/apply.log" 2>&1 \
    || { cat "$dir/apply.log" >&2; die "kubectl apply -k $dir failed"; }
}

# The images, built from this checkout and pushed by digest (the kustomize `images:` list).
pods_images() {
  step "pods: building the operator and agent images and pushing them to the lab registry (hack/build-images.sh)"
  bash hack/build-images.sh --out "$W/images" >"$W/build-images.log" 2>&1 \
    || { tail -n 30 "$W/build-images.log" >&2; die "hack/build-images.sh failed (log: $W/build-images.log)"; }
  grep -E '^(OPERATOR|AGENT)_IMAGE=' "$W/images/images.env" | sed 's/^/  /' >&2
}

# The heartbeat endpoint's certificate: a CA the agents trust and a certificate for 127.0.0.1.
pods_tls() {
  local d="$W/tls"
  mkdir -p "$d" && chmod 0700 "$d"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=transition e2e CA" \
    -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null || die "openssl: CA"
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$d/tls.key" -out "$d/tls.csr" 2>/dev/null \
    || die "openssl: key"
  printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$d/ext"
  openssl x509 -req -in "$d/tls.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 2 \
    -extfile "$d/ext" -out "$d/tls.crt" 2>/dev/null || die "openssl: certificate"
}

# secret KUBECTL... -- NAME ARGS: create or update a Secret in transition-system.
secret() {
  local args=()
  while [ "$1" != -- ]; do args+=("$1"); shift; done
  shift
  "${args[@]}" -n transition-system create secret "$@" --dry-run=client -o yaml | "${args[@]}" apply -f - >/dev/null \
    || die "Secret $2 in transition-system"
}

# The operator's kubeconfig for a workload cluster: its own service account there (deploy/workload
# creates it with least privilege and a token Secret the token controller fills).
pods_operator_kubeconfig() {
  local cluster="$1" url="$2" out="$3"
  shift 3
  local token
  # A TokenRequest (24 h): the lab runs kube-controller-manager without its legacy token
  # controller, so the install's token Secret stays empty here (docs/install.md: either works).
  token=$(printf '{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{"expirationSeconds":86400}}' \
    | "$@" create --raw /api/v1/namespaces/transition-system/serviceaccounts/transition-operator/token -f - \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"]["token"])') \
    || die "a TokenRequest for transition-operator on $cluster failed"
  python3 - "$cluster" "$url" "$LAB_CA" "$out" "$token" <<'PY'
import base64, json, os, sys
cluster, url, ca, out, token = sys.argv[1:]
cfg = {"apiVersion": "v1", "kind": "Config", "current-context": cluster,
       "clusters": [{"name": cluster, "cluster": {"server": url,
                     "certificate-authority-data": base64.b64encode(open(ca, "rb").read()).decode()}}],
       "users": [{"name": "transition-operator", "user": {"token": token}}],
       "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": "transition-operator"}}]}
fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
os.write(fd, json.dumps(cfg).encode())
os.close(fd)
PY
}

# The service-account token as Kubernetes ≥ 1.21 mounts it by itself (a projected volume: bound
# token, kube-root-ca.crt, namespace). The lab's v1.20 would mount a legacy token Secret, which
# its controller-manager does not create (the lab runs it without the token controller).
# sa_token_volume INDENT — the pod-spec lines; $SA_MOUNT — the container's mount.
sa_token_volume() {
  sed "s/^/$1/" <<'EOF'
automountServiceAccountToken: false
volumes:
  - name: kube-api-access
    projected:
      defaultMode: 0444
      sources:
        - serviceAccountToken: {path: token, expirationSeconds: 3607}
        - configMap: {name: kube-root-ca.crt, items: [{key: ca.crt, path: ca.crt}]}
        - downwardAPI: {items: [{path: namespace, fieldRef: {fieldPath: metadata.namespace}}]}
EOF
}
SA_MOUNT='{name: kube-api-access, mountPath: /var/run/secrets/kubernetes.io/serviceaccount, readOnly: true}'

# The agent DaemonSet and the operator's identity on one workload cluster (deploy/workload).
# pods_install_workload CLUSTER NODE STATE_DIR EXTRA_ENV_YAML KUBECTL...
pods_install_workload() {
  local cluster="$1" node="$2" state="$3" extra_env="$4"
  shift 4
  local d="$W/install/$cluster" port
  port=$(free_port)
  mkdir -p "$d"
  "$@" create namespace transition-system --dry-run=client -o yaml | "$@" apply -f - >/dev/null
  local token_file="$W/heartbeat-token"
  [ "$cluster" = cluster2-aws ] && token_file="$W/heartbeat-token2"
  secret "$@" -- generic checkpoint-agent-heartbeat --from-file "token=$token_file" --from-file "ca.crt=$W/tls/ca.crt"
  secret "$@" -- generic checkpoint-agent-s3 --from-file "access-key=$W/s3-access" --from-file "secret-key=$W/s3-secret"
  secret "$@" -- generic checkpoint-agent-encryption --from-file "recipients=$K/archive-recipients"
  cat >"$d/kustomization.yaml" <<EOF
# Generated by hack/e2e-pods.sh: the lab's overlay of deploy/workload for $cluster.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $(realpath --relative-to "$d" "$REPO_ROOT/deploy/workload")
configMapGenerator:
  - name: checkpoint-agent
    namespace: transition-system
    behavior: merge
    literals:
      - CLUSTER_NAME=$cluster
      - CONTROLLER_URL=https://127.0.0.1:$hb_port/heartbeat
      - MINIO_ENDPOINT=$LAB_S3_ENDPOINT
      - MINIO_BUCKET=$LAB_S3_BUCKET
$(sed -n '/^images:/,$p' "$W/images/kustomize-images.yaml")
patches:
  - patch: |-
      apiVersion: apps/v1
      kind: DaemonSet
      metadata: {name: checkpoint-agent, namespace: transition-system}
      spec:
        template:
          spec:
            containers:
              - name: agent
                env:
                  # Host networking: each node's agent on a port of its own (all nodes are this machine).
                  - {name: METRICS_ADDR, value: "127.0.0.1:$port"}
$extra_env
                volumeMounts:
                  - $SA_MOUNT
$(sa_token_volume '            ')
              # The shim's checkpoint folder of $node (the kubelet's /var/lib/kubelet/checkpoints).
              - {name: checkpoints, hostPath: {path: $W/$node/checkpoints, type: DirectoryOrCreate}}
              - {name: state, hostPath: {path: $state, type: DirectoryOrCreate}}
EOF
  apply_k "$d" "$@"
}

# The operator's Pod on the management cluster (deploy/management) with the lab's settings.
pods_install_management() {
  local d="$W/install/management"
  mkdir -p "$d"
  secret "${MGMT[@]}" -- tls transition-heartbeat-tls --cert "$W/tls/tls.crt" --key "$W/tls/tls.key"
  secret "${MGMT[@]}" -- generic heartbeat-tokens --from-file "tokens=$W/heartbeat-tokens"
  secret "${MGMT[@]}" -- generic checkpoint-s3 --from-file "access-key=$W/s3-access" --from-file "secret-key=$W/s3-secret"
  secret "${MGMT[@]}" -- generic transition-archive-identity --from-file "identities=$K/archive-identities"
  secret "${MGMT[@]}" -- generic transition-image-encryption-keys \
    --from-file "cluster1-azure.pem=$K/image-encryption/cluster1-azure.pem" \
    --from-file "cluster2-aws.pem=$K/image-encryption/cluster2-aws.pem"
  secret "${MGMT[@]}" -- generic transition-image-signing-key --from-file "key.asc=$K/signing-key.asc"
  secret "${MGMT[@]}" -- generic workload-kubeconfigs \
    --from-file "cluster1-azure.kubeconfig=$W/kubeconfigs/cluster1-azure.kubeconfig" \
    --from-file "cluster2-aws.kubeconfig=$W/kubeconfigs/cluster2-aws.kubeconfig"
  cat >"$d/kustomization.yaml" <<EOF
# Generated by hack/e2e-pods.sh: the lab's overlay of deploy/management.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $(realpath --relative-to "$d" "$REPO_ROOT/deploy/management")
configMapGenerator:
  - name: transition-operator
    namespace: transition-system
    behavior: merge
    literals:
      - REGISTRY_URL=http://$LAB_REGISTRY
      - MINIO_ENDPOINT=$LAB_S3_ENDPOINT
      - MINIO_BUCKET=$LAB_S3_BUCKET
      - VERIFY_TIMEOUT_SECONDS=180
      - RESYNC_SECONDS=30
      - LOG_FORMAT=text
$(sed -n '/^images:/,$p' "$W/images/kustomize-images.yaml")
patches:
  - patch: |-
      apiVersion: apps/v1
      kind: Deployment
      metadata: {name: transition-operator, namespace: transition-system}
      spec:
        # One node, host networking: a second replica would clash on the ports.
        replicas: 1
        template:
          spec:
            containers:
              - name: operator
                env:
                  - {name: METRICS_ADDR, value: "127.0.0.1:$metrics_port"}
                  - {name: HEARTBEAT_ADDR, value: "127.0.0.1:$hb_port"}
                volumeMounts:
                  - $SA_MOUNT
$(sa_token_volume '            ')
EOF
  apply_k "$d" "${MGMT[@]}"
}

# pods_ready KUBECTL... — every Pod in transition-system Running and Ready.
pods_ready() {
  local out
  out=$("$@" get pods -n transition-system -o 'jsonpath={range .items[*]}{.status.phase}/{.status.conditions[?(@.type=="Ready")].status} {end}' 2>/dev/null) || return 1
  [ -n "$out" ] && ! grep -qv '^Running/True$' < <(tr ' ' '\n' <<<"$out" | sed '/^$/d')
}

pods_show() {
  local name="$1"
  shift
  log "kubectl get pods -n transition-system -o wide ($name):"
  "$@" get pods -n transition-system -o wide >&2 || true
}
