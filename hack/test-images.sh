#!/usr/bin/env bash
# Test of hack/build-images.sh against real things: the lab's docker-registry (htpasswd auth,
# plain HTTP), skopeo (push, inspect, pull), umoci (unpack into a runc bundle), runc (runs the
# pulled images) and kubectl kustomize (renders the generated `images:` snippet). Nothing is mocked.
#
#   hack/test-images.sh [--skip-build]     (other arguments go to the first build-images.sh run)
#
# Checks, per image (transition-operator, checkpoint-agent):
#  1. pushed by digest: the registry's manifest bytes hash to the digest build-images.sh reported;
#  2. the labels org.opencontainers.image.{source,revision,version,title,created} are set, revision
#     = this checkout's commit, version = Cargo.toml's workspace version;
#  3. a second assembly from the same binaries (another umask, another folder) gives the same
#     digests; hack/oci_image.py ignores host metadata but not content;
#  4. the operator's image config User is not root; the agent's is root (docs/images.md says why);
#  5. compressed and unpacked sizes < 40 MiB (the compressed size re-read from the registry);
#  6. pulled back, unpacked and run with runc: `--version` exits 0 and names the binary and its
#     version (so every shared library it needs is in the image), as the image's own user;
#  7. images.env and kustomize-images.yaml name REGISTRY/REPO@sha256:… and kustomize rewrites
#     `transition-operator` / `checkpoint-agent` to them.
# Uses the lab in $TRANSITION_LAB_DIR (default /tmp/transition-lab-images); starts it when it is
# not up and then stops it again.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
shopt -s inherit_errexit
cd "$REPO_ROOT"
export TRANSITION_LAB_DIR="${TRANSITION_LAB_DIR:-/tmp/transition-lab-images}"
goal=$((40 * 1024 * 1024))
apt_install skopeo umoci runc jq

work=$(mktemp -d /tmp/test-images.XXXXXX)
started_lab=0
containers=()
cleanup() {
  local c
  for c in "${containers[@]}"; do runc --root "$work/runc" delete -f "$c" >/dev/null 2>&1 || true; done
  if [ "$started_lab" = 1 ]; then bash hack/lab.sh down >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { die "test-images: $*"; }

if ! bash hack/lab.sh status >/dev/null 2>&1; then
  log "starting the lab in $TRANSITION_LAB_DIR"
  started_lab=1
  bash hack/lab.sh up >/dev/null
fi
eval "$(bash hack/lab.sh env)"
# Registry credentials in an auth file (mode 0600), never on a command line or in the log.
(umask 077; REG="$LAB_REGISTRY" U="$LAB_REGISTRY_USER" P="$LAB_REGISTRY_PASSWORD" python3 -c '
import base64, json, os
e = os.environ
print(json.dumps({"auths": {e["REG"]: {"auth": base64.b64encode((e["U"] + ":" + e["P"]).encode()).decode()}}}))' >"$work/auth.json")
skopeo_() { skopeo --command-timeout 120s "$@"; }
inspect() { skopeo_ inspect --tls-verify=false --authfile "$work/auth.json" "$@"; }

log "real things used: docker-registry $LAB_REGISTRY (lab), $(skopeo --version), $(umoci --version), $(runc --version | head -n1)"

# --- build and push (the default registry: the lab's) -------------------------------------------
bash hack/build-images.sh --out "$work/out" "$@"
images="$work/out/images.json"
[ "$(jq length "$images")" = 2 ] || fail "images.json lists $(jq length "$images") images, not 2"
expected_revision=$(git rev-parse HEAD)
if [ -n "$(git status --porcelain)" ]; then expected_revision="$expected_revision-dirty"; fi
expected_version=$(python3 -c 'import tomllib; print(tomllib.load(open("Cargo.toml", "rb"))["workspace"]["package"]["version"])')

for name in transition-operator checkpoint-agent; do
  digest=$(jq -r --arg n "$name" '.[] | select(.name == $n) | .digest' "$images")
  repo=$(jq -r --arg n "$name" '.[] | select(.name == $n) | .repository' "$images")
  if [ -z "$digest" ] || [ -z "$repo" ]; then fail "images.json has no pushed entry for $name"; fi
  ref="$repo@$digest"
  log "checking $ref"

  # 1. digest: the stored manifest's bytes, hashed here.
  inspect --raw "docker://$ref" >"$work/$name.manifest" || fail "$name: skopeo inspect --raw $ref failed"
  raw_digest="sha256:$(sha256sum <"$work/$name.manifest" | cut -d' ' -f1)"
  [ "$raw_digest" = "$digest" ] || fail "$name: the registry's manifest hashes to $raw_digest, build-images.sh reported $digest"
  info=$(inspect "docker://$ref")
  [ "$(jq -r .Digest <<<"$info")" = "$digest" ] || fail "$name: skopeo inspect reports digest $(jq -r .Digest <<<"$info"), expected $digest"

  # 2. labels.
  for key in source revision version title created; do
    value=$(jq -r --arg k "org.opencontainers.image.$key" '.Labels[$k] // empty' <<<"$info")
    [ -n "$value" ] || fail "$name: label org.opencontainers.image.$key missing"
  done
  label() { jq -r --arg k "org.opencontainers.image.$1" '.Labels[$k]' <<<"$info"; }
  [ "$(label revision)" = "$expected_revision" ] || fail "$name: revision label $(label revision), checkout is $expected_revision"
  [ "$(label version)" = "$expected_version" ] || fail "$name: version label $(label version), Cargo.toml says $expected_version"
  [ "$(label title)" = "$name" ] || fail "$name: title label is $(label title)"

  # 4. the user.
  user=$(inspect --config "docker://$ref" | jq -r '.config.User // ""')
  case "$name" in
    transition-operator)
      uid="${user%%:*}"
      case "$uid" in "" | 0 | root) fail "$name: image config User is '$user' (root)" ;; esac
      [ "$user" = 65532:65532 ] || fail "$name: image config User is '$user', expected 65532:65532 (nonroot)" ;;
    checkpoint-agent)
      [ "$user" = 0:0 ] || fail "$name: image config User is '$user', expected 0:0 (reads the kubelet's root-only checkpoint folder)" ;;
  esac

  # 5. sizes: what a pull transfers, from the registry's manifest, and the unpacked layer.
  pulled=$(jq --argjson m "$(wc -c <"$work/$name.manifest")" '$m + .config.size + ([.layers[].size] | add)' "$work/$name.manifest")
  reported=$(jq --arg n "$name" '.[] | select(.name == $n) | .compressed_bytes' "$images")
  [ "$pulled" = "$reported" ] || fail "$name: registry manifest adds up to $pulled bytes, build-images.sh reported $reported"
  unpacked=$(jq --arg n "$name" '.[] | select(.name == $n) | .uncompressed_bytes' "$images")
  [ "$pulled" -lt "$goal" ] || fail "$name: compressed size $pulled bytes is not under 40 MiB"
  [ "$unpacked" -lt "$goal" ] || fail "$name: unpacked size $unpacked bytes is not under 40 MiB"
  log "$name: $(awk -v c="$pulled" -v u="$unpacked" 'BEGIN { printf "%.1f MiB compressed, %.1f MiB unpacked", c / 1048576, u / 1048576 }') (< 40 MiB)"

  # 6. pull, unpack, run.
  skopeo_ copy --quiet --src-tls-verify=false --src-authfile "$work/auth.json" \
    "docker://$ref" "oci:$work/pull-$name:run" || fail "$name: skopeo copy of $ref failed"
  umoci unpack --image "$work/pull-$name:run" "$work/bundle-$name" >/dev/null 2>&1 \
    || fail "$name: umoci unpack failed"
  jq '.process.terminal = false | .process.args += ["--version"]' "$work/bundle-$name/config.json" >"$work/config.json"
  mv "$work/config.json" "$work/bundle-$name/config.json"
  run_uid=$(jq -r '.process.user.uid' "$work/bundle-$name/config.json")
  [ "$run_uid:$(jq -r '.process.user.gid' "$work/bundle-$name/config.json")" = "$user" ] \
    || fail "$name: umoci's runtime config runs as uid $run_uid, the image says $user"
  id="test-images-$name-$$"
  containers+=("$id")
  rc=0
  output=$(timeout 60 runc --root "$work/runc" run --bundle "$work/bundle-$name" "$id" </dev/null 2>&1) || rc=$?
  [ "$rc" = 0 ] || fail "$name: runc run $name --version exited $rc: $output"
  grep -qF "$name $expected_version" <<<"$output" \
    || fail "$name: --version printed '$output', expected '$name $expected_version'"
  log "$name: ran under runc as uid $run_uid: $output"
done

# --- 3. reproducible assembly ---------------------------------------------------------------------
log "assembling again from the same binaries (umask 077, another folder): digests must not change"
(umask 077; bash hack/build-images.sh --skip-build --no-push --out "$work/again" >/dev/null)
for name in transition-operator checkpoint-agent; do
  a=$(jq -r --arg n "$name" '.[] | select(.name == $n) | .digest' "$images")
  b=$(jq -r --arg n "$name" '.[] | select(.name == $n) | .digest' "$work/again/images.json")
  [ "$a" = "$b" ] || fail "$name: second assembly gave $b, the first $a (not reproducible)"
done
diff <(cd "$work/out/oci" && find . -type f | LC_ALL=C sort) <(cd "$work/again/oci" && find . -type f | LC_ALL=C sort) >/dev/null \
  || fail "the two assemblies wrote different blob sets"
# The same tool must see content: same files with other host metadata → same digest; one byte
# changed → another digest (so the equality above is not vacuous).
tiny() {
  local root="$1" umask_="$2"
  rm -rf "$root"
  (umask "$umask_"; mkdir -p "$root/bin" "$root/tmp"; printf 'hello\n' >"$root/bin/x"; chmod +x "$root/bin/x")
  touch -d "@$3" "$root/bin/x" "$root/bin"
  python3 hack/oci_image.py build --rootfs "$root" --layout "$root.oci" --tag t --created 1700000000 \
    --entrypoint /bin/x --mode tmp=1777 | jq -r .digest
}
d1=$(tiny "$work/tiny1" 022 1000000000)
d2=$(tiny "$work/tiny2" 077 1600000000)
[ "$d1" = "$d2" ] || fail "oci_image.py: host umask or mtime changed the digest ($d1 vs $d2)"
printf 'hellO\n' >"$work/tiny2/bin/x"
d3=$(python3 hack/oci_image.py build --rootfs "$work/tiny2" --layout "$work/tiny3.oci" --tag t --created 1700000000 \
  --entrypoint /bin/x --mode tmp=1777 | jq -r .digest)
[ "$d3" != "$d1" ] || fail "oci_image.py: a changed file kept the digest $d1"

# --- 7. what the install consumes ----------------------------------------------------------------
# shellcheck disable=SC1091
source "$work/out/images.env"
for pair in "transition-operator:${OPERATOR_IMAGE:-}" "checkpoint-agent:${AGENT_IMAGE:-}"; do
  name="${pair%%:*}" ref="${pair#*:}"
  want="$(jq -r --arg n "$name" '.[] | select(.name == $n) | .repository + "@" + .digest' "$images")"
  [ "$ref" = "$want" ] || fail "images.env names $name as '$ref', expected $want"
done
mkdir -p "$work/kustomize"
cat >"$work/kustomize/workloads.yaml" <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: transition-operator}
spec:
  selector: {matchLabels: {app: o}}
  template:
    metadata: {labels: {app: o}}
    spec: {containers: [{name: operator, image: "transition-operator:0.1.0"}]}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: checkpoint-agent}
spec:
  selector: {matchLabels: {app: a}}
  template:
    metadata: {labels: {app: a}}
    spec: {containers: [{name: agent, image: "checkpoint-agent:0.1.0"}]}
YAML
{ echo "resources: [workloads.yaml]"; cat "$work/out/kustomize-images.yaml"; } >"$work/kustomize/kustomization.yaml"
rendered=$("$LAB_KUBECTL_CURRENT" kustomize "$work/kustomize") || fail "kubectl kustomize of kustomize-images.yaml failed"
for ref in "$OPERATOR_IMAGE" "$AGENT_IMAGE"; do
  grep -qF "image: $ref" <<<"$rendered" || fail "kustomize did not rewrite an image to $ref: $rendered"
done

log "test-images: all checks passed"
