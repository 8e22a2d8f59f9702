#!/usr/bin/env bash
# Benchmark: fault -> commit pushed, on a generated GitOps repository with 1,000 manifest files,
# against the lab's git http-backend (basic auth). 20 runs each: ours (warm clone cache, kustomize
# and in-place strategies) vs the Go original's method scripted with the git CLI (fresh shallow
# clone + walk + rewrite + commit + push). Goals: p50 <= 150 ms and >= 10x faster.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
runs="${1:-20}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$TRANSITION_CACHE/target}"
cargo build --quiet --release --locked --bin gitops-bench
export TRANSITION_LAB_DIR=/tmp/transition-lab-bench LAB_CLUSTERS=mgmt LAB_CONTROLLERS=
bash hack/lab.sh up >/dev/null
source "$TRANSITION_LAB_DIR/env"
work=$(mktemp -d /tmp/bench-gitops.XXXXXX)
trap 'bash hack/lab.sh down >/dev/null 2>&1; rm -rf "$work"' EXIT
authed() { echo "${LAB_GIT_URL/http:\/\//http://$LAB_GIT_USER:$LAB_GIT_PASSWORD@}/$1.git"; }

log "generating a repository with 1000 manifests"
seed="$work/seed"
mkdir -p "$seed/catalog/bench" "$seed/clusters/cluster1-azure" "$seed/clusters/cluster2-aws"
{
  echo "apiVersion: kustomize.config.k8s.io/v1beta1"; echo "kind: Kustomization"; echo "resources:"
  for i in $(seq -w 0 999); do echo "  - app-$i.yaml"; done
} >"$seed/catalog/bench/kustomization.yaml"
for i in $(seq -w 0 999); do
  cat >"$seed/catalog/bench/app-$i.yaml" <<YAML
# app $i of the benchmark package
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-$i
  namespace: default
  annotations:
    transition.dcnlab.ssu.ac.kr/cluster-policy: "true"
    transition.dcnlab.ssu.ac.kr/packageName: bench
spec:
  selector: {matchLabels: {app: app-$i}}
  template:
    metadata: {labels: {app: app-$i}}
    spec:
      containers:
        - name: app
          image: docker.io/library/busybox:1.36
YAML
done
printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../../catalog/bench\n' >"$seed/clusters/cluster1-azure/kustomization.yaml"
printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: []\n' >"$seed/clusters/cluster2-aws/kustomization.yaml"
(cd "$seed" && git init -q -b main && git add -A && git -c user.name=seed -c user.email=seed@x commit -q -m seed)
for r in ours-workload ours-kustomize ours-inplace go; do
  bash hack/lab.sh git-repo "bench-$r" >/dev/null
  (cd "$seed" && git push -q "$(authed "bench-$r")" main)
done

log "ours: $runs runs, workload-patch strategy (the default: one workload + container pinned)"
GIT_URL="$LAB_GIT_URL/bench-ours-workload.git" GIT_USER="$LAB_GIT_USER" GIT_PASSWORD="$LAB_GIT_PASSWORD" \
  "$CARGO_TARGET_DIR/release/gitops-bench" --runs "$runs" --strategy workload --cache "$work/cache" | tail -n1 | tee "$work/ours-w"
log "ours: $runs runs, kustomize strategy (warm cache)"
GIT_URL="$LAB_GIT_URL/bench-ours-kustomize.git" GIT_USER="$LAB_GIT_USER" GIT_PASSWORD="$LAB_GIT_PASSWORD" \
  "$CARGO_TARGET_DIR/release/gitops-bench" --runs "$runs" --strategy kustomize --cache "$work/cache" | tail -n1 | tee "$work/ours-k"
log "ours: $runs runs, in-place strategy (warm cache)"
GIT_URL="$LAB_GIT_URL/bench-ours-inplace.git" GIT_USER="$LAB_GIT_USER" GIT_PASSWORD="$LAB_GIT_PASSWORD" \
  "$CARGO_TARGET_DIR/release/gitops-bench" --runs "$runs" --strategy in-place --cache "$work/cache" | tail -n1 | tee "$work/ours-i"

log "Go original's method: fresh shallow clone + walk + rewrite + commit + push, $runs runs"
url=$(authed bench-go)
prev="docker.io/library/busybox:1.36"
: >"$work/go.ms"
for i in $(seq 1 "$runs"); do
  new=$(printf '127.0.0.1:5000/checkpoints/bench@sha256:%064x' "$i")
  start=$(date +%s%N)
  d="$work/go-$i"
  git clone -q --depth 1 "$url" "$d"
  grep -rl --include='*.yaml' "image: $prev" "$d/catalog" | xargs sed -i "s|image: $prev|image: $new|"
  git -C "$d" -c user.name=go -c user.email=go@example.com commit -q -am "checkpoint image $i"
  git -C "$d" push -q origin main
  end=$(date +%s%N)
  echo $(((end - start) / 1000000)) >>"$work/go.ms"
  rm -rf "$d"
  prev="$new"
done
python3 - "$work/go.ms" "$work/ours-k" "$work/ours-i" "$work/ours-w" <<'PY'
import sys, re
go = sorted(float(x) for x in open(sys.argv[1]))
pick = lambda v, p: v[round((len(v) - 1) * p)]
def ours(path):
    m = re.search(r"p50 ([\d.]+) ms p99 ([\d.]+) ms", open(path).read())
    return float(m.group(1)), float(m.group(2))
k50, k99 = ours(sys.argv[2]); i50, i99 = ours(sys.argv[3]); w50, w99 = ours(sys.argv[4])
g50, g99 = pick(go, 0.5), pick(go, 0.99)
print(f"Go method (fresh clone)  : p50 {g50:7.1f} ms  p99 {g99:7.1f} ms")
print(f"ours workload patch      : p50 {w50:7.1f} ms  p99 {w99:7.1f} ms  -> {g50 / w50:.1f}x faster (default; goal p50 <= 150 ms)")
print(f"ours kustomize (warm)    : p50 {k50:7.1f} ms  p99 {k99:7.1f} ms  -> {g50 / k50:.1f}x faster (goal p50 <= 150 ms, >= 10x)")
print(f"ours in-place (warm)     : p50 {i50:7.1f} ms  p99 {i99:7.1f} ms  -> {g50 / i50:.1f}x faster")
PY
