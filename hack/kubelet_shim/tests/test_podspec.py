"""podspec: the runc config of a pulled-image container from the pod spec + the image config.

Pure: a FakeLookup (dicts) replaces the API server's Secrets and ConfigMaps; no runc runs."""
import unittest

from kubelet_shim.podspec import (ConfigError, command_args, container_env, expand, field_value, image_user,
                                  runc_config, security, service_env)


class FakeLookup:
    def __init__(self, secrets=None, configmaps=None):
        self.secrets, self.configmaps = secrets or {}, configmaps or {}

    def secret(self, ns, name):
        d = self.secrets.get((ns, name))
        return None if d is None else {k: v.encode() for k, v in d.items()}

    def configmap(self, ns, name):
        d = self.configmaps.get((ns, name))
        return None if d is None else {k: v.encode() for k, v in d.items()}


def pod(**spec):
    return {"metadata": {"name": "web", "namespace": "ns", "uid": "u-1", "labels": {"tier": "db"}, "annotations": {"a": "1"}},
            "spec": dict({"nodeName": "worker-1", "serviceAccountName": "sa"}, **spec)}


class Expansion(unittest.TestCase):
    def test_a_defined_variable_is_replaced_and_an_undefined_one_kept(self):
        self.assertEqual(expand("$(A)-$(B)", {"A": "x"}), "x-$(B)")

    def test_a_double_dollar_escapes_a_reference(self):
        self.assertEqual(expand("$$(A) $$ $", {"A": "x"}), "$(A) $ $")

    def test_an_unclosed_reference_and_a_lone_dollar_stay(self):
        self.assertEqual(expand("$(A $x", {"A": "x"}), "$(A $x")

    def test_the_first_map_that_has_the_name_wins(self):
        self.assertEqual(expand("$(A)", {"A": "first"}, {"A": "second"}), "first")


class CommandArgs(unittest.TestCase):
    image = {"Entrypoint": ["/entry"], "Cmd": ["default"]}

    def test_neither_command_nor_args_runs_entrypoint_and_cmd(self):
        self.assertEqual(command_args({}, self.image, []), ["/entry", "default"])

    def test_args_alone_replace_cmd_after_the_entrypoint(self):
        self.assertEqual(command_args({"args": ["x"]}, self.image, []), ["/entry", "x"])

    def test_a_command_drops_both_entrypoint_and_cmd(self):
        self.assertEqual(command_args({"command": ["/bin/sh"]}, self.image, []), ["/bin/sh"])
        self.assertEqual(command_args({"command": ["/bin/sh"], "args": ["-c", "x"]}, self.image, []), ["/bin/sh", "-c", "x"])

    def test_command_and_args_are_expanded_with_the_container_env(self):
        self.assertEqual(command_args({"command": ["echo", "$(NAME)", "$$(NAME)"]}, {}, [("NAME", "v")]), ["echo", "v", "$(NAME)"])

    def test_no_command_at_all_is_a_create_container_error(self):
        with self.assertRaises(ConfigError) as cm:
            command_args({}, {}, [])
        self.assertEqual(cm.exception.reason, "CreateContainerError")


class Env(unittest.TestCase):
    lookup = FakeLookup(secrets={("ns", "s"): {"pw": "hunter2", "bad key": "x"}},
                        configmaps={("ns", "c"): {"greeting": "hi", "mode": "fast"}})

    def env(self, ctr, lookup=None):
        return container_env(pod(), ctr, lookup or self.lookup, "127.0.0.1", service_env("127.0.0.1", 6443))

    def test_values_from_fields_secrets_and_config_maps(self):
        env = dict(self.env({"env": [
            {"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "T", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['tier']"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "P", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}},
            {"name": "G", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "greeting"}}}]}))
        self.assertEqual((env["N"], env["T"], env["IP"], env["P"], env["G"]), ("web", "db", "127.0.0.1", "hunter2", "hi"))

    def test_a_value_is_expanded_against_earlier_variables_and_the_service_ones(self):
        env = dict(self.env({"env": [{"name": "A", "value": "a"}, {"name": "B", "value": "$(A)-$(C)-$(KUBERNETES_SERVICE_PORT)"},
                                     {"name": "C", "value": "c"}]}))
        self.assertEqual(env["B"], "a-$(C)-6443")

    def test_env_from_with_a_prefix_skips_invalid_names_and_env_overrides_it(self):
        env = dict(self.env({"envFrom": [{"prefix": "S_", "secretRef": {"name": "s"}}, {"configMapRef": {"name": "c"}}],
                             "env": [{"name": "mode", "value": "slow"}]}))
        self.assertEqual((env["S_pw"], env["greeting"], env["mode"]), ("hunter2", "hi", "slow"))
        self.assertNotIn("S_bad key", env)

    def test_the_kubernetes_service_variables_point_at_the_api_server_and_can_be_overridden(self):
        env = dict(self.env({"env": [{"name": "KUBERNETES_SERVICE_HOST", "value": "elsewhere"}]}))
        self.assertEqual((env["KUBERNETES_SERVICE_HOST"], env["KUBERNETES_SERVICE_PORT"]), ("elsewhere", "6443"))

    def test_a_missing_key_names_the_object_in_a_create_container_config_error(self):
        with self.assertRaises(ConfigError) as cm:
            self.env({"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "nope"}}}]})
        self.assertEqual((cm.exception.reason, str(cm.exception)), ("CreateContainerConfigError", "couldn't find key nope in Secret ns/s"))

    def test_a_missing_config_map_is_named(self):
        with self.assertRaisesRegex(ConfigError, 'configmap "gone" not found'):
            self.env({"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k"}}}]})

    def test_optional_references_to_missing_objects_or_keys_are_skipped(self):
        env = dict(self.env({"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "nope", "optional": True}}},
                                     {"name": "Y", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k", "optional": True}}}],
                             "envFrom": [{"secretRef": {"name": "gone", "optional": True}}]}))
        self.assertNotIn("X", env)
        self.assertNotIn("Y", env)

    def test_whole_label_maps_are_sorted_quoted_lines(self):
        self.assertEqual(field_value(pod(), "metadata.annotations", ""), 'a="1"\n')


class User(unittest.TestCase):
    passwd = "root:x:0:0::/:/bin/sh\napp:x:1000:1001::/:/bin/sh\n"

    def test_an_image_user_by_name_is_looked_up_with_its_primary_group(self):
        self.assertEqual(image_user("app", self.passwd, ""), (1000, 1001))
        self.assertEqual(image_user("7:8", "", ""), (7, 8))

    def test_run_as_user_and_group_override_the_image_container_over_pod(self):
        p = pod(securityContext={"runAsUser": 5, "runAsGroup": 6, "fsGroup": 9, "supplementalGroups": [4]})
        sec = security(p, {"securityContext": {"runAsUser": 1000, "readOnlyRootFilesystem": True}}, {"User": "0"}, self.passwd)
        self.assertEqual((sec["uid"], sec["gid"], sec["gids"], sec["readonly"]), (1000, 6, [4, 9], True))

    def test_run_as_non_root_refuses_an_image_that_runs_as_root(self):
        with self.assertRaisesRegex(ConfigError, "runAsNonRoot"):
            security(pod(securityContext={"runAsNonRoot": True}), {}, {})

    def test_capabilities_are_added_and_dropped(self):
        sec = security(pod(), {"securityContext": {"capabilities": {"add": ["NET_ADMIN"], "drop": ["KILL"]}}}, {})
        self.assertIn("CAP_NET_ADMIN", sec["caps"])
        self.assertNotIn("CAP_KILL", sec["caps"])


class Config(unittest.TestCase):
    def test_the_config_has_no_network_namespace_and_sorted_mounts_after_the_defaults(self):
        sec = security(pod(), {}, {})
        cfg = runc_config(pod(), {"name": "app"}, {"Cmd": ["/bin/true"], "Env": ["PATH=/bin", "A=image"], "WorkingDir": "/w"},
                          [("A", "pod")], sec, [{"destination": "/a/b/c", "type": "bind"}, {"destination": "/a", "type": "bind"}], "web")
        self.assertNotIn("network", [n["type"] for n in cfg["linux"]["namespaces"]])
        self.assertEqual([m["destination"] for m in cfg["mounts"]][-2:], ["/a", "/a/b/c"])
        self.assertEqual(cfg["mounts"][0]["destination"], "/proc")
        self.assertEqual(cfg["process"]["env"], ["PATH=/bin", "HOSTNAME=web", "A=pod"])
        self.assertEqual((cfg["process"]["args"], cfg["process"]["cwd"], cfg["hostname"]), (["/bin/true"], "/w", "web"))

    def test_host_pid_shares_the_nodes_pid_namespace_and_the_default_has_its_own(self):
        sec = security(pod(), {}, {})
        own = runc_config(pod(), {"name": "a", "command": ["x"]}, {}, [], sec, [], "web")
        self.assertIn("pid", [n["type"] for n in own["linux"]["namespaces"]])
        shared = runc_config(pod(hostPID=True), {"name": "a", "command": ["x"]}, {}, [], sec, [], "web")
        self.assertNotIn("pid", [n["type"] for n in shared["linux"]["namespaces"]])

    def test_a_non_root_user_gets_no_effective_capabilities(self):
        sec = security(pod(securityContext={"runAsUser": 1000}), {}, {})
        cfg = runc_config(pod(), {"name": "a", "command": ["x"]}, {}, [], sec, [], "web")
        self.assertEqual((cfg["process"]["user"]["uid"], cfg["process"]["capabilities"]["effective"]), (1000, []))
