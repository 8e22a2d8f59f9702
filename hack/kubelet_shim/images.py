"""Registry side: image references, looking at / pulling checkpoint images with skopeo, and pulling
other images into OCI layouts cached per digest (STATE/images/<hex>/, tag `pulled`; STATE/images/
refs.json maps each pulled reference to its digest, for imagePullPolicy IfNotPresent / Never)."""
import base64, hashlib, json, os, shutil, tempfile, threading
from urllib.parse import quote

from . import oci
from .kube import ApiError
from .runtime import run
from .util import CHECKPOINT_ANNOTATIONS, FRESH_IMAGE_ID, log, log_limited, read, tail

# docker.io/library/busybox (any tag or digest) is not pullable here (no internet): it runs as the
# local busybox-static stand-in (hack/runc-pod.sh start: the counter), as the lab's workloads expect.
STANDIN_REPOSITORY = "library/busybox"
LAYOUT_TAG = "pulled"


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


def is_standin(ref):
    """Whether ref is docker.io/library/busybox in any spelling (busybox, busybox:1.36, library/busybox@...)."""
    host, name = split_ref(ref)
    if host not in ("docker.io", "index.docker.io"):
        return False
    path = name.split("/", 1)[1] if name.startswith(host + "/") else name
    return (path if "/" in path else "library/" + path) == STANDIN_REPOSITORY


def pull_policy(ref, policy):
    """imagePullPolicy as the API server defaults it: Always for :latest or no tag, else IfNotPresent."""
    if policy in ("Always", "IfNotPresent", "Never"):
        return policy
    if "@" in ref:
        return "IfNotPresent"
    last = ref.rsplit("/", 1)[-1]
    return "Always" if ":" not in last or last.endswith(":latest") else "IfNotPresent"


class Pulled:
    """An image in the cache: its OCI layout and tag, imageID (repository@digest) and config."""

    def __init__(self, layout, image_id, config):
        self.layout, self.tag, self.image_id, self.config = layout, LAYOUT_TAG, image_id, config


class Images:
    """Looks at and pulls checkpoint images with skopeo; pulls other images into cached OCI layouts."""

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
        self.cache = os.path.join(state_dir, "images")
        self.timeout = getattr(args, "pull_timeout", 600)
        # Checkpoint images: the node's private keys for encrypted layers (CRI-O's
        # decryption_keys_path, containerd imgcrypt's keys folder) and the signature policy
        # (containers-policy.json + registries.d lookaside, as CRI-O reads them).
        self.decryption_keys_dir = getattr(args, "decryption_keys_dir", None)
        self.signature_policy = getattr(args, "signature_policy", None)
        self.registries_d = getattr(args, "registries_d", None)
        self.lock = threading.Lock()
        self.digest_locks = {}

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

    def decryption_keys(self):
        """The node's private key files (every regular file of --decryption-keys-dir, sorted), as
        CRI-O reads its decryption_keys_path: several keys = rotation or several senders."""
        d = self.decryption_keys_dir
        if not d:
            return []
        try:
            names = sorted(os.listdir(d))
        except OSError as e:
            raise PullError("ErrImagePull", f"cannot read the decryption keys folder {d}: {e.strerror}") from None
        return [os.path.join(d, n) for n in names if not n.startswith(".") and os.path.isfile(os.path.join(d, n))]

    def verify_args(self):
        """skopeo's signature policy options (none: skopeo's default policy, as a runtime without
        a policy file of its own)."""
        a = []
        if self.signature_policy:
            a += ["--policy", self.signature_policy]
        if self.registries_d:
            a += ["--registries.d", self.registries_d]
        return a

    def pull_archive(self, ref, pod):
        """Pulls ref into a private folder; returns (folder, path of the checkpoint archive layer).

        Signed: skopeo checks the image against --signature-policy first (a refused signature is
        SignatureValidationFailed, as CRI-O reports it). Encrypted (`+encrypted` layer, the
        ocicrypt format): skopeo decrypts with the node's keys; a layer still encrypted after the
        copy (this node has no key for it) is refused: the archive is never restored from, or
        handed to CRIU as, ciphertext."""
        host, _ = split_ref(ref)
        keys = self.decryption_keys()
        auth = self.write_auth(host, pod)
        dest = tempfile.mkdtemp(prefix="pull.", dir=self.dir)
        try:
            # --remove-signatures: the policy still checks the source's signatures; they are just
            # not copied into the folder (a decrypted layer changes the manifest they sign, and
            # skopeo refuses to write signatures it would invalidate).
            cmd = ["skopeo"] + self.verify_args() + ["copy", "-q", "--remove-signatures",
                   f"--src-tls-verify={'true' if self.tls_verify(host) else 'false'}", "--src-authfile", auth]
            for k in keys:
                cmd += ["--decryption-key", k]
            out = run(cmd + [f"docker://{ref}", f"dir:{dest}/image"], 600)
            if out.returncode != 0:
                err = tail(out.stderr, 600)
                if "rejected" in err and ("signature" in err.lower() or "policy" in err.lower()):
                    raise PullError("SignatureValidationFailed", f"checkpoint image {ref} refused by the signature policy {self.signature_policy}: {err}")
                if "decrypt" in err.lower() or "unwrap" in err.lower():
                    raise PullError("ErrImagePull", f"checkpoint image {ref} is encrypted and none of this node's {len(keys)} key(s) in {self.decryption_keys_dir} decrypts it: {err}")
                raise PullError("ErrImagePull", f"pulling checkpoint image {ref} failed: {err}")
            with open(os.path.join(dest, "image", "manifest.json")) as f:
                manifest = json.load(f)
            layers = manifest.get("layers") or []
            if len(layers) != 1:
                raise PullError("ErrImagePull", f"checkpoint image {ref} has {len(layers)} layers, expected 1 (the checkpoint archive)")
            if str(layers[0].get("mediaType", "")).endswith("+encrypted"):
                why = (f"none of this node's keys in {self.decryption_keys_dir} decrypts it" if keys
                       else "this node has no decryption keys (--decryption-keys-dir)")
                raise PullError("ErrImagePull", f"checkpoint image {ref} is encrypted ({layers[0].get('mediaType')}) and {why}")
            layer = os.path.join(dest, "image", layers[0]["digest"].split(":", 1)[1])
            if not os.path.isfile(layer):
                raise PullError("ErrImagePull", f"checkpoint image {ref}: layer blob missing after pull")
            return dest, layer
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)
            raise
        finally:
            os.unlink(auth)

    # ------------------------------------------------------------------ OCI images (the third kind)
    def _refs(self):
        try:
            with open(os.path.join(self.cache, "refs.json")) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def _remember(self, ref, digest):
        with self.lock:
            refs = self._refs()
            refs[ref] = digest
            tmp = os.path.join(self.cache, f".refs.{os.getpid()}.json")
            with open(tmp, "w") as f:
                json.dump(refs, f, indent=1, sort_keys=True)
            os.replace(tmp, os.path.join(self.cache, "refs.json"))

    def _layout(self, digest):
        return os.path.join(self.cache, digest.split(":", 1)[1])

    def _load(self, name, digest):
        layout = self._layout(digest)
        try:
            config, _ = oci.layout_config(layout, LAYOUT_TAG)
        except (OSError, ValueError, KeyError, oci.RunError) as e:
            raise PullError("ErrImagePull", f"the cached image {name}@{digest} is unreadable: {e}") from None
        return Pulled(layout, f"{name}@{digest}", config)

    def cached(self, ref, policy):
        """The cached image ref names, without asking the registry (None when a pull is due): a ref
        by digest whenever its layout is here; by tag unless the policy is Always."""
        _, name = split_ref(ref)
        digest = ref.split("@", 1)[1] if "@sha256:" in ref else (None if policy == "Always" else self._refs().get(ref))
        if digest and os.path.isfile(os.path.join(self._layout(digest), "index.json")):
            return self._load(name, digest)
        return None

    def pull_oci(self, ref, pod, policy, digest=None):
        """The image ref in the cache, pulled by digest with skopeo when it is not there yet.
        digest: what the registry resolved ref to (classify already asked), else asked here."""
        host, name = split_ref(ref)
        hit = self.cached(ref, policy)
        if hit:
            return hit
        if policy == "Never":
            raise PullError("ErrImageNeverPull", f'Container image "{ref}" is not present with pull policy of Never')
        os.makedirs(self.cache, mode=0o700, exist_ok=True)
        auth = self.write_auth(host, pod)
        try:
            if "@sha256:" in ref:
                digest = ref.split("@", 1)[1]
            elif not digest:
                digest = self.inspect_raw(ref, host, auth)[1]
            with self.lock:
                lock = self.digest_locks.setdefault(digest, threading.Lock())
            with lock:
                layout = self._layout(digest)
                if not os.path.isfile(os.path.join(layout, "index.json")):
                    tmp = tempfile.mkdtemp(prefix=".pull.", dir=self.cache)
                    try:
                        out = run(["skopeo", "--command-timeout", f"{self.timeout}s", "copy", "-q",
                                   f"--src-tls-verify={'true' if self.tls_verify(host) else 'false'}", "--src-authfile", auth,
                                   f"docker://{name}@{digest}", f"oci:{tmp}/layout:{LAYOUT_TAG}"], self.timeout + 30)
                        if out.returncode != 0:
                            raise PullError("ErrImagePull", f"pulling image {ref} failed: {tail(out.stderr, 600)}")
                        shutil.rmtree(layout, ignore_errors=True)
                        os.rename(os.path.join(tmp, "layout"), layout)
                    finally:
                        shutil.rmtree(tmp, ignore_errors=True)
                    log(f"pulled {ref} ({name}@{digest}) into {layout}")
        finally:
            os.unlink(auth)
        self._remember(ref, digest)
        return self._load(name, digest)
