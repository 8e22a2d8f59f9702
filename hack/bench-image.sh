#!/usr/bin/env bash
# Benchmark: build + push the checkpoint image of a ~512 MiB REAL checkpoint archive (runc + CRIU,
# container holding 500 MiB of state). Ours (checkpoint-image, release) vs buildah with the vfs
# driver (the Go original's method: from scratch, add, config --annotation, commit, push) vs a raw
# `curl` blob PUT of the same bytes (the physical limit), against the same docker-registry in the
# same run. Goals: >= 3x faster than buildah, >= 70% of raw PUT throughput, peak RSS <= 64 MiB.
# Also measures gzip/zstd on the archive (layer compression choice). Then the ENCRYPTED path beside
# the plaintext one (docs/security.md): the archive as the agent stores it (age) decrypted while
# streaming and pushed as an ocicrypt layer for two RSA node keys — throughput ratio
# encrypted/plaintext (goal >= 0.9), peak RSS (goal <= 64 MiB); skopeo decrypts the pushed layer
# with one node key back to the archive, byte for byte.
#
#   hack/bench-image.sh [STATE_MIB]     (default 500)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
state_mib="${1:-500}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$TRANSITION_CACHE/target}"

bash hack/install.sh apt criu >/dev/null
apt_install buildah zstd curl
log "building checkpoint-image (release)"
cargo build --quiet --release --locked --bin checkpoint-image
ours_bin="$CARGO_TARGET_DIR/release/checkpoint-image"

archive=$(bench_archive "$state_mib")
size=$(stat -c %s "$archive")
digest="sha256:$(sha256sum "$archive" | cut -d' ' -f1)"
cat "$archive" >/dev/null # warm the page cache for every contender alike

work=$(mktemp -d /tmp/bench-image.XXXXXX)
port=$(free_port)
mkdir -p "$work/registry"
cat >"$work/registry.yml" <<CFG
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: 127.0.0.1:$port}
CFG
docker-registry serve "$work/registry.yml" >/dev/null 2>&1 &
regpid=$!
trap 'kill $regpid 2>/dev/null; buildah --storage-driver vfs --root "$work/buildah" --runroot "$work/run" rm -a >/dev/null 2>&1; rm -rf "$work"' EXIT
wait_for "docker-registry" 10 curl -fsS "http://127.0.0.1:$port/v2/"
reg="127.0.0.1:$port"
measure() { python3 hack/bench/measure.py "$@"; }
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

log "raw curl blob PUT (physical limit)"
loc=$(curl -fsS -X POST -D - -o /dev/null "http://$reg/v2/bench/raw/blobs/uploads/" | tr -d '\r' | awk -F': ' 'tolower($1)=="location"{print $2}')
case "$loc" in http*) ;; *) loc="http://$reg$loc" ;; esac
sep='?'; case "$loc" in *\?*) sep='&' ;; esac
raw=$(measure curl -fsS -X PUT -H 'Content-Type: application/octet-stream' --data-binary @"$archive" "$loc${sep}digest=$digest")

log "checkpoint-image (ours)"
ours=$(measure "$ours_bin" --archive "$archive" --registry "$reg" --repository bench/ours --insecure)

log "checkpoint-image, encrypted: age archive in, ocicrypt layer (2 RSA node keys) out"
command -v age-keygen >/dev/null || apt_install age
age-keygen -o "$work/identity" 2>/dev/null && age -r "$(age-keygen -y "$work/identity")" -o "$work/archive.age" "$archive"
for n in 1 2; do
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/node$n.pem" 2>/dev/null
  openssl pkey -in "$work/node$n.pem" -pubout -out "$work/node$n.pub.pem" 2>/dev/null
done
cat "$work/archive.age" >/dev/null
sealed=$(measure "$ours_bin" --archive "$work/archive.age" --age-identity-file "$work/identity" \
  --encryption-key "$work/node1.pub.pem" --encryption-key "$work/node2.pub.pem" \
  --registry "$reg" --repository bench/sealed --tag sealed --insecure)
skopeo copy -q --src-tls-verify=false --decryption-key "$work/node2.pem" "docker://$reg/bench/sealed:sealed" "dir:$work/sealed-out" \
  || die "skopeo cannot decrypt the encrypted checkpoint image with a node key"
python3 - "$work/sealed-out" "$archive" <<'PY' || die "the decrypted layer differs from the archive"
import filecmp, json, os, sys
d = sys.argv[1]
m = json.load(open(os.path.join(d, "manifest.json")))
layer = os.path.join(d, m["layers"][0]["digest"].split(":", 1)[1])
sys.exit(0 if filecmp.cmp(layer, sys.argv[2], shallow=False) else 1)
PY

log "buildah (vfs), as the Go original"
cat >"$work/buildah.sh" <<SH
set -e
B="buildah --storage-driver vfs --root $work/buildah --runroot $work/run"
c=\$(\$B from scratch)
\$B add "\$c" "$archive" /
\$B config --annotation=io.kubernetes.cri-o.annotations.checkpoint.name=counter --annotation=org.criu.checkpoint.container.name=counter --annotation=org.criu.checkpoint.rootfsImageName=docker.io/library/busybox:1.36 "\$c"
\$B commit -q "\$c" bench-buildah >/dev/null
\$B push --tls-verify=false bench-buildah docker://$reg/bench/buildah:latest
SH
buildah_run=$(measure bash "$work/buildah.sh")

log "layer compression on this archive (gzip -1, zstd -1 -T1)"
gz=$(measure bash -c "gzip -1 -c '$archive' | wc -c > $work/gz.size")
zs=$(measure bash -c "zstd -1 -T1 -q -c '$archive' | wc -c > $work/zs.size")

for r in "$raw" "$ours" "$buildah_run" "$gz" "$zs" "$sealed"; do
  [ "$(field "$r" exit)" = 0 ] || die "a run failed: $r"
done
python3 - "$size" "$raw" "$ours" "$buildah_run" "$gz" "$zs" "$(cat "$work/gz.size")" "$(cat "$work/zs.size")" "$sealed" <<'PY'
import json, sys
size = int(sys.argv[1]); raw, ours, bh, gz, zs = (json.loads(a) for a in sys.argv[2:7])
gz_size, zs_size = int(sys.argv[7]), int(sys.argv[8])
sealed = json.loads(sys.argv[9])
mib = size / 2**20
def line(name, r):
    print(f"{name:<22}: {r['wall_s']:7.2f} s  {mib / r['wall_s']:7.1f} MiB/s  peak RSS {r['max_rss_mib']:7.1f} MiB")
print(f"archive: {mib:.0f} MiB (real runc+CRIU checkpoint)")
line("raw curl blob PUT", raw)
line("checkpoint-image", ours)
line("buildah vfs", bh)
print(f"speed-up vs buildah       = {bh['wall_s'] / ours['wall_s']:.1f}x  (goal >= 3)")
print(f"throughput vs raw PUT     = {raw['wall_s'] / ours['wall_s'] * 100:.0f}%  (goal >= 70%)")
print(f"peak RSS                  = {ours['max_rss_mib']:.1f} MiB  (goal <= 64)")
print(f"gzip -1 : {mib / gz['wall_s']:6.1f} MiB/s, size {gz_size / size * 100:5.1f}% of the archive")
print(f"zstd -1 : {mib / zs['wall_s']:6.1f} MiB/s, size {zs_size / size * 100:5.1f}% of the archive")
line("encrypted (age→ocicrypt)", sealed)
print(f"throughput encrypted/plaintext = {ours['wall_s'] / sealed['wall_s']:.2f}  (goal >= 0.9); encrypted peak RSS {sealed['max_rss_mib']:.1f} MiB (goal <= 64)")
print("skopeo --decryption-key: the pushed encrypted layer decrypts to the archive, byte for byte")
PY
