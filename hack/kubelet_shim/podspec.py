"""From a pod spec + an OCI image config to a runc config.json, the way the kubelet and a CRI runtime
(containerd) compute it. Pure: every API read goes through the `lookup` object handed in (secrets
and config maps), every file read of the image through `passwd` / `group` texts.

Kubernetes rules followed here:
  * command/args vs the image's Entrypoint/Cmd: neither -> Entrypoint + Cmd; args only ->
    Entrypoint + args; command (with or without args) -> command + args (the image's Cmd is dropped);
  * env: envFrom (configMapRef / secretRef, prefix, optional) then env (value with $(VAR) expanded
    against what came before and the service variables; valueFrom fieldRef / secretKeyRef /
    configMapKeyRef, optional), then the service variables of the `kubernetes` Service; the image's
    Env comes first and is overridden by the container's; command and args are $(VAR)-expanded with
    the container's env (not the image's), `$$` escapes;
  * securityContext (container over pod): runAsUser, runAsGroup, runAsNonRoot, supplementalGroups,
    fsGroup, readOnlyRootFilesystem, allowPrivilegeEscalation, privileged, capabilities add/drop.
Host networking: the container gets no network namespace (it shares the node's, 127.0.0.1)."""
import re

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# containerd's default capability set for a pod's container.
DEFAULT_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
                "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]
ALL_CAPS = DEFAULT_CAPS + ["CAP_DAC_READ_SEARCH", "CAP_LINUX_IMMUTABLE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_IPC_LOCK",
                           "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN",
                           "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_LEASE",
                           "CAP_AUDIT_CONTROL", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
                           "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ"]
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")  # v1.20's IsEnvVarName


class ConfigError(Exception):
    """The container cannot be configured (the kubelet's CreateContainerConfigError / CreateContainerError)."""

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason


# ------------------------------------------------------------------ $(VAR) expansion
def expand(text, *maps):
    """The kubelet's expansion.Expand: $(NAME) -> the first map that has NAME, else left as is;
    $$ -> $; a $ before anything else, or an unclosed $(, stays."""
    out, i, n = [], 0, len(text)
    while i < n:
        ch = text[i]
        if ch != "$" or i + 1 >= n:
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            close = text.find(")", i + 2)
            if close < 0:
                out.append("$(")
                i += 2
                continue
            name = text[i + 2:close]
            for m in maps:
                if name in m:
                    out.append(m[name])
                    break
            else:
                out.append(f"$({name})")
            i = close + 1
        else:
            out.append("$" + nxt)
            i += 2
    return "".join(out)


# ------------------------------------------------------------------ downward API
def field_value(pod, path, host_ip):
    """A fieldRef's value (env and downwardAPI volumes). Host networking: podIP is the node's address."""
    md, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    simple = {"metadata.name": md.get("name", ""), "metadata.namespace": md.get("namespace", ""),
              "metadata.uid": md.get("uid", ""), "spec.nodeName": spec.get("nodeName", ""),
              "spec.serviceAccountName": spec.get("serviceAccountName") or spec.get("serviceAccount") or "",
              "status.hostIP": host_ip, "status.podIP": host_ip, "status.podIPs": host_ip}
    if path in simple:
        return simple[path]
    m = re.match(r"^metadata\.(labels|annotations)(?:\['([^']*)'\])?$", path)
    if m:
        d = md.get(m.group(1)) or {}
        if m.group(2) is None:  # the whole map: downwardAPI volumes only
            return "".join(f'{k}="{_quote(v)}"\n' for k, v in sorted(d.items()))
        return d.get(m.group(2), "")
    raise ConfigError("CreateContainerConfigError", f"unsupported fieldRef fieldPath {path!r}")


def _quote(v):
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


# ------------------------------------------------------------------ env
def service_env(host, port):
    """The variables of the `kubernetes` Service as the kubelet adds them (host networking: the API
    server the shim talks to). Other Services get none: no cluster IPs are reachable here."""
    return {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": str(port), "KUBERNETES_SERVICE_PORT_HTTPS": str(port),
            "KUBERNETES_PORT": f"tcp://{host}:{port}", f"KUBERNETES_PORT_{port}_TCP": f"tcp://{host}:{port}",
            f"KUBERNETES_PORT_{port}_TCP_PROTO": "tcp", f"KUBERNETES_PORT_{port}_TCP_PORT": str(port),
            f"KUBERNETES_PORT_{port}_TCP_ADDR": host}


def _source(lookup, kind, ns, name, optional):
    """The data of a Secret / ConfigMap as {key: str}, None when it is missing and optional."""
    obj = lookup.secret(ns, name) if kind == "Secret" else lookup.configmap(ns, name)
    if obj is None:
        if optional:
            return None
        raise ConfigError("CreateContainerConfigError", f'{kind.lower()} "{name}" not found')
    return {k: v.decode("utf-8", "replace") for k, v in obj.items()}


def container_env(pod, ctr, lookup, host_ip, service):
    """The container's env as an ordered list of (name, value), as the kubelet computes it."""
    ns = pod["metadata"]["namespace"]
    service = dict(service)
    tmp = {}
    for ef in ctr.get("envFrom") or []:
        prefix = ef.get("prefix") or ""
        for kind, ref in (("ConfigMap", ef.get("configMapRef")), ("Secret", ef.get("secretRef"))):
            if ref is None:
                continue
            data = _source(lookup, kind, ns, ref.get("name", ""), ref.get("optional") is True)
            for k, v in (data or {}).items():
                if ENV_NAME.match(prefix + k):
                    tmp[prefix + k] = v
    for e in ctr.get("env") or []:
        name, value, vf = e["name"], e.get("value") or "", e.get("valueFrom")
        if value:
            value = expand(value, tmp, service)
        elif vf:
            if vf.get("fieldRef"):
                value = field_value(pod, vf["fieldRef"].get("fieldPath", ""), host_ip)
            elif vf.get("resourceFieldRef"):
                raise ConfigError("CreateContainerConfigError", f"env {name}: resourceFieldRef is not supported by kubelet-shim")
            else:
                kind, ref = ("Secret", vf["secretKeyRef"]) if vf.get("secretKeyRef") else ("ConfigMap", vf.get("configMapKeyRef") or {})
                optional = ref.get("optional") is True
                data = _source(lookup, kind, ns, ref.get("name", ""), optional)
                if data is None:
                    continue
                if ref.get("key") not in data:
                    if optional:
                        continue
                    raise ConfigError("CreateContainerConfigError", f"couldn't find key {ref.get('key')} in {kind} {ns}/{ref.get('name')}")
                value = data[ref["key"]]
        service.pop(name, None)
        tmp[name] = value
    return list(tmp.items()) + [(k, v) for k, v in service.items() if k not in tmp]


def process_env(image_env, env, hostname):
    """runc's env: PATH default, HOSTNAME, the image's Env, then the container's (overriding)."""
    merged = {"PATH": DEFAULT_PATH, "HOSTNAME": hostname}
    for kv in image_env or []:
        k, _, v = kv.partition("=")
        merged[k] = v
    for k, v in env:
        merged[k] = v
    return [f"{k}={v}" for k, v in merged.items()]


# ------------------------------------------------------------------ command
def command_args(ctr, image_cfg, env):
    """process.args: the Kubernetes rules for command/args over Entrypoint/Cmd, $(VAR)-expanded."""
    m = dict(env)
    command = [expand(x, m) for x in ctr.get("command") or []]
    args = [expand(x, m) for x in ctr.get("args") or []]
    if not command:
        command = list(image_cfg.get("Entrypoint") or [])
        if not args:
            args = list(image_cfg.get("Cmd") or [])
    argv = command + args
    if not argv:
        raise ConfigError("CreateContainerError", "no command specified (neither the pod nor the image has one)")
    return argv


# ------------------------------------------------------------------ user
def _lookup_name(text, name, field):
    """uid (field 2) / gid (field 3 of passwd, 2 of group) of `name` in an /etc/passwd or /etc/group text."""
    for line in (text or "").splitlines():
        parts = line.split(":")
        if len(parts) > field and parts[0] == name and parts[field].isdigit():
            return int(parts[field])
    return None


def _primary_gid(passwd, uid):
    for line in (passwd or "").splitlines():
        parts = line.split(":")
        if len(parts) > 3 and parts[2] == str(uid) and parts[3].isdigit():
            return int(parts[3])
    return None


def image_user(user, passwd, group):
    """(uid, gid) of an image config's User ("", "uid", "uid:gid", "name", "name:group")."""
    if not user:
        return 0, 0
    u, _, g = user.partition(":")
    uid = int(u) if u.isdigit() else _lookup_name(passwd, u, 2)
    if uid is None:
        raise ConfigError("CreateContainerError", f"unable to find user {u} in the image's /etc/passwd")
    if g:
        gid = int(g) if g.isdigit() else _lookup_name(group, g, 2)
        if gid is None:
            raise ConfigError("CreateContainerError", f"unable to find group {g} in the image's /etc/group")
    else:
        gid = _primary_gid(passwd, uid)
        gid = 0 if gid is None else gid
    return uid, gid


def security(pod, ctr, image_cfg, passwd="", group=""):
    """The effective security settings: uid, gid, additional gids, read-only root, no-new-privileges, caps."""
    psc, csc = (pod.get("spec") or {}).get("securityContext") or {}, ctr.get("securityContext") or {}

    def pick(k):
        return csc.get(k) if csc.get(k) is not None else psc.get(k)
    uid, gid = image_user(image_cfg.get("User") or "", passwd, group)
    if pick("runAsUser") is not None:
        uid = int(pick("runAsUser"))
        gid = _primary_gid(passwd, uid) or 0
    if pick("runAsGroup") is not None:
        gid = int(pick("runAsGroup"))
    if pick("runAsNonRoot") and uid == 0:
        raise ConfigError("CreateContainerConfigError", "container has runAsNonRoot and image will run as root")
    gids = [int(g) for g in psc.get("supplementalGroups") or []]
    if psc.get("fsGroup") is not None:
        gids.append(int(psc["fsGroup"]))
    privileged = bool(csc.get("privileged"))
    caps = list(ALL_CAPS if privileged else DEFAULT_CAPS)
    cc = csc.get("capabilities") or {}
    drop = {("CAP_" + c.upper()).replace("CAP_CAP_", "CAP_") for c in cc.get("drop") or []}
    if "CAP_ALL" in drop:
        caps = []
    caps = [c for c in caps if c not in drop]
    for c in cc.get("add") or []:
        name = ("CAP_" + c.upper()).replace("CAP_CAP_", "CAP_")
        for n in (ALL_CAPS if name == "CAP_ALL" else [name]):
            if n not in caps:
                caps.append(n)
    return {"uid": uid, "gid": gid, "gids": sorted(set(gids) - {gid}), "readonly": bool(csc.get("readOnlyRootFilesystem")),
            "no_new_privs": csc.get("allowPrivilegeEscalation") is False, "privileged": privileged, "caps": caps}


# ------------------------------------------------------------------ runc config
def default_mounts(privileged=False):
    """runc spec's mounts (proc, dev, devpts, shm, mqueue, sysfs, cgroup); sysfs/cgroup writable when privileged."""
    ro = [] if privileged else ["ro"]
    return [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev"] + ro},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime"] + ro},
    ]


def bind(source, destination, readonly=False):
    return {"destination": destination, "type": "bind", "source": source,
            "options": ["rbind", "rprivate"] + (["ro"] if readonly else ["rw"])}


def runc_config(pod, ctr, image_cfg, env, sec, mounts, hostname, annotations=None, nofile=(1024, 1024)):
    """The whole config.json of one container: process from the pod + image, the given extra mounts
    (volumes, /etc/hosts, ...) after runc's defaults, host network namespace. nofile: (soft, hard)
    RLIMIT_NOFILE — the shim's own (a container may not exceed it)."""
    cap_list = sec["caps"]
    as_root = sec["uid"] == 0
    masked = [] if sec["privileged"] else ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                                            "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"]
    readonly_paths = [] if sec["privileged"] else ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
    user = {"uid": sec["uid"], "gid": sec["gid"]}
    if sec["gids"]:
        user["additionalGids"] = sec["gids"]
    return {
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": False, "user": user,
            "args": command_args(ctr, image_cfg, env),
            "env": process_env(image_cfg.get("Env"), env, hostname),
            "cwd": ctr.get("workingDir") or image_cfg.get("WorkingDir") or "/",
            "capabilities": {"bounding": cap_list, "effective": cap_list if as_root else [], "permitted": cap_list if as_root else [],
                             "inheritable": [], "ambient": []},
            "rlimits": [{"type": "RLIMIT_NOFILE", "soft": nofile[0], "hard": nofile[1]}],
            "noNewPrivileges": sec["no_new_privs"],
        },
        "root": {"path": "rootfs", "readonly": sec["readonly"]},
        "hostname": hostname,
        "mounts": default_mounts(sec["privileged"]) + sorted(mounts, key=lambda m: m["destination"].rstrip("/").count("/")),
        "annotations": annotations or {},
        "linux": {
            "resources": {"devices": [{"allow": sec["privileged"], "access": "rwm"}]},
            # No "network" namespace: host networking (no CNI here); ports bind on the node's addresses.
            # spec.hostPID: no "pid" namespace either (the node's processes are visible, as with the kubelet).
            "namespaces": ([] if pod["spec"].get("hostPID") else [{"type": "pid"}])
            + [{"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
            "maskedPaths": masked, "readonlyPaths": readonly_paths,
        },
    }
