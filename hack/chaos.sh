#!/usr/bin/env bash
# Faults survived, nothing lost: every chaos scenario on the lab's real servers, then one table.
#
#   hack/chaos.sh [--skip-build]
#
# 1. The end-to-end run in chaos mode (hack/e2e.sh with E2E_CHAOS=1; lab with controllers on both
#    workload clusters): two operator replicas behind the Lease; before the node loss S3 is down
#    across a scheduled checkpoint (the agent's upload and the operator's read) and the registry
#    is down during a push; during the failover a human pushes to the GitOps repository, the Git
#    server is down through Committing, the leader is SIGKILLed in Syncing and the target's API
#    server is down in Verifying; the source node then returns with its old pod's state on disk;
#    the management API server is restarted during the failback's checkpoint.
# 2. The agent killed (SIGKILL) in the middle of a multipart upload to the real S3 server, then
#    restarted (checkpoint-agent's integration test of that name).
#
# Prints the table (fault | what the system did | failover commits | state lost | recovery |
# lost or duplicated) and writes it to $TRANSITION_LAB_DIR/chaos/table.md; exits non-zero when a
# scenario fails. docs/reliability.md holds the table of a recorded run.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
skip_build=0
for arg in "$@"; do
  case "$arg" in
    --skip-build) skip_build=1 ;;
    *) die "usage: chaos.sh [--skip-build]" ;;
  esac
done
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$TRANSITION_CACHE/target}"
export TRANSITION_REPO_ROOT="$REPO_ROOT"
if [ "$skip_build" = 0 ]; then
  bash hack/install.sh all
  log "building the binaries and the agent's integration tests"
  cargo build --quiet --locked --bins
fi
E2E_LAB="${TRANSITION_E2E_LAB_DIR:-/tmp/transition-lab-e2e-test}"
OUT="${TRANSITION_LAB_DIR:-/tmp/transition-lab-test}/chaos"
rm -rf "$OUT" && mkdir -p "$OUT"
t_start=$SECONDS

log "chaos 1/2: the end-to-end run with a fault in every phase (log: $OUT/e2e.log)"
t1=$SECONDS
if ! TRANSITION_LAB_DIR="$E2E_LAB" E2E_SKIP_BUILD=1 E2E_CHAOS=1 bash hack/e2e.sh >"$OUT/e2e.log" 2>&1; then
  tail -n 40 "$OUT/e2e.log" >&2
  die "chaos: the end-to-end chaos run failed (full log: $OUT/e2e.log)"
fi
e2e_seconds=$((SECONDS - t1))
cp "$E2E_LAB/e2e/chaos-rows.jsonl" "$OUT/rows.jsonl"
lost=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["state_lost_seconds"])' "$E2E_LAB/e2e/summary.json")
commits=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["failover_commits"])' "$E2E_LAB/e2e/summary.json")
recovery=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["recovery_seconds"])' "$E2E_LAB/e2e/summary.json")
python3 -c 'import json,sys; k=["fault","did","commits","state_lost","recovery_s","lost_or_duplicated"]; print(json.dumps(dict(zip(k,sys.argv[1:]))))' \
  "the whole failover under the faults above (node killed → Completed)" \
  "one Transition, Completed; the counter continued on cluster2-aws from its checkpoint" \
  "$commits" "${lost} s of counting (checkpoint age at the loss)" "$recovery" "none" >>"$OUT/rows.jsonl"

log "chaos 2/2: the agent SIGKILLed mid-upload, restarted (log: $OUT/agent.log)"
t2=$SECONDS
if ! cargo nextest run --locked -p checkpoint-agent --test it \
  -E 'test(killed_mid_upload_the_agent_resumes_to_exactly_one_complete_object)' >"$OUT/agent.log" 2>&1; then
  tail -n 40 "$OUT/agent.log" >&2
  die "chaos: the agent restart scenario failed (full log: $OUT/agent.log)"
fi
python3 -c 'import json,sys; k=["fault","did","commits","state_lost","recovery_s","lost_or_duplicated"]; print(json.dumps(dict(zip(k,sys.argv[1:]))))' \
  "checkpoint-agent SIGKILLed mid multipart upload, restarted" \
  "the restarted agent resumed the recorded multipart upload (parts already in S3 reused), completed it and recorded its sha256; one object, equal to the archive" \
  "0" "none" "$((SECONDS - t2)) (test, incl. start)" "none (exactly one complete object)" >>"$OUT/rows.jsonl"

python3 - "$OUT/rows.jsonl" "$((SECONDS - t_start))" "$e2e_seconds" <<'PY' | tee "$OUT/table.md"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
cell = lambda s: str(s).replace("|", "/").replace("\n", " ")
print("| fault | what the system did | failover commits | state lost | recovery (s) | lost or duplicated |")
print("|---|---|---|---|---|---|")
for r in rows:
    print("| " + " | ".join(cell(r.get(k, "")) for k in
          ["fault", "did", "commits", "state_lost", "recovery_s", "lost_or_duplicated"]) + " |")
print(f"\n{len(rows)} rows; hack/chaos.sh took {sys.argv[2]} s (the end-to-end chaos run {sys.argv[3]} s).")
PY
log "chaos: every scenario held (table: $OUT/table.md)"
