#!/usr/bin/env bash
# A "pod" of one real runc container running the counter (shell memory + /tmp/count + optional
# tmpfs state), checkpointed the way the kubelet does it into a kubelet-format archive. Used by
# make-checkpoint.sh (fixtures) and kubelet-shim.py (the kubelet stand-in; no kubelet runs here).
#
#   hack/runc-pod.sh start DIR [--pod P] [--namespace NS] [--container C] [--state-mib N]
#                              [--app memstate [--change-pct P]]
#   hack/runc-pod.sh checkpoint DIR OUT_DIR [--leave-running] [--name FILE]   (prints the archive path)
#   hack/runc-pod.sh stop DIR
#   hack/runc-pod.sh restore DIR ARCHIVE_DIR_OR_TAR [--pod P] [--namespace NS] [--container C]
#   hack/runc-pod.sh count DIR     (prints the container's current counter value: rootfs /tmp/count)
#   hack/runc-pod.sh status DIR    (prints runc's status of the container: running, stopped, ...;
#                                   "absent" when runc has no such container)
#
# --app memstate runs hack/bench/memstate.c (built static, once) instead of the shell counter: it
# holds --state-mib MiB in its own anonymous memory (not a tmpfs file) and rewrites --change-pct %
# of it per second (default 2), counting in /tmp/count like the counter (the benchmarks' app).
#
# STANDIN_MEMORY_MARK_A / _B (environment of `start`, optional): the shell joins the two halves
# into a variable, so the whole mark exists only in the process's heap, not in its environment,
# arguments or config — the e2e's proof that a checkpoint holds process memory and that S3 and
# the registry hold none of it in plaintext (docs/security.md).
#
# DIR holds the bundle, runc state and metadata of the one container (created by `start`, or by
# `restore`, which restores a kubelet-format checkpoint archive into DIR with runc + CRIU, leaves it
# running, and writes the counter value at checkpoint to DIR/restored-from; `checkpoint`, `stop`,
# `count` and `status` work the same on a restored container).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
CRIU="${LAB_CRIU:-$TRANSITION_BIN/criu}"

# memstate_bin — hack/bench/memstate.c built static, cached by the source's hash.
memstate_bin() {
  local src="$REPO_ROOT/hack/bench/memstate.c" out
  out="$TRANSITION_CACHE/bin/memstate-$(sha256sum "$src" | cut -c1-12)"
  if [ ! -x "$out" ]; then
    mkdir -p "$TRANSITION_CACHE/bin"
    gcc -static -O2 -o "$out.tmp" "$src" || die "cannot build $src (gcc -static)"
    mv "$out.tmp" "$out"
  fi
  echo "$out"
}

start() {
  local dir="$1"; shift
  local pod=counter-7d9f5 ns=default ctr=counter state_mib=0 app=counter change_pct=2
  while [ $# -gt 0 ]; do
    case "$1" in
      --pod) pod="$2"; shift 2 ;;
      --namespace) ns="$2"; shift 2 ;;
      --container) ctr="$2"; shift 2 ;;
      --state-mib) state_mib="$2"; shift 2 ;;
      --app) app="$2"; shift 2 ;;
      --change-pct) change_pct="$2"; shift 2 ;;
      *) die "unknown option $1" ;;
    esac
  done
  case "$app" in counter|memstate) ;; *) die "unknown --app $app (counter|memstate)" ;; esac
  [ -x "$CRIU" ] || die "CRIU not installed ($CRIU): run hack/install.sh criu"
  command -v runc >/dev/null || die "runc not installed: run hack/install.sh criu"
  mkdir -p "$dir"
  local id="pod-$$-$RANDOM" rootfs="$dir/bundle/rootfs"
  make_busybox_rootfs "$rootfs"
  touch "$dir/marker"
  sleep 0.01
  if [ "$app" = memstate ]; then
    # After the marker: the binary is in rootfs-diff.tar, so a restore finds it.
    cp "$(memstate_bin)" "$rootfs/memstate"
  fi
  (cd "$dir/bundle" && runc spec)
  local shm_kib=$(( (state_mib + 8) * 1024 ))
  [ "$app" = memstate ] && shm_kib=$((8 * 1024))
  local script='m="${MARK_A}${MARK_B}"; i=0; if [ "$STATE_MIB" -gt 0 ]; then dd if=/dev/urandom of=/dev/shm/state bs=1M count="$STATE_MIB" 2>/dev/null; fi; while true; do i=$((i+1)); echo $i > /tmp/count.new; mv /tmp/count.new /tmp/count; echo "count $i"; sleep 0.1; done'
  jq --arg script "$script" --arg mib "$state_mib" --arg ma "${STANDIN_MEMORY_MARK_A:-}" --arg mb "${STANDIN_MEMORY_MARK_B:-}" --arg app "$app" --arg pct "$change_pct" --arg pod "$pod" --arg ns "$ns" --arg ctr "$ctr" --arg shm "size=${shm_kib}k" '
    .process.terminal = false
    | .process.args = (if $app == "memstate" then ["/memstate", $mib, $pct] else ["/bin/sh", "-c", $script] end)
    | .process.env += ["STATE_MIB=" + $mib, "MARK_A=" + $ma, "MARK_B=" + $mb]
    | .root.readonly = false
    | .mounts = [.mounts[] | if .destination == "/dev/shm" then .options = ["nosuid","noexec","nodev","mode=1777",$shm] else . end]
    | .annotations = {
        "io.kubernetes.pod.name": $pod, "io.kubernetes.pod.namespace": $ns, "io.kubernetes.container.name": $ctr,
        "io.kubernetes.cri.sandbox-name": $pod, "io.kubernetes.cri.sandbox-namespace": $ns,
        "io.kubernetes.cri.container-name": $ctr, "io.kubernetes.cri.container-type": "container"
      }' "$dir/bundle/config.json" >"$dir/config.json"
  mv "$dir/config.json" "$dir/bundle/config.json"
  printf '%s\n' "$id" >"$dir/id"; printf '%s\n' "$pod" >"$dir/pod"; printf '%s\n' "$ns" >"$dir/namespace"
  printf '%s\n' "$ctr" >"$dir/container"; date -u +%Y-%m-%dT%H:%M:%SZ >"$dir/created"
  # stdin/stdout must be anonymous pipes (CRIU cannot dump a host regular file or FIFO path).
  # The log reader must not hold our stdout/stderr open (callers wait for them to close).
  runc --root "$dir/runc" --criu "$CRIU" run -d --bundle "$dir/bundle" "$id" < <(:) > >(exec cat >>"$dir/container.log" 2>/dev/null) 2>&1 \
    || { sleep 0.2; cat "$dir/container.log" >&2; die "runc run failed"; }
  local deadline=$((SECONDS + 60))
  until [ -s "$rootfs/tmp/count" ] && [ "$(cat "$rootfs/tmp/count")" -ge 20 ]; do
    [ $SECONDS -lt $deadline ] || die "container counter did not start"
    sleep 0.1
  done
  if [ "$state_mib" -gt 0 ]; then sleep 0.3; fi
  echo "$id"
}

checkpoint() {
  local dir="$1" out="$2"; shift 2
  local leave="" name=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --leave-running) leave="--leave-running"; shift ;;
      --name) name="$2"; shift 2 ;;
      *) die "unknown option $1" ;;
    esac
  done
  local id pod ns ctr rootfs="$dir/bundle/rootfs" a
  id=$(cat "$dir/id"); pod=$(cat "$dir/pod"); ns=$(cat "$dir/namespace"); ctr=$(cat "$dir/container")
  a=$(mktemp -d "$dir/archive.XXXXXX")
  mkdir -p "$a/checkpoint" "$out"
  # Without --leave-running the container stops at the dump, so rootfs-diff.tar matches the memory
  # exactly; with it (the kubelet's way) the counter writes its file atomically, so the diff is
  # always a complete value.
  runc --root "$dir/runc" --criu "$CRIU" checkpoint $leave --image-path "$a/checkpoint" \
    --work-path "$a.work" "$id" >"$a.log" 2>&1 \
    || { cat "$a.log" "$a.work"/*.log >&2 2>/dev/null; rm -rf "$a" "$a.work" "$a.log"; die "runc checkpoint failed"; }
  local checkpointed
  checkpointed=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  cp "$dir/bundle/config.json" "$a/spec.dump"
  runc --root "$dir/runc" state "$id" >"$a/status.dump" 2>/dev/null || echo '{"status":"stopped"}' >"$a/status.dump"
  jq -n --arg id "$id" --arg ctr "$ctr" --arg created "$(cat "$dir/created")" --arg ckpt "$checkpointed" '{
    id: $id, name: $ctr,
    rootfsImage: "docker.io/library/busybox:1.36", rootfsImageRef: "sha256:busybox-static-lab",
    rootfsImageName: "docker.io/library/busybox:1.36", runtime: "runc", createdTime: $created,
    checkpointedTime: $ckpt
  }' >"$a/config.dump"
  (cd "$rootfs" && find . -newer "$dir/marker" -type f ! -name '*.new' ! -path './proc/*' ! -path './sys/*' ! -path './dev/*' -printf '%P\n' \
    | tar -cf "$a/rootfs-diff.tar" --no-recursion -T -)
  echo '[]' >"$a/deleted.files"
  echo '{"interfaces":[]}' >"$a/network.status"
  cp "$dir/container.log" "$a/container.log" 2>/dev/null || : >"$a/container.log"
  # CRIU's dump statistics (frozen time, pages written: a protobuf stats-dump), at the archive's
  # top level where CRI-O and containerd put it and checkpointctl reads it. runc leaves it in
  # the work path.
  local stats=()
  if [ -f "$a.work/stats-dump" ]; then cp "$a.work/stats-dump" "$a/stats-dump" && stats=(stats-dump); fi
  log "checkpointed container $id at counter value $(cat "$rootfs/tmp/count" 2>/dev/null)"
  [ -n "$name" ] || name="checkpoint-${pod}_${ns}-${ctr}-${checkpointed}.tar"
  (
    umask 077
    tar -C "$a" -cf "$out/.$name.tmp" config.dump spec.dump status.dump checkpoint rootfs-diff.tar deleted.files network.status container.log "${stats[@]}"
  )
  chmod 0600 "$out/.$name.tmp"
  mv "$out/.$name.tmp" "$out/$name"
  rm -rf "$a" "$a.work" "$a.log"
  echo "$out/$name"
}

stop() {
  local dir="$1" id
  id=$(cat "$dir/id" 2>/dev/null) || return 0
  runc --root "$dir/runc" kill "$id" KILL >/dev/null 2>&1 || true
  sleep 0.1
  runc --root "$dir/runc" delete -f "$id" >/dev/null 2>&1 || true
}

# restore DIR SRC — the checkpoint archive SRC (a .tar or an extracted folder) restored into DIR the
# way a CRI runtime restores a checkpoint image: base rootfs (busybox) + rootfs-diff.tar, config from
# spec.dump (annotations renamed to the new pod), process state from checkpoint/. Left running.
restore() {
  local dir="${1:-}" src="${2:-}"
  [ -n "$dir" ] && [ -n "$src" ] || die "usage: runc-pod.sh restore DIR ARCHIVE_DIR_OR_TAR [--pod P] [--namespace NS] [--container C]"
  shift 2
  local pod="" ns="" ctr=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --pod) pod="$2"; shift 2 ;;
      --namespace) ns="$2"; shift 2 ;;
      --container) ctr="$2"; shift 2 ;;
      *) die "unknown option $1" ;;
    esac
  done
  [ -x "$CRIU" ] || die "CRIU not installed ($CRIU): run hack/install.sh criu"
  command -v runc >/dev/null || die "runc not installed: run hack/install.sh criu"
  [ -e "$dir/id" ] && die "$dir already holds a container ($(cat "$dir/id")): stop it and remove $dir first"
  mkdir -p "$dir"
  local extracted=""
  if [ -f "$src" ]; then
    extracted="$dir/restore-src"
    rm -rf "$extracted" && mkdir -p "$extracted"
    tar -C "$extracted" -xf "$src" || die "cannot unpack $src"
    src="$extracted"
  fi
  local f
  for f in spec.dump checkpoint/inventory.img rootfs-diff.tar; do
    [ -e "$src/$f" ] || die "$src has no $f: not a checkpoint archive"
  done
  [ -n "$pod" ] || pod=$(jq -r '.annotations["io.kubernetes.pod.name"] // "counter-7d9f5"' "$src/spec.dump")
  [ -n "$ns" ] || ns=$(jq -r '.annotations["io.kubernetes.pod.namespace"] // "default"' "$src/spec.dump")
  [ -n "$ctr" ] || ctr=$(jq -r '.annotations["io.kubernetes.container.name"] // "counter"' "$src/spec.dump")
  local id="restore-$$-$RANDOM" rootfs="$dir/bundle/rootfs"
  make_busybox_rootfs "$rootfs"
  touch "$dir/marker"
  sleep 0.01
  # -m: the restored files count as changed since the marker, so a later checkpoint keeps them.
  tar -C "$rootfs" -m -xf "$src/rootfs-diff.tar" || die "cannot unpack rootfs-diff.tar"
  local at_checkpoint
  at_checkpoint=$(cat "$rootfs/tmp/count" 2>/dev/null || echo 0)
  jq --arg pod "$pod" --arg ns "$ns" --arg ctr "$ctr" '
    .root.path = "rootfs"
    | .annotations = ((.annotations // {}) + {
        "io.kubernetes.pod.name": $pod, "io.kubernetes.pod.namespace": $ns, "io.kubernetes.container.name": $ctr,
        "io.kubernetes.cri.sandbox-name": $pod, "io.kubernetes.cri.sandbox-namespace": $ns,
        "io.kubernetes.cri.container-name": $ctr
      })' "$src/spec.dump" >"$dir/bundle/config.json" || die "bad spec.dump in $src"
  printf '%s\n' "$pod" >"$dir/pod"; printf '%s\n' "$ns" >"$dir/namespace"
  printf '%s\n' "$ctr" >"$dir/container"; date -u +%Y-%m-%dT%H:%M:%SZ >"$dir/created"
  printf '%s\n' "$at_checkpoint" >"$dir/restored-from"
  rm -rf "$dir/criu-work"
  # Same stdio as `start`: anonymous pipes, and a log reader that does not hold the caller's output.
  if ! runc --root "$dir/runc" --criu "$CRIU" restore -d --image-path "$(cd "$src/checkpoint" && pwd)" \
    --work-path "$dir/criu-work" --bundle "$dir/bundle" "$id" < <(:) > >(exec cat >>"$dir/container.log" 2>/dev/null) 2>&1; then
    sleep 0.2
    tail -n 20 "$dir/container.log" >&2 2>/dev/null || true
    tail -n 20 "$dir/criu-work"/restore.log >&2 2>/dev/null || true
    runc --root "$dir/runc" delete -f "$id" >/dev/null 2>&1 || true
    [ -n "$extracted" ] && rm -rf "$extracted"
    die "runc restore failed"
  fi
  printf '%s\n' "$id" >"$dir/id"
  # The restored images hold process memory: do not keep a second copy around.
  [ -n "$extracted" ] && rm -rf "$extracted"
  local deadline=$((SECONDS + 10)) now="$at_checkpoint"
  while [ "$now" -le "$at_checkpoint" ]; do
    [ "$(status "$dir")" = running ] || die "restored container $id is not running ($(status "$dir"))"
    [ $SECONDS -lt $deadline ] || die "counter did not advance after restore (still $now)"
    sleep 0.1
    now=$(cat "$rootfs/tmp/count" 2>/dev/null || echo 0)
  done
  log "restored container $id: counter $at_checkpoint at checkpoint, now $now"
  echo "$id"
}

count() {
  local dir="${1:-}"
  [ -n "$dir" ] || die "usage: runc-pod.sh count DIR"
  cat "$dir/bundle/rootfs/tmp/count" 2>/dev/null || die "no counter in $dir (no bundle/rootfs/tmp/count)"
}

status() {
  local dir="${1:-}" id
  [ -n "$dir" ] || die "usage: runc-pod.sh status DIR"
  id=$(cat "$dir/id" 2>/dev/null) || { echo absent; return 0; }
  runc --root "$dir/runc" state "$id" 2>/dev/null | jq -r '.status // "absent"' 2>/dev/null | grep . || echo absent
}

cmd="${1:-}"; shift || true
case "$cmd" in
  start|checkpoint|stop|restore|count|status) "$cmd" "$@" ;;
  *) die "usage: runc-pod.sh start|checkpoint|stop|restore|count|status DIR ..." ;;
esac
