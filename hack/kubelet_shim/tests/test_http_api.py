"""http_api: the kubelet endpoint's routing, statuses and bodies, driven over real HTTP(S).

Stubs: `kubelet_shim.http_api.RUNC_POD` (hack/runc-pod.sh, which checkpoints the runc container
with CRIU) is replaced by a small bash script that prints an archive path, fails or hangs; the
PODS folder is a temporary one with hand-made container folders (an `id` file stands for a running
runc container). The ThreadingHTTPServer is real, on 127.0.0.1:0; only its request log is muted."""
import http.client, json, os, ssl, stat, threading, unittest
from http.server import ThreadingHTTPServer
from unittest import mock

from kubelet_shim import http_api
from kubelet_shim.http_api import Handler, self_signed, status
from kubelet_shim.tests.support import OPENSSL, TempDirCase, make_cert


class QuietHandler(Handler):
    def log_message(self, fmt, *args):
        pass


class StatusBody(unittest.TestCase):
    def test_a_status_is_a_kubernetes_v1_failure_status(self):
        self.assertEqual(status(404, "NotFound", "gone"),
                         {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404,
                          "reason": "NotFound", "message": "gone"})


class Endpoint(TempDirCase):
    tls = False

    def setUp(self):
        super().setUp()
        self.pods, self.out = self.path("pods"), self.path("checkpoints")
        os.makedirs(self.pods)
        os.makedirs(self.out)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), QuietHandler)
        self.server.daemon_threads = True
        self.server.pods, self.server.out = self.pods, self.out
        if self.tls:
            cert, key = make_cert(self.tmp)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert, key)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.addCleanup(self.server.server_close)
        self.addCleanup(self.server.shutdown)
        self.script(self.path("runc-pod.sh"), 'echo "checkpointing $2"; echo "$3/checkpoint-x.tar"; echo "$@" > "$3/args"')

    def script(self, path, body):
        with open(path, "w") as f:
            f.write("#!/bin/bash\n" + body + "\n")
        p = mock.patch.object(http_api, "RUNC_POD", path)
        p.start()
        self.addCleanup(p.stop)

    def container(self, name, running=True, stopped=False, log=None):
        d = os.path.join(self.pods, name)
        os.makedirs(d, exist_ok=True)
        if running:
            open(os.path.join(d, "id"), "w").close()
        if stopped:
            open(os.path.join(d, "stopped"), "w").close()
        if log is not None:
            with open(os.path.join(d, "container.log"), "w") as f:
                f.write(log)
        return d

    def call(self, method, path):
        if self.tls:
            conn = http.client.HTTPSConnection("127.0.0.1", self.server.server_address[1], timeout=10,
                                               context=ssl._create_unverified_context())
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.server.server_address[1], timeout=10)
        try:
            conn.request(method, path)
            r = conn.getresponse()
            body = r.read().decode()
            ctype = r.getheader("Content-Type")
            return r.status, (json.loads(body) if ctype == "application/json" else body), ctype
        finally:
            conn.close()

    def assertStatus(self, got, code, reason, message=None):
        self.assertEqual(got[0], code)
        self.assertEqual(got[2], "application/json")
        self.assertEqual((got[1]["kind"], got[1]["code"], got[1]["reason"]), ("Status", code, reason))
        if message is not None:
            self.assertEqual(got[1]["message"], message)


class Routing(Endpoint):
    def test_healthz_answers_ok_as_plain_text(self):
        self.assertEqual(self.call("GET", "/healthz"), (200, "ok", "text/plain; charset=utf-8"))

    def test_an_unknown_get_path_is_a_404_status_naming_the_path(self):
        self.assertStatus(self.call("GET", "/metrics"), 404, "NotFound", "no such endpoint /metrics")

    def test_an_unknown_post_path_is_a_404_status_naming_the_path(self):
        self.assertStatus(self.call("POST", "/run/ns/pod/ctr"), 404, "NotFound", "no such endpoint /run/ns/pod/ctr")

    def test_a_checkpoint_path_with_too_few_parts_is_a_404(self):
        self.assertStatus(self.call("POST", "/checkpoint/ns/pod"), 404, "NotFound", "no such endpoint /checkpoint/ns/pod")

    def test_a_checkpoint_of_names_that_are_not_dns_names_is_a_400(self):
        self.assertStatus(self.call("POST", "/checkpoint/NS/pod/ctr"), 400, "BadRequest",
                          "namespace, pod and container must be DNS names")

    def test_a_checkpoint_of_a_container_not_on_this_node_is_a_404(self):
        self.assertStatus(self.call("POST", "/checkpoint/ns/pod/ctr"), 404, "NotFound",
                          "container ctr of pod ns/pod is not running on this node")

    def test_a_checkpoint_of_a_stopped_container_is_a_404(self):
        self.container("ns_pod_ctr", stopped=True)
        self.assertStatus(self.call("POST", "/checkpoint/ns/pod/ctr"), 404, "NotFound")

    def test_a_get_of_the_checkpoint_path_is_not_an_endpoint(self):
        self.container("ns_pod_ctr")
        self.assertStatus(self.call("GET", "/checkpoint/ns/pod/ctr"), 404, "NotFound")


class Checkpoint(Endpoint):
    def test_a_checkpoint_answers_the_last_line_runc_pod_printed_as_the_only_item(self):
        d = self.container("ns_pod_ctr")
        got = self.call("POST", "/checkpoint/ns/pod/ctr?timeout=30")
        self.assertEqual(got[:2], (200, {"items": [os.path.join(self.out, "checkpoint-x.tar")]}))
        with open(os.path.join(self.out, "args")) as f:
            self.assertEqual(f.read().split(), ["checkpoint", d, self.out, "--leave-running"])

    def test_a_failed_checkpoint_is_a_500_with_the_end_of_its_stderr(self):
        self.container("ns_pod_ctr")
        self.script(self.path("fail.sh"), 'echo "x" >&2; echo "criu dump failed" >&2; exit 3')
        self.assertStatus(self.call("POST", "/checkpoint/ns/pod/ctr"), 500, "InternalError",
                          "checkpoint failed: x\ncriu dump failed")

    def test_a_checkpoint_longer_than_its_timeout_is_a_500_timeout(self):
        self.container("ns_pod_ctr")
        self.script(self.path("hang.sh"), "exec sleep 5")
        self.assertStatus(self.call("POST", "/checkpoint/ns/pod/ctr?timeout=1"), 500, "Timeout",
                          "checkpoint of ns/pod/ctr took longer than 1s")


class ContainerLogs(Endpoint):
    def test_the_whole_log_is_served_as_plain_text(self):
        self.container("ns_pod_ctr", log="1\n2\n3\n")
        self.assertEqual(self.call("GET", "/containerLogs/ns/pod/ctr"), (200, "1\n2\n3\n", "text/plain; charset=utf-8"))

    def test_tail_lines_keeps_the_last_lines(self):
        self.container("ns_pod_ctr", log="1\n2\n3\n")
        self.assertEqual(self.call("GET", "/containerLogs/ns/pod/ctr?tailLines=2")[1], "2\n3\n")

    def test_tail_lines_zero_is_an_empty_log(self):
        self.container("ns_pod_ctr", log="1\n2\n")
        self.assertEqual(self.call("GET", "/containerLogs/ns/pod/ctr?tailLines=0")[:2], (200, ""))

    def test_a_tail_lines_that_is_not_a_number_is_ignored(self):
        self.container("ns_pod_ctr", log="1\n2\n")
        self.assertEqual(self.call("GET", "/containerLogs/ns/pod/ctr?tailLines=-1")[1], "1\n2\n")

    def test_a_container_without_a_log_is_a_404(self):
        self.assertStatus(self.call("GET", "/containerLogs/ns/pod/ctr"), 404, "NotFound",
                          "container ctr of pod ns/pod has no log on this node")

    def test_log_names_that_are_not_dns_names_are_not_an_endpoint(self):
        self.assertStatus(self.call("GET", "/containerLogs/ns/Pod/ctr"), 404, "NotFound",
                          "no such endpoint /containerLogs/ns/Pod/ctr")


@unittest.skipUnless(OPENSSL, "needs openssl")
class OverTls(Endpoint):
    tls = True

    def test_healthz_is_served_over_https(self):
        self.assertEqual(self.call("GET", "/healthz")[:2], (200, "ok"))

    def test_a_status_is_served_over_https(self):
        self.assertStatus(self.call("POST", "/checkpoint/ns/pod/ctr"), 404, "NotFound")


@unittest.skipUnless(OPENSSL, "needs openssl")
class SelfSigned(TempDirCase):
    def test_a_missing_certificate_is_made_with_a_private_key(self):
        cert, key = self_signed(self.tmp, "worker-1")
        self.assertEqual((cert, key), (self.path("kubelet.crt"), self.path("kubelet.key")))
        self.assertEqual(stat.S_IMODE(os.stat(key).st_mode), 0o600)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)

    def test_an_existing_certificate_is_kept(self):
        for name in ("kubelet.crt", "kubelet.key"):
            with open(self.path(name), "w") as f:
                f.write("existing")
        self.assertEqual(self_signed(self.tmp, "worker-1"), (self.path("kubelet.crt"), self.path("kubelet.key")))
        with open(self.path("kubelet.crt")) as f:
            self.assertEqual(f.read(), "existing")


class PulledImageContainers(Endpoint):
    def test_a_pulled_image_container_is_not_checkpointed(self):
        d = self.container("ns_web_app")
        with open(os.path.join(d, "kind"), "w") as f:
            f.write("oci\n")
        got = self.call("POST", "/checkpoint/ns/web/app")
        self.assertStatus(got, 500, "InternalError")
        self.assertIn("not supported by kubelet-shim", got[1]["message"])
        self.assertFalse(os.path.exists(os.path.join(self.out, "args")))

    def test_previous_true_serves_the_log_of_the_run_before_the_restart(self):
        d = self.container("ns_web_app", log="now\n")
        with open(os.path.join(d, "previous.log"), "w") as f:
            f.write("before\n")
        self.assertEqual(self.call("GET", "/containerLogs/ns/web/app?previous=true")[:2], (200, "before\n"))
        self.assertEqual(self.call("GET", "/containerLogs/ns/web/app")[:2], (200, "now\n"))
