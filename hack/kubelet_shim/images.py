"""Registry side: image references, and looking at / pulling checkpoint images with skopeo."""
import base64, hashlib, json, os, shutil, tempfile
from urllib.parse import quote

from .kube import ApiError
from .runtime import run
from .util import CHECKPOINT_ANNOTATIONS, FRESH_IMAGE_ID, log_limited, read, tail


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
