"""A tiny Kubernetes API client (urllib), kubeconfig reading, ApiError."""
import base64, json, os, re, shutil, ssl, subprocess, tempfile
import urllib.error, urllib.request


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
        # The CA the shim trusts for the API server (PEM; None without one): the ca.crt of pods'
        # kube-root-ca.crt when that ConfigMap does not exist (volumes.py).
        self.ca_pem = None
        if str(cluster.get("insecure-skip-tls-verify", "")).lower() == "true":
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif cluster.get("certificate-authority-data"):
            self.ca_pem = base64.b64decode(cluster["certificate-authority-data"]).decode()
            ctx = ssl.create_default_context(cadata=self.ca_pem)
        elif cluster.get("certificate-authority"):
            ctx = ssl.create_default_context(cafile=cluster["certificate-authority"])
            with open(cluster["certificate-authority"]) as f:
                self.ca_pem = f.read()
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
