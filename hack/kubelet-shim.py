#!/usr/bin/env python3
"""Kubelet checkpoint-endpoint stand-in (no kubelet with a CRIU runtime can run here).

Serves HTTPS like a kubelet's :10250 and answers the API server's node proxy:

    POST /checkpoint/{namespace}/{pod}/{container}?timeout=S
        -> 200 {"items": ["<checkpoint dir>/checkpoint-<pod>_<ns>-<ctr>-<time>.tar"]}

by checkpointing the REAL runc container of that pod (started earlier with
`hack/runc-pod.sh start PODS/<ns>_<pod>_<container> ...`) with CRIU, leaving it running, into a
kubelet-format archive in the checkpoint folder — what the kubelet + CRI runtime do. Unknown pods
get 404, failures 500, both as a Kubernetes Status. It does not authenticate callers: it listens
on loopback only, for the lab's API servers.

    kubelet-shim.py --port P --cert C --key K --pods DIR --checkpoint-dir OUT
"""
import argparse, json, os, re, ssl, subprocess, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse, parse_qs

HERE = os.path.dirname(os.path.abspath(__file__))
NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


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

    def do_POST(self):
        url = urlparse(self.path)
        parts = url.path.strip("/").split("/")
        if len(parts) != 4 or parts[0] != "checkpoint":
            return self.reply(404, status(404, "NotFound", f"no such endpoint {url.path}"))
        ns, pod, ctr = parts[1:]
        if not all(NAME.match(p) for p in (ns, pod, ctr)):
            return self.reply(400, status(400, "BadRequest", "namespace, pod and container must be DNS names"))
        pod_dir = os.path.join(self.server.pods, f"{ns}_{pod}_{ctr}")
        if not os.path.isfile(os.path.join(pod_dir, "id")):
            return self.reply(404, status(404, "NotFound", f"container {ctr} of pod {ns}/{pod} is not running on this node"))
        timeout = int(parse_qs(url.query).get("timeout", ["60"])[0] or 60)
        try:
            out = subprocess.run(
                ["bash", os.path.join(HERE, "runc-pod.sh"), "checkpoint", pod_dir, self.server.out, "--leave-running"],
                capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return self.reply(500, status(500, "Timeout", f"checkpoint of {ns}/{pod}/{ctr} took longer than {timeout}s"))
        if out.returncode != 0:
            return self.reply(500, status(500, "InternalError", f"checkpoint failed: {out.stderr.strip()[-300:]}"))
        self.reply(200, {"items": [out.stdout.strip().splitlines()[-1]]})

    def log_message(self, fmt, *args):
        sys.stderr.write("kubelet-shim: " + fmt % args + "\n")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--pods", required=True)
    p.add_argument("--checkpoint-dir", required=True)
    a = p.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    server.pods, server.out = a.pods, a.checkpoint_dir
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.cert, a.key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
