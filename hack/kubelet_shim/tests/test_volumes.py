"""volumes: materialising a pod's volumes into a temporary folder, and tearing them down.

Stubs: FakeLookup (test_podspec) plus a token method replaces the API server (Secrets, ConfigMaps,
TokenRequest); the tmpfs mount, umount and /proc/self/mountinfo are replaced by a list of fake
mount points; the clock is a number the test moves."""
import os, stat

from kubelet_shim.podspec import ConfigError
from kubelet_shim.tests.support import TempDirCase
from kubelet_shim.tests.test_podspec import FakeLookup
from kubelet_shim.volumes import ApiLookup, Volumes, quantity_bytes, write_atomic
from kubelet_shim.kube import ApiError


class TokenLookup(FakeLookup):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.tokens = []

    def token(self, pod, sa, audience, seconds):
        self.tokens.append((sa, audience, seconds))
        return f"jwt-{len(self.tokens)}", seconds


def pod(volumes, fs_group=None):
    spec = {"serviceAccountName": "sa", "volumes": volumes}
    if fs_group is not None:
        spec["securityContext"] = {"fsGroup": fs_group}
    return {"metadata": {"name": "web", "namespace": "ns", "uid": "u-1"}, "spec": spec}


class VolumesCase(TempDirCase):
    def setUp(self):
        super().setUp()
        self.mounted, self.now = [], 1000.0
        self.vols = Volumes(self.path("volumes"), mounts=lambda: list(self.mounted),
                            mount=lambda p, size: self.mounted.append(os.path.realpath(p)),
                            unmount=lambda p: self.mounted.remove(p) is None, clock=lambda: self.now)
        self.lookup = TokenLookup(secrets={("ns", "s"): {"pw": "hunter2", "user": "alice"}},
                                  configmaps={("ns", "c"): {"greeting": "hi"}})

    def mounts(self, volumes, mounts, fs_group=None):
        return self.vols.setup(pod(volumes, fs_group), {"name": "app", "volumeMounts": mounts}, self.lookup, "127.0.0.1")

    def read(self, *parts):
        with open(self.path("volumes", "u-1", *parts)) as f:
            return f.read()


class AtomicVolumes(VolumesCase):
    def test_a_secret_volume_with_items_and_mode_is_written_and_mounted_read_only(self):
        [m] = self.mounts([{"name": "s", "secret": {"secretName": "s", "items": [{"key": "pw", "path": "dir/pw", "mode": 0o400}]}}],
                          [{"name": "s", "mountPath": "/etc/s"}])
        self.assertEqual((m["destination"], m["source"], "ro" in m["options"]), ("/etc/s", self.path("volumes", "u-1", "s"), True))
        self.assertEqual(self.read("s", "dir", "pw"), "hunter2")
        self.assertEqual(stat.S_IMODE(os.stat(self.path("volumes", "u-1", "s", "dir", "pw")).st_mode), 0o400)
        self.assertFalse(os.path.exists(self.path("volumes", "u-1", "s", "user")))
        self.assertTrue(os.path.islink(self.path("volumes", "u-1", "s", "..data")))

    def test_a_config_map_volume_without_items_has_every_key_with_the_default_mode(self):
        self.mounts([{"name": "c", "configMap": {"name": "c", "defaultMode": 0o440}}], [{"name": "c", "mountPath": "/c"}])
        self.assertEqual(self.read("c", "greeting"), "hi")
        self.assertEqual(stat.S_IMODE(os.stat(self.path("volumes", "u-1", "c", "greeting")).st_mode), 0o440)

    def test_a_missing_secret_names_it_and_the_volume_unless_optional(self):
        with self.assertRaises(ConfigError) as cm:
            self.mounts([{"name": "v", "secret": {"secretName": "gone"}}], [{"name": "v", "mountPath": "/v"}])
        self.assertEqual(str(cm.exception), 'MountVolume.SetUp failed for volume "v" : secret "gone" not found')
        self.assertEqual(len(self.mounts([{"name": "v", "secret": {"secretName": "gone", "optional": True}}],
                                         [{"name": "v", "mountPath": "/v"}])), 1)

    def test_an_item_with_a_missing_key_is_refused(self):
        with self.assertRaisesRegex(ConfigError, "references non-existent key: nope"):
            self.mounts([{"name": "v", "secret": {"secretName": "s", "items": [{"key": "nope", "path": "x"}]}}],
                        [{"name": "v", "mountPath": "/v"}])

    def test_a_rewrite_swaps_the_payload_and_drops_removed_keys(self):
        d = self.path("volumes", "u-1", "v")
        write_atomic(d, {"a": (b"1", 0o644), "b": (b"2", 0o644)})
        write_atomic(d, {"a": (b"3", 0o644)})
        self.assertEqual(sorted(n for n in os.listdir(d) if not n.startswith("..")), ["a"])
        self.assertEqual(len([n for n in os.listdir(d) if n.startswith("..") and n != "..data"]), 1)
        self.assertEqual(self.read("v", "a"), "3")

    def test_the_projected_service_account_volume_has_token_ca_and_namespace(self):
        self.lookup = TokenLookup(configmaps={})
        ca = ApiLookup(None, ca_pem="PEM")
        ca._get = lambda kind, ns, name: None
        self.lookup.configmap = ca.configmap
        self.mounts([{"name": "api", "projected": {"sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token", "audience": "aud"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}}],
            [{"name": "api", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}])
        self.assertEqual((self.read("api", "token"), self.read("api", "ca.crt"), self.read("api", "namespace")), ("jwt-1", "PEM", "ns"))
        self.assertEqual(self.lookup.tokens, [("sa", "aud", 3607)])

    def test_a_token_is_refreshed_at_eighty_percent_of_its_life(self):
        p = pod([{"name": "api", "projected": {"sources": [{"serviceAccountToken": {"expirationSeconds": 1000, "path": "token"}}]}}])
        self.vols.setup(p, {"name": "app", "volumeMounts": [{"name": "api", "mountPath": "/t"}]}, self.lookup, "")
        self.now += 799
        self.assertEqual(self.vols.refresh_due(p, self.lookup, ""), [])
        self.now += 2
        self.assertEqual(self.vols.refresh_due(p, self.lookup, ""), ["api"])
        self.assertEqual(self.read("api", "token"), "jwt-2")

    def test_fs_group_owns_and_can_read_the_files(self):
        self.mounts([{"name": "s", "secret": {"secretName": "s", "defaultMode": 0o400}}], [{"name": "s", "mountPath": "/s"}],
                    fs_group=os.getgid())
        st = os.stat(self.path("volumes", "u-1", "s", "pw"))
        self.assertEqual((st.st_gid, stat.S_IMODE(st.st_mode)), (os.getgid(), 0o440))


class OtherVolumes(VolumesCase):
    def test_an_empty_dir_is_a_world_writable_folder_kept_across_setups(self):
        v = [{"name": "e", "emptyDir": {}}]
        [m] = self.mounts(v, [{"name": "e", "mountPath": "/e"}])
        self.assertEqual(stat.S_IMODE(os.stat(m["source"]).st_mode), 0o777)
        with open(os.path.join(m["source"], "keep"), "w") as f:
            f.write("x")
        self.mounts(v, [{"name": "e", "mountPath": "/e"}])
        self.assertTrue(os.path.exists(os.path.join(m["source"], "keep")))

    def test_a_memory_empty_dir_is_mounted_once(self):
        v = [{"name": "m", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}]
        self.mounts(v, [{"name": "m", "mountPath": "/m"}])
        self.mounts(v, [{"name": "m", "mountPath": "/m"}])
        self.assertEqual(self.mounted, [os.path.realpath(self.path("volumes", "u-1", "m"))])
        self.assertEqual(quantity_bytes("16Mi"), 16 << 20)

    def test_host_path_types_are_checked_and_created(self):
        made = self.path("host", "made")
        [m] = self.mounts([{"name": "h", "hostPath": {"path": made, "type": "DirectoryOrCreate"}}],
                          [{"name": "h", "mountPath": "/h", "readOnly": True}])
        self.assertEqual((m["source"], os.path.isdir(made), "ro" in m["options"]), (made, True, True))
        with self.assertRaisesRegex(ConfigError, f"hostPath type check failed: {made} is not a file"):
            self.mounts([{"name": "h", "hostPath": {"path": made, "type": "File"}}], [{"name": "h", "mountPath": "/h"}])
        with self.assertRaisesRegex(ConfigError, "does not exist"):
            self.mounts([{"name": "h", "hostPath": {"path": self.path("nope"), "type": "Directory"}}], [{"name": "h", "mountPath": "/h"}])

    def test_a_sub_path_is_mounted_and_may_not_leave_the_volume(self):
        [m] = self.mounts([{"name": "e", "emptyDir": {}}], [{"name": "e", "mountPath": "/x", "subPath": "a/b"}])
        self.assertEqual(m["source"], self.path("volumes", "u-1", "e", "a", "b"))
        with self.assertRaisesRegex(ConfigError, "without '..'"):
            self.mounts([{"name": "e", "emptyDir": {}}], [{"name": "e", "mountPath": "/x", "subPath": "../up"}])

    def test_an_unknown_volume_or_type_is_refused(self):
        with self.assertRaisesRegex(ConfigError, "cannot find volume 'x'"):
            self.mounts([], [{"name": "x", "mountPath": "/x"}])
        with self.assertRaisesRegex(ConfigError, "volume type nfs is not supported"):
            self.mounts([{"name": "n", "nfs": {}}], [{"name": "n", "mountPath": "/n"}])

    def test_teardown_unmounts_then_removes_the_pods_folder(self):
        self.mounts([{"name": "m", "emptyDir": {"medium": "Memory"}}], [{"name": "m", "mountPath": "/m"}])
        self.assertTrue(self.vols.teardown("u-1"))
        self.assertEqual((self.mounted, os.path.exists(self.path("volumes", "u-1"))), ([], False))

    def test_teardown_keeps_the_folder_when_an_unmount_fails(self):
        self.mounts([{"name": "m", "emptyDir": {"medium": "Memory"}}], [{"name": "m", "mountPath": "/m"}])
        self.vols.unmount = lambda p: False
        self.assertFalse(self.vols.teardown("u-1"))
        self.assertTrue(os.path.exists(self.path("volumes", "u-1", "m")))


class Lookup(TempDirCase):
    def test_secrets_are_decoded_and_a_404_is_none_other_errors_a_config_error(self):
        class K:
            def get(self, path):
                if path.endswith("/gone"):
                    raise ApiError(404, "not found")
                if path.endswith("/broken"):
                    raise ApiError(500, "etcd")
                return {"data": {"k": "aGk="}}
        lk = ApiLookup(K())
        self.assertEqual((lk.secret("ns", "s"), lk.secret("ns", "gone")), ({"k": b"hi"}, None))
        with self.assertRaisesRegex(ConfigError, "failed to read secret ns/broken"):
            lk.secret("ns", "broken")
