"""cli: argument checks of main(), and the launcher hack/kubelet-shim.py run as the lab runs it.

Stubs: for node mode a plain-HTTP ThreadingHTTPServer on 127.0.0.1:0 replaces the kube-apiserver
(it accepts the Node, its status and Lease, and lists no pods), so the shim registers, heartbeats
and serves HTTPS without any runc container, registry or real cluster; the endpoint-mode run uses a
temporary PODS folder with no containers (every checkpoint is then a 404)."""
import http.client, io, json, os, shutil, signal, ssl, subprocess, sys, threading, time, unittest
from contextlib import redirect_stderr
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from kubelet_shim.cli import main
from kubelet_shim.tests.support import HACK, OPENSSL, TempDirCase, make_cert

LAUNCHER = os.path.join(HACK, "kubelet-shim.py")


class Arguments(TempDirCase):
    def error(self, argv):
        err = io.StringIO()
        with redirect_stderr(err), self.assertRaises(SystemExit) as cm:
            main(argv, prog="kubelet-shim.py")
        self.assertEqual(cm.exception.code, 2)
        return err.getvalue().strip().splitlines()[-1]

    def test_endpoint_mode_needs_port_cert_key_pods_and_checkpoint_dir(self):
        self.assertEqual(self.error([]), "kubelet-shim.py: error: --port is required (without --node)")
        self.assertEqual(self.error(["--port", "1", "--cert", "c", "--key", "k", "--pods", "p"]),
                         "kubelet-shim.py: error: --checkpoint-dir is required (without --node)")

    def test_the_node_name_must_be_a_dns_name(self):
        self.assertEqual(self.error(["--node", "Worker_1"]), "kubelet-shim.py: error: --node must be a DNS name")

    def test_node_mode_needs_a_kubeconfig(self):
        self.assertEqual(self.error(["--node", "w"]), "kubelet-shim.py: error: --node needs --kubeconfig")

    def test_node_mode_needs_a_state_dir_or_pods(self):
        self.assertEqual(self.error(["--node", "w", "--kubeconfig", "k"]), "kubelet-shim.py: error: --node needs --state-dir or --pods")

    def test_cert_and_key_go_together(self):
        self.assertEqual(self.error(["--node", "w", "--kubeconfig", "k", "--state-dir", self.tmp, "--cert", "c"]),
                         "kubelet-shim.py: error: --cert and --key go together")

    def test_a_port_that_is_not_a_number_is_refused(self):
        self.assertIn("argument --port: invalid int value", self.error(["--port", "x"]))


class Launcher(unittest.TestCase):
    def test_the_launcher_prints_the_help_and_exits_zero(self):
        out = subprocess.run([sys.executable, LAUNCHER, "--help"], capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertTrue(out.stdout.startswith("usage: kubelet-shim.py "))
        self.assertIn("node mode:", out.stdout)
        self.assertIn("--stop-containers-on-exit", out.stdout)

    def test_the_launcher_works_from_any_working_directory(self):
        out = subprocess.run([sys.executable, LAUNCHER, "--port", "1"], capture_output=True, text=True, timeout=30, cwd="/")
        self.assertEqual(out.returncode, 2)
        self.assertIn("--cert is required (without --node)", out.stderr)

    def test_the_package_runs_with_python_dash_m(self):
        out = subprocess.run([sys.executable, "-m", "kubelet_shim", "--help"], capture_output=True, text=True, timeout=30, cwd=HACK)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertTrue(out.stdout.startswith("usage: python3 -m kubelet_shim "))


def https(port, method, path):
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=ssl._create_unverified_context())
    try:
        conn.request(method, path)
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


def wait_for(pred, what, timeout=20):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class ShimProcess(TempDirCase):
    def start(self, args):
        log = open(self.path("shim.log"), "w")
        self.addCleanup(log.close)
        proc = subprocess.Popen([sys.executable, LAUNCHER] + args, stdout=log, stderr=subprocess.STDOUT)

        def reap():
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
        self.addCleanup(reap)
        return proc

    def log(self):
        with open(self.path("shim.log")) as f:
            return f.read()


@unittest.skipUnless(OPENSSL, "needs openssl")
class EndpointMode(ShimProcess):
    def test_the_launcher_serves_healthz_and_a_404_status_over_https(self):
        import socket
        cert, key = make_cert(self.tmp)
        os.makedirs(self.path("pods"))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = self.start(["--port", str(port), "--cert", cert, "--key", key, "--pods", self.path("pods"),
                           "--checkpoint-dir", self.path("out")])

        def healthz():
            try:
                return https(port, "GET", "/healthz")
            except OSError:
                self.assertIsNone(proc.poll(), self.log())
                return None
        self.assertEqual(wait_for(healthz, "the shim's /healthz"), (200, "ok"))
        code, body = https(port, "POST", "/checkpoint/ns/pod/ctr")
        self.assertEqual((code, json.loads(body)["reason"]), (404, "NotFound"))


class FakeApiServer(BaseHTTPRequestHandler):
    """Replaces the kube-apiserver for node mode: records (method, path), answers a Node / an empty pod list."""

    def answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(n)
        self.server.seen.append((self.command, self.path.split("?")[0]))
        body = {"metadata": {"uid": "node-uid"}} if self.path == "/api/v1/nodes" else {"items": []}
        data = json.dumps(body).encode()
        self.send_response(201 if self.command == "POST" else 200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = answer

    def log_message(self, fmt, *args):
        pass


@unittest.skipUnless(OPENSSL, "needs openssl")
@unittest.skipUnless(shutil.which("runc"), "needs runc on PATH (node mode asks `runc --version` at start)")
class NodeMode(ShimProcess):
    def test_the_launcher_registers_the_node_renews_its_lease_and_stops_on_sigterm(self):
        api = ThreadingHTTPServer(("127.0.0.1", 0), FakeApiServer)
        api.daemon_threads, api.seen = True, []
        threading.Thread(target=api.serve_forever, args=(0.05,), daemon=True).start()
        self.addCleanup(api.server_close)
        self.addCleanup(api.shutdown)
        kc = self.path("kubeconfig")
        with open(kc, "w") as f:
            f.write(f"apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{api.server_address[1]}\n"
                    "contexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\n"
                    "users:\n- name: u\n  user:\n    token: tok\n")
        state = self.path("state")
        proc = self.start(["--node", "worker-9", "--kubeconfig", kc, "--state-dir", state,
                           "--lease-interval", "0.2", "--sync-interval", "0.1"])
        lease = ("PATCH", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/worker-9")
        wait_for(lambda: api.seen.count(lease) >= 2 or proc.poll() is not None, "two Lease renewals")
        self.assertIsNone(proc.poll(), self.log())
        seen = [r for r in api.seen if r[1] != "/version"]  # a kubectl-dispatcher asks for it in `config view`
        self.assertEqual(seen[:2], [("POST", "/api/v1/nodes"), ("PATCH", "/api/v1/nodes/worker-9/status")])
        self.assertIn(("GET", "/api/v1/pods"), api.seen)
        port = int(open(os.path.join(state, "port")).read())
        self.assertEqual(https(port, "GET", "/healthz"), (200, "ok"))
        self.assertTrue(os.path.isfile(os.path.join(state, "kubelet.key")))
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(20), 0)
        self.assertIn("node worker-9: stopped (heartbeats and Lease renewal ended; containers left running)", self.log())
