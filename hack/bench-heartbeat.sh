#!/usr/bin/env bash
# Benchmark P5: load POST /heartbeat of the real operator (release build, against a real
# kube-apiserver) with wrk on loopback from 10 000 simulated nodes. Prints requests/s, p99 latency,
# and the NodeHealth writes the API server counted during the steady-state window.
# Goals: >= 50k beats/s, p99 < 5 ms, 0 steady-state writes.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$TRANSITION_CACHE/target}"
duration="${1:-10}"
apt_install wrk
cargo build --quiet --release --locked --bin transition-operator
export TRANSITION_LAB_DIR=/tmp/transition-lab-bench LAB_CLUSTERS=mgmt LAB_CONTROLLERS=
bash hack/lab.sh up >/dev/null
source "$TRANSITION_LAB_DIR/env"
work=$(mktemp -d /tmp/bench-heartbeat.XXXXXX)
token=$(openssl rand -hex 16)
echo "cluster1-azure=$token" >"$work/tokens"
chmod 0600 "$work/tokens"
"$LAB_KUBECTL" --kubeconfig "$LAB_MGMT_KUBECONFIG" create namespace transition-system >/dev/null 2>&1 || true
port=$(free_port); mport=$(free_port)
"$CARGO_TARGET_DIR/release/transition-operator" --kubeconfig "$LAB_MGMT_KUBECONFIG" --install-crds \
  --heartbeat-tokens-file "$work/tokens" --heartbeat-addr "127.0.0.1:$port" --metrics-addr "127.0.0.1:$mport" \
  --operator-namespace transition-system >"$work/operator.log" 2>&1 &
op=$!
trap 'kill $op 2>/dev/null; bash hack/lab.sh down >/dev/null 2>&1; rm -rf "$work"' EXIT
wait_for "heartbeat endpoint" 60 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port"
writes() {
  curl -fsS --cacert "$LAB_CA" -H "Authorization: Bearer $LAB_MGMT_TOKEN" "$LAB_MGMT_URL/metrics" \
    | awk '/^apiserver_request_total/ && /resource="nodehealths"/ && /verb="(PATCH|POST|PUT|APPLY)"/ {s += $NF} END {print s + 0}'
}
log "warm-up: registering 10k nodes"
TOKEN="$token" wrk -t"${WRK_THREADS:-1}" -c32 -d5s -s hack/bench/heartbeat.lua "http://127.0.0.1:$port/heartbeat" >/dev/null
before=$(writes)
log "measuring for ${duration}s"
TOKEN="$token" wrk -t"${WRK_THREADS:-1}" -c32 -d"${duration}s" --latency -s hack/bench/heartbeat.lua "http://127.0.0.1:$port/heartbeat" >"$work/wrk.txt"
after=$(writes)
cat "$work/wrk.txt"
rps=$(awk '/^Requests\/sec/ {print $2}' "$work/wrk.txt")
p99=$(awk '$1 == "99%" {print $2}' "$work/wrk.txt")
non2xx=$(awk '/Non-2xx/ {print $NF}' "$work/wrk.txt")
echo "heartbeats/s: $rps (goal >= 50000)   p99: $p99 (goal < 5ms)   non-2xx: ${non2xx:-0}"
echo "NodeHealth writes during the ${duration}s steady state: $((after - before)) (goal 0)"
