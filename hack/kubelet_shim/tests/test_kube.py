"""kube: flat_kubeconfig, find_kubectl, Kube's TLS / credential setup and its requests.

Stubs: a plain-HTTP ThreadingHTTPServer on 127.0.0.1:0 replaces the kube-apiserver (it records each
request and answers canned JSON or a Kubernetes Status); `kubelet_shim.kube.find_kubectl` is patched
to return None so the small flat-kubeconfig parser is used instead of `kubectl config view` (one
test runs the real kubectl when there is one)."""
import base64, json, os, shutil, ssl, stat, threading, unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from unittest import mock

from kubelet_shim import kube
from kubelet_shim.kube import ApiError, Kube, find_kubectl, flat_kubeconfig
from kubelet_shim.tests.support import OPENSSL, TempDirCase, make_cert

LAB_KUBECONFIG = """apiVersion: v1
kind: Config
clusters:
- name: cluster1
  cluster:
    server: "https://127.0.0.1:6443/"
    certificate-authority-data: Q0FEQVRB
- name: other
  cluster:
    server: https://10.0.0.1:6443
contexts:
- name: ctx
  context:
    cluster: cluster1
    user: admin
current-context: ctx
users:
- name: admin
  user:
    token: 'abc.def'
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
"""


class FlatKubeconfig(TempDirCase):
    def kubeconfig(self, text):
        p = self.path("kubeconfig")
        with open(p, "w") as f:
            f.write(text)
        return p

    def test_the_first_cluster_and_user_are_read_with_quotes_stripped(self):
        cluster, user = flat_kubeconfig(self.kubeconfig(LAB_KUBECONFIG))
        self.assertEqual(cluster, {"server": "https://127.0.0.1:6443/", "certificate-authority-data": "Q0FEQVRB"})
        self.assertEqual(user, {"token": "abc.def", "client-certificate-data": "Q0VSVA==", "client-key-data": "S0VZ"})

    def test_file_references_and_insecure_skip_tls_verify_are_read(self):
        cluster, user = flat_kubeconfig(self.kubeconfig(
            "clusters:\n- cluster:\n    server: https://h:1\n    certificate-authority: /ca.crt\n"
            "    insecure-skip-tls-verify: true\n  name: c\nusers:\n- name: u\n  user:\n"
            "    tokenFile: /tok\n    client-certificate: /c.crt\n    client-key: /c.key\n"))
        self.assertEqual(cluster, {"server": "https://h:1", "certificate-authority": "/ca.crt", "insecure-skip-tls-verify": "true"})
        self.assertEqual(user, {"tokenFile": "/tok", "client-certificate": "/c.crt", "client-key": "/c.key"})

    def test_a_kubeconfig_without_those_keys_gives_empty_dicts(self):
        self.assertEqual(flat_kubeconfig(self.kubeconfig("apiVersion: v1\nkind: Config\n")), ({}, {}))


class FindKubectl(TempDirCase):
    def executable(self, name, mode=0o755):
        p = self.path(name)
        with open(p, "w") as f:
            f.write("#!/bin/sh\n")
        os.chmod(p, mode)
        return p

    def test_an_explicit_executable_comes_first(self):
        k = self.executable("k")
        with mock.patch.dict(os.environ, {"LAB_KUBECTL": self.executable("lab")}):
            self.assertEqual(find_kubectl(k), k)

    def test_lab_kubectl_is_used_when_the_explicit_one_is_missing_or_not_executable(self):
        lab = self.executable("lab")
        with mock.patch.dict(os.environ, {"LAB_KUBECTL": lab}):
            self.assertEqual(find_kubectl(self.path("missing")), lab)
            self.assertEqual(find_kubectl(self.executable("noexec", 0o644)), lab)

    def test_without_any_kubectl_it_is_none(self):
        env = {"LAB_KUBECTL": "", "PATH": self.tmp, "TRANSITION_CACHE": self.tmp}
        with mock.patch.dict(os.environ, env):
            self.assertIsNone(find_kubectl(None))


class KubeCase(TempDirCase):
    def setUp(self):
        super().setUp()
        p = mock.patch.object(kube, "find_kubectl", lambda explicit: None)
        p.start()
        self.addCleanup(p.stop)

    def kube(self, cluster, user=""):
        p = self.path("kubeconfig")
        with open(p, "w") as f:
            f.write("clusters:\n- cluster:\n" + "".join(f"    {l}\n" for l in cluster.splitlines())
                    + "users:\n- user:\n" + "".join(f"    {l}\n" for l in user.splitlines()))
        return Kube(p, None, self.tmp)


class KubeSetup(KubeCase):
    def test_a_trailing_slash_of_the_server_is_dropped(self):
        k = self.kube("server: https://127.0.0.1:6443/\ninsecure-skip-tls-verify: true")
        self.assertEqual(k.server, "https://127.0.0.1:6443")
        self.assertEqual(k.user_agent, "kubelet-shim")

    def test_a_kubeconfig_without_a_server_stops_the_shim(self):
        p = self.path("empty")
        open(p, "w").close()
        with self.assertRaisesRegex(SystemExit, "kubelet-shim: no server in "):
            Kube(p, None, self.tmp)

    def test_insecure_skip_tls_verify_turns_verification_off(self):
        k = self.kube("server: https://h\ninsecure-skip-tls-verify: true")
        self.assertEqual((k.ctx.verify_mode, k.ctx.check_hostname), (ssl.CERT_NONE, False))

    def test_without_a_ca_the_system_trust_is_used_with_verification(self):
        k = self.kube("server: https://h")
        self.assertEqual((k.ctx.verify_mode, k.ctx.check_hostname), (ssl.CERT_REQUIRED, True))
        self.assertIsNone(k.token)

    def test_a_token_is_read_inline_or_from_its_file(self):
        self.assertEqual(self.kube("server: https://h", "token: t1").token, "t1")
        tok = self.path("tok")
        with open(tok, "w") as f:
            f.write("t2\n")
        self.assertEqual(self.kube("server: https://h", f"tokenFile: {tok}").token, "t2")

    def test_an_inline_token_wins_over_a_token_file(self):
        self.assertEqual(self.kube("server: https://h", f"token: t1\ntokenFile: {self.path('none')}").token, "t1")

    @unittest.skipUnless(OPENSSL, "needs openssl")
    def test_embedded_ca_and_client_certificate_are_loaded_and_the_key_is_private(self):
        cert, key = make_cert(self.tmp)
        b64 = lambda p: base64.b64encode(open(p, "rb").read()).decode()  # noqa: E731
        k = self.kube(f"server: https://h\ncertificate-authority-data: {b64(cert)}",
                      f"client-certificate-data: {b64(cert)}\nclient-key-data: {b64(key)}")
        self.assertEqual(len(k.ctx.get_ca_certs()), 1)
        [d] = [n for n in os.listdir(self.tmp) if n.startswith("client-cert.")]
        self.assertEqual(sorted(os.listdir(self.path(d))), ["tls.crt", "tls.key"])
        self.assertEqual(stat.S_IMODE(os.stat(self.path(d, "tls.key")).st_mode), 0o600)

    @unittest.skipUnless(OPENSSL, "needs openssl")
    def test_ca_and_client_certificate_files_are_loaded(self):
        cert, key = make_cert(self.tmp)
        k = self.kube(f"server: https://h\ncertificate-authority: {cert}", f"client-certificate: {cert}\nclient-key: {key}")
        self.assertEqual(len(k.ctx.get_ca_certs()), 1)


@unittest.skipUnless(shutil.which("kubectl"), "needs kubectl")
class WithKubectl(TempDirCase):
    def test_with_kubectl_the_kubeconfig_is_read_with_config_view(self):
        p = self.path("kc")
        with open(p, "w") as f:
            f.write("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:6443/\n"
                    "    insecure-skip-tls-verify: true\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\n"
                    "current-context: x\nusers:\n- name: u\n  user:\n    token: abc.def\n")
        k = Kube(p, shutil.which("kubectl"), self.tmp)
        self.assertEqual((k.server, k.token, k.ctx.verify_mode), ("https://127.0.0.1:6443", "abc.def", ssl.CERT_NONE))


class FakeApiServer(BaseHTTPRequestHandler):
    """Replaces the kube-apiserver: records the request; the path picks the answer."""

    def answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        self.server.seen.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                 "body": json.loads(self.rfile.read(n)) if n else None})
        if self.path.startswith("/missing"):
            code, body = 404, json.dumps({"kind": "Status", "code": 404, "message": 'pods "x" not found'})
        elif self.path.startswith("/broken"):
            code, body = 500, "<html>oops</html>"
        elif self.path.startswith("/empty"):
            code, body = 200, ""
        else:
            code, body = 200, json.dumps({"ok": True, "path": self.path})
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_DELETE = answer

    def log_message(self, fmt, *args):
        pass


class Requests(KubeCase):
    def setUp(self):
        super().setUp()
        self.api = ThreadingHTTPServer(("127.0.0.1", 0), FakeApiServer)
        self.api.daemon_threads = True
        self.api.seen = []
        threading.Thread(target=self.api.serve_forever, args=(0.05,), daemon=True).start()
        self.addCleanup(self.api.server_close)
        self.addCleanup(self.api.shutdown)
        self.k = self.kube(f"server: http://127.0.0.1:{self.api.server_address[1]}", "token: tok")

    def test_a_get_sends_the_bearer_token_and_user_agent_and_returns_the_json(self):
        self.k.user_agent = "kubelet-shim/worker-1"
        self.assertEqual(self.k.get("/api/v1/nodes"), {"ok": True, "path": "/api/v1/nodes"})
        [r] = self.api.seen
        self.assertEqual((r["method"], r["body"]), ("GET", None))
        self.assertEqual(r["headers"]["Authorization"], "Bearer tok")
        self.assertEqual(r["headers"]["User-Agent"], "kubelet-shim/worker-1")
        self.assertEqual(r["headers"]["Accept"], "application/json")
        self.assertNotIn("Content-Type", r["headers"])

    def test_a_post_sends_json(self):
        self.k.post("/api/v1/nodes", {"kind": "Node"})
        [r] = self.api.seen
        self.assertEqual((r["method"], r["headers"]["Content-Type"], r["body"]), ("POST", "application/json", {"kind": "Node"}))

    def test_a_merge_patch_uses_the_merge_patch_content_type(self):
        self.k.merge_patch("/api/v1/nodes/n/status", {"status": {}})
        [r] = self.api.seen
        self.assertEqual((r["method"], r["headers"]["Content-Type"]), ("PATCH", "application/merge-patch+json"))

    def test_a_delete_may_carry_delete_options(self):
        self.k.delete("/api/v1/namespaces/ns/pods/p", {"gracePeriodSeconds": 0})
        [r] = self.api.seen
        self.assertEqual((r["method"], r["body"]), ("DELETE", {"gracePeriodSeconds": 0}))

    def test_an_empty_answer_is_none(self):
        self.assertIsNone(self.k.get("/empty"))

    def test_an_http_error_carries_the_code_and_the_status_message(self):
        with self.assertRaises(ApiError) as cm:
            self.k.get("/missing")
        self.assertEqual((cm.exception.code, str(cm.exception)), (404, 'HTTP 404: pods "x" not found'))

    def test_an_http_error_without_a_json_body_carries_the_reason_phrase(self):
        with self.assertRaises(ApiError) as cm:
            self.k.get("/broken")
        self.assertEqual((cm.exception.code, str(cm.exception)), (500, "HTTP 500: Internal Server Error"))

    def test_an_unreachable_server_is_code_zero_naming_the_request(self):
        port = self.api.server_address[1]
        self.api.shutdown()
        self.api.server_close()
        with self.assertRaises(ApiError) as cm:
            self.kube(f"server: http://127.0.0.1:{port}").get("/api/v1/pods", timeout=2)
        self.assertEqual(cm.exception.code, 0)
        self.assertTrue(str(cm.exception).startswith("GET /api/v1/pods: "), str(cm.exception))


class ApiErrors(unittest.TestCase):
    def test_an_error_without_a_code_is_only_its_message(self):
        self.assertEqual(str(ApiError(0, "refused")), "refused")
        self.assertEqual(str(ApiError(409, "exists")), "HTTP 409: exists")
