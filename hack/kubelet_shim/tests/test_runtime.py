"""runtime: run()'s timeout, runc_status, and the Ctr / PodTrack bookkeeping.

Stubs: for runc_status, `kubelet_shim.runtime.run` is replaced by a fake that answers like
`runc --root DIR/runc state ID` would (JSON with a status, or a failure), so no runc container is
needed; run() itself is exercised with real short-lived processes (echo, sleep)."""
import json, os, subprocess
from unittest import mock

from kubelet_shim import runtime
from kubelet_shim.runtime import Ctr, PodTrack, run, runc_status
from kubelet_shim.tests.support import TempDirCase, completed


class Run(TempDirCase):
    def test_output_is_captured_as_text(self):
        out = run(["sh", "-c", "echo out; echo err >&2; exit 3"], 10)
        self.assertEqual((out.returncode, out.stdout, out.stderr), (3, "out\n", "err\n"))

    def test_a_timeout_becomes_a_failed_result_with_code_124(self):
        out = run(["sleep", "5"], 0.2)
        self.assertIsInstance(out, subprocess.CompletedProcess)
        self.assertEqual((out.returncode, out.stdout, out.stderr), (124, "", "timed out after 0.2s"))

    def test_keyword_arguments_reach_subprocess(self):
        self.assertEqual(run(["pwd"], 10, cwd=self.tmp).stdout.strip(), os.path.realpath(self.tmp))


class RuncStatus(TempDirCase):
    def fake(self, result):
        calls = []

        def fake_run(cmd, timeout, **kw):
            calls.append(cmd)
            return result
        p = mock.patch.object(runtime, "run", fake_run)
        p.start()
        self.addCleanup(p.stop)
        return calls

    def with_id(self, cid="abc123"):
        with open(self.path("id"), "w") as f:
            f.write(cid + "\n")

    def test_a_folder_without_an_id_is_absent_without_asking_runc(self):
        calls = self.fake(completed())
        self.assertEqual(runc_status(self.tmp), "absent")
        self.assertEqual(calls, [])

    def test_the_status_runc_state_reports_is_returned(self):
        self.with_id()
        calls = self.fake(completed(rc=0, stdout=json.dumps({"id": "abc123", "status": "running"})))
        self.assertEqual(runc_status(self.tmp), "running")
        self.assertEqual(calls, [["runc", "--root", self.path("runc"), "state", "abc123"]])

    def test_a_failing_runc_state_is_absent(self):
        self.with_id()
        self.fake(completed(rc=1, stderr="container does not exist"))
        self.assertEqual(runc_status(self.tmp), "absent")

    def test_output_that_is_not_json_or_has_no_status_is_absent(self):
        self.with_id()
        self.fake(completed(stdout="garbage"))
        self.assertEqual(runc_status(self.tmp), "absent")
        self.fake(completed(stdout="{}"))
        self.assertEqual(runc_status(self.tmp), "absent")


def pod(ns="ns", name="web", ctrs=("app",), inits=()):
    spec = {"containers": [{"name": c, "image": f"img/{c}"} for c in ctrs]}
    if inits:
        spec["initContainers"] = [{"name": c} for c in inits]
    return {"metadata": {"uid": "u-1", "namespace": ns, "name": name}, "spec": spec}


class Tracking(TempDirCase):
    def test_a_new_container_is_pending_in_container_creating(self):
        c = Ctr({"name": "app"}, "/pods/ns_web_app")
        self.assertEqual((c.name, c.image, c.dir, c.state, c.reason), ("app", "", "/pods/ns_web_app", "pending", "ContainerCreating"))
        self.assertEqual((c.restarts, c.attempts, c.next_try, c.cid, c.started_at), (0, 0, 0.0, "", None))

    def test_each_container_gets_its_folder_named_namespace_pod_container(self):
        t = PodTrack(pod(ctrs=("app", "side")), self.tmp)
        self.assertEqual([c.dir for c in t.ctrs], [self.path("ns_web_app"), self.path("ns_web_side")])
        self.assertEqual([c.image for c in t.ctrs], ["img/app", "img/side"])
        self.assertEqual((t.uid, t.key(), t.valid, t.deleting, t.ready), ("u-1", "ns/web", True, False, None))
        self.assertRegex(t.start_time, r"Z$")

    def test_init_containers_are_remembered_by_name(self):
        self.assertEqual(PodTrack(pod(inits=("setup",)), self.tmp).inits, ["setup"])

    def test_a_pod_without_containers_has_none(self):
        p = pod()
        del p["spec"]["containers"]
        self.assertEqual(PodTrack(p, self.tmp).ctrs, [])

    def test_a_name_that_is_not_a_dns_name_makes_the_pod_invalid(self):
        self.assertFalse(PodTrack(pod(name="Web"), self.tmp).valid)
        self.assertFalse(PodTrack(pod(ctrs=("a_b",)), self.tmp).valid)
