#!/usr/bin/env bash
# API requests the SOURCE cluster's kube-apiserver receives while the operator takes N scheduled
# checkpoint runs (its own apiserver_request_total, read before and after), for this checkout
# and for a baseline revision of the operator, in the same invocation on the same lab set-up
# (hack/e2e.sh steps 1-2: kubelet shim + runc counter on worker-1, agent, S3, registry, Git).
#
#   hack/bench-source-requests.sh [BASELINE_REV] [RUNS]
#
# BASELINE_REV defaults to 56851f6 (the operator before the architecture rework, issue 12);
# RUNS to 10. The schedule is every 5 s. Prints both counts, the LISTs per resource and the ratio.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
rev="${1:-56851f6}" runs="${2:-10}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$TRANSITION_CACHE/target}"
bash hack/install.sh all
log "building this checkout"
cargo build --quiet --locked --bin transition-operator --bin checkpoint-agent
mkdir -p "$TRANSITION_CACHE/baseline"
current_bin="$TRANSITION_CACHE/baseline/transition-operator-current"
cp "$CARGO_TARGET_DIR/debug/transition-operator" "$current_bin"
baseline_bin="$TRANSITION_CACHE/baseline/transition-operator-$rev"
if [ ! -x "$baseline_bin" ]; then
  tree="$TRANSITION_CACHE/baseline/src-$rev"
  rm -rf "$tree" && mkdir -p "$(dirname "$tree")"
  git worktree prune
  git worktree add --detach "$tree" "$rev" >/dev/null
  log "building the baseline operator at $rev (own target dir: cargo would mistake the two trees' artifacts)"
  (cd "$tree" && CARGO_TARGET_DIR="$TRANSITION_CACHE/target-baseline" cargo build --quiet --locked --bin transition-operator)
  cp "$TRANSITION_CACHE/target-baseline/debug/transition-operator" "$baseline_bin"
  git worktree remove --force "$tree"
fi
measure() {
  local name="$1" bin="$2" dir="/tmp/transition-lab-bench-requests"
  TRANSITION_LAB_DIR="$dir" bash hack/lab.sh down >/dev/null 2>&1 || true
  log "measuring $name over $runs checkpoint runs"
  TRANSITION_LAB_DIR="$dir" E2E_SKIP_BUILD=1 E2E_OPERATOR_BIN="$bin" E2E_MEASURE_RUNS="$runs" \
    E2E_SCHEDULE="*/5 * * * * *" bash hack/e2e.sh >"$TRANSITION_CACHE/baseline/$name.log" 2>&1 \
    || { tail -n 30 "$TRANSITION_CACHE/baseline/$name.log" >&2; die "$name run failed"; }
  cp "$dir/e2e/source-requests.json" "$TRANSITION_CACHE/baseline/$name.json"
  TRANSITION_LAB_DIR="$dir" bash hack/lab.sh down >/dev/null 2>&1 || true
}
measure baseline "$baseline_bin"
measure current "$current_bin"
python3 - "$TRANSITION_CACHE/baseline/baseline.json" "$TRANSITION_CACHE/baseline/current.json" "$rev" <<'PY'
import json, sys
b, c = (json.load(open(p)) for p in sys.argv[1:3])
lists = lambda d: sum(v for k, v in d["by"].items() if k.startswith("LIST "))
print(f"source-cluster API requests over {c['runs']} checkpoint runs (every 5 s)")
print(f"  {'':24} {'total':>7} {'LIST':>6} {'seconds':>8}")
print(f"  {'baseline ' + sys.argv[3]:24} {b['source_requests']:>7} {lists(b):>6} {b['seconds']:>8}")
print(f"  {'this checkout':24} {c['source_requests']:>7} {lists(c):>6} {c['seconds']:>8}")
print(f"  ratio (baseline / this checkout): total {b['source_requests'] / max(c['source_requests'], 1):.2f}x, "
      f"LIST {lists(b) / max(lists(c), 1):.2f}x")
for name, d in (("baseline", b), ("this checkout", c)):
    print(f"  {name} LISTs: " + ", ".join(f"{k[5:]}={v}" for k, v in sorted(d["by"].items()) if k.startswith("LIST ")))
PY
