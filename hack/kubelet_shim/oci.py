"""Containers of pulled OCI images: the image config of an OCI layout, `umoci unpack` into a runc
bundle, and a runc container run in the foreground under a small detached monitor (`sh`, in its own
session, so it outlives a shim restart) that records the process's exit code — what conmon /
containerd-shim do for a CRI runtime.

Folder of one container (PODS/<ns>_<pod>_<ctr>, as for the other two kinds): bundle/ (config.json +
rootfs/), runc/ (runc's state root), id, kind (`oci`), container.log (stdout + stderr),
previous.log (the run before the last restart), runc.log (runc's own JSON log: why a create failed),
monitor-pid, exit-code + finished-at (written when the process exits), termination-log."""
import json, os, subprocess, threading, time

from .runtime import run, runc_status
from .util import read, tail

MONITOR = r'''d="$1"; id="$2"
runc --root "$d/runc" --log "$d/runc.log" --log-format json run --bundle "$d/bundle" "$id" </dev/null >>"$d/container.log" 2>&1
rc=$?
date -u +%Y-%m-%dT%H:%M:%SZ >"$d/finished-at"
echo "$rc" >"$d/exit-code.tmp" && mv "$d/exit-code.tmp" "$d/exit-code"
'''


class RunError(Exception):
    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason


def _blob(layout, digest):
    algo, _, hexd = digest.partition(":")
    with open(os.path.join(layout, "blobs", algo, hexd)) as f:
        return json.load(f)


def layout_config(layout, tag):
    """(the image config's `config` object, the manifest's digest) of tag in an OCI layout."""
    with open(os.path.join(layout, "index.json")) as f:
        index = json.load(f)
    descs = index.get("manifests") or []
    desc = next((d for d in descs if (d.get("annotations") or {}).get("org.opencontainers.image.ref.name") == tag), None)
    if desc is None:
        raise RunError("ErrImagePull", f"the OCI layout {layout} has no tag {tag}")
    manifest = _blob(layout, desc["digest"])
    if manifest.get("manifests"):  # an index under the tag: its linux/amd64 manifest
        desc = next((d for d in manifest["manifests"] if (d.get("platform") or {}).get("architecture") in ("amd64", None)),
                    manifest["manifests"][0])
        manifest = _blob(layout, desc["digest"])
    cfg = _blob(layout, manifest["config"]["digest"])
    return cfg.get("config") or {}, desc["digest"]


def unpack(layout, tag, bundle, timeout):
    """umoci unpack (as root; the bundle folder must not exist yet) -> bundle/rootfs."""
    out = run(["umoci", "unpack", "--image", f"{layout}:{tag}", bundle], timeout)
    if out.returncode != 0:
        raise RunError("CreateContainerError", f"unpacking the image with umoci failed: {tail(out.stderr)}")


def rootfs_text(rootfs, path):
    """A small text file of the image (e.g. /etc/passwd), '' when absent or not a plain file."""
    p = os.path.join(rootfs, path.lstrip("/"))
    if os.path.islink(p) or not os.path.isfile(p):
        return ""
    with open(p, errors="replace") as f:
        return f.read(1 << 20)


def runc_error(d):
    """The last error runc logged (why a create / start failed), '' when none."""
    msg = ""
    try:
        with open(os.path.join(d, "runc.log"), errors="replace") as f:
            for line in f:
                try:
                    e = json.loads(line)
                except ValueError:
                    continue
                if e.get("level") in ("error", "fatal"):
                    msg = e.get("msg", "")
    except OSError:
        pass
    return msg


def exit_code(d):
    v = read(os.path.join(d, "exit-code"))
    return int(v) if v.lstrip("-").isdigit() else None


def monitor_alive(d):
    pid = read(os.path.join(d, "monitor-pid"))
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except OSError:
        return False
    return True


def start(d, cid, timeout, popen=subprocess.Popen, sleep=time.sleep):
    """Starts the container of d/bundle as cid under the monitor; returns when it runs (or already
    exited on its own). A failed create raises RunError(CreateContainerError) with runc's message."""
    for f in ("exit-code", "finished-at", "runc.log"):
        try:
            os.unlink(os.path.join(d, f))
        except FileNotFoundError:
            pass
    with open(os.path.join(d, "id"), "w") as f:
        f.write(cid + "\n")
    p = popen(["sh", "-c", MONITOR, "sh", d, cid], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
              stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
    with open(os.path.join(d, "monitor-pid"), "w") as f:
        f.write(f"{p.pid}\n")
    threading.Thread(target=p.wait, daemon=True, name=f"reap-{cid}").start()
    deadline = time.monotonic() + timeout
    while True:
        rc = exit_code(d)
        if rc is not None:
            err = runc_error(d)
            if err:
                raise RunError("CreateContainerError", f"runc: {err}")
            return "exited"
        if runc_status(d) == "running":
            return "running"
        if time.monotonic() > deadline:
            stop(d, 0)
            raise RunError("CreateContainerError", f"the container did not start in {timeout}s")
        sleep(0.1)


def stop(d, grace, sleep=time.sleep):
    """SIGTERM, up to `grace` seconds, SIGKILL, runc delete; waits (briefly) for the exit code."""
    cid = read(os.path.join(d, "id"))
    if not cid:
        return
    root = ["runc", "--root", os.path.join(d, "runc")]
    if runc_status(d) in ("running", "paused", "unknown"):
        run(root + ["kill", cid, "TERM"], 10)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and runc_status(d) in ("running", "unknown"):
            sleep(0.2)
        run(root + ["kill", cid, "KILL"], 10)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and exit_code(d) is None and monitor_alive(d):
        sleep(0.1)
    run(root + ["delete", "-f", cid], 30)
