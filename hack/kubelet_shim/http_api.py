"""The kubelet HTTPS endpoint: POST /checkpoint/..., GET /healthz, GET /containerLogs/...; its TLS cert."""
import json, os, subprocess, sys
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlparse, parse_qs

from .runtime import run
from .util import NAME, RUNC_POD, read, tail


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
        if read(os.path.join(pod_dir, "kind")) == "oci":
            return self.reply(500, status(500, "InternalError", f"checkpointing container {ctr} of pod {ns}/{pod}, which runs a pulled "
                                          "image, is not supported by kubelet-shim (its restore rebuilds the busybox stand-in's rootfs)"))
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
            previous = parse_qs(url.query).get("previous", [""])[0] == "true"
            path = os.path.join(self.server.pods, f"{ns}_{pod}_{ctr}", "previous.log" if previous else "container.log")
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


def self_signed(state_dir, name):
    cert, key = os.path.join(state_dir, "kubelet.crt"), os.path.join(state_dir, "kubelet.key")
    if not (os.path.isfile(cert) and os.path.isfile(key)):
        out = run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "365", "-subj", f"/CN={name}",
                   "-keyout", key, "-out", cert], 60)
        if out.returncode != 0:
            raise SystemExit(f"kubelet-shim: openssl failed: {tail(out.stderr)}")
        os.chmod(key, 0o600)
    return cert, key
