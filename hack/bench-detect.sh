#!/usr/bin/env bash
# Benchmark P1 + issue 18: replays 10^5 heartbeats per scenario (30% jitter, 2 s stalls, node death
# with a silent or a refusing host, agent-only death, kubelet restarts, agent stalls coinciding with
# kubelet restarts, a management<->source partition) through the real tracker twice on the same
# traces: the Lease rule alone and the fast path (the kubelet through the API server's node proxy),
# plus the Go original's 12 x 100 ms rule on the original three; prints confirmation latency after
# the last heartbeat (p50/p95/p99), false failovers, the p50 ratio and the goal lines.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$TRANSITION_CACHE/target}"
cargo build --quiet --release --locked --bin detect-bench
"$CARGO_TARGET_DIR/release/detect-bench"
