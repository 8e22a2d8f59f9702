#!/usr/bin/env bash
# Restores a checkpoint with runc + CRIU 4.1.1 the way a CRI runtime restores a checkpoint image
# (the kubelet + runtime stand-in): base rootfs (busybox, the fixture's base image) + the archive's
# rootfs-diff.tar, config from spec.dump, process state from checkpoint/. Then checks that the
# counter continues from its checkpointed value (a fresh start would count from 1).
#
#   hack/restore-checkpoint.sh ARCHIVE_DIR_OR_TAR [--keep]
#
# Prints "restored counter: <at checkpoint> -> <now>" and exits 0 when the counter went on.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
src="${1:-}"
[ -n "$src" ] || die "usage: restore-checkpoint.sh ARCHIVE_DIR_OR_TAR [--keep]"
keep=0
[ "${2:-}" = "--keep" ] && keep=1
CRIU="${LAB_CRIU:-$TRANSITION_BIN/criu}"
work=$(mktemp -d /tmp/restore-checkpoint.XXXXXX)
id="restore-$$-$RANDOM"
cleanup() {
  if [ "$keep" = 0 ]; then
    runc --root "$work/runc" kill "$id" KILL >/dev/null 2>&1 || true
    sleep 0.1
    runc --root "$work/runc" delete -f "$id" >/dev/null 2>&1 || true
    rm -rf "$work"
  fi
}
trap cleanup EXIT

if [ -f "$src" ]; then
  mkdir -p "$work/archive" && tar -C "$work/archive" -xf "$src"
  src="$work/archive"
fi
for f in spec.dump checkpoint/inventory.img rootfs-diff.tar; do
  [ -e "$src/$f" ] || die "$src has no $f: not a checkpoint archive"
done
bundle="$work/bundle"
make_busybox_rootfs "$bundle/rootfs"
tar -C "$bundle/rootfs" -xf "$src/rootfs-diff.tar"
at_checkpoint=$(cat "$bundle/rootfs/tmp/count" 2>/dev/null || echo 0)
jq '.root.path = "rootfs"' "$src/spec.dump" >"$bundle/config.json"

runc --root "$work/runc" --criu "$CRIU" restore -d --image-path "$(cd "$src/checkpoint" && pwd)" \
  --work-path "$work/criu-work" --bundle "$bundle" "$id" < <(:) > >(cat >"$work/container.log") 2>&1 \
  || { cat "$work/criu-work"/*.log >&2 2>/dev/null | tail -n 20; die "runc restore failed"; }

deadline=$((SECONDS + 10))
now="$at_checkpoint"
while [ "$now" -le "$at_checkpoint" ]; do
  [ $SECONDS -lt $deadline ] || die "counter did not advance after restore (still $now)"
  sleep 0.2
  now=$(cat "$bundle/rootfs/tmp/count" 2>/dev/null || echo 0)
done
echo "restored counter: $at_checkpoint -> $now"
[ "$keep" = 1 ] && echo "container $id left running (runc --root $work/runc)"
exit 0
