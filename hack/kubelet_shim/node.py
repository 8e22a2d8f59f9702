"""NodeShim: Node registration, status heartbeats and Lease renewal (the pod side is in pods.py)."""
import os, threading, time

from .images import Images
from .kube import ApiError
from .pods import PodSync
from .runtime import run
from .util import log, log_limited, micro_time, rfc3339
from .volumes import Volumes


class NodeShim(PodSync):
    """The kubelet of one Node: registration, status heartbeats and Lease here; pod sync in PodSync."""

    def __init__(self, args, kube, pods_dir, port, stop):
        self.a, self.kube, self.pods, self.port, self.stop = args, kube, pods_dir, port, stop
        self.node = args.node
        self.uid = None
        self.started = rfc3339()
        self.tracked = {}
        self.tracked_lock = threading.Lock()
        self.finished = {}  # uid -> when its containers were stopped (a stale list may still show it)
        self.images = Images(args, kube, args.state_dir)
        self.volumes = Volumes(os.path.join(args.state_dir, "volumes"))
        self.unpack_lock = threading.Lock()
        self.first_list = True
        self.runc_version = (run(["runc", "--version"], 10).stdout.splitlines() or ["runc"])[0].replace("runc version ", "")

    # ------------------------------------------------------------------ node registration
    def labels(self):
        labels = {"kubernetes.io/hostname": self.node, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                  "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64"}
        for kv in self.a.node_label or []:
            k, _, v = kv.partition("=")
            labels[k] = v
        return labels

    def node_status(self):
        now = rfc3339()
        res = {"cpu": self.a.cpu, "memory": self.a.memory, "pods": str(self.a.max_pods), "ephemeral-storage": "20Gi"}

        def cond(t, s, reason, msg):
            return {"type": t, "status": s, "reason": reason, "message": msg, "lastHeartbeatTime": now, "lastTransitionTime": self.started}
        return {"status": {
            "addresses": [{"type": "InternalIP", "address": self.a.address}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.port}},
            "capacity": res, "allocatable": res,
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                cond("Ready", "True", "KubeletReady", "kubelet-shim is posting ready status"),
            ],
            "nodeInfo": {"machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": os.uname().release,
                         "osImage": "transition lab (kubelet-shim)", "containerRuntimeVersion": f"runc://{self.runc_version}",
                         "kubeletVersion": "v1.20.2", "kubeProxyVersion": "v1.20.2", "operatingSystem": "linux", "architecture": "amd64"},
        }}

    def register(self):
        try:
            node = self.kube.post("/api/v1/nodes", {"apiVersion": "v1", "kind": "Node",
                                                   "metadata": {"name": self.node, "labels": self.labels()}, "spec": {}})
            log(f"registered Node {self.node}")
        except ApiError as e:
            if e.code != 409:
                raise
            node = self.kube.merge_patch(f"/api/v1/nodes/{self.node}", {"metadata": {"labels": self.labels()}})
            log(f"Node {self.node} exists: taking it over")
        self.uid = node["metadata"]["uid"]
        self.post_status()
        self.renew_lease()

    def post_status(self):
        try:
            self.kube.merge_patch(f"/api/v1/nodes/{self.node}/status", self.node_status())
        except ApiError as e:
            if e.code == 404:
                log(f"Node {self.node} was deleted: registering it again")
                self.register()
            else:
                raise

    def renew_lease(self):
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.node}"
        spec = {"holderIdentity": self.node, "leaseDurationSeconds": 40, "renewTime": micro_time()}
        try:
            self.kube.merge_patch(path, {"spec": spec})
        except ApiError as e:
            if e.code != 404:
                raise
            meta = {"name": self.node, "namespace": "kube-node-lease"}
            if self.uid:
                meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": self.node, "uid": self.uid}]
            self.kube.post("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                           {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta, "spec": spec})

    def heartbeat_loop(self):
        next_lease = time.monotonic() + self.a.lease_interval
        next_status = time.monotonic() + self.a.status_interval
        next_register = 0.0
        while not self.stop.wait(0.2):
            now = time.monotonic()
            try:
                if self.uid is None:
                    if now < next_register:
                        continue
                    next_register = now + 2
                    self.register()
                    next_lease, next_status = now + self.a.lease_interval, now + self.a.status_interval
                    continue
                if now >= next_lease:
                    next_lease = now + self.a.lease_interval
                    self.renew_lease()
                if now >= next_status and not self.stop.is_set():
                    next_status = now + self.a.status_interval
                    self.post_status()
            except Exception as e:  # noqa: BLE001 — the heartbeat must go on
                log_limited("heartbeat", f"heartbeat failed (will retry): {e}")
