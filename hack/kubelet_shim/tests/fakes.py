"""Stand-ins for NodeShim's collaborators, shared by test_node.py and test_pods.py (not a test module).

StubKube replaces the kube-apiserver (it records every call and answers from a per-test function,
raising ApiError like the real client); FakeRuncPod replaces `run` in node.py / pods.py, i.e.
`runc --version` and `bash hack/runc-pod.sh start|restore|stop DIR ...` (it writes the `id` and
`restored-from` files the real script leaves behind); StubImages replaces Images (skopeo)."""
import os, threading
from types import SimpleNamespace
from unittest import mock

from kubelet_shim import node, pods
from kubelet_shim.node import NodeShim
from kubelet_shim.runtime import PodTrack
from kubelet_shim.tests.support import TempDirCase, completed
from kubelet_shim.util import FRESH_IMAGE_ID, write


class StubKube:
    def __init__(self, answer=None):
        self.calls, self.answer = [], answer or (lambda method, path, body: {})

    def _call(self, method, path, body=None, **kw):
        self.calls.append((method, path, body))
        return self.answer(method, path, body)

    def get(self, path, **kw):
        return self._call("GET", path)

    def post(self, path, body, **kw):
        return self._call("POST", path, body)

    def merge_patch(self, path, body, **kw):
        return self._call("PATCH", path, body)

    def delete(self, path, body=None, **kw):
        return self._call("DELETE", path, body)

    def paths(self, method=None):
        return [p for m, p, _ in self.calls if method in (None, m)]


class FakeRuncPod:
    def __init__(self, fail=None, restored_from="42"):
        self.calls, self.fail, self.restored_from = [], fail or set(), restored_from

    def __call__(self, cmd, timeout, **kw):
        self.calls.append(cmd)
        if cmd[:2] == ["runc", "--version"]:
            return completed(cmd, 0, "runc version 1.1.12\ncommit: v1.1.12-0\nspec: 1.0.2-dev\n")
        verb, d = cmd[2], cmd[3]
        if verb in self.fail:
            return completed(cmd, 1, "", f"{verb} went wrong")
        if verb in ("start", "restore"):
            os.makedirs(d, exist_ok=True)
            write(os.path.join(d, "id"), "cid-" + os.path.basename(d))
            if verb == "restore":
                write(os.path.join(d, "restored-from"), self.restored_from)
        return completed(cmd, 0)

    def verbs(self):
        return [c[2] for c in self.calls if c[0] == "bash"]


def make_args(tmp, **kw):
    a = dict(node="worker-1", state_dir=tmp, node_label=None, cpu="4", memory="8Gi", max_pods=110, address="127.0.0.2",
             lease_interval=5.0, status_interval=10.0, sync_interval=1.0, max_start_attempts=3, start_timeout=180,
             insecure_registry=None, registry=None, registry_user=None, registry_password_file=None, registry_auth_file=None)
    a.update(kw)
    return SimpleNamespace(**a)


def make_pod(uid="u-1", name="web", ctrs=("app",), **extra):
    p = {"metadata": {"uid": uid, "namespace": "ns", "name": name},
         "spec": {"containers": [{"name": c, "image": f"127.0.0.1:5000/{c}:v1"} for c in ctrs]}, "status": {}}
    for k, v in extra.items():
        (p["metadata"] if k in ("deletionTimestamp",) else p["spec"] if k in ("restartPolicy", "initContainers") else p["status"])[k] = v
    return p


class ShimCase(TempDirCase):
    def setUp(self):
        super().setUp()
        self.runc = FakeRuncPod()
        for mod in (node, pods):
            p = mock.patch.object(mod, "run", self.runc)
            p.start()
            self.addCleanup(p.stop)
        self.kube = StubKube()
        self.pods_dir = self.path("pods")
        os.makedirs(self.pods_dir)
        self.stop = threading.Event()
        self.shim = NodeShim(make_args(self.tmp), self.kube, self.pods_dir, 10250, self.stop)

    def answer(self, fn):
        self.kube.answer = fn

    def runc_status(self, value):
        p = mock.patch.object(pods, "runc_status", lambda d: value)
        p.start()
        self.addCleanup(p.stop)

    def track(self, pod):
        t = PodTrack(pod, self.pods_dir)
        self.shim.tracked[t.uid] = t
        return t


class StubImages:
    """Replaces Images (skopeo): classify answers is_ckpt; pull_archive makes a folder with a layer file;
    cached answers `cached` (None: not in the cache); pull_oci records its call and answers `oci`."""

    def __init__(self, tmp, is_ckpt=False, error=None, oci=None, cached=None):
        self.tmp, self.is_ckpt, self.error, self.pulled = tmp, is_ckpt, error, []
        self.oci, self.hit, self.oci_pulls = oci, cached, []

    def cached(self, ref, policy):
        return self.hit

    def pull_oci(self, ref, pod, policy, digest=None):
        self.oci_pulls.append((ref, policy, digest))
        if self.oci is None:
            raise AssertionError(f"unexpected pull of {ref}")
        return self.oci

    def classify(self, ref, pod):
        if self.error:
            raise self.error
        return self.is_ckpt, (ref + "@sha256:1" if self.is_ckpt else FRESH_IMAGE_ID)

    def pull_archive(self, ref, pod):
        d = os.path.join(self.tmp, "pulled")
        os.makedirs(d)
        self.pulled.append(d)
        return d, os.path.join(d, "layer")
