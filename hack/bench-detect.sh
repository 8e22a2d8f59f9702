#!/usr/bin/env bash
# Benchmark P1: replays 10^5 heartbeats per scenario (30% jitter, 2 s stalls, real node death)
# through our detector (phi-accrual + Lease corroboration) AND the Go original's 12 x 100 ms rule
# on the same traces; prints detection latency p50/p99 and false failovers.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$TRANSITION_CACHE/target}"
cargo build --quiet --release --locked --bin detect-bench
"$CARGO_TARGET_DIR/release/detect-bench"
