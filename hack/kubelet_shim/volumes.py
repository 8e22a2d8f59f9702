"""Pod volumes of pulled-image containers, materialised under STATE/volumes/<pod uid>/<volume> and
bind-mounted by runc: secret, configMap, downwardAPI and projected (serviceAccountToken from the
TokenRequest API, configMap, secret, downwardAPI) are written the kubelet's atomic way
(`..<time>/` + `..data` symlink + one symlink per top-level name, swapped in one rename so a running
container sees a token refresh at once) and mounted read-only; emptyDir is a folder (medium Memory:
a tmpfs mounted there); hostPath is the host path itself after its `type` check.

ApiLookup reads Secrets and ConfigMaps (one GET each per container start) and requests tokens.
kube-root-ca.crt does not exist on a v1.20 cluster without kube-controller-manager: its `ca.crt`
falls back to the CA the shim trusts for the API server (the one in its kubeconfig)."""
import base64, calendar, os, re, shutil, stat, tempfile, time
from urllib.parse import quote

from .kube import ApiError
from .podspec import ConfigError, bind, expand, field_value
from .runtime import run
from .util import log, log_limited

ATOMIC = ("secret", "configMap", "downwardAPI", "projected")
SUPPORTED = ATOMIC + ("emptyDir", "hostPath")
CA_CONFIGMAP = "kube-root-ca.crt"


class ApiLookup:
    """Secrets, ConfigMaps ({key: bytes}, None when absent) and bound tokens, from the API server."""

    def __init__(self, kube, ca_pem=None):
        self.kube, self.ca_pem, self.cache = kube, ca_pem, {}

    def _get(self, kind, ns, name):
        key = (kind, ns, name)
        if key not in self.cache:
            plural = "secrets" if kind == "Secret" else "configmaps"
            try:
                obj = self.kube.get(f"/api/v1/namespaces/{quote(ns)}/{plural}/{quote(name)}")
            except ApiError as e:
                if e.code != 404:
                    raise ConfigError("CreateContainerConfigError", f"failed to read {kind.lower()} {ns}/{name}: {e}") from None
                obj = None
            self.cache[key] = obj
        return self.cache[key]

    def secret(self, ns, name):
        obj = self._get("Secret", ns, name)
        if obj is None:
            return None
        return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}

    def configmap(self, ns, name):
        obj = self._get("ConfigMap", ns, name)
        if obj is None:
            if name == CA_CONFIGMAP and self.ca_pem:
                log_limited(f"ca/{ns}", f"ConfigMap {ns}/{CA_CONFIGMAP} does not exist (no root-CA publisher on this cluster): "
                                        "using the CA the shim trusts for the API server as its ca.crt")
                return {"ca.crt": self.ca_pem.encode()}
            return None
        data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        return data

    def token(self, pod, sa, audience, seconds):
        """(token, seconds it is valid): POST .../serviceaccounts/SA/token bound to the pod."""
        md = pod["metadata"]
        spec = {"expirationSeconds": seconds, "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": md["name"], "uid": md["uid"]}}
        if audience:
            spec["audiences"] = [audience]  # none: the API server's own audiences (its issuer)
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        try:
            out = self.kube.post(f"/api/v1/namespaces/{quote(md['namespace'])}/serviceaccounts/{quote(sa)}/token", body)
        except ApiError as e:
            raise ConfigError("ContainerCreating", f"failed to fetch token for service account {md['namespace']}/{sa}: {e}") from None
        st = (out or {}).get("status") or {}
        if not st.get("token"):
            raise ConfigError("ContainerCreating", f"the TokenRequest for service account {md['namespace']}/{sa} returned no token")
        ttl = seconds
        exp = st.get("expirationTimestamp")
        if exp:
            try:
                ttl = max(60, calendar.timegm(time.strptime(exp, "%Y-%m-%dT%H:%M:%SZ")) - time.time())
            except ValueError:
                pass
        return st["token"], ttl


def quantity_bytes(q):
    """A Kubernetes quantity ("64Mi", "1G", "1000") in bytes."""
    m = re.match(r"^([0-9.]+)([KMGTPE]i?|k)?$", str(q))
    if not m:
        raise ValueError(f"not a quantity: {q}")
    mult = {"": 1, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
            "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}[m.group(2) or ""]
    return int(float(m.group(1)) * mult)


def _safe_rel(path, what):
    parts = path.split("/")
    if not path or path.startswith("/") or ".." in parts or parts[0].startswith(".."):
        raise ConfigError("ContainerCreating", f"{what} {path!r} must be a relative path without '..'")
    return path


def write_atomic(vol, files, gid=None):
    """Writes {relative path: (bytes, mode)} into vol the kubelet's way and swaps it in atomically."""
    os.makedirs(vol, exist_ok=True)
    ts = tempfile.mkdtemp(prefix=time.strftime("..%Y_%m_%d_%H_%M_%S."), dir=vol)
    os.chmod(ts, 0o755)
    for rel, (data, mode) in files.items():
        p = os.path.join(ts, rel)
        os.makedirs(os.path.dirname(p), mode=0o755, exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)
        os.chmod(p, mode)
        if gid is not None:
            os.chown(p, -1, gid)
    tmp = os.path.join(vol, "..data_tmp")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(os.path.basename(ts), tmp)
    os.rename(tmp, os.path.join(vol, "..data"))
    tops = {rel.split("/", 1)[0] for rel in files}
    for name in os.listdir(vol):
        p = os.path.join(vol, name)
        if name.startswith(".."):
            if name not in ("..data", os.path.basename(ts)) and os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p, ignore_errors=True)
        elif os.path.islink(p) and name not in tops:
            os.unlink(p)
    for top in tops:
        if not os.path.lexists(os.path.join(vol, top)):
            os.symlink(os.path.join("..data", top), os.path.join(vol, top))


def mount_points():
    """Mount points of the shim's mount namespace (/proc/self/mountinfo, octal escapes decoded)."""
    try:
        with open("/proc/self/mountinfo") as f:
            return [re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4]) for line in f]
    except OSError:
        return []


def mount_tmpfs(path, size):
    out = run(["mount", "-t", "tmpfs", "-o", "mode=0777" + (f",size={size}" if size else ""), "tmpfs", path], 30)
    if out.returncode != 0:
        raise ConfigError("ContainerCreating", f"mounting a tmpfs on {path} failed: {out.stderr.strip()}")


def umount(path):
    return run(["umount", path], 30).returncode == 0


class Volumes:
    """Sets up the volumes one container mounts and tears down a pod's; mounts are injectable for tests."""

    def __init__(self, root, mounts=mount_points, mount=mount_tmpfs, unmount=umount, clock=time.time):
        self.root, self.mounts, self.mount, self.unmount, self.clock = root, mounts, mount, unmount, clock
        self.refresh_at = {}  # pod uid -> {volume name: wall time its token needs refreshing}

    def pod_dir(self, uid):
        return os.path.join(self.root, uid)

    # ---------------------------------------------------------------- payloads
    def _items(self, data, items, default_mode, what):
        if not items:
            return {_safe_rel(k, "key"): (v, default_mode) for k, v in data.items()}
        out = {}
        for it in items:
            if it["key"] not in data:
                raise ConfigError("ContainerCreating", f"{what} references non-existent key: {it['key']}")
            out[_safe_rel(it.get("path") or it["key"], "path")] = (data[it["key"]], it.get("mode", default_mode))
        return out

    def _downward(self, pod, items, default_mode, host_ip):
        out = {}
        for it in items or []:
            if not it.get("fieldRef"):
                raise ConfigError("ContainerCreating", f"downwardAPI item {it.get('path')}: only fieldRef is supported by kubelet-shim")
            out[_safe_rel(it["path"], "path")] = (field_value(pod, it["fieldRef"]["fieldPath"], host_ip).encode(), it.get("mode", default_mode))
        return out

    def payload(self, pod, vol, lookup, host_ip):
        """The files of an atomic-writer volume and, for a token, when to refresh it (or None)."""
        ns, refresh = pod["metadata"]["namespace"], None
        if "secret" in vol or "configMap" in vol:
            kind, src = ("Secret", vol["secret"]) if "secret" in vol else ("ConfigMap", vol["configMap"])
            name = src.get("secretName") if kind == "Secret" else src.get("name")
            data = lookup.secret(ns, name) if kind == "Secret" else lookup.configmap(ns, name)
            if data is None:
                if src.get("optional") is True:
                    return {}, None
                raise ConfigError("ContainerCreating", f'{kind.lower()} "{name}" not found')
            return self._items(data, src.get("items"), src.get("defaultMode", 0o644), f"{kind} {ns}/{name}"), None
        if "downwardAPI" in vol:
            src = vol["downwardAPI"]
            return self._downward(pod, src.get("items"), src.get("defaultMode", 0o644), host_ip), None
        src = vol["projected"]
        mode = src.get("defaultMode", 0o644)
        files = {}
        for s in src.get("sources") or []:
            if "serviceAccountToken" in s:
                t = s["serviceAccountToken"]
                sa = pod["spec"].get("serviceAccountName") or pod["spec"].get("serviceAccount") or "default"
                token, ttl = lookup.token(pod, sa, t.get("audience"), int(t.get("expirationSeconds") or 3600))
                files[_safe_rel(t.get("path") or "token", "path")] = (token.encode(), mode)
                at = self.clock() + min(0.8 * ttl, 24 * 3600)
                refresh = at if refresh is None else min(refresh, at)
            elif "secret" in s or "configMap" in s:
                kind, ref = ("Secret", s["secret"]) if "secret" in s else ("ConfigMap", s["configMap"])
                data = lookup.secret(ns, ref.get("name")) if kind == "Secret" else lookup.configmap(ns, ref.get("name"))
                if data is None:
                    if ref.get("optional") is True:
                        continue
                    raise ConfigError("ContainerCreating", f'{kind.lower()} "{ref.get("name")}" not found')
                files.update(self._items(data, ref.get("items"), mode, f"{kind} {ns}/{ref.get('name')}"))
            elif "downwardAPI" in s:
                files.update(self._downward(pod, s["downwardAPI"].get("items"), mode, host_ip))
            else:
                raise ConfigError("ContainerCreating", f"projected source {sorted(s)} is not supported by kubelet-shim")
        return files, refresh

    # ---------------------------------------------------------------- set-up
    def _check_host_path(self, path, typ):
        kinds = {"Directory": stat.S_ISDIR, "File": stat.S_ISREG, "Socket": stat.S_ISSOCK,
                 "CharDevice": stat.S_ISCHR, "BlockDevice": stat.S_ISBLK}
        if typ == "DirectoryOrCreate" and not os.path.exists(path):
            os.makedirs(path, mode=0o755)
        elif typ == "FileOrCreate" and not os.path.exists(path):
            try:
                open(path, "a").close()
            except OSError as e:
                raise ConfigError("ContainerCreating", f"hostPath type check failed: cannot create file {path}: {e.strerror}") from None
            os.chmod(path, 0o644)
        want = {"DirectoryOrCreate": "Directory", "FileOrCreate": "File"}.get(typ, typ)
        if not want:
            return
        if want not in kinds:
            raise ConfigError("ContainerCreating", f"hostPath type {typ} is not a known type")
        try:
            mode = os.stat(path).st_mode
        except OSError:
            raise ConfigError("ContainerCreating", f"hostPath type check failed: {path} does not exist") from None
        if not kinds[want](mode):
            noun = {"Directory": "a directory", "File": "a file", "Socket": "a socket", "CharDevice": "a character device",
                    "BlockDevice": "a block device"}[want]
            raise ConfigError("ContainerCreating", f"hostPath type check failed: {path} is not {noun}")

    def setup_volume(self, pod, vol, lookup, host_ip):
        """Materialises one volume; returns its host path."""
        uid, name = pod["metadata"]["uid"], vol["name"]
        fs_group = ((pod["spec"].get("securityContext") or {}).get("fsGroup"))
        kind = next((k for k in vol if k != "name"), "")
        if kind not in SUPPORTED:
            raise ConfigError("ContainerCreating", f"volume type {kind or '(none)'} is not supported by kubelet-shim")
        if kind == "hostPath":
            path = vol["hostPath"]["path"]
            self._check_host_path(path, vol["hostPath"].get("type") or "")
            return path
        d = os.path.join(self.pod_dir(uid), name)
        if kind == "emptyDir":
            if not os.path.isdir(d):
                os.makedirs(d)
                os.chmod(d, 0o777)
            if (vol["emptyDir"] or {}).get("medium") == "Memory" and os.path.realpath(d) not in self.mounts():
                limit = (vol["emptyDir"] or {}).get("sizeLimit")
                self.mount(d, quantity_bytes(limit) if limit else None)
            if fs_group is not None:
                os.chown(d, -1, int(fs_group))
                os.chmod(d, 0o2777)
            return d
        files, refresh = self.payload(pod, vol, lookup, host_ip)
        if fs_group is not None:
            files = {k: (v, m | 0o440) for k, (v, m) in files.items()}
        write_atomic(d, files, None if fs_group is None else int(fs_group))
        if refresh is not None:
            self.refresh_at.setdefault(uid, {})[name] = refresh
        return d

    def setup(self, pod, ctr, lookup, host_ip, env=()):
        """runc bind mounts for the container's volumeMounts (materialising each volume they use)."""
        vols = {v["name"]: v for v in pod["spec"].get("volumes") or []}
        done, mounts = {}, []
        for vm in ctr.get("volumeMounts") or []:
            name = vm["name"]
            if name not in vols:
                raise ConfigError("CreateContainerConfigError", f"cannot find volume {name!r} to mount into container {ctr['name']!r}")
            try:
                if name not in done:
                    done[name] = self.setup_volume(pod, vols[name], lookup, host_ip)
            except ConfigError as e:
                raise ConfigError(e.reason, f'MountVolume.SetUp failed for volume "{name}" : {e}') from None
            src = done[name]
            sub = vm.get("subPath") or (expand(vm["subPathExpr"], dict(env)) if vm.get("subPathExpr") else "")
            if sub:
                src = os.path.join(src, _safe_rel(sub, "subPath"))
                if not os.path.lexists(src):
                    if not any(k in vols[name] for k in ("emptyDir", "hostPath")):
                        raise ConfigError("CreateContainerConfigError", f"subPath {sub!r} does not exist in volume {name!r}")
                    os.makedirs(src, mode=0o755)
            ro = bool(vm.get("readOnly")) or any(k in vols[name] for k in ATOMIC)
            mounts.append(bind(src, vm["mountPath"], ro))
        return mounts

    def pod_files(self, pod, hostname, host_ip):
        """/etc/hosts and /etc/hostname of the pod (host networking: its name resolves to the node's
        address, as do kubernetes.default.svc & co.), plus the node's /etc/resolv.conf."""
        d = self.pod_dir(pod["metadata"]["uid"])
        os.makedirs(d, exist_ok=True)
        hosts = os.path.join(d, "etc-hosts")
        with open(hosts, "w") as f:
            f.write("# Kubernetes-managed hosts file (kubelet-shim: host network).\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                    f"{host_ip}\t{hostname}\n"
                    f"{host_ip}\tkubernetes kubernetes.default kubernetes.default.svc kubernetes.default.svc.cluster.local\n")
        hn = os.path.join(d, "etc-hostname")
        with open(hn, "w") as f:
            f.write(hostname + "\n")
        out = [bind(hosts, "/etc/hosts"), bind(hn, "/etc/hostname")]
        if os.path.isfile("/etc/resolv.conf"):
            out.append(bind(os.path.realpath("/etc/resolv.conf"), "/etc/resolv.conf", readonly=True))
        return out

    # ---------------------------------------------------------------- refresh / teardown
    def refresh_due(self, pod, lookup, host_ip):
        """Rewrites the projected volumes whose token is due (80% of its lifetime); returns their names."""
        uid = pod["metadata"]["uid"]
        due = [n for n, at in (self.refresh_at.get(uid) or {}).items() if self.clock() >= at]
        vols = {v["name"]: v for v in pod["spec"].get("volumes") or []}
        for n in due:
            if n in vols:
                self.setup_volume(pod, vols[n], lookup, host_ip)
            else:
                self.refresh_at[uid].pop(n, None)
        return due

    def schedule_refresh(self, pod):
        """Marks every projected token volume of the pod due now (after a shim restart)."""
        uid = pod["metadata"]["uid"]
        for v in pod["spec"].get("volumes") or []:
            if any("serviceAccountToken" in s for s in (v.get("projected") or {}).get("sources") or []):
                self.refresh_at.setdefault(uid, {})[v["name"]] = 0.0

    def teardown(self, uid):
        """Unmounts what the shim mounted under the pod's folder, then removes it. True when gone."""
        self.refresh_at.pop(uid, None)
        d = os.path.realpath(self.pod_dir(uid))
        if not os.path.lexists(d):
            return True
        under = sorted((m for m in self.mounts() if m == d or m.startswith(d + "/")), key=len, reverse=True)
        failed = [m for m in under if not self.unmount(m)]
        if failed:
            log(f"pod {uid}: cannot unmount {', '.join(failed)}: its volumes folder {d} is kept")
            return False
        shutil.rmtree(d, ignore_errors=True)
        return not os.path.exists(d)

    def known(self):
        try:
            return os.listdir(self.root)
        except OSError:
            return []
