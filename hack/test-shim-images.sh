#!/usr/bin/env bash
# Smoke test of the kubelet shim's third kind of container: a REAL OCI image pulled, unpacked and run
# with runc from the pod spec, against a REAL kube-apiserver v1.20.2 of the lab.
#
#   TRANSITION_LAB_DIR=/tmp/transition-lab-shim hack/test-shim-images.sh [--keep]
#
# Real: kube-apiserver v1.20.2 + etcd (the lab's; started here with one cluster when the lab in
# $TRANSITION_LAB_DIR is not up, and stopped again at the end), docker-registry with htpasswd, skopeo
# (push here; the shim pulls with it by digest), umoci (builds the image here; the shim unpacks with
# it), runc 1.1 (the container), the TokenRequest and TokenReview APIs (the projected token), kubectl
# logs through the API server's node proxy, host networking (a port the container binds is reached
# from the host on 127.0.0.1).
# Stand-ins: the kubelet is hack/kubelet-shim.py (node mode; no kubelet runs here); the image's base
# is busybox-static copied into a scratch rootfs (no public base image is reachable); no scheduler:
# the pods name their node (spec.nodeName). kube-root-ca.crt: the ConfigMap of a cluster whose
# kube-controller-manager publishes it, else the shim's fallback (the CA the shim trusts).
#
# Checks: the pod turns Running + Ready with imageID = the pushed digest; inside it (its log):
# command/args over the image's entrypoint, $(VAR) expansion, env from value / fieldRef /
# secretKeyRef / configMapKeyRef / envFrom with prefix / the image's Env, runAsUser, the image's
# WorkingDir, KUBERNETES_SERVICE_HOST/PORT = this API server, secret + configMap files (read-only),
# emptyDir (+ medium Memory: a tmpfs), hostPath, the projected token (the same file the shim wrote,
# which TokenReview accepts as the pod's service account and which reads /api), ca.crt, namespace;
# a second pod exits 3 (restartPolicy Never: Failed, exitCode 3, no second pull: the cache); a third
# refers to a missing Secret key (CreateContainerConfigError naming it); after a shim restart the pod
# is adopted (same container); deleting it stops the container and removes its volumes and mounts.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
keep=0
for arg in "$@"; do
  case "$arg" in
    --keep) keep=1 ;;
    *) die "usage: test-shim-images.sh [--keep]" ;;
  esac
done
command -v skopeo >/dev/null || die "skopeo missing: hack/install.sh apt"
command -v umoci >/dev/null || die "umoci missing: hack/install.sh apt"

export TRANSITION_LAB_DIR="${TRANSITION_LAB_DIR:-/tmp/transition-lab-shim}"
LAB="$TRANSITION_LAB_DIR"
started_lab=0
if ! bash hack/lab.sh status >/dev/null 2>&1; then
  log "starting a lab in $LAB (one cluster)"
  LAB_CLUSTERS="${LAB_CLUSTERS:-cluster2-aws}" bash hack/lab.sh up >/dev/null
  started_lab=1
fi
# shellcheck disable=SC1091
source "$LAB/env"
cluster="${SMOKE_CLUSTER:-}"
[ -n "$cluster" ] || case " $LAB_CLUSTERS " in *" cluster2-aws "*) cluster=cluster2-aws ;; *) cluster="${LAB_CLUSTERS%% *}" ;; esac
E=$(echo "$cluster" | tr 'a-z-' 'A-Z_')
url_var="LAB_${E}_URL" token_var="LAB_${E}_TOKEN" kc_var="LAB_${E}_KUBECONFIG"
API="${!url_var}" ADMIN_TOKEN="${!token_var}" KUBECONFIG_FILE="${!kc_var}"
K=("$LAB_KUBECTL" --kubeconfig "$KUBECONFIG_FILE")
NODE="${SMOKE_NODE:-shim-images-1}"
NS="shim-images-$(date +%s)"
work="$LAB/shim-images-smoke"
shim_pid=""
rm -rf "$work" && mkdir -p "$work" && chmod 0700 "$work"

cleanup() {
  local rc=$?
  if [ -n "$shim_pid" ] && kill -0 "$shim_pid" 2>/dev/null; then kill "$shim_pid" 2>/dev/null || true; wait "$shim_pid" 2>/dev/null || true; fi
  local d
  for d in "$work"/node/pods/*/; do [ -f "$d/id" ] && bash hack/runc-pod.sh stop "$d" >/dev/null 2>&1; done
  { grep -F "$work/node/volumes/" /proc/self/mountinfo || true; } | awk '{print $5}' | sort -r | while read -r m; do umount "$m" 2>/dev/null || true; done
  if [ "$rc" != 0 ]; then
    log "FAILED; shim log tail ($work/shim.log):"
    tail -n 40 "$work/shim.log" >&2 2>/dev/null || true
  fi
  if [ "$keep" = 0 ]; then
    "${K[@]}" delete pods -n "$NS" --all --force --grace-period 0 >/dev/null 2>&1 || true
    "${K[@]}" delete namespace "$NS" --wait=false >/dev/null 2>&1 || true
    "${K[@]}" delete node "$NODE" >/dev/null 2>&1 || true
    "${K[@]}" delete lease -n kube-node-lease "$NODE" >/dev/null 2>&1 || true
    [ "$rc" = 0 ] && rm -rf "$work"
    if [ "$started_lab" = 1 ]; then bash hack/lab.sh down >/dev/null 2>&1 || true; fi
  fi
  exit "$rc"
}
trap cleanup EXIT

# poll TIMEOUT_S COMMAND... — quiet wait_for; returns 1 on timeout.
poll() {
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt "$deadline" ] || return 1
    sleep 0.3
  done
}
jpath() { "${K[@]}" get pod -n "$NS" "$1" -o "jsonpath=$2"; }
expect_line() { grep -qxF -- "$2" <<<"$1" || die "the container's log lacks the line '$2'"; }

log "1/7 a real OCI image: busybox-static in a scratch rootfs, built with umoci, pushed with skopeo"
img="$work/image"
make_busybox_rootfs "$img/rootfs"
printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/tmp:/bin/sh\n' >"$img/rootfs/etc/passwd"
printf 'root:x:0:\napp:x:1000:\n' >"$img/rootfs/etc/group"
umoci init --layout "$img/layout"
umoci new --image "$img/layout:v1"
umoci insert --image "$img/layout:v1" "$img/rootfs" / >/dev/null
# The image's entrypoint prints a marker the pod's command must replace; its Env and WorkingDir stay.
umoci config --image "$img/layout:v1" --config.entrypoint /bin/echo --config.cmd image-entrypoint-ran \
  --config.env IMAGE_ENV=from-image --config.env PATH=/bin --config.workingdir /tmp --config.user 1000:1000
repo="$LAB_REGISTRY/shim-images-smoke/app"
skopeo copy -q --dest-tls-verify=false --dest-creds "$LAB_REGISTRY_USER:$LAB_REGISTRY_PASSWORD" "oci:$img/layout:v1" "docker://$repo:v1"
digest=$(skopeo inspect --raw --tls-verify=false --creds "$LAB_REGISTRY_USER:$LAB_REGISTRY_PASSWORD" "docker://$repo:v1" | sha256sum | cut -d' ' -f1)
log "   pushed $repo:v1 = sha256:$digest"

log "2/7 the shim in node mode for $NODE on $cluster (registry credentials only from the pod's pull secret)"
python3 hack/kubelet-shim.py --node "$NODE" --kubeconfig "$KUBECONFIG_FILE" --state-dir "$work/node" \
  --insecure-registry "$LAB_REGISTRY" --max-start-attempts 3 >"$work/shim.log" 2>&1 &
shim_pid=$!
node_ready() { [ "$("${K[@]}" get node "$NODE" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" = True ]; }
poll 60 node_ready || die "Node $NODE not Ready after 60 s"

log "3/7 namespace $NS: ServiceAccount, Secret, ConfigMap, pull secret, and the pod"
"${K[@]}" create namespace "$NS" >/dev/null
"${K[@]}" create serviceaccount -n "$NS" smoke >/dev/null
password="pw-$(openssl rand -hex 6)"
"${K[@]}" create secret generic -n "$NS" app-secret --from-literal=password="$password" --from-literal=user=alice >/dev/null
"${K[@]}" create configmap -n "$NS" app-config --from-literal=greeting=hello-cm --from-literal=mode=fast >/dev/null
"${K[@]}" create secret docker-registry -n "$NS" regcred --docker-server="$LAB_REGISTRY" \
  --docker-username="$LAB_REGISTRY_USER" --docker-password="$LAB_REGISTRY_PASSWORD" >/dev/null
app_port=$(free_port)
api_port="${API##*:}"
mkdir -p "$work/host" && chmod 0777 "$work/host"   # the container runs as uid 1000
cat >"$work/pod.yaml" <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: app
  namespace: $NS
  labels: {app: smoke, tier: backend}
spec:
  nodeName: $NODE
  serviceAccountName: smoke
  automountServiceAccountToken: false   # the lab runs no token controller; the projected volume below is explicit
  imagePullSecrets: [{name: regcred}]
  securityContext: {fsGroup: 2000}
  containers:
  - name: app
    image: $repo:v1
    imagePullPolicy: IfNotPresent
    command: ["/bin/sh", "-c"]
    args:
    - |
      echo "argv-pod=\$(POD_NAME)"
      echo "uid=\$(id -u) gid=\$(id -g) groups=\$(id -G)"
      echo "pwd=\$(pwd)"
      env | grep -E '^(IMAGE_ENV|SECRET_PASSWORD|POD_NAME|POD_NS|NODE_NAME|POD_IP|TIER|SA|GREETING|COMPOSED|ESCAPED|CFG_greeting|CFG_mode|KUBERNETES_SERVICE_HOST|KUBERNETES_SERVICE_PORT|OPTIONAL)=' | sort
      echo "secret-file=\$(cat /etc/app-secret/pw)"
      echo "config-file=\$(cat /etc/app-config/greeting)"
      if touch /etc/app-secret/x 2>/dev/null; then echo secret-ro=no; else echo secret-ro=yes; fi
      echo scratch >/scratch/written && echo "emptydir=\$(cat /scratch/written)"
      echo memory >/mem/written && echo "memory=\$(grep ' /mem ' /proc/mounts | cut -d' ' -f3)"
      echo "from-pod" >/host/hello && echo hostpath=ok
      echo "namespace-file=\$(cat /var/run/secrets/kubernetes.io/serviceaccount/namespace)"
      echo "token-sha=\$(sha256sum /var/run/secrets/kubernetes.io/serviceaccount/token | cut -d' ' -f1)"
      echo "ca-sha=\$(sha256sum /var/run/secrets/kubernetes.io/serviceaccount/ca.crt | cut -d' ' -f1)"
      echo report-done
      while true; do echo "hello from \$(POD_NAME)" | nc -l -p $app_port; done
    env:
    - {name: SECRET_PASSWORD, valueFrom: {secretKeyRef: {name: app-secret, key: password}}}
    - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: POD_NS, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
    - {name: NODE_NAME, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
    - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    - {name: TIER, valueFrom: {fieldRef: {fieldPath: "metadata.labels['tier']"}}}
    - {name: SA, valueFrom: {fieldRef: {fieldPath: spec.serviceAccountName}}}
    - {name: GREETING, valueFrom: {configMapKeyRef: {name: app-config, key: greeting}}}
    - {name: OPTIONAL, valueFrom: {secretKeyRef: {name: app-secret, key: no-such-key, optional: true}}}
    - {name: COMPOSED, value: "\$(POD_NAME).\$(POD_NS)"}
    - {name: ESCAPED, value: "\$\$(POD_NAME)"}
    envFrom:
    - {prefix: CFG_, configMapRef: {name: app-config}}
    volumeMounts:
    - {name: secret, mountPath: /etc/app-secret}
    - {name: config, mountPath: /etc/app-config}
    - {name: scratch, mountPath: /scratch}
    - {name: mem, mountPath: /mem}
    - {name: host, mountPath: /host}
    - {name: kube-api-access, mountPath: /var/run/secrets/kubernetes.io/serviceaccount, readOnly: true}
  volumes:
  - name: secret
    secret: {secretName: app-secret, items: [{key: password, path: pw}], defaultMode: 0440}
  - name: config
    configMap: {name: app-config}
  - name: scratch
    emptyDir: {}
  - name: mem
    emptyDir: {medium: Memory, sizeLimit: 16Mi}
  - name: host
    hostPath: {path: $work/host, type: Directory}
  - name: kube-api-access
    projected:
      sources:
      - serviceAccountToken: {expirationSeconds: 3607, path: token}
      - configMap: {name: kube-root-ca.crt, items: [{key: ca.crt, path: ca.crt}]}
      - downwardAPI: {items: [{path: namespace, fieldRef: {fieldPath: metadata.namespace}}]}
YAML
"${K[@]}" apply -f "$work/pod.yaml" >/dev/null
running_ready() { [ "$(jpath app '{.status.phase} {.status.conditions[?(@.type=="Ready")].status}')" = "Running True" ]; }
poll 120 running_ready || { "${K[@]}" get pod -n "$NS" app -o yaml >&2; die "pod app not Running + Ready in 120 s"; }
uid=$(jpath app '{.metadata.uid}')
cs=$("${K[@]}" get pod -n "$NS" app -o 'jsonpath={.status.containerStatuses[0]}')
[ "$(jq -r .imageID <<<"$cs")" = "$repo@sha256:$digest" ] || die "imageID is $(jq -r .imageID <<<"$cs"), pushed $repo@sha256:$digest"
cid=$(jq -r .containerID <<<"$cs")
[[ "$cid" == runc://oci-* ]] || die "containerID is $cid"
log "   pod app Running + Ready, imageID $repo@sha256:$digest, containerID $cid"

log "4/7 inside the container (its log, read with kubectl logs through the node proxy)"
report_done() { "${K[@]}" logs -n "$NS" app | grep -qx report-done; }
poll 30 report_done || { "${K[@]}" logs -n "$NS" app >&2; die "the container did not finish its report"; }
out=$("${K[@]}" logs -n "$NS" app)
printf '%s\n' "$out" | sed 's/^/     | /' >&2
grep -q image-entrypoint-ran <<<"$out" && die "the image's entrypoint ran instead of the pod's command"
for line in "argv-pod=app" "uid=1000 gid=1000 groups=1000 2000" "pwd=/tmp" "IMAGE_ENV=from-image" "SECRET_PASSWORD=$password" \
  "POD_NAME=app" "POD_NS=$NS" "NODE_NAME=$NODE" "POD_IP=127.0.0.1" "TIER=backend" "SA=smoke" "GREETING=hello-cm" \
  "COMPOSED=app.$NS" 'ESCAPED=$(POD_NAME)' "CFG_greeting=hello-cm" "CFG_mode=fast" "KUBERNETES_SERVICE_HOST=127.0.0.1" \
  "KUBERNETES_SERVICE_PORT=$api_port" "secret-file=$password" "config-file=hello-cm" "secret-ro=yes" "emptydir=scratch" \
  "memory=tmpfs" "hostpath=ok" "namespace-file=$NS"; do
  expect_line "$out" "$line"
done
grep -q '^OPTIONAL=' <<<"$out" && die "an optional secretKeyRef to a missing key set OPTIONAL"
[ "$(cat "$work/host/hello")" = from-pod ] || die "the hostPath write did not reach $work/host"
vol="$work/node/volumes/$uid"
[ "$(cat "$vol/scratch/written")" = scratch ] || die "the emptyDir is not $vol/scratch"
grep -qF " $vol/mem " /proc/self/mountinfo || die "no tmpfs mounted at $vol/mem"
token=$(cat "$vol/kube-api-access/token")
expect_line "$out" "token-sha=$(printf %s "$token" | sha256sum | cut -d' ' -f1)"
if "${K[@]}" get configmap -n "$NS" kube-root-ca.crt >/dev/null 2>&1; then ca_from="the kube-root-ca.crt ConfigMap"; else ca_from="the shim's fallback"; fi
expect_line "$out" "ca-sha=$(sha256sum <"$LAB_CA" | cut -d' ' -f1)"
review=$(curl -fsS --cacert "$LAB_CA" -H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json' -X POST \
  "$API/apis/authentication.k8s.io/v1/tokenreviews" \
  -d "{\"apiVersion\":\"authentication.k8s.io/v1\",\"kind\":\"TokenReview\",\"spec\":{\"token\":\"$token\"}}")
[ "$(jq -r .status.authenticated <<<"$review")" = true ] || die "TokenReview did not authenticate the pod's token: $review"
[ "$(jq -r .status.user.username <<<"$review")" = "system:serviceaccount:$NS:smoke" ] || die "the token is $(jq -r .status.user.username <<<"$review")"
[ "$(jq -r '.status.user.extra["authentication.kubernetes.io/pod-name"][0]' <<<"$review")" = app ] || die "the token is not bound to the pod: $review"
curl -fsS --cacert "$LAB_CA" -H "Authorization: Bearer $token" "$API/api" | jq -e '.kind == "APIVersions"' >/dev/null \
  || die "GET /api with the pod's token failed"
answer=$(exec 3<>"/dev/tcp/127.0.0.1/$app_port" && timeout 5 cat <&3)
[ "$answer" = "hello from app" ] || die "127.0.0.1:$app_port (bound inside the container, host network) answered '$answer'"
log "   env, files, volumes as the pod says; token = system:serviceaccount:$NS:smoke bound to pod app (TokenReview), reads /api;"
log "   ca.crt from $ca_from; host networking: 127.0.0.1:$app_port answered from the container"

log "5/7 a pod that exits 3 (restartPolicy Never) and one whose Secret key is missing"
pulls_before=$(grep -c " pulled $repo" "$work/shim.log" || true)
"${K[@]}" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: exits, namespace: $NS}
spec:
  nodeName: $NODE
  automountServiceAccountToken: false
  serviceAccountName: smoke
  restartPolicy: Never
  containers:
  - {name: main, image: "$repo:v1", imagePullPolicy: IfNotPresent, command: ["sh", "-c", "echo bye >/dev/termination-log; exit 3"]}
---
apiVersion: v1
kind: Pod
metadata: {name: misconfigured, namespace: $NS}
spec:
  nodeName: $NODE
  automountServiceAccountToken: false
  serviceAccountName: smoke
  containers:
  - name: main
    image: "$repo:v1"
    env: [{name: X, valueFrom: {secretKeyRef: {name: app-secret, key: absent}}}]
YAML
failed() { [ "$(jpath exits '{.status.phase}')" = Failed ]; }
poll 60 failed || { "${K[@]}" get pod -n "$NS" exits -o yaml >&2; die "pod exits did not turn Failed"; }
term=$(jpath exits '{.status.containerStatuses[0].state.terminated}')
[ "$(jq -r '"\(.exitCode) \(.reason) \(.message)"' <<<"$term")" = "3 Error bye" ] || die "terminated state: $term"
[ "$(grep -c " pulled $repo" "$work/shim.log" || true)" = "$pulls_before" ] || die "the cached image was pulled again"
waiting() { [ "$(jpath misconfigured '{.status.containerStatuses[0].state.waiting.reason}')" = CreateContainerConfigError ]; }
poll 60 waiting || { "${K[@]}" get pod -n "$NS" misconfigured -o yaml >&2; die "pod misconfigured is not in CreateContainerConfigError"; }
msg=$(jpath misconfigured '{.status.containerStatuses[0].state.waiting.message}')
[ "$msg" = "couldn't find key absent in Secret $NS/app-secret" ] || die "waiting message: $msg"
log "   exits: Failed, terminated exitCode 3 with its termination message, no second pull; misconfigured: $msg"

log "6/7 shim restart: the running container is adopted, not restarted"
kill -TERM "$shim_pid"; wait "$shim_pid" 2>/dev/null || true
python3 hack/kubelet-shim.py --node "$NODE" --kubeconfig "$KUBECONFIG_FILE" --state-dir "$work/node" \
  --insecure-registry "$LAB_REGISTRY" --max-start-attempts 3 >>"$work/shim.log" 2>&1 &
shim_pid=$!
adopted() { grep -q "pod $NS/app: adopted running container app" "$work/shim.log"; }
poll 60 adopted || die "the restarted shim did not adopt the container"
sleep 6  # a liveness round and a token refresh round
[ "$(jpath app '{.status.containerStatuses[0].containerID} {.status.containerStatuses[0].restartCount}')" = "$cid 0" ] \
  || die "after the restart: $(jpath app '{.status.containerStatuses[0]}')"
log "   same container $cid, restartCount 0"

log "7/7 deleting the pods: containers stopped, volumes and mounts gone"
dir="$work/node/pods/${NS}_app_app"
"${K[@]}" delete pod -n "$NS" app exits misconfigured --wait=false >/dev/null
gone() { [ -z "$("${K[@]}" get pods -n "$NS" -o name)" ]; }
poll 60 gone || { "${K[@]}" get pods -n "$NS" -o wide >&2; die "the pods were not deleted in 60 s"; }
[ "$(bash hack/runc-pod.sh status "$dir")" = absent ] || die "container still there: $(bash hack/runc-pod.sh status "$dir")"
[ -f "$dir/stopped" ] || die "no stopped marker in $dir"
[ ! -e "$vol" ] || die "the volumes folder $vol is still there"
grep -qF "$vol" /proc/self/mountinfo && die "a mount under $vol is left"
[ "$(cat "$work/host/hello")" = from-pod ] || die "the hostPath content was removed"
log "   container absent, $vol removed, no mount left, hostPath content kept"
log "shim images smoke: PASSED"
