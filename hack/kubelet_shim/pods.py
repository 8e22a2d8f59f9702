"""NodeShim's pod side: the sync loop, container start / restore / stop, liveness, pod status.

Three kinds of container (the `kind` file of its folder): `standin` (docker.io/library/busybox: the
busybox counter of hack/runc-pod.sh start), `checkpoint` (a checkpoint image restored with runc +
CRIU) and `oci` (any other image: pulled, unpacked with umoci, run with runc from a config built
from the pod spec, oci.py / podspec.py / volumes.py)."""
import json, os, resource, shutil, threading, time
from urllib.parse import quote, urlparse

from . import oci, podspec
from .images import PullError, is_standin, pull_policy
from .kube import ApiError
from .runtime import PodTrack, run, runc_status
from .util import FRESH_IMAGE_ID, RUNC_POD, log, log_limited, read, rfc3339, tail, write
from .volumes import ApiLookup

# What a start can fail with: a kubelet-like reason (ErrImagePull, CreateContainerConfigError, ...) + message.
START_ERRORS = (PullError, podspec.ConfigError, oci.RunError)

# Seconds between two status patches of an unchanged pod (the kubelet's status manager re-syncs
# every 10 s).
STATUS_RESYNC = 10.0

# The stand-in's app, chosen by pod annotations (the benchmarks' memory-state app; the counter
# otherwise): hack/runc-pod.sh start --app memstate --state-mib N --change-pct P.
STANDIN_APP = "lab.transition.dcnlab.ssu.ac.kr/standin-app"
STANDIN_STATE_MIB = "lab.transition.dcnlab.ssu.ac.kr/standin-state-mib"
STANDIN_CHANGE_PCT = "lab.transition.dcnlab.ssu.ac.kr/standin-change-pct"


def standin_args(pod):
    """runc-pod.sh start options from the pod's stand-in annotations (numbers only; unknown apps
    are left to runc-pod.sh to refuse)."""
    a = (pod.get("metadata") or {}).get("annotations") or {}
    args = []
    if a.get(STANDIN_APP):
        args += ["--app", a[STANDIN_APP]]
    if str(a.get(STANDIN_STATE_MIB, "")).isdigit():
        args += ["--state-mib", str(a[STANDIN_STATE_MIB])]
    pct = str(a.get(STANDIN_CHANGE_PCT, ""))
    if pct and pct.replace(".", "", 1).isdigit():
        args += ["--change-pct", pct]
    return args
MAX_GRACE = 10  # seconds between SIGTERM and SIGKILL at most (a lab, not a production node)


class PodSync:
    """Mixed into NodeShim (node.py), whose __init__ sets a, kube, pods, node, stop, tracked, finished, images."""

    # ------------------------------------------------------------------ pods
    def pod_loop(self):
        next_live = 0.0
        while not self.stop.wait(self.a.sync_interval):
            try:
                self.sync_once()
                if time.monotonic() >= next_live:
                    next_live = time.monotonic() + 5
                    self.check_liveness()
                    self.refresh_tokens()
            except Exception as e:  # noqa: BLE001 — never let one bad pod stop the loop
                log_limited("sync", f"pod sync failed (will retry): {type(e).__name__}: {e}")

    def sync_once(self):
        try:
            lst = self.kube.get(f"/api/v1/pods?fieldSelector={quote('spec.nodeName=' + self.node)}", timeout=15)
        except ApiError as e:
            log_limited("list", f"cannot list the pods of {self.node} (will retry): {e}")
            return
        items = lst.get("items") or []
        seen = {p["metadata"]["uid"] for p in items}
        if self.first_list:
            self.first_list = False
            self.stop_orphans(seen)
        for pod in items:
            try:
                self.sync_pod(pod)
            except Exception as e:  # noqa: BLE001
                md = pod.get("metadata", {})
                log_limited(f"pod/{md.get('uid')}", f"pod {md.get('namespace')}/{md.get('name')}: {type(e).__name__}: {e}")
        with self.tracked_lock:
            gone = [t for uid, t in self.tracked.items() if uid not in seen and not t.deleting]
            for uid in [u for u, at in self.finished.items() if time.monotonic() - at > 300]:
                del self.finished[uid]
        for t in gone:
            log(f"pod {t.key()} is gone from the API: stopping its containers")
            self.spawn_delete(t, delete_pod=False)

    def stop_orphans(self, seen):
        try:
            names = os.listdir(self.pods)
        except OSError:
            return
        for n in names:
            d = os.path.join(self.pods, n)
            uid = read(os.path.join(d, "pod-uid"))
            if uid and uid not in seen and not os.path.exists(os.path.join(d, "stopped")):
                log(f"container {n} belongs to a pod no longer on this node: stopping it")
                self.stop_dir(d)
        for uid in self.volumes.known():
            if uid not in seen:
                log(f"volumes of pod {uid}, no longer on this node: removing them")
                self.volumes.teardown(uid)

    def sync_pod(self, pod):
        md, st = pod["metadata"], pod.get("status") or {}
        uid = md["uid"]
        with self.tracked_lock:
            t = self.tracked.get(uid)
            if t is None and uid in self.finished:
                return
        if md.get("deletionTimestamp"):
            if t is None:
                t = PodTrack(pod, self.pods)
                with self.tracked_lock:
                    self.tracked[uid] = t
            if not t.deleting:
                log(f"pod {t.key()} is being deleted: stopping its containers, then deleting it")
                self.spawn_delete(t, delete_pod=True)
            return
        if t is None:
            if st.get("phase") in ("Succeeded", "Failed"):
                return
            t = PodTrack(pod, self.pods)
            with self.tracked_lock:
                self.tracked[uid] = t
            if not t.valid:
                for c in t.ctrs:
                    c.state, c.reason, c.message = "waiting", "CreateContainerConfigError", "pod, namespace or container name is not a DNS name"
                self.patch_status(t)
                return
            self.adopt(t)
            log(f"pod {t.key()} bound to {self.node}: {', '.join(c.name + '=' + c.image for c in t.ctrs)}")
        t.pod = pod
        if t.deleting or not t.valid:
            return
        due = [c for c in t.ctrs if c.state in ("pending", "waiting") and c.next_try is not None and time.monotonic() >= c.next_try]
        if due and (t.worker is None or not t.worker.is_alive()):
            t.worker = threading.Thread(target=self.start_containers, args=(t,), daemon=True, name=f"start-{t.key()}")
            t.worker.start()
        elif t.worker is None or not t.worker.is_alive():
            self.patch_status(t)  # no API call unless the status changed, the last patch failed or STATUS_RESYNC passed

    def adopt(self, t):
        for c in t.ctrs:
            if read(os.path.join(c.dir, "pod-uid")) == t.uid and not os.path.exists(os.path.join(c.dir, "stopped")) \
                    and runc_status(c.dir) == "running":
                c.state, c.cid = "running", read(os.path.join(c.dir, "id"))
                c.started_at = read(os.path.join(c.dir, "started-at")) or read(os.path.join(c.dir, "created")) or rfc3339()
                c.image_id = read(os.path.join(c.dir, "image-id")) or FRESH_IMAGE_ID
                rf = read(os.path.join(c.dir, "restored-from"))
                c.restored_from = int(rf) if rf.isdigit() else None
                c.kind = read(os.path.join(c.dir, "kind")) or ("checkpoint" if c.restored_from is not None else "standin")
                if c.kind == "oci":
                    self.volumes.schedule_refresh(t.pod)  # a fresh token soon: when the old one expires is not known
                log(f"pod {t.key()}: adopted running container {c.name} ({c.cid})")

    def start_containers(self, t):
        with t.lock:
            for c in t.ctrs:
                if self.stop.is_set() or t.deleting:
                    return
                if c.state not in ("pending", "waiting") or c.next_try is None or time.monotonic() < c.next_try:
                    continue
                c.attempts += 1
                c.state, c.reason, c.message = "pending", "ContainerCreating", ""
                self.patch_status(t)
                try:
                    self.start_one(t, c)
                    c.attempts = 0
                except START_ERRORS as e:
                    self.failed(t, c, e.reason, str(e))
                except Exception as e:  # noqa: BLE001
                    self.failed(t, c, "CreateContainerError", f"{type(e).__name__}: {e}")
                self.patch_status(t)

    def failed(self, t, c, reason, message):
        if reason == "ErrImagePull" and c.attempts > 1:
            reason = "ImagePullBackOff"
        c.state, c.reason, c.message = "waiting", reason, message
        if c.attempts >= self.a.max_start_attempts:
            c.next_try = None
            log(f"pod {t.key()} container {c.name}: {reason}: {message} — giving up after {c.attempts} attempts")
        else:
            delay = min(10 * 2 ** (c.attempts - 1), 300)
            c.next_try = time.monotonic() + delay
            log(f"pod {t.key()} container {c.name}: {reason}: {message} — retry {c.attempts + 1}/{self.a.max_start_attempts} in {delay}s")

    def start_one(self, t, c):
        t0 = time.monotonic()
        spec = t.spec_of(c)
        policy = pull_policy(c.image, spec.get("imagePullPolicy"))
        pulled, image_id = None, FRESH_IMAGE_ID
        if is_standin(c.image):
            kind = "standin"
        else:
            pulled = self.images.cached(c.image, policy)
            if pulled:
                kind = "oci"
            else:
                is_ckpt, image_id = self.images.classify(c.image, t.pod)
                kind = "checkpoint" if is_ckpt else "oci"
        if kind == "oci" and pulled is None:
            hint = image_id.split("@", 1)[1] if "@sha256:" in image_id else None
            pulled = self.images.pull_oci(c.image, t.pod, policy, digest=hint)
        if kind == "oci":
            image_id = pulled.image_id
        previous = self.replace_folder(c)
        ident = ["--pod", t.name, "--namespace", t.ns, "--container", c.name]
        if kind == "checkpoint":
            log(f"pod {t.key()} container {c.name}: pulling checkpoint image {c.image}")
            pulled_dir, layer = self.images.pull_archive(c.image, t.pod)
            t1 = time.monotonic()
            try:
                out = run(["bash", RUNC_POD, "restore", c.dir, layer] + ident, self.a.start_timeout)
            finally:
                shutil.rmtree(pulled_dir, ignore_errors=True)
            if out.returncode != 0:
                self.stop_dir(c.dir)
                raise PullError("CreateContainerError", f"restoring checkpoint image {c.image} with runc + CRIU failed: {tail(out.stderr)}")
            rf = read(os.path.join(c.dir, "restored-from"))
            c.restored_from = int(rf) if rf.isdigit() else None
            how = f"restored from checkpoint image (counter {rf} at checkpoint; pull {t1 - t0:.1f}s, restore {time.monotonic() - t1:.1f}s)"
        elif kind == "standin":
            out = run(["bash", RUNC_POD, "start", c.dir] + ident + standin_args(t.pod), self.a.start_timeout)
            if out.returncode != 0:
                self.stop_dir(c.dir)
                raise PullError("CreateContainerError", f"starting {c.image} (as the busybox counter stand-in) with runc failed: {tail(out.stderr)}")
            c.restored_from = None
            how = f"started fresh (the busybox counter stand-in for {c.image}) in {time.monotonic() - t0:.1f}s"
        else:
            os.makedirs(c.dir, exist_ok=True)
            if previous is not None:
                os.replace(previous, os.path.join(c.dir, "previous.log"))
                previous = None
            t1 = time.monotonic()
            state = self.start_oci(t, c, spec, pulled)
            c.restored_from = None
            how = f"image {pulled.image_id} unpacked and started with runc ({state}; pull {t1 - t0:.1f}s, start {time.monotonic() - t1:.1f}s)"
        if previous is not None:
            os.unlink(previous)
        c.kind = kind
        c.cid = read(os.path.join(c.dir, "id"))
        write(os.path.join(c.dir, "pod-uid"), t.uid)
        write(os.path.join(c.dir, "image"), c.image)
        write(os.path.join(c.dir, "image-id"), image_id)
        write(os.path.join(c.dir, "kind"), kind)
        c.image_id = image_id
        c.state, c.reason, c.message = "running", "", ""
        c.started_at = rfc3339()
        write(os.path.join(c.dir, "started-at"), c.started_at)
        log(f"pod {t.key()} container {c.name}: {how}; runc id {c.cid}")

    def replace_folder(self, c):
        """Stops and removes the container's old folder; returns where its log went (oci) or None."""
        previous = None
        if os.path.lexists(c.dir):
            self.stop_dir(c.dir)
            if read(os.path.join(c.dir, "kind")) == "oci" and os.path.isfile(os.path.join(c.dir, "container.log")):
                previous = c.dir + ".previous.log"
                os.replace(os.path.join(c.dir, "container.log"), previous)
            shutil.rmtree(c.dir, ignore_errors=True)
        os.makedirs(os.path.dirname(c.dir), exist_ok=True)
        return previous

    def api_endpoint(self):
        """(host, port) of the API server the shim talks to: KUBERNETES_SERVICE_HOST/PORT of its pods."""
        u = urlparse(getattr(self.kube, "server", "") or "https://127.0.0.1:443")
        return u.hostname or "127.0.0.1", u.port or 443

    def start_oci(self, t, c, spec, pulled):
        """Volumes, env, config.json from the pod + image, umoci unpack, runc (oci.py). -> running | exited"""
        host_ip = self.a.address
        lookup = ApiLookup(self.kube, getattr(self.kube, "ca_pem", None))
        env = podspec.container_env(t.pod, spec, lookup, host_ip, podspec.service_env(*self.api_endpoint()))
        hostname = (t.pod["spec"].get("hostname") or t.name)[:63]
        mounts = self.volumes.pod_files(t.pod, hostname, host_ip) + self.volumes.setup(t.pod, spec, lookup, host_ip, env)
        os.makedirs(c.dir, exist_ok=True)
        write(os.path.join(c.dir, "kind"), "oci")
        for name, value in (("pod", t.name), ("namespace", t.ns), ("container", c.name), ("created", rfc3339())):
            write(os.path.join(c.dir, name), value)
        term = os.path.join(c.dir, "termination-log")
        open(term, "w").close()
        os.chmod(term, 0o666)
        mounts.append(podspec.bind(term, spec.get("terminationMessagePath") or "/dev/termination-log"))
        bundle = os.path.join(c.dir, "bundle")
        with self.unpack_lock:
            oci.unpack(pulled.layout, pulled.tag, bundle, self.a.start_timeout)
        rootfs = os.path.join(bundle, "rootfs")
        sec = podspec.security(t.pod, spec, pulled.config, oci.rootfs_text(rootfs, "/etc/passwd"), oci.rootfs_text(rootfs, "/etc/group"))
        annotations = {"io.kubernetes.pod.name": t.name, "io.kubernetes.pod.namespace": t.ns, "io.kubernetes.pod.uid": t.uid,
                       "io.kubernetes.container.name": c.name, "org.opencontainers.image.ref.name": c.image}
        cfg = podspec.runc_config(t.pod, spec, pulled.config, env, sec, mounts, hostname, annotations,
                                  nofile=resource.getrlimit(resource.RLIMIT_NOFILE))
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(cfg, f, indent=1)
        cid = f"oci-{os.getpid()}-{os.urandom(4).hex()}"
        try:
            return oci.start(c.dir, cid, self.a.start_timeout)
        except oci.RunError:
            self.stop_dir(c.dir)
            raise

    def stop_dir(self, d, grace=0):
        if not os.path.isfile(os.path.join(d, "id")):
            return
        if read(os.path.join(d, "kind")) == "oci":
            oci.stop(d, min(grace, MAX_GRACE))
            if runc_status(d) == "absent":  # the rootfs is no longer in use: free its space, keep the logs
                shutil.rmtree(os.path.join(d, "bundle", "rootfs"), ignore_errors=True)
        else:
            out = run(["bash", RUNC_POD, "stop", d], 60)
            if out.returncode != 0:
                log(f"stopping {d} failed: {tail(out.stderr, 200)}")
        try:
            write(os.path.join(d, "stopped"), rfc3339())
        except OSError:
            pass

    @staticmethod
    def grace(t):
        md, spec = t.pod.get("metadata") or {}, t.pod.get("spec") or {}
        g = md.get("deletionGracePeriodSeconds")
        return int(g if g is not None else spec.get("terminationGracePeriodSeconds", 30) or 0)

    def spawn_delete(self, t, delete_pod):
        t.deleting = True
        threading.Thread(target=self.delete_pod, args=(t, delete_pod), daemon=True, name=f"delete-{t.key()}").start()

    def delete_pod(self, t, delete_pod):
        try:
            with t.lock:  # waits for a start in progress
                for c in t.ctrs:
                    if os.path.isfile(os.path.join(c.dir, "id")) and read(os.path.join(c.dir, "pod-uid")) in (t.uid, ""):
                        self.stop_dir(c.dir, self.grace(t))
                        log(f"pod {t.key()} container {c.name}: stopped")
                    c.state, c.finished_at = "terminated", rfc3339()
                if not self.volumes.teardown(t.uid):
                    raise RuntimeError(f"the volumes of pod {t.key()} could not be unmounted")
            if delete_pod:
                body = {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0, "preconditions": {"uid": t.uid}}
                try:
                    self.kube.delete(f"/api/v1/namespaces/{quote(t.ns)}/pods/{quote(t.name)}", body)
                    log(f"pod {t.key()} deleted (gracePeriodSeconds=0)")
                except ApiError as e:
                    if e.code not in (404, 409):
                        log(f"deleting pod {t.key()} failed (will retry): {e}")
                        t.deleting = False  # the next sync tries again
                        return
        except Exception as e:  # noqa: BLE001
            log(f"pod {t.key()}: stopping failed (will retry): {e}")
            t.deleting = False
            return
        with self.tracked_lock:
            self.tracked.pop(t.uid, None)
            self.finished[t.uid] = time.monotonic()

    def check_liveness(self):
        with self.tracked_lock:
            tracks = list(self.tracked.values())
        for t in tracks:
            if t.deleting or (t.worker is not None and t.worker.is_alive()):
                continue
            changed = False
            with t.lock:
                for c in t.ctrs:
                    if c.state != "running" or t.deleting:
                        continue
                    s = runc_status(c.dir)
                    # "paused": frozen by a checkpoint (CRIU dump) in progress — alive.
                    if s in ("running", "paused", "unknown"):
                        continue
                    code, reason, message, finished = 137, "Error", "", rfc3339()
                    if c.kind == "oci":
                        code = oci.exit_code(c.dir)
                        if code is None and oci.monitor_alive(c.dir):
                            continue  # exited a moment ago: its monitor has not written the exit code yet
                        if code is None:
                            code, message = 137, "the exit code was lost (its monitor is gone)"
                        reason = "Completed" if code == 0 else "Error"
                        finished = read(os.path.join(c.dir, "finished-at")) or finished
                        message = message or self.termination_message(t.spec_of(c), c.dir, code)
                    term = {"exitCode": code, "reason": reason, "startedAt": c.started_at, "finishedAt": finished,
                            "containerID": f"runc://{c.cid}"}
                    if message:
                        term["message"] = message
                    changed = True
                    policy = t.pod["spec"].get("restartPolicy") or "Always"
                    if policy == "Never" or (policy == "OnFailure" and code == 0):
                        c.state, c.finished_at = "terminated", finished
                        c.exit_code, c.term_reason, c.term_message = code, reason, message
                        log(f"pod {t.key()} container {c.name} exited ({s}, code {code}); restartPolicy {policy}: not restarted")
                        continue
                    c.last_terminated = term
                    c.restarts += 1
                    delay = min(10 * 2 ** (c.restarts - 1), 300)
                    c.state, c.reason = "waiting", "CrashLoopBackOff"
                    c.message = f"back-off {delay}s restarting failed container={c.name} pod={t.name}"
                    c.attempts, c.next_try = 0, time.monotonic() + delay
                    log(f"pod {t.key()} container {c.name} died ({s}, code {code}): restarting in {delay}s")
            if changed:
                self.patch_status(t)

    @staticmethod
    def termination_message(spec, d, code):
        """terminationMessagePath's content (4 KiB at most), or with FallbackToLogsOnError the log's tail."""
        try:
            with open(os.path.join(d, "termination-log"), "rb") as f:
                msg = f.read(4096).decode("utf-8", "replace")
        except OSError:
            msg = ""
        if not msg and code != 0 and spec.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            try:
                with open(os.path.join(d, "container.log"), "rb") as f:
                    f.seek(0, 2)
                    f.seek(max(0, f.tell() - 2048))
                    msg = b"\n".join(f.read().splitlines()[-80:]).decode("utf-8", "replace")
            except OSError:
                msg = ""
        return msg

    def refresh_tokens(self):
        """Re-requests the service-account tokens of running pulled-image containers at 80% of their life."""
        with self.tracked_lock:
            tracks = list(self.tracked.values())
        for t in tracks:
            if t.deleting or (t.worker is not None and t.worker.is_alive()) or not any(c.kind == "oci" and c.state == "running" for c in t.ctrs):
                continue
            try:
                for name in self.volumes.refresh_due(t.pod, ApiLookup(self.kube, getattr(self.kube, "ca_pem", None)), self.a.address):
                    log(f"pod {t.key()}: volume {name}: service-account token refreshed")
            except (podspec.ConfigError, OSError) as e:
                log_limited(f"token/{t.uid}", f"pod {t.key()}: refreshing a token failed (will retry): {e}")

    # ------------------------------------------------------------------ pod status
    def pod_status(self, t):
        statuses = []
        for c in t.ctrs:
            s = {"name": c.name, "image": c.image, "imageID": c.image_id, "restartCount": c.restarts,
                 "ready": c.state == "running", "started": c.state == "running"}
            if c.state == "running":
                s["state"] = {"running": {"startedAt": c.started_at}}
                s["containerID"] = f"runc://{c.cid}"
            elif c.state == "terminated":
                term = {"exitCode": c.exit_code, "reason": c.term_reason, "startedAt": c.started_at, "finishedAt": c.finished_at}
                if c.term_message:
                    term["message"] = c.term_message
                s["state"] = {"terminated": term}
                if c.cid:
                    s["containerID"] = f"runc://{c.cid}"
            else:
                w = {"reason": c.reason}
                if c.message:
                    w["message"] = c.message
                s["state"] = {"waiting": w}
            if c.last_terminated:
                s["lastState"] = {"terminated": c.last_terminated}
            statuses.append(s)
        ready = bool(t.ctrs) and all(c.state == "running" for c in t.ctrs)
        if ready != t.ready:
            t.ready, t.ready_since = ready, rfc3339()
        not_ready = [c.name for c in t.ctrs if c.state != "running"]

        scheduled = next((c.get("lastTransitionTime") for c in (t.pod.get("status") or {}).get("conditions") or []
                          if c.get("type") == "PodScheduled" and c.get("status") == "True"), None) or t.start_time

        def cond(typ, ok, reason=None):
            since = {"Ready": t.ready_since, "ContainersReady": t.ready_since, "PodScheduled": scheduled}.get(typ, t.start_time)
            c = {"type": typ, "status": "True" if ok else "False", "lastProbeTime": None, "lastTransitionTime": since}
            if not ok and reason:
                c["reason"] = reason
                c["message"] = f"containers with unready status: [{' '.join(not_ready)}]"
            return c
        if any(c.state == "running" for c in t.ctrs) or (t.ctrs and all(c.started_at for c in t.ctrs) and not all(c.state == "terminated" for c in t.ctrs)):
            phase = "Running"
        elif t.ctrs and all(c.state == "terminated" for c in t.ctrs):
            phase = "Succeeded" if all(c.exit_code == 0 for c in t.ctrs) else "Failed"
        else:
            phase = "Pending"
        st = {"phase": phase, "hostIP": self.a.address, "podIP": self.a.address, "podIPs": [{"ip": self.a.address}],
              "startTime": t.start_time, "containerStatuses": statuses,
              "conditions": [cond("Initialized", True), cond("Ready", ready, "ContainersNotReady"),
                             cond("ContainersReady", ready, "ContainersNotReady"), cond("PodScheduled", True)]}
        if t.inits:
            st["initContainerStatuses"] = [{"name": n, "image": next((c.get("image", "") for c in t.pod["spec"]["initContainers"] if c["name"] == n), ""),
                                            "imageID": "", "ready": True, "restartCount": 0,
                                            "state": {"terminated": {"exitCode": 0, "reason": "Completed", "message": "not run by kubelet-shim",
                                                                     "startedAt": t.start_time, "finishedAt": t.start_time}}}
                                           for n in t.inits]
        return st

    def patch_status(self, t):
        """Patches the pod's status when it changed, when the last patch failed, and at least every
        STATUS_RESYNC seconds (as the kubelet's status manager re-syncs): something else may
        have changed it meanwhile — the node lifecycle controller marks a node's pods Ready=False
        while the node's Lease is stale, and only the kubelet sets them Ready again."""
        st = self.pod_status(t)
        now = time.monotonic()
        if st == t.last_patched and now - (getattr(t, "last_patched_at", None) or now) < STATUS_RESYNC:
            return
        try:
            self.kube.merge_patch(f"/api/v1/namespaces/{quote(t.ns)}/pods/{quote(t.name)}/status",
                                  {"metadata": {"uid": t.uid}, "status": st})
            changed = st != t.last_patched
            t.last_patched, t.last_patched_at = st, now
            if changed:
                summary = ", ".join(f"{c.name}={c.state}" + (f"({c.reason})" if c.state == "waiting" else "") for c in t.ctrs)
                log(f"pod {t.key()} status: {st['phase']}, ready={t.ready} [{summary}]")
        except ApiError as e:
            t.last_patched = None
            log_limited(f"status/{t.uid}", f"patching the status of {t.key()} failed (will retry): {e}")

    def stop_all(self):
        with self.tracked_lock:
            tracks = list(self.tracked.values())
        for t in tracks:
            for c in t.ctrs:
                if read(os.path.join(c.dir, "pod-uid")) == t.uid:
                    self.stop_dir(c.dir)
                    log(f"pod {t.key()} container {c.name}: stopped (--stop-containers-on-exit)")
            self.volumes.teardown(t.uid)

