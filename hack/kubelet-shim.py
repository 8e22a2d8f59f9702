#!/usr/bin/env python3
"""Kubelet stand-in (no kubelet with a CRIU runtime can run here).

Serves HTTPS like a kubelet's :10250 and answers the API server's node proxy:

    POST /checkpoint/{namespace}/{pod}/{container}?timeout=S
        -> 200 {"items": ["<checkpoint dir>/checkpoint-<pod>_<ns>-<ctr>-<time>.tar"]}

by checkpointing the REAL runc container of that pod (started earlier with
`hack/runc-pod.sh start PODS/<ns>_<pod>_<container> ...`) with CRIU, leaving it running, into a
kubelet-format archive in the checkpoint folder — what the kubelet + CRI runtime do. Unknown pods
get 404, failures 500, both as a Kubernetes Status. It does not authenticate callers: it listens
on loopback only, for the lab's API servers. Also: GET /healthz, and
GET /containerLogs/{namespace}/{pod}/{container}[?tailLines=N] (what `kubectl logs` asks for).

    kubelet-shim.py --port P --cert C --key K --pods DIR --checkpoint-dir OUT

Node mode: the whole kubelet of one worker node
-----------------------------------------------
    kubelet-shim.py --node NAME --kubeconfig FILE (--state-dir DIR | --pods DIR) [--port P]
        [--address 127.0.0.1] [--insecure-registry HOST:PORT]... [--registry HOST]...
        [--registry-user U --registry-password-file F] [--registry-auth-file DOCKER_CONFIG_JSON]
        [--cpu 4 --memory 8Gi --max-pods 110] [--node-label K=V]... [--stop-containers-on-exit]

With --node the shim also, like a kubelet:
  * registers the Node NAME (created if missing; labels kubernetes.io/hostname, os, arch and every
    --node-label): InternalIP = --address, daemonEndpoints.kubeletEndpoint.Port = its HTTPS port,
    capacity/allocatable (cpu, memory, pods, ephemeral-storage), nodeInfo, and the conditions
    MemoryPressure/DiskPressure/PIDPressure False + Ready True, whose lastHeartbeatTime it refreshes
    every 10 s; and renews the Lease kube-node-lease/NAME (holderIdentity NAME,
    leaseDurationSeconds 40) every 5 s. A real kube-controller-manager so sees the node healthy, and
    marks it Ready=Unknown (then taints it unreachable) once the shim is gone for longer than its
    --node-monitor-grace-period. A deleted Node is registered again.
  * polls (every second) the pods with spec.nodeName == NAME and runs each container as a REAL
    runc container in PODS/<namespace>_<pod>_<container> (so the checkpoint endpoint serves it):
      - a checkpoint image (the registry's index or manifest, or a descriptor or layer in it,
        carries the annotation io.kubernetes.cri-o.annotations.checkpoint.name or
        org.criu.checkpoint.container.name; OCI index -> manifest -> one tar layer that IS the
        kubelet checkpoint archive) is pulled with skopeo and RESTORED with runc + CRIU
        (`hack/runc-pod.sh restore`), left running; the counter value at checkpoint is written to
        PODS/<ns>_<pod>_<ctr>/restored-from (`hack/runc-pod.sh count DIR` prints the live value);
      - any other image starts fresh with `hack/runc-pod.sh start` (always the busybox counter).
    Only images on a loopback registry, an --insecure-registry (plain HTTP / unverified TLS) or a
    --registry (verified TLS) are looked at; images elsewhere are not pulled (this machine reaches
    no public registry) and start fresh. Registry credentials: --registry-user with
    --registry-password-file (for the image's registry), --registry-auth-file and the pod's
    imagePullSecrets (kubernetes.io/dockerconfigjson); they go to skopeo in a 0600 auth file,
    never on a command line or in the log.
    It then patches the pod status as the kubelet does: phase Running, conditions
    Initialized/Ready/ContainersReady/PodScheduled True, containerStatuses (image, imageID,
    containerID runc://<id>, ready, started, state.running.startedAt, restartCount), podIP and
    hostIP = --address. A failed pull or restore/start leaves the container waiting with a
    kubelet-like reason (ErrImagePull, ImagePullBackOff, CreateContainerError, CrashLoopBackOff)
    and a message naming the cause, retried with back-off (10 s doubling, at most
    --max-start-attempts tries, then left waiting). A container that dies is restarted the same
    way (restartPolicy Never: left terminated). Init containers are reported Completed, not run.
  * a pod with a deletionTimestamp: its containers are stopped (runc kill) and the pod deleted with
    gracePeriodSeconds=0 (uid precondition), as the kubelet finishes a deletion; a pod that
    vanished from the API: its containers are stopped. A stopped container's folder is kept with a
    `stopped` file (the checkpoint endpoint then answers 404).
  * restarted, it adopts the still-running containers of its pods (PODS/*/pod-uid) and stops the
    ones whose pod is gone.
  * SIGTERM/SIGINT: stops serving, heartbeats and Lease renewal at once; containers are left
    running (a kubelet restart) unless --stop-containers-on-exit.

A node crash is simulated by killing the shim AND stopping its containers:
    kill -9 <shim pid>; for d in PODS/*/; do hack/runc-pod.sh stop "$d"; done
(or: kill -TERM with --stop-containers-on-exit). The Lease is then no longer renewed and the
controller-manager turns the Node Ready=Unknown after its node-monitor grace period.

Only the Python standard library is used; the API is reached with urllib using the kubeconfig's
server, CA and bearer token (or client certificate); the kubeconfig is read with
`kubectl config view --raw --flatten` (--kubectl, $LAB_KUBECTL or kubectl on PATH) when there is
one, else with a small parser for flat kubeconfigs like the lab's.
"""
import argparse, base64, datetime, hashlib, json, os, re, shutil, signal, ssl, subprocess, sys, tempfile, threading, time
import urllib.error, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse, parse_qs, quote

HERE = os.path.dirname(os.path.abspath(__file__))
RUNC_POD = os.path.join(HERE, "runc-pod.sh")
NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
CHECKPOINT_ANNOTATIONS = ("io.kubernetes.cri-o.annotations.checkpoint.name", "org.criu.checkpoint.container.name")
FRESH_IMAGE_ID = "sha256:busybox-static-lab"


def status(code, reason, message):
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason, "message": message}


class Handler(BaseHTTPRequestHandler):
    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def reply_text(self, code, text):
        data = text.encode(errors="replace")
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        url = urlparse(self.path)
        parts = url.path.strip("/").split("/")
        if len(parts) != 4 or parts[0] != "checkpoint":
            return self.reply(404, status(404, "NotFound", f"no such endpoint {url.path}"))
        ns, pod, ctr = parts[1:]
        if not all(NAME.match(p) for p in (ns, pod, ctr)):
            return self.reply(400, status(400, "BadRequest", "namespace, pod and container must be DNS names"))
        pod_dir = os.path.join(self.server.pods, f"{ns}_{pod}_{ctr}")
        if not os.path.isfile(os.path.join(pod_dir, "id")) or os.path.exists(os.path.join(pod_dir, "stopped")):
            return self.reply(404, status(404, "NotFound", f"container {ctr} of pod {ns}/{pod} is not running on this node"))
        timeout = int(parse_qs(url.query).get("timeout", ["60"])[0] or 60)
        try:
            out = subprocess.run(
                ["bash", RUNC_POD, "checkpoint", pod_dir, self.server.out, "--leave-running"],
                capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return self.reply(500, status(500, "Timeout", f"checkpoint of {ns}/{pod}/{ctr} took longer than {timeout}s"))
        if out.returncode != 0:
            return self.reply(500, status(500, "InternalError", f"checkpoint failed: {out.stderr.strip()[-300:]}"))
        self.reply(200, {"items": [out.stdout.strip().splitlines()[-1]]})

    def do_GET(self):
        url = urlparse(self.path)
        parts = url.path.strip("/").split("/")
        if parts == ["healthz"]:
            return self.reply_text(200, "ok")
        if len(parts) == 4 and parts[0] == "containerLogs" and all(NAME.match(p) for p in parts[1:]):
            ns, pod, ctr = parts[1:]
            path = os.path.join(self.server.pods, f"{ns}_{pod}_{ctr}", "container.log")
            try:
                with open(path, errors="replace") as f:
                    lines = f.readlines()
            except OSError:
                return self.reply(404, status(404, "NotFound", f"container {ctr} of pod {ns}/{pod} has no log on this node"))
            tail = parse_qs(url.query).get("tailLines", [""])[0]
            if tail.isdigit():
                lines = lines[-int(tail):] if int(tail) else []
            return self.reply_text(200, "".join(lines))
        self.reply(404, status(404, "NotFound", f"no such endpoint {url.path}"))

    def log_message(self, fmt, *args):
        sys.stderr.write("kubelet-shim: " + fmt % args + "\n")


# ---------------------------------------------------------------------------------------------
# Node mode
# ---------------------------------------------------------------------------------------------

def log(msg):
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] kubelet-shim: {msg}\n")
    sys.stderr.flush()


_last_logged = {}


def log_limited(key, msg, every=30.0):
    """Logs msg unless the same key was logged in the last `every` seconds (API outages)."""
    now = time.monotonic()
    if now - _last_logged.get(key, -1e9) >= every:
        _last_logged[key] = now
        log(msg)


def rfc3339(t=None):
    return datetime.datetime.fromtimestamp(time.time() if t is None else t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_time():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def tail(text, n=400):
    text = (text or "").strip()
    # skopeo/logrus lines: keep the message, not the timestamp and level.
    text = re.sub(r'time="[^"]*" level=\w+ msg="((?:[^"\\]|\\.)*)"', lambda m: m.group(1).replace('\\"', '"'), text)
    return text if len(text) <= n else "..." + text[-n:]


class ApiError(Exception):
    def __init__(self, code, message):
        super().__init__(f"HTTP {code}: {message}" if code else str(message))
        self.code = code


def find_kubectl(explicit):
    for c in (explicit, os.environ.get("LAB_KUBECTL"), shutil.which("kubectl"),
              os.path.join(os.environ.get("TRANSITION_CACHE", os.path.expanduser("~/.cache/transition")), "bin", "kubectl")):
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


def flat_kubeconfig(path):
    """The first cluster and user of a flat kubeconfig (the lab's), without a YAML library."""
    cluster, user = {}, {}
    with open(path) as f:
        for line in f:
            m = re.match(r"^\s*([A-Za-z-]+):\s*(\S.*?)\s*$", line)
            if not m:
                continue
            k, v = m.group(1), m.group(2).strip("'\"")
            if k in ("server", "certificate-authority-data", "certificate-authority", "insecure-skip-tls-verify"):
                cluster.setdefault(k, v)
            elif k in ("token", "tokenFile", "client-certificate-data", "client-key-data", "client-certificate", "client-key"):
                user.setdefault(k, v)
    return cluster, user


class Kube:
    """A tiny Kubernetes API client: urllib + the kubeconfig's server, CA and credentials."""

    def __init__(self, kubeconfig, kubectl, state_dir):
        cluster = user = None
        kc = find_kubectl(kubectl)
        if kc:
            try:
                out = subprocess.run([kc, "--kubeconfig", kubeconfig, "config", "view", "--raw", "--minify", "--flatten", "-o", "json"],
                                     capture_output=True, text=True, timeout=30)
                if out.returncode == 0:
                    cfg = json.loads(out.stdout)
                    cluster = cfg["clusters"][0]["cluster"]
                    user = (cfg.get("users") or [{"user": {}}])[0].get("user") or {}
            except (subprocess.TimeoutExpired, ValueError, KeyError, IndexError):
                cluster = None
        if cluster is None:
            cluster, user = flat_kubeconfig(kubeconfig)
        self.server = cluster.get("server", "").rstrip("/")
        if not self.server:
            raise SystemExit(f"kubelet-shim: no server in {kubeconfig}")
        if str(cluster.get("insecure-skip-tls-verify", "")).lower() == "true":
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif cluster.get("certificate-authority-data"):
            ctx = ssl.create_default_context(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
        elif cluster.get("certificate-authority"):
            ctx = ssl.create_default_context(cafile=cluster["certificate-authority"])
        else:
            ctx = ssl.create_default_context()
        self.token = user.get("token")
        if not self.token and user.get("tokenFile"):
            with open(user["tokenFile"]) as f:
                self.token = f.read().strip()
        if user.get("client-certificate-data") and user.get("client-key-data"):
            d = tempfile.mkdtemp(prefix="client-cert.", dir=state_dir)
            cert, key = os.path.join(d, "tls.crt"), os.path.join(d, "tls.key")
            for p, k in ((cert, "client-certificate-data"), (key, "client-key-data")):
                fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(base64.b64decode(user[k]))
            ctx.load_cert_chain(cert, key)
        elif user.get("client-certificate") and user.get("client-key"):
            ctx.load_cert_chain(user["client-certificate"], user["client-key"])
        self.ctx = ctx
        self.user_agent = "kubelet-shim"

    def request(self, method, path, body=None, content_type="application/json", timeout=10):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        req.add_header("User-Agent", self.user_agent)
        if data is not None:
            req.add_header("Content-Type", content_type)
        if self.token:
            req.add_header("Authorization", "Bearer " + self.token)
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=timeout) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            try:
                msg = json.loads(e.read() or b"{}").get("message") or e.reason
            except (ValueError, OSError):
                msg = e.reason
            raise ApiError(e.code, msg) from None
        except (urllib.error.URLError, OSError, ssl.SSLError) as e:
            raise ApiError(0, f"{method} {path}: {getattr(e, 'reason', e)}") from None
        return json.loads(raw) if raw else None

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body, **kw):
        return self.request("POST", path, body, **kw)

    def merge_patch(self, path, body, **kw):
        return self.request("PATCH", path, body, content_type="application/merge-patch+json", **kw)

    def delete(self, path, body=None, **kw):
        return self.request("DELETE", path, body, **kw)


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
    if out.returncode != 0:
        return "absent"
    try:
        return json.loads(out.stdout).get("status", "absent")
    except ValueError:
        return "absent"


def read(path, default=""):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def write(path, text):
    with open(path, "w") as f:
        f.write(text + "\n")


class PullError(Exception):
    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason


def split_ref(ref):
    """host, repository (with host) and whether the host is a registry host (has . or : or is localhost)."""
    first, _, rest = ref.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        host = first
    else:
        host = "docker.io"
    name = ref.split("@", 1)[0]
    last = name.rsplit("/", 1)
    if ":" in last[-1]:
        name = name[: -(len(last[-1]) - last[-1].index(":"))]
    return host, name


class Images:
    """Looks at and pulls checkpoint images with skopeo."""

    def __init__(self, args, kube, state_dir):
        self.kube = kube
        self.insecure = set(args.insecure_registry or [])
        self.secure = set(args.registry or [])
        self.user = args.registry_user
        self.password = None
        if args.registry_password_file:
            self.password = read(args.registry_password_file)
        self.auth_file = args.registry_auth_file
        self.dir = os.path.join(state_dir, "pulls")
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        os.chmod(self.dir, 0o700)

    def managed(self, host):
        h = host.rsplit(":", 1)[0] if not host.startswith("[") else host
        return host in self.insecure or host in self.secure or h in ("127.0.0.1", "localhost", "[::1]")

    def tls_verify(self, host):
        h = host.rsplit(":", 1)[0]
        return not (host in self.insecure or h in ("127.0.0.1", "localhost", "[::1]"))

    def write_auth(self, host, pod):
        """A 0600 skopeo auth file: --registry-auth-file, the shim's user for HOST, the pod's pull secrets."""
        auths = {}
        if self.auth_file:
            try:
                with open(self.auth_file) as f:
                    auths.update(json.load(f).get("auths") or {})
            except (OSError, ValueError) as e:
                log_limited("authfile", f"cannot read --registry-auth-file: {e}")
        if self.user and self.password is not None and host not in auths:
            auths[host] = {"auth": base64.b64encode(f"{self.user}:{self.password}".encode()).decode()}
        ns = pod["metadata"]["namespace"]
        for ref in pod["spec"].get("imagePullSecrets") or []:
            name = ref.get("name")
            if not name:
                continue
            try:
                secret = self.kube.get(f"/api/v1/namespaces/{quote(ns)}/secrets/{quote(name)}")
                data = secret.get("data") or {}
                raw = data.get(".dockerconfigjson") or data.get(".dockercfg")
                if raw:
                    cfg = json.loads(base64.b64decode(raw))
                    auths.update(cfg.get("auths", cfg))
            except (ApiError, ValueError) as e:
                log_limited(f"secret/{ns}/{name}", f"image pull secret {ns}/{name} unusable: {e}")
        fd, path = tempfile.mkstemp(prefix="auth.", suffix=".json", dir=self.dir)
        with os.fdopen(fd, "w") as f:
            json.dump({"auths": auths}, f)
        return path

    def inspect_raw(self, ref, host, auth):
        """(the manifest or index as JSON, its digest)."""
        out = run(["skopeo", "inspect", "--raw", f"--tls-verify={'true' if self.tls_verify(host) else 'false'}",
                   "--authfile", auth, f"docker://{ref}"], 60)
        if out.returncode != 0:
            raise PullError("ErrImagePull", f"cannot read the manifest of {ref}: {tail(out.stderr, 600)}")
        try:
            return json.loads(out.stdout), "sha256:" + hashlib.sha256(out.stdout.encode()).hexdigest()
        except ValueError:
            raise PullError("ErrImagePull", f"the manifest of {ref} is not JSON") from None

    def classify(self, ref, pod):
        """(is_checkpoint, image_id). Raises PullError when the registry cannot tell."""
        host, name = split_ref(ref)
        if not self.managed(host):
            return False, ref if "@sha256:" in ref else FRESH_IMAGE_ID
        auth = self.write_auth(host, pod)
        try:
            top, top_digest = self.inspect_raw(ref, host, auth)
            docs = [top]
            if top.get("manifests"):
                descs = top["manifests"]
                docs += descs
                pick = next((d for d in descs if (d.get("platform") or {}).get("os") == "linux"
                             and (d.get("platform") or {}).get("architecture") in ("amd64", None)), descs[0])
                docs.append(self.inspect_raw(f"{name}@{pick['digest']}", host, auth)[0])
            for d in list(docs):
                docs += d.get("layers") or []
                if d.get("config"):
                    docs.append(d["config"])
            is_ckpt = any(k in (d.get("annotations") or {}) for d in docs for k in CHECKPOINT_ANNOTATIONS)
            image_id = ref if "@sha256:" in ref else f"{name}@{top_digest}"
            return is_ckpt, image_id
        finally:
            os.unlink(auth)

    def pull_archive(self, ref, pod):
        """Pulls ref into a private folder; returns (folder, path of the checkpoint archive layer)."""
        host, _ = split_ref(ref)
        auth = self.write_auth(host, pod)
        dest = tempfile.mkdtemp(prefix="pull.", dir=self.dir)
        try:
            out = run(["skopeo", "copy", "-q", f"--src-tls-verify={'true' if self.tls_verify(host) else 'false'}",
                       "--src-authfile", auth, f"docker://{ref}", f"dir:{dest}/image"], 600)
            if out.returncode != 0:
                raise PullError("ErrImagePull", f"pulling checkpoint image {ref} failed: {tail(out.stderr, 600)}")
            with open(os.path.join(dest, "image", "manifest.json")) as f:
                manifest = json.load(f)
            layers = manifest.get("layers") or []
            if len(layers) != 1:
                raise PullError("ErrImagePull", f"checkpoint image {ref} has {len(layers)} layers, expected 1 (the checkpoint archive)")
            layer = os.path.join(dest, "image", layers[0]["digest"].split(":", 1)[1])
            if not os.path.isfile(layer):
                raise PullError("ErrImagePull", f"checkpoint image {ref}: layer blob missing after pull")
            return dest, layer
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)
            raise
        finally:
            os.unlink(auth)


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
        self.valid = all(NAME.match(x) for x in [self.ns, self.name] + [c.name for c in self.ctrs])

    def key(self):
        return f"{self.ns}/{self.name}"


class NodeShim:
    def __init__(self, args, kube, pods_dir, port, stop):
        self.a, self.kube, self.pods, self.port, self.stop = args, kube, pods_dir, port, stop
        self.node = args.node
        self.uid = None
        self.started = rfc3339()
        self.tracked = {}
        self.tracked_lock = threading.Lock()
        self.finished = {}  # uid -> when its containers were stopped (a stale list may still show it)
        self.images = Images(args, kube, args.state_dir)
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

    # ------------------------------------------------------------------ pods
    def pod_loop(self):
        next_live = 0.0
        while not self.stop.wait(self.a.sync_interval):
            try:
                self.sync_once()
                if time.monotonic() >= next_live:
                    next_live = time.monotonic() + 5
                    self.check_liveness()
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
            self.patch_status(t)  # no API call unless the status changed or the last patch failed

    def adopt(self, t):
        for c in t.ctrs:
            if read(os.path.join(c.dir, "pod-uid")) == t.uid and not os.path.exists(os.path.join(c.dir, "stopped")) \
                    and runc_status(c.dir) == "running":
                c.state, c.cid = "running", read(os.path.join(c.dir, "id"))
                c.started_at = read(os.path.join(c.dir, "started-at")) or read(os.path.join(c.dir, "created")) or rfc3339()
                c.image_id = read(os.path.join(c.dir, "image-id")) or FRESH_IMAGE_ID
                rf = read(os.path.join(c.dir, "restored-from"))
                c.restored_from = int(rf) if rf.isdigit() else None
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
                except PullError as e:
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
        is_ckpt, image_id = self.images.classify(c.image, t.pod)
        if os.path.lexists(c.dir):
            self.stop_dir(c.dir)
            shutil.rmtree(c.dir, ignore_errors=True)
        os.makedirs(os.path.dirname(c.dir), exist_ok=True)
        ident = ["--pod", t.name, "--namespace", t.ns, "--container", c.name]
        if is_ckpt:
            log(f"pod {t.key()} container {c.name}: pulling checkpoint image {c.image}")
            pulled, layer = self.images.pull_archive(c.image, t.pod)
            t1 = time.monotonic()
            try:
                out = run(["bash", RUNC_POD, "restore", c.dir, layer] + ident, self.a.start_timeout)
            finally:
                shutil.rmtree(pulled, ignore_errors=True)
            if out.returncode != 0:
                self.stop_dir(c.dir)
                raise PullError("CreateContainerError", f"restoring checkpoint image {c.image} with runc + CRIU failed: {tail(out.stderr)}")
            rf = read(os.path.join(c.dir, "restored-from"))
            c.restored_from = int(rf) if rf.isdigit() else None
            how = f"restored from checkpoint image (counter {rf} at checkpoint; pull {t1 - t0:.1f}s, restore {time.monotonic() - t1:.1f}s)"
        else:
            out = run(["bash", RUNC_POD, "start", c.dir] + ident, self.a.start_timeout)
            if out.returncode != 0:
                self.stop_dir(c.dir)
                raise PullError("CreateContainerError", f"starting {c.image} (as the busybox counter) with runc failed: {tail(out.stderr)}")
            c.restored_from = None
            how = f"started fresh in {time.monotonic() - t0:.1f}s"
        c.cid = read(os.path.join(c.dir, "id"))
        write(os.path.join(c.dir, "pod-uid"), t.uid)
        write(os.path.join(c.dir, "image"), c.image)
        write(os.path.join(c.dir, "image-id"), image_id)
        c.image_id = image_id
        c.state, c.reason, c.message = "running", "", ""
        c.started_at = rfc3339()
        write(os.path.join(c.dir, "started-at"), c.started_at)
        log(f"pod {t.key()} container {c.name}: {how}; runc id {c.cid}")

    def stop_dir(self, d):
        if os.path.isfile(os.path.join(d, "id")):
            out = run(["bash", RUNC_POD, "stop", d], 60)
            if out.returncode != 0:
                log(f"stopping {d} failed: {tail(out.stderr, 200)}")
            try:
                write(os.path.join(d, "stopped"), rfc3339())
            except OSError:
                pass

    def spawn_delete(self, t, delete_pod):
        t.deleting = True
        threading.Thread(target=self.delete_pod, args=(t, delete_pod), daemon=True, name=f"delete-{t.key()}").start()

    def delete_pod(self, t, delete_pod):
        try:
            with t.lock:  # waits for a start in progress
                for c in t.ctrs:
                    if os.path.isfile(os.path.join(c.dir, "id")) and read(os.path.join(c.dir, "pod-uid")) in (t.uid, ""):
                        self.stop_dir(c.dir)
                        log(f"pod {t.key()} container {c.name}: stopped")
                    c.state, c.finished_at = "terminated", rfc3339()
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
                    if s == "running":
                        continue
                    c.last_terminated = {"exitCode": 137, "reason": "Error", "startedAt": c.started_at, "finishedAt": rfc3339(),
                                         "containerID": f"runc://{c.cid}"}
                    changed = True
                    if (t.pod["spec"].get("restartPolicy") or "Always") == "Never":
                        c.state, c.finished_at = "terminated", rfc3339()
                        log(f"pod {t.key()} container {c.name} died ({s}); restartPolicy Never: not restarted")
                        continue
                    c.restarts += 1
                    delay = min(10 * 2 ** (c.restarts - 1), 300)
                    c.state, c.reason = "waiting", "CrashLoopBackOff"
                    c.message = f"back-off {delay}s restarting failed container={c.name} pod={t.name}"
                    c.attempts, c.next_try = 0, time.monotonic() + delay
                    log(f"pod {t.key()} container {c.name} died ({s}): restarting in {delay}s")
            if changed:
                self.patch_status(t)

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
                s["state"] = {"terminated": {"exitCode": 137, "reason": "Error", "startedAt": c.started_at, "finishedAt": c.finished_at}}
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
            phase = "Failed"
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
        st = self.pod_status(t)
        if st == t.last_patched:
            return
        try:
            self.kube.merge_patch(f"/api/v1/namespaces/{quote(t.ns)}/pods/{quote(t.name)}/status",
                                  {"metadata": {"uid": t.uid}, "status": st})
            t.last_patched = st
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


def self_signed(state_dir, name):
    cert, key = os.path.join(state_dir, "kubelet.crt"), os.path.join(state_dir, "kubelet.key")
    if not (os.path.isfile(cert) and os.path.isfile(key)):
        out = run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "365", "-subj", f"/CN={name}",
                   "-keyout", key, "-out", cert], 60)
        if out.returncode != 0:
            raise SystemExit(f"kubelet-shim: openssl failed: {tail(out.stderr)}")
        os.chmod(key, 0o600)
    return cert, key


def main():
    p = argparse.ArgumentParser(description="kubelet stand-in: the checkpoint endpoint, and with --node a whole node's kubelet")
    p.add_argument("--port", type=int, help="HTTPS port (node mode: default 0 = any free port, written to STATE_DIR/port)")
    p.add_argument("--cert", help="TLS certificate (node mode: default a self-signed one in the state dir)")
    p.add_argument("--key", help="TLS key")
    p.add_argument("--pods", help="folder of the containers, PODS/<ns>_<pod>_<ctr> (node mode: default STATE_DIR/pods)")
    p.add_argument("--checkpoint-dir", help="where checkpoint archives go (node mode: default STATE_DIR/checkpoints)")
    n = p.add_argument_group("node mode")
    n.add_argument("--node", help="act as the kubelet of this Node")
    n.add_argument("--kubeconfig", help="the cluster's kubeconfig (bearer token or client certificate)")
    n.add_argument("--kubectl", help="kubectl used to read the kubeconfig (default $LAB_KUBECTL, kubectl)")
    n.add_argument("--state-dir", help="the shim's folder (default: the parent of --pods)")
    n.add_argument("--address", default="127.0.0.1", help="listen address, Node InternalIP, pod and host IP")
    n.add_argument("--insecure-registry", action="append", metavar="HOST:PORT", help="plain HTTP / unverified TLS registry (loopback ones always are)")
    n.add_argument("--registry", action="append", metavar="HOST[:PORT]", help="a TLS registry whose images are looked at for checkpoints")
    n.add_argument("--registry-user", default=os.environ.get("KUBELET_SHIM_REGISTRY_USER"))
    n.add_argument("--registry-password-file", default=os.environ.get("KUBELET_SHIM_REGISTRY_PASSWORD_FILE"))
    n.add_argument("--registry-auth-file", help="docker config JSON ({\"auths\": ...}) with registry credentials")
    n.add_argument("--cpu", default="4")
    n.add_argument("--memory", default="8Gi")
    n.add_argument("--max-pods", type=int, default=110)
    n.add_argument("--node-label", action="append", metavar="KEY=VALUE")
    n.add_argument("--lease-interval", type=float, default=5.0)
    n.add_argument("--status-interval", type=float, default=10.0)
    n.add_argument("--sync-interval", type=float, default=1.0)
    n.add_argument("--max-start-attempts", type=int, default=5)
    n.add_argument("--start-timeout", type=int, default=180, help="seconds for one runc start / restore")
    n.add_argument("--stop-containers-on-exit", action="store_true")
    a = p.parse_args()

    if not a.node:
        for flag in ("port", "cert", "key", "pods", "checkpoint_dir"):
            if getattr(a, flag) is None:
                p.error(f"--{flag.replace('_', '-')} is required (without --node)")
        server = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
        server.pods, server.out = a.pods, a.checkpoint_dir
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.cert, a.key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        server.serve_forever()
        return

    if not NAME.match(a.node):
        p.error("--node must be a DNS name")
    if not a.kubeconfig:
        p.error("--node needs --kubeconfig")
    if not a.state_dir and not a.pods:
        p.error("--node needs --state-dir or --pods")
    a.state_dir = os.path.abspath(a.state_dir or os.path.dirname(os.path.abspath(a.pods)))
    os.makedirs(a.state_dir, mode=0o700, exist_ok=True)
    pods = os.path.abspath(a.pods or os.path.join(a.state_dir, "pods"))
    out = os.path.abspath(a.checkpoint_dir or os.path.join(a.state_dir, "checkpoints"))
    os.makedirs(pods, exist_ok=True)
    os.makedirs(out, mode=0o700, exist_ok=True)
    if bool(a.cert) != bool(a.key):
        p.error("--cert and --key go together")
    cert, key = (a.cert, a.key) if a.cert else self_signed(a.state_dir, a.node)

    stop = threading.Event()

    def on_signal(signum, _frame):
        log(f"signal {signum}: stopping")
        stop.set()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    kube = Kube(a.kubeconfig, a.kubectl, a.state_dir)
    kube.user_agent = f"kubelet-shim/{a.node}"
    server = ThreadingHTTPServer((a.address, a.port or 0), Handler)
    server.daemon_threads = True
    server.pods, server.out = pods, out
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    port = server.server_address[1]
    write(os.path.join(a.state_dir, "port"), str(port))
    threading.Thread(target=server.serve_forever, daemon=True, name="https").start()
    log(f"node {a.node}: serving HTTPS on {a.address}:{port}; containers in {pods}; API {kube.server}")

    shim = NodeShim(a, kube, pods, port, stop)
    try:
        shim.register()
    except Exception as e:  # noqa: BLE001 — the heartbeat loop registers later
        log(f"registering Node {a.node} failed (will retry): {e}")
    threads = [threading.Thread(target=shim.heartbeat_loop, daemon=True, name="heartbeat"),
               threading.Thread(target=shim.pod_loop, daemon=True, name="pods")]
    for t in threads:
        t.start()
    while not stop.wait(0.5):
        pass
    server.shutdown()
    server.server_close()
    for t in threads:
        t.join(timeout=5)
    if a.stop_containers_on_exit:
        shim.stop_all()
    log(f"node {a.node}: stopped (heartbeats and Lease renewal ended"
        + (", containers stopped)" if a.stop_containers_on_exit else "; containers left running)"))


if __name__ == "__main__":
    main()
