#!/usr/bin/env bash
# Builds the OCI images of transition-operator and checkpoint-agent from this checkout and pushes
# them to a registry (the lab's by default), referenced by digest afterwards.
#
#   hack/build-images.sh [--registry HOST[:PORT]] [--repository-prefix P] [--out DIR]
#                        [--creds-file FILE] [--tls-verify=false] [--skip-build] [--no-push]
#
#   --registry HOST[:PORT]  where to push (default: the lab's, `hack/lab.sh env` → LAB_REGISTRY,
#                           with its credentials; the lab registry is plain HTTP)
#   --repository-prefix P   repositories are P/transition-operator and P/checkpoint-agent
#                           (default: transition)
#   --out DIR               image layouts and results (default: $TRANSITION_CACHE/images):
#                           DIR/oci/<image>/ (OCI image layout), DIR/images.json, and after a push
#                           DIR/images.env (OPERATOR_IMAGE=…@sha256:…, AGENT_IMAGE=…) and
#                           DIR/kustomize-images.yaml (a kustomize `images:` list, newName + digest)
#   --creds-file FILE       registry credentials, one line USER:PASSWORD (never printed)
#   --tls-verify=false      push over plain HTTP / without verifying TLS (implied for the lab)
#   --skip-build            reuse the release binaries of the last build (refused when they were
#                           built from another revision)
#   --no-push               assemble the layouts only (hack/test-images.sh checks reproducibility
#                           with it)
#
# There is no base image: each image is one layer holding the stripped release binary, the shared
# libraries `ldd` lists, Debian's CA certificates, /etc/passwd + /etc/group (root and nonroot
# 65532), /etc/nsswitch.conf, /tmp (1777) and the Debian packages' copyright and dpkg status files.
# The libraries and certificates are copied from this machine, which is Debian (bookworm): the
# images are exactly as current as its packages. docs/images.md ("Images of the operator and the
# agent") says what is in them and what reproducibility is guaranteed.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
shopt -s inherit_errexit
cd "$REPO_ROOT"

registry="" prefix="transition" out="$TRANSITION_CACHE/images" creds_file="" tls_verify=""
skip_build=0 push=1
usage() { awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$0" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --registry) registry="${2:?--registry needs HOST[:PORT]}"; shift ;;
    --registry=*) registry="${1#*=}" ;;
    --repository-prefix) prefix="${2:?--repository-prefix needs a value}"; shift ;;
    --repository-prefix=*) prefix="${1#*=}" ;;
    --out) out="${2:?--out needs a folder}"; shift ;;
    --out=*) out="${1#*=}" ;;
    --creds-file) creds_file="${2:?--creds-file needs a file}"; shift ;;
    --creds-file=*) creds_file="${1#*=}" ;;
    --tls-verify=true|--tls-verify=false) tls_verify="${1#*=}" ;;
    --skip-build) skip_build=1 ;;
    --no-push) push=0 ;;
    -h|--help) usage ;;
    *) log "unknown argument: $1"; usage ;;
  esac
  shift
done
prefix="${prefix%/}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

# image name → cargo package, image user, exposed ports. The operator runs as nonroot (65532). The
# agent runs as root: it reads and deletes the kubelet's archives in /var/lib/kubelet/checkpoints
# (root-owned, 0700 on a kubelet node) and reads /proc of other processes (hostPID) to see whether
# an archive is still being written; a non-root user could do neither.
IMAGES=(transition-operator checkpoint-agent)
declare -A CRATE_DIR=([transition-operator]=operator [checkpoint-agent]=checkpoint-agent)
declare -A USER_OF=([transition-operator]=65532:65532 [checkpoint-agent]=0:0)
declare -A PORTS=([transition-operator]="8080/tcp 8090/tcp" [checkpoint-agent]="9090/tcp")
declare -A ENV_NAME=([transition-operator]=OPERATOR_IMAGE [checkpoint-agent]=AGENT_IMAGE)

command -v skopeo >/dev/null || apt_install skopeo
command -v rsync >/dev/null || apt_install rsync
apt_install ca-certificates

# --- what the images are made from ---------------------------------------------------------------
revision=$(git rev-parse HEAD) || die "cannot read the commit of $REPO_ROOT"
if [ -n "$(git status --porcelain)" ]; then revision="$revision-dirty"; fi
# The image's `created` and every file's mtime: the commit time, so the same commit gives the same
# image whenever it is built.
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)
# The workspace version, license and repository, and each package's description (Cargo.toml).
read_toml() {
  python3 - "$@" <<'PY'
import sys, tomllib
doc = tomllib.load(open(sys.argv[1], "rb"))
for key in sys.argv[2].split("."):
    doc = doc[key]
print(doc)
PY
}
version=$(read_toml Cargo.toml workspace.package.version) || die "cannot read workspace.package.version from Cargo.toml"
license=$(read_toml Cargo.toml workspace.package.license) || die "cannot read workspace.package.license from Cargo.toml"
# The source label: the `origin` remote when the checkout has one, else the project URL that
# Cargo.toml declares (workspace.package.repository).
source_url=$(git remote get-url origin 2>/dev/null || read_toml Cargo.toml workspace.package.repository) \
  || die "cannot read workspace.package.repository from Cargo.toml"
# A remote URL may carry credentials (https://user:token@host/...): never put them in a label.
source_url=$(printf '%s' "$source_url" | sed -E 's#^([a-z+]+://)[^/@]*@#\1#')
tag="$version-${revision:0:12}"
case "$revision" in *-dirty) tag="$tag-dirty" ;; esac
case "$(uname -m)" in
  x86_64) arch=amd64 ;;
  aarch64) arch=arm64 ;;
  *) die "host architecture $(uname -m) has no OCI name here" ;;
esac

# --- the release binaries ------------------------------------------------------------------------
# A target folder of its own (never blocks the debug builds in $TRANSITION_CACHE/target), the
# `image` profile (release + strip, Cargo.toml), at the lowest priority (BUILD_IMAGES_JOBS jobs, 2 by default): this machine has
# two cores and end-to-end tests that are sensitive to timing run beside it.
export CARGO_TARGET_DIR="$TRANSITION_CACHE/target-images"
bin_dir="$CARGO_TARGET_DIR/image"
stamp="$bin_dir/build-images.revision"
# tree_state — the commit plus a hash of uncommitted changes (tracked diffs and untracked files):
# what the binaries were built from, so --skip-build can refuse binaries of another tree.
tree_state() {
  local changes
  changes=$({ git diff HEAD; git ls-files -o --exclude-standard -z | xargs -0 -r sha256sum; } | sha256sum | cut -c1-16)
  echo "$revision $changes"
}
# The build runs in a copy of the checkout at a fixed path ($TRANSITION_CACHE/images-src): every
# path in the flags is then the same for every checkout and clone (CI's included), so the
# dependencies' build cache stays valid and only our crates rebuild when they change. The copy
# keeps the files' modification times (rsync -a), which is what cargo compares.
build_src="$TRANSITION_CACHE/images-src"
build_binaries() {
  local cargo_home="${CARGO_HOME:-$HOME/.cargo}" rustup_home="${RUSTUP_HOME:-$HOME/.rustup}"
  rm -rf "$build_src" && mkdir -p "$build_src"
  git ls-files -z --cached --others --exclude-standard \
    | rsync -a --ignore-missing-args --from0 --files-from=- ./ "$build_src/" \
    || die "cannot copy the checkout to $build_src"
  # No build path in the binaries (panic locations, C __FILE__): registry sources, toolchain,
  # source copy and target folder are remapped to fixed names.
  RUSTFLAGS="--remap-path-prefix=$cargo_home=/cargo --remap-path-prefix=$rustup_home=/rustup"
  RUSTFLAGS="$RUSTFLAGS --remap-path-prefix=$build_src=/src --remap-path-prefix=$CARGO_TARGET_DIR=/target"
  CFLAGS="-ffile-prefix-map=$cargo_home=/cargo -ffile-prefix-map=$build_src=/src -ffile-prefix-map=$CARGO_TARGET_DIR=/target"
  # C compilers read SOURCE_DATE_EPOCH (for __DATE__/__TIME__), so the cc crate makes every C
  # dependency (aws-lc, libgit2, ring, zlib) and all that depends on them rebuild when it changes.
  # The build takes the time of the last commit that changed Cargo.lock: fixed for a given set of
  # dependencies, so a commit touching our code alone rebuilds our crates alone.
  local build_epoch jobs="${BUILD_IMAGES_JOBS:-2}"
  build_epoch=$(git log -1 --format=%ct -- Cargo.lock)
  log "building the release binaries (profile image, -j $jobs, nice 19) in $CARGO_TARGET_DIR"
  local start=$SECONDS
  (cd "$build_src" && RUSTFLAGS="$RUSTFLAGS" CFLAGS="$CFLAGS" SOURCE_DATE_EPOCH="$build_epoch" \
    nice -n 19 cargo build --locked --profile image -j "$jobs" \
    -p transition-operator --bin transition-operator -p checkpoint-agent --bin checkpoint-agent) \
    || die "cargo build of transition-operator and checkpoint-agent failed"
  log "release binaries built in $((SECONDS - start)) s"
  tree_state >"$stamp"
}
if [ "$skip_build" = 1 ]; then
  for name in "${IMAGES[@]}"; do
    [ -x "$bin_dir/$name" ] || die "binary $bin_dir/$name missing: run without --skip-build"
  done
  built=$(cat "$stamp" 2>/dev/null || echo "an unknown tree")
  # A label must not claim a revision the binaries were not built from.
  [ "$built" = "$(tree_state)" ] \
    || die "binaries in $bin_dir were built from $built, the checkout is $(tree_state): run without --skip-build"
  log "--skip-build: using the binaries built from $built"
else
  build_binaries
fi

# --- one image ----------------------------------------------------------------------------------
work=$(mktemp -d /tmp/build-images.XXXXXX)
trap 'rm -rf "$work"' EXIT

# deb_package PATH — the Debian package that installed PATH (dpkg knows /usr/lib/... for /lib/...
# on a merged-/usr system).
deb_package() {
  local p
  p=$(dpkg-query -S "$1" 2>/dev/null || dpkg-query -S "$(readlink -f "$1")" 2>/dev/null) \
    || die "no Debian package owns $1 (needed by the image)"
  p="${p%%: *}"
  echo "${p%%:*}"
}

# add_package_files ROOT PKG — what scanners and licences need of a Debian package whose files
# are in the image: its copyright file and a dpkg status entry (/var/lib/dpkg/status.d/PKG, the
# distroless convention that trivy and grype read).
add_package_files() {
  local root="$1" pkg="$2"
  mkdir -p "$root/usr/share/doc/$pkg" "$root/var/lib/dpkg/status.d"
  [ -f "/usr/share/doc/$pkg/copyright" ] || die "Debian package $pkg has no /usr/share/doc/$pkg/copyright"
  cp -L "/usr/share/doc/$pkg/copyright" "$root/usr/share/doc/$pkg/copyright"
  dpkg-query -W -f='Package: ${Package}\nStatus: install ok installed\nArchitecture: ${Architecture}\nSource: ${source:Package}\nVersion: ${Version}\n' \
    "$pkg" >"$root/var/lib/dpkg/status.d/$pkg" || die "cannot read the dpkg entry of $pkg"
}

# assemble NAME — writes the rootfs of image NAME to $work/NAME and its layout to $out/oci/NAME;
# prints oci_image.py's summary (digest, sizes).
assemble() {
  local name="$1" bin="$bin_dir/$1" root="$work/$1"
  rm -rf "$root"
  mkdir -p "$root"/{usr/local/bin,etc/ssl/certs,tmp,root,home/nonroot}
  cp "$bin" "$root/usr/local/bin/$name"
  chmod 0755 "$root/usr/local/bin/$name"

  # The shared libraries the binary loads, as this (Debian) machine's dynamic loader resolves them,
  # at the same paths (the ELF interpreter /lib64/ld-linux-x86-64.so.2 included).
  local ldd_out lib pkgs=() pkg
  ldd_out=$(ldd "$bin" 2>&1) || die "ldd $bin failed: $ldd_out"
  if grep -q "not found" <<<"$ldd_out"; then
    die "binary $name needs libraries this machine lacks: $(grep "not found" <<<"$ldd_out" | tr -s ' \t' ' ')"
  fi
  while read -r lib; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
    pkg=$(deb_package "$lib")
    pkgs+=("$pkg")
  done < <(awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' <<<"$ldd_out" | LC_ALL=C sort -u)

  # CA certificates: every certificate of Debian's ca-certificates package, concatenated in name
  # order (what update-ca-certificates writes by default), NOT this machine's bundle, which may hold
  # local additions (/usr/local/share/ca-certificates).
  dpkg-query -L ca-certificates | grep -E '^/usr/share/ca-certificates/.*\.crt$' | LC_ALL=C sort \
    | xargs -r awk 1 >"$root/etc/ssl/certs/ca-certificates.crt"
  [ -s "$root/etc/ssl/certs/ca-certificates.crt" ] || die "Debian package ca-certificates holds no certificate"
  pkgs+=(ca-certificates)

  local p
  while read -r p; do add_package_files "$root" "$p"; done < <(printf '%s\n' "${pkgs[@]}" | LC_ALL=C sort -u)

  # Users: root and nonroot (65532, the distroless convention). No shell exists in the image.
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
  # glibc's name service: /etc/hosts (mounted by the kubelet) before DNS, as on Debian.
  printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$root/etc/nsswitch.conf"

  local args=() port
  for port in ${PORTS[$name]}; do args+=(--expose "$port"); done
  python3 hack/oci_image.py build --rootfs "$root" --layout "$out/oci/$name" --tag "$tag" \
    --created "$SOURCE_DATE_EPOCH" --arch "$arch" --entrypoint "/usr/local/bin/$name" \
    --user "${USER_OF[$name]}" \
    --env PATH=/usr/local/bin:/usr/bin:/bin --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --label "org.opencontainers.image.title=$name" \
    --label "org.opencontainers.image.description=$(read_toml "${CRATE_DIR[$name]}/Cargo.toml" package.description)" \
    --label "org.opencontainers.image.source=$source_url" \
    --label "org.opencontainers.image.revision=$revision" \
    --label "org.opencontainers.image.version=$version" \
    --label "org.opencontainers.image.licenses=$license" \
    --label "org.opencontainers.image.created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)" \
    --mode tmp=1777 --mode root=0700 --owner home/nonroot=65532:65532 "${args[@]}" \
    || die "writing the image layout of $name failed"
}

# --- registry ------------------------------------------------------------------------------------
if [ "$push" = 1 ]; then
  user="" pass=""
  if [ -z "$registry" ]; then
    lab_env=$(bash hack/lab.sh env 2>/dev/null) \
      || die "no --registry given and the lab is not up (TRANSITION_LAB_DIR=${TRANSITION_LAB_DIR:-/tmp/transition-lab}): start it with hack/lab.sh up"
    eval "$lab_env"
    registry="$LAB_REGISTRY" user="$LAB_REGISTRY_USER" pass="$LAB_REGISTRY_PASSWORD"
    [ -n "$tls_verify" ] || tls_verify=false # the lab's registry speaks plain HTTP
  fi
  if [ -n "$creds_file" ]; then
    [ -r "$creds_file" ] || die "credentials file $creds_file: not readable"
    IFS= read -r line <"$creds_file" || true
    case "$line" in *:*) ;; *) die "credentials file $creds_file: first line is not USER:PASSWORD" ;; esac
    user="${line%%:*}" pass="${line#*:}"
  fi
  tls_verify="${tls_verify:-true}"
  # An auth file (mode 0600, removed on exit) so the password is in no command line.
  authfile="$work/auth.json"
  (umask 077; REG="$registry" U="$user" P="$pass" python3 -c '
import base64, json, os
e = os.environ
auths = {e["REG"]: {"auth": base64.b64encode((e["U"] + ":" + e["P"]).encode()).decode()}} if e["U"] else {}
print(json.dumps({"auths": auths}))' >"$authfile")
  unset pass line
fi

push_image() {
  local name="$1" digest="$2" ref="$registry/$prefix/$1"
  log "pushing $name to $ref:$tag"
  local err
  err=$(skopeo --command-timeout 300s copy --quiet --preserve-digests --dest-authfile "$authfile" \
    --dest-tls-verify="$tls_verify" --digestfile "$work/$name.pushed" \
    "oci:$out/oci/$name:$tag" "docker://$ref:$tag" 2>&1) || die "push of $name to $ref:$tag failed: $err"
  [ "$(cat "$work/$name.pushed")" = "$digest" ] \
    || die "registry $registry stored $name as $(cat "$work/$name.pushed"), not as the built $digest"
}

# --- build, push, report -------------------------------------------------------------------------
log "assembling images ($tag, created $(date -u -d "@$SOURCE_DATE_EPOCH" +%FT%TZ))"
declare -A DIGEST COMPRESSED UNCOMPRESSED
for name in "${IMAGES[@]}"; do
  summary=$(assemble "$name")
  DIGEST[$name]=$(jq -r .digest <<<"$summary")
  COMPRESSED[$name]=$(jq -r .compressed_bytes <<<"$summary")
  UNCOMPRESSED[$name]=$(jq -r .uncompressed_bytes <<<"$summary")
  if [ "$push" = 1 ]; then push_image "$name" "${DIGEST[$name]}"; fi
done

goal_mib=40
{
  printf '%-20s %-84s %10s %12s  %s\n' IMAGE "REFERENCE" "GZIP MiB" "UNPACKED MiB" "GOAL < $goal_mib MiB"
  for name in "${IMAGES[@]}"; do
    if [ "$push" = 1 ]; then ref="$registry/$prefix/$name@${DIGEST[$name]}"; else ref="(not pushed) $name@${DIGEST[$name]}"; fi
    awk -v n="$name" -v r="$ref" -v c="${COMPRESSED[$name]}" -v u="${UNCOMPRESSED[$name]}" -v g="$goal_mib" \
      'BEGIN { printf "%-20s %-84s %10.1f %12.1f  %s\n", n, r, c / 1048576, u / 1048576, (u < g * 1048576 ? "ok" : "OVER") }'
  done
}

# images.json: everything above, for scripts (hack/test-images.sh).
for name in "${IMAGES[@]}"; do
  jq -n --arg name "$name" --arg digest "${DIGEST[$name]}" --arg tag "$tag" \
    --arg repository "$( [ "$push" = 1 ] && echo "$registry/$prefix/$name" )" \
    --argjson compressed "${COMPRESSED[$name]}" --argjson uncompressed "${UNCOMPRESSED[$name]}" \
    --arg layout "$out/oci/$name" --arg revision "$revision" --arg user "${USER_OF[$name]}" \
    '{name: $name, digest: $digest, tag: $tag, repository: $repository, layout: $layout, revision: $revision,
      user: $user, compressed_bytes: $compressed, uncompressed_bytes: $uncompressed}'
done | jq -s . >"$out/images.json"

if [ "$push" = 1 ]; then
  {
    echo "# generated by hack/build-images.sh from $revision"
    for name in "${IMAGES[@]}"; do echo "${ENV_NAME[$name]}=$registry/$prefix/$name@${DIGEST[$name]}"; done
  } >"$out/images.env"
  {
    echo "# generated by hack/build-images.sh from $revision: kustomization.yaml \`images:\` entries"
    echo "images:"
    for name in "${IMAGES[@]}"; do
      printf '  - name: %s\n    newName: %s\n    digest: %s\n' "$name" "$registry/$prefix/$name" "${DIGEST[$name]}"
    done
  } >"$out/kustomize-images.yaml"
  log "wrote $out/images.env and $out/kustomize-images.yaml"
else
  rm -f "$out/images.env" "$out/kustomize-images.yaml"
fi
