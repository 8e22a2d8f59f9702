"""node: NodeShim's registration, Node status heartbeat content and Lease.

Stubs (fakes.py): StubKube replaces the kube-apiserver; FakeRuncPod replaces `runc --version`.
No container, registry or API server is involved and no background thread is started."""
from kubelet_shim.kube import ApiError
from kubelet_shim.tests.fakes import ShimCase


class Registration(ShimCase):
    def test_the_runc_version_is_the_first_line_without_its_prefix(self):
        self.assertEqual(self.shim.runc_version, "1.1.12")

    def test_labels_are_the_kubelet_defaults_plus_node_labels(self):
        self.shim.a.node_label = ["topology.kubernetes.io/zone=z1", "flag"]
        self.assertEqual(self.shim.labels(), {
            "kubernetes.io/hostname": "worker-1", "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
            "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64",
            "topology.kubernetes.io/zone": "z1", "flag": ""})

    def test_the_node_status_has_address_port_resources_conditions_and_node_info(self):
        st = self.shim.node_status()["status"]
        self.assertEqual(st["addresses"], [{"type": "InternalIP", "address": "127.0.0.2"}])
        self.assertEqual(st["daemonEndpoints"], {"kubeletEndpoint": {"Port": 10250}})
        self.assertEqual(st["capacity"], {"cpu": "4", "memory": "8Gi", "pods": "110", "ephemeral-storage": "20Gi"})
        self.assertEqual(st["allocatable"], st["capacity"])
        self.assertEqual([(c["type"], c["status"]) for c in st["conditions"]],
                         [("MemoryPressure", "False"), ("DiskPressure", "False"), ("PIDPressure", "False"), ("Ready", "True")])
        for c in st["conditions"]:
            self.assertEqual(c["lastTransitionTime"], self.shim.started)
            self.assertRegex(c["lastHeartbeatTime"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertEqual(st["nodeInfo"]["containerRuntimeVersion"], "runc://1.1.12")
        self.assertEqual(st["nodeInfo"]["kubeletVersion"], "v1.20.2")

    def test_registering_creates_the_node_then_posts_its_status_and_lease(self):
        self.answer(lambda m, p, b: {"metadata": {"uid": "node-uid"}})
        self.shim.register()
        self.assertEqual(self.shim.uid, "node-uid")
        (m1, p1, b1), (m2, p2, _), (m3, p3, b3) = self.kube.calls
        self.assertEqual((m1, p1, b1["kind"], b1["metadata"]["name"]), ("POST", "/api/v1/nodes", "Node", "worker-1"))
        self.assertEqual((m2, p2), ("PATCH", "/api/v1/nodes/worker-1/status"))
        self.assertEqual((m3, p3), ("PATCH", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/worker-1"))
        self.assertEqual((b3["spec"]["holderIdentity"], b3["spec"]["leaseDurationSeconds"]), ("worker-1", 40))
        self.assertRegex(b3["spec"]["renewTime"], r"\.\d{6}Z$")

    def test_an_existing_node_is_taken_over_by_patching_its_labels(self):
        def answer(m, p, b):
            if m == "POST":
                raise ApiError(409, "already exists")
            return {"metadata": {"uid": "old-uid"}}
        self.answer(answer)
        self.shim.register()
        self.assertEqual(self.kube.calls[1], ("PATCH", "/api/v1/nodes/worker-1", {"metadata": {"labels": self.shim.labels()}}))
        self.assertEqual(self.shim.uid, "old-uid")
        self.assertIn("taking it over", self.err.getvalue())

    def test_other_registration_errors_are_raised(self):
        def answer(m, p, b):
            raise ApiError(403, "forbidden")
        self.answer(answer)
        with self.assertRaises(ApiError):
            self.shim.register()

    def test_a_missing_lease_is_created_owned_by_the_node(self):
        self.shim.uid = "node-uid"

        def answer(m, p, b):
            if m == "PATCH":
                raise ApiError(404, "not found")
            return {}
        self.answer(answer)
        self.shim.renew_lease()
        m, p, b = self.kube.calls[-1]
        self.assertEqual((m, p), ("POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"))
        self.assertEqual(b["metadata"], {"name": "worker-1", "namespace": "kube-node-lease", "ownerReferences": [
            {"apiVersion": "v1", "kind": "Node", "name": "worker-1", "uid": "node-uid"}]})

    def test_a_deleted_node_is_registered_again_when_its_status_is_posted(self):
        state = {"deleted": True}

        def answer(m, p, b):
            if m == "PATCH" and p.endswith("/status") and state.pop("deleted", False):
                raise ApiError(404, "not found")
            return {"metadata": {"uid": "new-uid"}}
        self.answer(answer)
        self.shim.post_status()
        self.assertIn(("POST", "/api/v1/nodes"), [(m, p) for m, p, _ in self.kube.calls])
        self.assertEqual(self.shim.uid, "new-uid")
        self.assertIn("was deleted: registering it again", self.err.getvalue())
