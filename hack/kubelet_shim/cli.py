"""The command line (see the package docstring for the usage) and main()."""
import argparse, os, signal, ssl, threading
from http.server import ThreadingHTTPServer

from .http_api import Handler, self_signed
from .kube import Kube
from .node import NodeShim
from .util import NAME, log, write


def main(argv=None, prog=None):
    p = argparse.ArgumentParser(prog=prog, description="kubelet stand-in: the checkpoint endpoint, and with --node a whole node's kubelet")
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
    n.add_argument("--decryption-keys-dir", metavar="DIR", help="private keys (PEM) for encrypted checkpoint images, every file used (CRI-O's decryption_keys_path)")
    n.add_argument("--signature-policy", metavar="FILE", help="containers-policy.json checkpoint images must satisfy (skopeo --policy)")
    n.add_argument("--registries-d", metavar="DIR", help="containers-registries.d folder naming the signature lookaside (skopeo --registries.d)")
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
    a = p.parse_args(argv)

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
