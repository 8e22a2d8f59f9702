"""pods: NodeShim's pod side: pod status, back-off, container start / restore, sync, deletion, liveness.

Stubs (fakes.py): StubKube replaces the kube-apiserver; FakeRuncPod replaces
`bash hack/runc-pod.sh start|restore|stop` (no runc container or CRIU); `runc_status` (runc state)
is patched per test; StubImages replaces Images (skopeo and the registry). No background thread is
started: sync steps that would spawn one have spawn_delete patched."""
import os, re, time, unittest
from unittest import mock

from kubelet_shim.images import PullError
from kubelet_shim.kube import ApiError
from kubelet_shim.tests.fakes import ShimCase, StubImages, make_pod
from kubelet_shim.util import FRESH_IMAGE_ID, RUNC_POD, read, write


class PodStatus(ShimCase):
    def test_all_containers_running_is_a_ready_running_pod(self):
        t = self.track(make_pod(ctrs=("a", "b")))
        for c in t.ctrs:
            c.state, c.cid, c.started_at, c.image_id = "running", "cid-" + c.name, "2024-01-01T00:00:00Z", FRESH_IMAGE_ID
        st = self.shim.pod_status(t)
        self.assertEqual(st["phase"], "Running")
        self.assertEqual((st["hostIP"], st["podIP"], st["podIPs"]), ("127.0.0.2", "127.0.0.2", [{"ip": "127.0.0.2"}]))
        self.assertEqual({c["type"]: c["status"] for c in st["conditions"]},
                         {"Initialized": "True", "Ready": "True", "ContainersReady": "True", "PodScheduled": "True"})
        self.assertEqual(st["containerStatuses"][0], {
            "name": "a", "image": "127.0.0.1:5000/a:v1", "imageID": FRESH_IMAGE_ID, "restartCount": 0, "ready": True,
            "started": True, "state": {"running": {"startedAt": "2024-01-01T00:00:00Z"}}, "containerID": "runc://cid-a"})

    def test_a_waiting_container_makes_the_pod_not_ready_naming_it(self):
        t = self.track(make_pod(ctrs=("a", "b")))
        t.ctrs[0].state, t.ctrs[0].started_at = "running", "2024-01-01T00:00:00Z"
        t.ctrs[1].state, t.ctrs[1].reason, t.ctrs[1].message = "waiting", "ErrImagePull", "no such image"
        st = self.shim.pod_status(t)
        ready = next(c for c in st["conditions"] if c["type"] == "Ready")
        self.assertEqual((ready["status"], ready["reason"], ready["message"]),
                         ("False", "ContainersNotReady", "containers with unready status: [b]"))
        self.assertEqual(st["containerStatuses"][1]["state"], {"waiting": {"reason": "ErrImagePull", "message": "no such image"}})
        self.assertEqual(st["phase"], "Running")

    def test_containers_not_started_yet_are_a_pending_pod_in_container_creating(self):
        st = self.shim.pod_status(self.track(make_pod()))
        self.assertEqual(st["phase"], "Pending")
        self.assertEqual(st["containerStatuses"][0]["state"], {"waiting": {"reason": "ContainerCreating"}})

    def test_all_containers_terminated_is_a_failed_pod_with_exit_137(self):
        t = self.track(make_pod())
        c = t.ctrs[0]
        c.state, c.cid, c.started_at, c.finished_at = "terminated", "x", "2024-01-01T00:00:00Z", "2024-01-01T00:01:00Z"
        c.last_terminated = {"exitCode": 137}
        st = self.shim.pod_status(t)
        self.assertEqual(st["phase"], "Failed")
        self.assertEqual(st["containerStatuses"][0]["state"]["terminated"]["exitCode"], 137)
        self.assertEqual(st["containerStatuses"][0]["lastState"], {"terminated": {"exitCode": 137}})

    def test_init_containers_are_reported_completed(self):
        t = self.track(make_pod(initContainers=[{"name": "setup", "image": "busybox"}]))
        [init] = self.shim.pod_status(t)["initContainerStatuses"]
        self.assertEqual((init["name"], init["image"], init["ready"]), ("setup", "busybox", True))
        self.assertEqual(init["state"]["terminated"]["reason"], "Completed")

    def test_pod_scheduled_keeps_the_schedulers_transition_time(self):
        t = self.track(make_pod(conditions=[{"type": "PodScheduled", "status": "True", "lastTransitionTime": "2020-02-02T00:00:00Z"}]))
        sched = next(c for c in self.shim.pod_status(t)["conditions"] if c["type"] == "PodScheduled")
        self.assertEqual(sched["lastTransitionTime"], "2020-02-02T00:00:00Z")

    def test_an_unchanged_status_is_not_patched_twice(self):
        t = self.track(make_pod())
        self.shim.patch_status(t)
        self.shim.patch_status(t)
        self.assertEqual(self.kube.paths("PATCH"), ["/api/v1/namespaces/ns/pods/web/status"])
        self.assertEqual(self.kube.calls[0][2]["metadata"], {"uid": "u-1"})

    def test_an_unchanged_status_is_patched_again_after_the_resync_period(self):
        # The node lifecycle controller may have marked the pod Ready=False meanwhile (a stale
        # Lease); like the kubelet's status manager, the shim re-asserts its view every 10 s.
        from kubelet_shim.pods import STATUS_RESYNC
        t = self.track(make_pod())
        self.shim.patch_status(t)
        t.last_patched_at -= STATUS_RESYNC + 1
        self.shim.patch_status(t)
        self.assertEqual(len(self.kube.paths("PATCH")), 2)

    def test_a_failed_patch_is_retried_next_time(self):
        def answer(m, p, b):
            raise ApiError(0, "refused")
        self.answer(answer)
        t = self.track(make_pod())
        self.shim.patch_status(t)
        self.assertIsNone(t.last_patched)
        self.shim.patch_status(t)
        self.assertEqual(len(self.kube.calls), 2)


class BackOff(ShimCase):
    def test_a_failed_start_waits_ten_seconds_doubling(self):
        t = self.track(make_pod())
        c = t.ctrs[0]
        for attempts, delay in ((1, 10), (2, 20)):
            c.attempts = attempts
            before = time.monotonic()
            self.shim.failed(t, c, "CreateContainerError", "boom")
            self.assertAlmostEqual(c.next_try - before, delay, delta=1)
        self.assertEqual((c.state, c.reason, c.message), ("waiting", "CreateContainerError", "boom"))

    def test_a_repeated_pull_error_becomes_image_pull_back_off(self):
        t = self.track(make_pod())
        c = t.ctrs[0]
        c.attempts = 1
        self.shim.failed(t, c, "ErrImagePull", "x")
        self.assertEqual(c.reason, "ErrImagePull")
        c.attempts = 2
        self.shim.failed(t, c, "ErrImagePull", "x")
        self.assertEqual(c.reason, "ImagePullBackOff")

    def test_after_max_start_attempts_the_container_is_left_waiting(self):
        t = self.track(make_pod())
        c = t.ctrs[0]
        c.attempts = 3
        self.shim.failed(t, c, "CreateContainerError", "x")
        self.assertIsNone(c.next_try)
        self.assertIn("giving up after 3 attempts", self.err.getvalue())


class Starting(ShimCase):
    def test_a_busybox_image_starts_the_counter_stand_in_without_asking_a_registry(self):
        self.shim.images = StubImages(self.tmp, error=AssertionError("the registry was asked"))
        t = self.track(make_pod())
        t.pod["spec"]["containers"][0]["image"] = "docker.io/library/busybox:1.36"
        c = t.ctrs[0]
        c.image = "docker.io/library/busybox:1.36"
        self.shim.start_one(t, c)
        self.assertEqual(self.runc.calls[-1], ["bash", RUNC_POD, "start", c.dir, "--pod", "web", "--namespace", "ns", "--container", "app"])
        self.assertEqual((c.state, c.cid, c.image_id, c.restored_from, c.kind), ("running", "cid-ns_web_app", FRESH_IMAGE_ID, None, "standin"))
        self.assertEqual(read(os.path.join(c.dir, "pod-uid")), "u-1")
        self.assertEqual(read(os.path.join(c.dir, "image")), c.image)
        self.assertEqual(read(os.path.join(c.dir, "image-id")), FRESH_IMAGE_ID)
        self.assertEqual(read(os.path.join(c.dir, "kind")), "standin")
        self.assertEqual(read(os.path.join(c.dir, "started-at")), c.started_at)

    def test_a_checkpoint_image_is_pulled_restored_and_the_pull_folder_removed(self):
        self.shim.images = StubImages(self.tmp, is_ckpt=True)
        t = self.track(make_pod())
        c = t.ctrs[0]
        self.shim.start_one(t, c)
        self.assertEqual(self.runc.calls[-1][2:5], ["restore", c.dir, os.path.join(self.tmp, "pulled", "layer")])
        self.assertEqual((c.state, c.restored_from, c.image_id), ("running", 42, c.image + "@sha256:1"))
        self.assertFalse(os.path.exists(self.shim.images.pulled[0]))

    def test_an_old_folder_is_stopped_and_replaced(self):
        self.shim.images = StubImages(self.tmp)
        t = self.track(make_pod())
        c = t.ctrs[0]
        c.image = "busybox"
        os.makedirs(c.dir)
        write(os.path.join(c.dir, "id"), "old")
        write(os.path.join(c.dir, "junk"), "x")
        self.shim.start_one(t, c)
        self.assertEqual(self.runc.verbs(), ["stop", "start"])
        self.assertFalse(os.path.exists(os.path.join(c.dir, "junk")))

    def test_a_failed_restore_is_a_create_container_error(self):
        self.runc.fail = {"restore"}
        self.shim.images = StubImages(self.tmp, is_ckpt=True)
        t = self.track(make_pod())
        with self.assertRaises(PullError) as cm:
            self.shim.start_one(t, t.ctrs[0])
        self.assertEqual(cm.exception.reason, "CreateContainerError")
        self.assertIn("restoring checkpoint image", str(cm.exception))
        self.assertIn("restore went wrong", str(cm.exception))

    def test_start_containers_reports_a_pull_error_and_patches_the_status(self):
        self.shim.images = StubImages(self.tmp, error=PullError("ErrImagePull", "cannot read the manifest"))
        t = self.track(make_pod())
        self.shim.start_containers(t)
        c = t.ctrs[0]
        self.assertEqual((c.state, c.reason, c.attempts), ("waiting", "ErrImagePull", 1))
        last = self.kube.calls[-1][2]["status"]["containerStatuses"][0]["state"]
        self.assertEqual(last, {"waiting": {"reason": "ErrImagePull", "message": "cannot read the manifest"}})

    def test_an_unexpected_error_is_a_create_container_error_naming_its_type(self):
        self.shim.images = StubImages(self.tmp, error=OSError("disk full"))
        t = self.track(make_pod())
        self.shim.start_containers(t)
        self.assertEqual((t.ctrs[0].reason, t.ctrs[0].message), ("CreateContainerError", "OSError: disk full"))


class Syncing(ShimCase):
    def test_a_finished_pod_that_is_not_tracked_is_ignored(self):
        self.shim.sync_pod(make_pod(phase="Succeeded"))
        self.assertEqual((self.shim.tracked, self.kube.calls), ({}, []))

    def test_a_pod_whose_containers_were_just_stopped_is_ignored(self):
        self.shim.finished["u-1"] = time.monotonic()
        self.shim.sync_pod(make_pod())
        self.assertEqual(self.shim.tracked, {})

    def test_a_pod_with_a_name_that_is_not_a_dns_name_waits_in_create_container_config_error(self):
        self.shim.sync_pod(make_pod(ctrs=("Bad_Name",)))
        [(m, p, b)] = self.kube.calls
        self.assertEqual(b["status"]["containerStatuses"][0]["state"]["waiting"]["reason"], "CreateContainerConfigError")
        self.assertEqual(self.runc.verbs(), [])

    def test_a_running_container_of_the_pod_is_adopted(self):
        self.runc_status("running")
        t = self.track(make_pod())
        c = t.ctrs[0]
        os.makedirs(c.dir)
        for name, value in (("pod-uid", "u-1"), ("id", "cid-9"), ("started-at", "2024-01-01T00:00:00Z"),
                            ("image-id", "img@sha256:2"), ("restored-from", "7")):
            write(os.path.join(c.dir, name), value)
        self.shim.adopt(t)
        self.assertEqual((c.state, c.cid, c.started_at, c.image_id, c.restored_from),
                         ("running", "cid-9", "2024-01-01T00:00:00Z", "img@sha256:2", 7))

    def test_a_container_of_another_pod_is_not_adopted(self):
        self.runc_status("running")
        t = self.track(make_pod())
        os.makedirs(t.ctrs[0].dir)
        write(os.path.join(t.ctrs[0].dir, "pod-uid"), "other")
        self.shim.adopt(t)
        self.assertEqual(t.ctrs[0].state, "pending")

    def test_a_failed_list_is_logged_and_nothing_else_happens(self):
        def answer(m, p, b):
            raise ApiError(0, "refused")
        self.answer(answer)
        self.shim.sync_once()
        self.assertEqual(self.kube.paths(), ["/api/v1/pods?fieldSelector=spec.nodeName%3Dworker-1"])
        self.assertIn("cannot list the pods of worker-1", self.err.getvalue())
        self.assertTrue(self.shim.first_list)

    def test_the_first_list_stops_containers_of_pods_no_longer_on_this_node(self):
        self.answer(lambda m, p, b: {"items": []})
        d = os.path.join(self.pods_dir, "ns_gone_app")
        os.makedirs(d)
        write(os.path.join(d, "pod-uid"), "gone-uid")
        write(os.path.join(d, "id"), "cid")
        self.shim.sync_once()
        self.assertEqual(self.runc.calls[-1], ["bash", RUNC_POD, "stop", d])
        self.assertTrue(os.path.isfile(os.path.join(d, "stopped")))

    def test_a_tracked_pod_missing_from_the_list_has_its_containers_stopped_without_deleting_it(self):
        self.shim.first_list = False
        self.answer(lambda m, p, b: {"items": []})
        t = self.track(make_pod())
        with mock.patch.object(self.shim, "spawn_delete") as spawn:
            self.shim.sync_once()
        spawn.assert_called_once_with(t, delete_pod=False)


class Deleting(ShimCase):
    def running(self, t):
        for c in t.ctrs:
            os.makedirs(c.dir)
            write(os.path.join(c.dir, "id"), "cid")
            write(os.path.join(c.dir, "pod-uid"), t.uid)
            c.state = "running"

    def test_a_deleted_pod_is_stopped_then_deleted_with_grace_period_zero_and_its_uid(self):
        t = self.track(make_pod())
        self.running(t)
        t.deleting = True
        self.shim.delete_pod(t, delete_pod=True)
        self.assertEqual(self.runc.verbs(), ["stop"])
        self.assertEqual(t.ctrs[0].state, "terminated")
        self.assertTrue(os.path.isfile(os.path.join(t.ctrs[0].dir, "stopped")))
        self.assertEqual(self.kube.calls, [("DELETE", "/api/v1/namespaces/ns/pods/web", {
            "kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0, "preconditions": {"uid": "u-1"}})])
        self.assertNotIn("u-1", self.shim.tracked)
        self.assertIn("u-1", self.shim.finished)

    def test_a_pod_already_gone_counts_as_deleted(self):
        def answer(m, p, b):
            raise ApiError(404, "not found")
        self.answer(answer)
        t = self.track(make_pod())
        self.shim.delete_pod(t, delete_pod=True)
        self.assertNotIn("u-1", self.shim.tracked)

    def test_a_failed_delete_is_retried_by_the_next_sync(self):
        def answer(m, p, b):
            raise ApiError(500, "etcd")
        self.answer(answer)
        t = self.track(make_pod())
        t.deleting = True
        self.shim.delete_pod(t, delete_pod=True)
        self.assertFalse(t.deleting)
        self.assertIn("u-1", self.shim.tracked)

    def test_a_pod_with_a_deletion_timestamp_is_handed_to_a_delete_thread(self):
        with mock.patch.object(self.shim, "spawn_delete") as spawn:
            self.shim.sync_pod(make_pod(deletionTimestamp="2024-01-01T00:00:00Z"))
        [t] = self.shim.tracked.values()
        spawn.assert_called_once_with(t, delete_pod=True)

    def test_stop_all_stops_only_this_pods_containers(self):
        t = self.track(make_pod(ctrs=("a", "b")))
        self.running(t)
        write(os.path.join(t.ctrs[1].dir, "pod-uid"), "someone-else")
        self.shim.stop_all()
        self.assertEqual([c[3] for c in self.runc.calls if c[0] == "bash"], [t.ctrs[0].dir])


class Liveness(ShimCase):
    def test_a_dead_container_is_restarted_after_a_crash_loop_back_off(self):
        self.runc_status("stopped")
        t = self.track(make_pod())
        c = t.ctrs[0]
        c.state, c.cid, c.started_at = "running", "cid", "2024-01-01T00:00:00Z"
        self.shim.check_liveness()
        self.assertEqual((c.state, c.reason, c.restarts, c.attempts), ("waiting", "CrashLoopBackOff", 1, 0))
        self.assertTrue(re.match(r"back-off 10s restarting failed container=app pod=web", c.message))
        self.assertEqual(c.last_terminated["containerID"], "runc://cid")
        self.assertEqual(self.kube.paths("PATCH"), ["/api/v1/namespaces/ns/pods/web/status"])

    def test_with_restart_policy_never_a_dead_container_stays_terminated(self):
        self.runc_status("stopped")
        t = self.track(make_pod(restartPolicy="Never"))
        t.ctrs[0].state = "running"
        self.shim.check_liveness()
        self.assertEqual((t.ctrs[0].state, t.ctrs[0].restarts), ("terminated", 0))

    def test_a_running_container_is_left_alone(self):
        self.runc_status("running")
        t = self.track(make_pod())
        t.ctrs[0].state = "running"
        self.shim.check_liveness()
        self.assertEqual((t.ctrs[0].state, self.kube.calls), ("running", []))


class PulledImages(ShimCase):
    """The third kind: an exit code from the monitor's exit-code file, restart policies, pod phase."""

    def exited(self, code, policy=None):
        extra = {"restartPolicy": policy} if policy else {}
        t = self.track(make_pod(**extra))
        c = t.ctrs[0]
        os.makedirs(c.dir)
        write(os.path.join(c.dir, "exit-code"), str(code))
        write(os.path.join(c.dir, "finished-at"), "2024-01-01T00:02:00Z")
        c.state, c.kind, c.cid, c.started_at = "running", "oci", "oci-1", "2024-01-01T00:00:00Z"
        self.runc_status("absent")
        self.shim.check_liveness()
        return t, c

    def test_an_exit_with_restart_policy_never_is_terminated_with_its_code(self):
        t, c = self.exited(3, "Never")
        term = self.shim.pod_status(t)["containerStatuses"][0]["state"]["terminated"]
        self.assertEqual((term["exitCode"], term["reason"], term["finishedAt"]), (3, "Error", "2024-01-01T00:02:00Z"))
        self.assertEqual(self.shim.pod_status(t)["phase"], "Failed")

    def test_a_zero_exit_with_on_failure_is_a_succeeded_pod(self):
        t, c = self.exited(0, "OnFailure")
        self.assertEqual((c.state, c.term_reason, self.shim.pod_status(t)["phase"]), ("terminated", "Completed", "Succeeded"))

    def test_an_exit_with_restart_policy_always_is_a_crash_loop_with_the_real_code_in_last_state(self):
        t, c = self.exited(0)
        self.assertEqual((c.state, c.reason, c.restarts, c.last_terminated["exitCode"]), ("waiting", "CrashLoopBackOff", 1, 0))

    def test_a_missing_exit_code_while_the_monitor_lives_is_not_yet_a_death(self):
        t = self.track(make_pod())
        c = t.ctrs[0]
        os.makedirs(c.dir)
        write(os.path.join(c.dir, "monitor-pid"), str(os.getpid()))
        c.state, c.kind = "running", "oci"
        self.runc_status("stopped")
        self.shim.check_liveness()
        self.assertEqual(c.state, "running")

    def test_a_cached_image_is_not_looked_up_in_the_registry(self):
        from kubelet_shim.images import Pulled
        self.shim.images = StubImages(self.tmp, error=AssertionError("registry asked"), cached=Pulled("/l", "r@sha256:1", {}))
        t = self.track(make_pod())
        with mock.patch.object(self.shim, "start_oci", return_value="running") as start:
            self.shim.start_one(t, t.ctrs[0])
        start.assert_called_once()
        self.assertEqual((t.ctrs[0].kind, t.ctrs[0].image_id), ("oci", "r@sha256:1"))

    def test_a_plain_image_on_a_registry_is_pulled_by_the_digest_classify_saw(self):
        from kubelet_shim.images import Pulled
        self.shim.images = StubImages(self.tmp, oci=Pulled("/l", "127.0.0.1:5000/app@sha256:9", {}))
        self.shim.images.classify = lambda ref, pod: (False, "127.0.0.1:5000/app@sha256:9")
        t = self.track(make_pod())
        with mock.patch.object(self.shim, "start_oci", return_value="running"):
            self.shim.start_one(t, t.ctrs[0])
        self.assertEqual(self.shim.images.oci_pulls, [("127.0.0.1:5000/app:v1", "IfNotPresent", "sha256:9")])
        self.assertEqual(read(os.path.join(t.ctrs[0].dir, "kind")), "oci")


class StandinApp(unittest.TestCase):
    """The stand-in's app from pod annotations (hack/runc-pod.sh start options)."""

    def test_a_pod_without_annotations_runs_the_counter(self):
        from kubelet_shim.pods import standin_args
        self.assertEqual(standin_args({"metadata": {}}), [])

    def test_the_memory_state_app_and_its_numbers_come_from_annotations(self):
        from kubelet_shim.pods import STANDIN_APP, STANDIN_CHANGE_PCT, STANDIN_STATE_MIB, standin_args
        pod = {"metadata": {"annotations": {STANDIN_APP: "memstate", STANDIN_STATE_MIB: "512", STANDIN_CHANGE_PCT: "2.5"}}}
        self.assertEqual(standin_args(pod), ["--app", "memstate", "--state-mib", "512", "--change-pct", "2.5"])

    def test_numbers_that_are_not_numbers_are_dropped(self):
        from kubelet_shim.pods import STANDIN_CHANGE_PCT, STANDIN_STATE_MIB, standin_args
        pod = {"metadata": {"annotations": {STANDIN_STATE_MIB: "512; rm -rf /", STANDIN_CHANGE_PCT: "-1"}}}
        self.assertEqual(standin_args(pod), [])
