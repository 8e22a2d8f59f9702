#!/usr/bin/env bash
# Benchmark: upload of a ~1 GiB REAL checkpoint archive (runc + CRIU, container holding 1000 MiB of
# state) by our agent vs `aws s3 cp` (awscli from PyPI), against the SAME s3s-fs in the same run.
# Prints throughput of each and the ratio (goal >= 1.0), bytes read (goal: one pass = 1.0x the
# archive), bytes read on a repeat run (goal: ~0, nothing downloaded), and peak RSS. Then the same
# archive ENCRYPTED on the node (age, --encryption-recipients-file: docs/security.md) beside the
# plaintext run: throughput ratio encrypted/plaintext (goal >= 0.9) and peak RSS (goal <= 64 MiB);
# the real `age` CLI decrypts the object back to the archive.
#
#   hack/bench-agent.sh [STATE_MIB]     (default 1000)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
state_mib="${1:-1000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$TRANSITION_CACHE/target}"

bash hack/install.sh apt criu s3s >/dev/null
venv="$TRANSITION_CACHE/venv-awscli"
if [ ! -x "$venv/bin/aws" ]; then
  log "installing awscli from PyPI into $venv"
  python3 -m venv "$venv" && "$venv/bin/pip" install -q awscli
fi
log "building checkpoint-agent (release)"
cargo build --quiet --release --locked --bin checkpoint-agent
agent="$CARGO_TARGET_DIR/release/checkpoint-agent"

archive=$(bench_archive "$state_mib")
archive_dir=$(dirname "$archive")
size=$(stat -c %s "$archive")

work=$(mktemp -d /tmp/bench-agent.XXXXXX)
port=$(free_port); ak="bench$RANDOM"; sk="secret$RANDOM$RANDOM"
mkdir -p "$work/s3/checkpoints"
"$TRANSITION_BIN/s3s-fs" --host 127.0.0.1 --port "$port" --access-key "$ak" --secret-key "$sk" "$work/s3" >/dev/null 2>&1 &
s3pid=$!
trap 'kill $s3pid 2>/dev/null; rm -rf "$work"' EXIT
wait_for "s3s-fs" 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port"

measure() { python3 hack/bench/measure.py "$@"; }
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

log "aws s3 cp (baseline)"
base=$(AWS_ACCESS_KEY_ID="$ak" AWS_SECRET_ACCESS_KEY="$sk" AWS_DEFAULT_REGION=us-east-1 \
  measure "$venv/bin/aws" --endpoint-url "http://127.0.0.1:$port" s3 cp --only-show-errors "$archive" "s3://checkpoints/baseline/$(basename "$archive")")
log "checkpoint-agent --once"
ours=$(MINIO_SECRET_KEY="$sk" measure "$agent" --once --node-name bench-node --cluster-name bench --no-kube \
  --s3-endpoint "http://127.0.0.1:$port" --s3-access-key "$ak" --checkpoint-dir "$archive_dir" --state-dir "$work/state")
log "checkpoint-agent --once again (dedupe)"
again=$(MINIO_SECRET_KEY="$sk" measure "$agent" --once --node-name bench-node --cluster-name bench --no-kube \
  --s3-endpoint "http://127.0.0.1:$port" --s3-access-key "$ak" --checkpoint-dir "$archive_dir" --state-dir "$work/state")
log "checkpoint-agent --once, encrypted (age) — another cluster name, so nothing is deduplicated"
command -v age-keygen >/dev/null || apt_install age
age-keygen -o "$work/identity" 2>/dev/null && age-keygen -y "$work/identity" >"$work/recipients"
sealed=$(MINIO_SECRET_KEY="$sk" measure "$agent" --once --node-name bench-node --cluster-name bench-sealed --no-kube \
  --s3-endpoint "http://127.0.0.1:$port" --s3-access-key "$ak" --checkpoint-dir "$archive_dir" --state-dir "$work/state-sealed" \
  --encryption-recipients-file "$work/recipients")
for r in "$base" "$ours" "$again" "$sealed"; do
  [ "$(field "$r" exit)" = 0 ] || die "a run failed: $r"
done
cmp -s "$archive" "$work/s3/checkpoints/checkpoints/v1/bench/bench-node/$(basename "$archive")" || die "uploaded object differs from the archive"
sealed_obj="$work/s3/checkpoints/checkpoints/v1/bench-sealed/bench-node/$(basename "$archive")"
sealed_size=$(stat -c %s "$sealed_obj")
age -d -i "$work/identity" "$sealed_obj" | cmp -s - "$archive" || die "the encrypted object does not decrypt (age CLI) to the archive"

python3 - "$size" "$base" "$ours" "$again" "$sealed" "$sealed_size" <<'PY'
import json, sys
size = int(sys.argv[1]); base, ours, again, sealed = (json.loads(a) for a in sys.argv[2:6])
sealed_size = int(sys.argv[6])
mib = size / 2**20
tb, to = mib / base["wall_s"], mib / ours["wall_s"]
print(f"archive: {mib:.0f} MiB (real runc+CRIU checkpoint)")
print(f"aws s3 cp          : {base['wall_s']:7.2f} s  {tb:7.1f} MiB/s  read {base['rchar_bytes']/size:5.2f}x  peak RSS {base['max_rss_mib']:6.1f} MiB")
print(f"checkpoint-agent   : {ours['wall_s']:7.2f} s  {to:7.1f} MiB/s  read {ours['rchar_bytes']/size:5.2f}x  peak RSS {ours['max_rss_mib']:6.1f} MiB")
print(f"agent repeat run   : {again['wall_s']:7.2f} s  read {again['rchar_bytes']} bytes in total (files + sockets)")
print(f"throughput ratio agent/aws = {to/tb:.2f}  (goal >= 1.0)")
ts = mib / sealed["wall_s"]
print(f"agent, encrypted   : {sealed['wall_s']:7.2f} s  {ts:7.1f} MiB/s  read {sealed['rchar_bytes']/size:5.2f}x  peak RSS {sealed['max_rss_mib']:6.1f} MiB  object {sealed_size/size:.4f}x the archive")
print(f"throughput ratio encrypted/plaintext = {ts/to:.2f}  (goal >= 0.9); encrypted peak RSS {sealed['max_rss_mib']:.1f} MiB (goal <= 64)")
PY
