"""runc helpers and the in-memory state of tracked pods and their containers."""
import json, os, subprocess, threading

from .util import NAME, rfc3339


def run(cmd, timeout, **kw):
    """subprocess.run with a bound; a timeout becomes a failed CompletedProcess."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(cmd, 124, "", f"timed out after {timeout}s")


def runc_status(pod_dir):
    try:
        with open(os.path.join(pod_dir, "id")) as f:
            cid = f.read().strip()
    except OSError:
        return "absent"
    out = run(["runc", "--root", os.path.join(pod_dir, "runc"), "state", cid], 10)
    if out.returncode == 124:
        return "unknown"  # runc did not answer in time (a loaded machine): not a verdict
    if out.returncode != 0:
        return "absent"
    try:
        return json.loads(out.stdout).get("status", "absent")
    except ValueError:
        return "absent"


class Ctr:
    def __init__(self, spec, pod_dir):
        self.name = spec["name"]
        self.image = spec.get("image", "")
        self.dir = pod_dir
        self.state = "pending"           # pending | running | waiting | terminated
        self.reason, self.message = "ContainerCreating", ""
        self.image_id = ""
        self.cid = ""
        self.started_at = None
        self.finished_at = None
        self.restarts = 0
        self.attempts = 0
        self.next_try = 0.0
        self.last_terminated = None
        self.restored_from = None
        self.kind = ""                   # standin (busybox counter) | checkpoint (restored) | oci (pulled image)
        self.exit_code, self.term_reason, self.term_message = 137, "Error", ""


class PodTrack:
    def __init__(self, pod, pods_dir):
        md = pod["metadata"]
        self.uid, self.ns, self.name = md["uid"], md["namespace"], md["name"]
        self.pod = pod
        self.lock = threading.Lock()
        self.ctrs = [Ctr(c, os.path.join(pods_dir, f"{self.ns}_{self.name}_{c['name']}")) for c in pod["spec"].get("containers") or []]
        self.inits = [c["name"] for c in pod["spec"].get("initContainers") or []]
        self.start_time = rfc3339()
        self.ready_since = None
        self.ready = None
        self.worker = None
        self.deleting = False
        self.last_patched = None
        self.last_patched_at = None
        self.valid = all(NAME.match(x) for x in [self.ns, self.name] + [c.name for c in self.ctrs])

    def key(self):
        return f"{self.ns}/{self.name}"

    def spec_of(self, c):
        """The container's spec in the latest pod seen."""
        return next((x for x in self.pod["spec"].get("containers") or [] if x.get("name") == c.name), {"name": c.name})
