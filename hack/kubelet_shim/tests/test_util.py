"""util: time formats, tail(), read()/write(), the log lines and the shared constants.

No stubs: these are pure functions; the log goes to a captured stderr instead of the terminal."""
import os, re, time

from kubelet_shim import util
from kubelet_shim.tests.support import HACK, TempDirCase


class Rfc3339(TempDirCase):
    def test_the_epoch_is_formatted_in_utc_with_a_z_suffix(self):
        self.assertEqual(util.rfc3339(0), "1970-01-01T00:00:00Z")

    def test_fractions_of_a_second_are_dropped(self):
        self.assertEqual(util.rfc3339(1700000000.999), "2023-11-14T22:13:20Z")

    def test_without_an_argument_it_is_now(self):
        before = util.rfc3339(time.time() - 1)
        now = util.rfc3339()
        self.assertRegex(now, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertGreaterEqual(now, before)


class MicroTime(TempDirCase):
    def test_it_has_six_fractional_digits_and_a_z_suffix_like_a_kubernetes_microtime(self):
        self.assertRegex(util.micro_time(), r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")

    def test_it_is_utc_now(self):
        self.assertEqual(util.micro_time()[:16], util.rfc3339()[:16])


class Tail(TempDirCase):
    def test_none_and_blank_text_become_an_empty_string(self):
        self.assertEqual(util.tail(None), "")
        self.assertEqual(util.tail("  \n "), "")

    def test_short_text_is_only_stripped(self):
        self.assertEqual(util.tail("  boom\n"), "boom")

    def test_text_of_exactly_n_characters_is_kept_whole(self):
        self.assertEqual(util.tail("x" * 400), "x" * 400)

    def test_long_text_keeps_its_last_n_characters_after_an_ellipsis(self):
        text = "a" * 50 + "b" * 10
        self.assertEqual(util.tail(text, 10), "..." + "b" * 10)

    def test_skopeo_logrus_lines_keep_only_the_message_with_quotes_unescaped(self):
        line = 'time="2024-01-01T00:00:00Z" level=fatal msg="reading manifest \\"v1\\": unauthorized"'
        self.assertEqual(util.tail(line), 'reading manifest "v1": unauthorized')

    def test_truncation_applies_after_the_logrus_prefix_is_removed(self):
        line = 'time="2024-01-01T00:00:00Z" level=error msg="' + "m" * 20 + '"'
        self.assertEqual(util.tail(line, 20), "m" * 20)


class ReadWrite(TempDirCase):
    def test_write_adds_a_newline_and_read_strips_it(self):
        p = self.path("f")
        util.write(p, "value")
        with open(p) as f:
            self.assertEqual(f.read(), "value\n")
        self.assertEqual(util.read(p), "value")

    def test_reading_a_missing_file_gives_the_default(self):
        self.assertEqual(util.read(self.path("missing")), "")
        self.assertEqual(util.read(self.path("missing"), "dflt"), "dflt")


class Log(TempDirCase):
    def test_a_log_line_has_a_clock_time_and_the_shim_prefix(self):
        util.log("hello")
        self.assertRegex(self.err.getvalue(), r"^\[\d\d:\d\d:\d\d\] kubelet-shim: hello\n$")

    def test_the_same_key_is_logged_once_within_the_interval(self):
        key = f"test-{id(self)}-same"
        util.log_limited(key, "first")
        util.log_limited(key, "second")
        self.assertIn("first", self.err.getvalue())
        self.assertNotIn("second", self.err.getvalue())

    def test_different_keys_are_limited_separately(self):
        util.log_limited(f"test-{id(self)}-a", "from a")
        util.log_limited(f"test-{id(self)}-b", "from b")
        self.assertIn("from a", self.err.getvalue())
        self.assertIn("from b", self.err.getvalue())

    def test_an_interval_of_zero_logs_every_time(self):
        key = f"test-{id(self)}-zero"
        util.log_limited(key, "one", every=0)
        util.log_limited(key, "two", every=0)
        self.assertIn("two", self.err.getvalue())


class Constants(TempDirCase):
    def test_runc_pod_is_the_script_beside_the_package(self):
        self.assertEqual(util.RUNC_POD, os.path.join(HACK, "runc-pod.sh"))
        self.assertTrue(os.path.isfile(util.RUNC_POD))

    def test_dns_names_are_lowercase_alphanumerics_dashes_and_dots(self):
        for ok in ("a", "default", "web-0", "a.b-c", "0x"):
            self.assertTrue(util.NAME.match(ok), ok)
        for bad in ("", "A", "-a", "a-", "a_b", "a/b", "..", "a b"):
            self.assertFalse(util.NAME.match(bad), bad)

    def test_both_checkpoint_annotations_are_known(self):
        self.assertEqual(set(util.CHECKPOINT_ANNOTATIONS),
                         {"io.kubernetes.cri-o.annotations.checkpoint.name", "org.criu.checkpoint.container.name"})
        self.assertTrue(re.match(r"^sha256:", util.FRESH_IMAGE_ID))
