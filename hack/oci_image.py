#!/usr/bin/env python3
"""Writes a one-layer OCI image layout from a root filesystem folder, byte for byte reproducibly.

    oci_image.py build --rootfs DIR --layout OUT --tag TAG --created EPOCH --entrypoint PATH
                       [--user UID:GID] [--env K=V]... [--label K=V]... [--expose PORT/tcp]...
                       [--mode PATH=OCTAL]... [--owner PATH=UID:GID]... [--arch amd64]

Only the folder's tree, file contents, symlink targets and the executable bit count; nothing else
of the host does:
- tar entries sorted by path, ustar format (no pax headers: no atime/ctime, nothing host-specific),
  owner 0:0 (or --owner), no user/group names, mtime = --created for every entry;
- modes normalised: directories 0755, files 0755 when executable else 0644, symlinks 0777, unless
  --mode says otherwise (e.g. tmp=1777);
- gzip with mtime 0 and no file name; JSON with sorted keys and no spaces;
- config `created` (and the history entry) = --created.
The compressed bytes depend on the zlib version (the uncompressed layer, the diff_id, does not).
Prints a JSON summary: manifest digest, sizes. Standard library only.
"""

import argparse
import datetime
import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import sys
import tarfile

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
INDEX = "application/vnd.oci.image.index.v1+json"


def fail(msg):
    print(f"oci_image.py: {msg}", file=sys.stderr)
    sys.exit(1)


def pairs(values, what, paths=False):
    """KEY=VALUE arguments as a dict; with paths, keys are rootfs paths without leading slash."""
    out = {}
    for v in values:
        if "=" not in v:
            fail(f"{what} {v!r} is not KEY=VALUE")
        k, val = v.split("=", 1)
        out[k.strip("/") if paths else k] = val
    return out


def uid_gid(text, what):
    try:
        u, g = text.split(":")
        return int(u), int(g)
    except ValueError:
        fail(f"{what} {text!r} is not UID:GID")


def entries(rootfs):
    """Every path under rootfs, relative, sorted component-wise (a folder before its contents)."""
    found = []
    for top, dirs, files in os.walk(rootfs):
        rel = os.path.relpath(top, rootfs)
        for name in dirs + files:
            found.append(name if rel == "." else f"{rel}/{name}")
    return sorted(found, key=lambda p: p.split("/"))


def layer_tar(rootfs, mtime, modes, owners):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for rel in entries(rootfs):
            full = os.path.join(rootfs, rel)
            st = os.lstat(full)
            info = tarfile.TarInfo(rel)
            info.mtime = mtime
            info.uid, info.gid = owners.get(rel, (0, 0))
            info.uname = info.gname = ""
            data = None
            if stat.S_ISDIR(st.st_mode):
                info.type, mode = tarfile.DIRTYPE, 0o755
            elif stat.S_ISLNK(st.st_mode):
                info.type, mode = tarfile.SYMTYPE, 0o777
                info.linkname = os.readlink(full)
            elif stat.S_ISREG(st.st_mode):
                info.type = tarfile.REGTYPE
                mode = 0o755 if st.st_mode & 0o111 else 0o644
                info.size = st.st_size
                data = full
            else:
                fail(f"rootfs entry {rel}: not a file, folder or symlink (mode {oct(st.st_mode)})")
            info.mode = int(modes[rel], 8) if rel in modes else mode
            if data is None:
                tar.addfile(info)
            else:
                with open(data, "rb") as f:
                    tar.addfile(info, f)
    unknown = (set(modes) | set(owners)) - set(entries(rootfs))
    if unknown:
        fail(f"--mode/--owner name paths that are not in the rootfs: {sorted(unknown)}")
    return buf.getvalue()


def gz(data):
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as f:
        f.write(data)
    return buf.getvalue()


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def put_blob(layout, data):
    digest = hashlib.sha256(data).hexdigest()
    path = os.path.join(layout, "blobs", "sha256", digest)
    with open(path, "wb") as f:
        f.write(data)
    return f"sha256:{digest}"


def build(a):
    if not os.path.isdir(a.rootfs):
        fail(f"rootfs {a.rootfs}: not a folder")
    created = datetime.datetime.fromtimestamp(a.created, datetime.timezone.utc)
    created_s = created.strftime("%Y-%m-%dT%H:%M:%SZ")
    labels = pairs(a.label, "--label")
    pairs(a.env, "--env")
    modes = pairs(a.mode, "--mode", paths=True)
    owners = {k: uid_gid(v, "--owner") for k, v in pairs(a.owner, "--owner", paths=True).items()}

    tar = layer_tar(a.rootfs, a.created, modes, owners)
    layer = gz(tar)

    if os.path.exists(a.layout):
        shutil.rmtree(a.layout)
    os.makedirs(os.path.join(a.layout, "blobs", "sha256"))
    layer_digest = put_blob(a.layout, layer)
    image_config = {
        "created": created_s,
        "architecture": a.arch,
        "os": "linux",
        "config": {
            "Entrypoint": [a.entrypoint],
            "Env": a.env,
            "Labels": labels,
            "User": a.user,
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(tar).hexdigest()}"]},
        "history": [{"created": created_s, "created_by": "hack/build-images.sh (hack/oci_image.py)"}],
    }
    if a.expose:
        image_config["config"]["ExposedPorts"] = {p: {} for p in a.expose}
    config = canonical(image_config)
    config_digest = put_blob(a.layout, config)
    manifest = canonical({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": LAYER, "digest": layer_digest, "size": len(layer)}],
        "annotations": labels,
    })
    manifest_digest = put_blob(a.layout, manifest)
    index = {
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": [{
            "mediaType": MANIFEST,
            "digest": manifest_digest,
            "size": len(manifest),
            "platform": {"architecture": a.arch, "os": "linux"},
            "annotations": {"org.opencontainers.image.ref.name": a.tag},
        }],
    }
    with open(os.path.join(a.layout, "index.json"), "wb") as f:
        f.write(canonical(index))
    with open(os.path.join(a.layout, "oci-layout"), "wb") as f:
        f.write(canonical({"imageLayoutVersion": "1.0.0"}))
    print(json.dumps({
        "digest": manifest_digest,
        "config_digest": config_digest,
        "layer_digest": layer_digest,
        # What a pull transfers (manifest + config + compressed layer) and the unpacked layer.
        "compressed_bytes": len(manifest) + len(config) + len(layer),
        "uncompressed_bytes": len(tar),
    }, sort_keys=True))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="write an OCI image layout from a rootfs folder")
    b.add_argument("--rootfs", required=True)
    b.add_argument("--layout", required=True, help="output folder (replaced)")
    b.add_argument("--tag", required=True, help="org.opencontainers.image.ref.name in index.json")
    b.add_argument("--created", required=True, type=int, help="seconds since the epoch (SOURCE_DATE_EPOCH)")
    b.add_argument("--entrypoint", required=True)
    b.add_argument("--user", default="0:0")
    b.add_argument("--arch", default="amd64")
    b.add_argument("--env", action="append", default=[])
    b.add_argument("--label", action="append", default=[])
    b.add_argument("--expose", action="append", default=[])
    b.add_argument("--mode", action="append", default=[], help="PATH=OCTAL (path relative to the rootfs)")
    b.add_argument("--owner", action="append", default=[], help="PATH=UID:GID (path relative to the rootfs)")
    a = p.parse_args()
    if a.cmd == "build":
        build(a)


if __name__ == "__main__":
    main()
