"""images: split_ref, which registries are looked at, the skopeo auth file, classify and pull_archive.

Stubs: `kubelet_shim.images.run` is replaced by a fake that answers like skopeo would
(`skopeo inspect --raw` printing a manifest / index, `skopeo copy ... dir:` writing manifest.json and
the layer blob), so no registry or skopeo runs; a stub Kube object replaces the API server's
Secret reads for imagePullSecrets."""
import base64, hashlib, json, os, stat
from types import SimpleNamespace
from unittest import mock

from kubelet_shim import images
from kubelet_shim.images import Images, PullError, split_ref
from kubelet_shim.kube import ApiError
from kubelet_shim.tests.support import TempDirCase, completed
from kubelet_shim.util import CHECKPOINT_ANNOTATIONS, FRESH_IMAGE_ID


class SplitRef(TempDirCase):
    def test_a_reference_without_a_registry_defaults_to_docker_hub(self):
        self.assertEqual(split_ref("busybox"), ("docker.io", "busybox"))

    def test_a_tag_is_dropped_from_the_repository(self):
        self.assertEqual(split_ref("busybox:1.36"), ("docker.io", "busybox"))

    def test_a_path_without_a_dot_colon_or_localhost_is_a_docker_hub_repository(self):
        self.assertEqual(split_ref("library/busybox:1.36"), ("docker.io", "library/busybox"))

    def test_a_host_with_a_port_is_the_registry_and_stays_in_the_repository(self):
        self.assertEqual(split_ref("127.0.0.1:5000/ckpt/app:v1"), ("127.0.0.1:5000", "127.0.0.1:5000/ckpt/app"))

    def test_a_dotted_host_is_the_registry(self):
        self.assertEqual(split_ref("registry.example.com/team/app"), ("registry.example.com", "registry.example.com/team/app"))

    def test_localhost_without_a_port_is_a_registry(self):
        self.assertEqual(split_ref("localhost/app:tag"), ("localhost", "localhost/app"))

    def test_a_digest_is_dropped_from_the_repository(self):
        ref = "registry.example.com/app@sha256:" + "a" * 64
        self.assertEqual(split_ref(ref), ("registry.example.com", "registry.example.com/app"))

    def test_a_tag_and_a_digest_are_both_dropped(self):
        ref = "localhost:5000/app:v2@sha256:" + "b" * 64
        self.assertEqual(split_ref(ref), ("localhost:5000", "localhost:5000/app"))

    def test_a_port_without_a_tag_is_not_mistaken_for_a_tag(self):
        self.assertEqual(split_ref("localhost:5000/app"), ("localhost:5000", "localhost:5000/app"))


class StubKube:
    """Replaces the API server: GET of Secrets from a dict; a missing one raises ApiError 404."""

    def __init__(self, secrets=None):
        self.secrets, self.gets = secrets or {}, []

    def get(self, path, **kw):
        self.gets.append(path)
        if path not in self.secrets:
            raise ApiError(404, "secrets not found")
        return self.secrets[path]


def args(**kw):
    a = dict(insecure_registry=None, registry=None, registry_user=None, registry_password_file=None, registry_auth_file=None)
    a.update(kw)
    return SimpleNamespace(**a)


def pod(secrets=()):
    return {"metadata": {"namespace": "ns", "name": "p"},
            "spec": {"imagePullSecrets": [{"name": s} for s in secrets]}}


class Registries(TempDirCase):
    def setUp(self):
        super().setUp()
        self.im = Images(args(insecure_registry=["reg.lab:5000"], registry=["secure.lab"]), StubKube(), self.tmp)

    def test_the_pulls_folder_is_private(self):
        self.assertEqual(stat.S_IMODE(os.stat(self.path("pulls")).st_mode), 0o700)

    def test_loopback_insecure_and_secure_registries_are_looked_at(self):
        for host in ("127.0.0.1:5000", "localhost:5000", "localhost", "[::1]", "reg.lab:5000", "secure.lab"):
            self.assertTrue(self.im.managed(host), host)

    def test_other_registries_are_not_looked_at(self):
        for host in ("docker.io", "quay.io", "reg.lab:5001", "secure.lab:443"):
            self.assertFalse(self.im.managed(host), host)

    def test_tls_is_verified_only_for_secure_registries(self):
        self.assertTrue(self.im.tls_verify("secure.lab"))
        for host in ("127.0.0.1:5000", "localhost:5000", "reg.lab:5000"):
            self.assertFalse(self.im.tls_verify(host), host)


class AuthFile(TempDirCase):
    def read_auth(self, im, host, p):
        path = im.write_auth(host, p)
        self.addCleanup(os.unlink, path)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(os.path.dirname(path), self.path("pulls"))
        with open(path) as f:
            return json.load(f)["auths"]

    def test_without_credentials_the_auth_file_is_empty(self):
        self.assertEqual(self.read_auth(Images(args(), StubKube(), self.tmp), "reg:5000", pod()), {})

    def test_the_shim_user_is_used_for_the_images_registry(self):
        pw = self.path("pw")
        with open(pw, "w") as f:
            f.write("s3cret\n")
        im = Images(args(registry_user="u", registry_password_file=pw), StubKube(), self.tmp)
        auth = self.read_auth(im, "reg:5000", pod())
        self.assertEqual(auth, {"reg:5000": {"auth": base64.b64encode(b"u:s3cret").decode()}})

    def test_the_registry_auth_file_wins_over_the_shim_user_for_its_hosts(self):
        af, pw = self.path("auth.json"), self.path("pw")
        with open(af, "w") as f:
            json.dump({"auths": {"reg:5000": {"auth": "ZnJvbTpmaWxl"}}}, f)
        with open(pw, "w") as f:
            f.write("x")
        im = Images(args(registry_user="u", registry_password_file=pw, registry_auth_file=af), StubKube(), self.tmp)
        self.assertEqual(self.read_auth(im, "reg:5000", pod()), {"reg:5000": {"auth": "ZnJvbTpmaWxl"}})

    def test_an_unreadable_registry_auth_file_is_logged_and_skipped(self):
        im = Images(args(registry_auth_file=self.path("nope.json")), StubKube(), self.tmp)
        self.assertEqual(self.read_auth(im, "reg:5000", pod()), {})
        self.assertIn("cannot read --registry-auth-file", self.err.getvalue())

    def test_pull_secrets_of_the_pod_are_added_in_both_formats(self):
        cfg = base64.b64encode(json.dumps({"auths": {"a:1": {"auth": "QQ=="}}}).encode()).decode()
        legacy = base64.b64encode(json.dumps({"b:2": {"auth": "Qg=="}}).encode()).decode()
        kube = StubKube({"/api/v1/namespaces/ns/secrets/new": {"data": {".dockerconfigjson": cfg}},
                         "/api/v1/namespaces/ns/secrets/old": {"data": {".dockercfg": legacy}}})
        auth = self.read_auth(Images(args(), kube, self.tmp), "a:1", pod(["new", "old"]))
        self.assertEqual(auth, {"a:1": {"auth": "QQ=="}, "b:2": {"auth": "Qg=="}})

    def test_a_missing_pull_secret_is_logged_and_skipped(self):
        auth = self.read_auth(Images(args(), StubKube(), self.tmp), "a:1", pod(["gone-" + str(id(self))]))
        self.assertEqual(auth, {})
        self.assertIn("unusable", self.err.getvalue())


class FakeSkopeo:
    """Replaces `run` in images.py: `skopeo inspect --raw docker://REF` prints docs[REF];
    `skopeo copy ... dir:DEST` writes DEST/manifest.json (+ the layer blobs) from copy_manifest."""

    def __init__(self, docs=None, copy_manifest=None, fail=None):
        self.docs, self.copy_manifest, self.fail, self.calls, self.auth_files = docs or {}, copy_manifest, fail, [], []

    def __call__(self, cmd, timeout, **kw):
        self.calls.append(cmd)
        self.auth_files.append(cmd[cmd.index("--authfile" if "inspect" in cmd else "--src-authfile") + 1])
        if self.fail:
            return completed(cmd, 1, "", self.fail)
        if cmd[1] == "inspect":
            ref = cmd[-1][len("docker://"):]
            if ref not in self.docs:
                return completed(cmd, 1, "", f'time="x" level=fatal msg="manifest unknown: {ref}"')
            doc = self.docs[ref]
            return completed(cmd, 0, doc if isinstance(doc, str) else json.dumps(doc))
        dest = cmd[-1][len("dir:"):]
        os.makedirs(dest)
        with open(os.path.join(dest, "manifest.json"), "w") as f:
            json.dump(self.copy_manifest, f)
        for layer in self.copy_manifest.get("layers", []):
            with open(os.path.join(dest, layer["digest"].split(":", 1)[1]), "wb") as f:
                f.write(b"archive")
        return completed(cmd, 0)


class ImagesCase(TempDirCase):
    def setUp(self):
        super().setUp()
        self.im = Images(args(), StubKube(), self.tmp)

    def fake(self, **kw):
        fake = FakeSkopeo(**kw)
        p = mock.patch.object(images, "run", fake)
        p.start()
        self.addCleanup(p.stop)
        return fake


class Classify(ImagesCase):
    def test_an_image_on_an_unmanaged_registry_starts_fresh_without_asking_skopeo(self):
        fake = self.fake()
        self.assertEqual(self.im.classify("quay.io/app:v1", pod()), (False, FRESH_IMAGE_ID))
        self.assertEqual(fake.calls, [])

    def test_an_unmanaged_image_by_digest_keeps_the_digest_as_its_id(self):
        self.fake()
        ref = "quay.io/app@sha256:" + "c" * 64
        self.assertEqual(self.im.classify(ref, pod()), (False, ref))

    def test_a_manifest_with_the_checkpoint_annotation_is_a_checkpoint(self):
        raw = json.dumps({"schemaVersion": 2, "annotations": {CHECKPOINT_ANNOTATIONS[0]: "app"}, "layers": []})
        fake = self.fake(docs={"127.0.0.1:5000/app:v1": raw})
        is_ckpt, image_id = self.im.classify("127.0.0.1:5000/app:v1", pod())
        self.assertTrue(is_ckpt)
        self.assertEqual(image_id, "127.0.0.1:5000/app@sha256:" + hashlib.sha256(raw.encode()).hexdigest())
        self.assertIn("--tls-verify=false", fake.calls[0])

    def test_an_annotation_on_a_layer_of_the_linux_manifest_of_an_index_is_a_checkpoint(self):
        index = {"manifests": [{"digest": "sha256:arm", "platform": {"os": "linux", "architecture": "arm64"}},
                               {"digest": "sha256:amd", "platform": {"os": "linux", "architecture": "amd64"}}]}
        manifest = {"layers": [{"digest": "sha256:l", "annotations": {CHECKPOINT_ANNOTATIONS[1]: "app"}}]}
        fake = self.fake(docs={"localhost:5000/app:v1": index, "localhost:5000/app@sha256:amd": manifest})
        self.assertTrue(self.im.classify("localhost:5000/app:v1", pod())[0])
        self.assertEqual(fake.calls[1][-1], "docker://localhost:5000/app@sha256:amd")

    def test_a_plain_image_on_a_managed_registry_is_not_a_checkpoint_and_keeps_its_digest(self):
        ref = "127.0.0.1:5000/app@sha256:" + "d" * 64
        self.fake(docs={ref: {"layers": [{"digest": "sha256:x"}], "config": {"digest": "sha256:c"}}})
        self.assertEqual(self.im.classify(ref, pod()), (False, ref))

    def test_the_auth_file_is_removed_after_classifying(self):
        fake = self.fake(docs={"127.0.0.1:5000/app:v1": {}})
        self.im.classify("127.0.0.1:5000/app:v1", pod())
        self.assertFalse(os.path.exists(fake.auth_files[0]))

    def test_a_registry_error_is_an_err_image_pull_with_the_skopeo_message(self):
        fake = self.fake()
        with self.assertRaises(PullError) as cm:
            self.im.classify("127.0.0.1:5000/app:v1", pod())
        self.assertEqual(cm.exception.reason, "ErrImagePull")
        self.assertIn("cannot read the manifest of 127.0.0.1:5000/app:v1: manifest unknown", str(cm.exception))
        self.assertFalse(os.path.exists(fake.auth_files[0]))

    def test_a_manifest_that_is_not_json_is_an_err_image_pull(self):
        self.fake(docs={"127.0.0.1:5000/app:v1": "not json"})
        with self.assertRaisesRegex(PullError, "is not JSON"):
            self.im.classify("127.0.0.1:5000/app:v1", pod())


class PullArchive(ImagesCase):
    def test_the_single_layer_is_the_checkpoint_archive(self):
        fake = self.fake(copy_manifest={"layers": [{"digest": "sha256:" + "e" * 64}]})
        dest, layer = self.im.pull_archive("127.0.0.1:5000/app:v1", pod())
        self.assertTrue(dest.startswith(self.path("pulls", "pull.")))
        self.assertEqual(layer, os.path.join(dest, "image", "e" * 64))
        self.assertTrue(os.path.isfile(layer))
        self.assertIn("--src-tls-verify=false", fake.calls[0])
        self.assertFalse(os.path.exists(fake.auth_files[0]))

    def test_an_image_with_two_layers_is_refused_and_its_folder_removed(self):
        self.fake(copy_manifest={"layers": [{"digest": "sha256:a1"}, {"digest": "sha256:a2"}]})
        with self.assertRaisesRegex(PullError, "has 2 layers, expected 1"):
            self.im.pull_archive("127.0.0.1:5000/app:v1", pod())
        self.assertEqual([n for n in os.listdir(self.path("pulls")) if n.startswith("pull.")], [])

    def test_a_failed_copy_is_an_err_image_pull(self):
        self.fake(fail="denied")
        with self.assertRaises(PullError) as cm:
            self.im.pull_archive("127.0.0.1:5000/app:v1", pod())
        self.assertEqual(cm.exception.reason, "ErrImagePull")
        self.assertIn("pulling checkpoint image 127.0.0.1:5000/app:v1 failed: denied", str(cm.exception))
        self.assertEqual(os.listdir(self.path("pulls")), [])


class EncryptedAndSigned(ImagesCase):
    """Checkpoint images encrypted in the ocicrypt format and signed (docs/security.md): the
    node's keys and policy go to skopeo, which decrypts and verifies (hack/test-shim-images.sh and
    the e2e run the real skopeo on real encrypted, signed images)."""

    def keys(self, *names):
        d = self.path("keys")
        os.makedirs(d)
        for n in names:
            with open(os.path.join(d, n), "w") as f:
                f.write("-----BEGIN PRIVATE KEY-----\n")
        return d

    def test_every_key_of_the_node_goes_to_skopeo_in_name_order(self):
        d = self.keys("b.pem", "a.pem", ".hidden")
        self.im.decryption_keys_dir = d
        fake = self.fake(copy_manifest={"layers": [{"digest": "sha256:" + "e" * 64, "mediaType": "application/vnd.oci.image.layer.v1.tar"}]})
        self.im.pull_archive("127.0.0.1:5000/app:v1", pod())
        cmd = fake.calls[0]
        keys = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--decryption-key"]
        self.assertEqual(keys, [os.path.join(d, "a.pem"), os.path.join(d, "b.pem")])

    def test_a_layer_still_encrypted_after_the_copy_is_refused_naming_the_missing_keys(self):
        self.fake(copy_manifest={"layers": [{"digest": "sha256:" + "e" * 64, "mediaType": "application/vnd.oci.image.layer.v1.tar+encrypted"}]})
        with self.assertRaises(PullError) as cm:
            self.im.pull_archive("127.0.0.1:5000/app:v1", pod())
        self.assertIn("is encrypted", str(cm.exception))
        self.assertIn("no decryption keys", str(cm.exception))
        self.assertEqual([n for n in os.listdir(self.path("pulls")) if n.startswith("pull.")], [])

    def test_a_key_that_does_not_decrypt_is_an_err_image_pull_naming_the_keys_folder(self):
        self.im.decryption_keys_dir = self.keys("stranger.pem")
        self.fake(fail="Error: decrypting layer sha256:e: no suitable key unwrapper found or none of the private keys could be used for decryption")
        with self.assertRaises(PullError) as cm:
            self.im.pull_archive("127.0.0.1:5000/app:v1", pod())
        self.assertEqual(cm.exception.reason, "ErrImagePull")
        self.assertIn("none of this node's 1 key(s)", str(cm.exception))

    def test_a_missing_keys_folder_is_an_err_image_pull_before_any_pull(self):
        self.im.decryption_keys_dir = self.path("nope")
        fake = self.fake(copy_manifest={"layers": []})
        with self.assertRaisesRegex(PullError, "cannot read the decryption keys folder"):
            self.im.pull_archive("127.0.0.1:5000/app:v1", pod())
        self.assertEqual(fake.calls, [])

    def test_the_signature_policy_and_registries_d_go_to_skopeo(self):
        self.im.signature_policy, self.im.registries_d = "/etc/policy.json", "/etc/registries.d"
        fake = self.fake(copy_manifest={"layers": [{"digest": "sha256:" + "e" * 64}]})
        self.im.pull_archive("127.0.0.1:5000/app:v1", pod())
        self.assertEqual(fake.calls[0][:5], ["skopeo", "--policy", "/etc/policy.json", "--registries.d", "/etc/registries.d"])

    def test_an_image_the_policy_rejects_is_signature_validation_failed(self):
        self.im.signature_policy = "/etc/policy.json"
        self.fake(fail='Error: Source image rejected: A signature was required, but no signature exists')
        with self.assertRaises(PullError) as cm:
            self.im.pull_archive("127.0.0.1:5000/app:v1", pod())
        self.assertEqual(cm.exception.reason, "SignatureValidationFailed")
        self.assertIn("no signature exists", str(cm.exception))


class StandInAndPolicy(TempDirCase):
    def test_every_spelling_of_docker_hubs_busybox_is_the_stand_in(self):
        from kubelet_shim.images import is_standin
        for ref in ("busybox", "busybox:1.36", "library/busybox", "docker.io/library/busybox:1.36", "docker.io/busybox@sha256:" + "a" * 64):
            self.assertTrue(is_standin(ref), ref)
        for ref in ("127.0.0.1:5000/busybox:1", "quay.io/library/busybox", "docker.io/other/busybox", "busyboxes"):
            self.assertFalse(is_standin(ref), ref)

    def test_the_pull_policy_defaults_like_the_api_server(self):
        from kubelet_shim.images import pull_policy
        self.assertEqual([pull_policy(r, None) for r in ("a", "a:latest", "a:v1", "h:5000/a", "a@sha256:x")],
                         ["Always", "Always", "IfNotPresent", "Always", "IfNotPresent"])
        self.assertEqual(pull_policy("a:v1", "Never"), "Never")

    def test_never_without_the_image_in_the_cache_is_err_image_never_pull(self):
        im = Images(args(), StubKube(), self.tmp)
        with self.assertRaises(PullError) as cm:
            im.pull_oci("127.0.0.1:5000/app:v1", pod(), "Never")
        self.assertEqual(cm.exception.reason, "ErrImageNeverPull")
