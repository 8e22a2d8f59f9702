"""Helpers shared by the shim's unit tests (not a test module)."""
import io, os, shutil, subprocess, tempfile, unittest
from unittest import mock

HACK = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OPENSSL = shutil.which("openssl")


class TempDirCase(unittest.TestCase):
    """A test case with a fresh temporary folder (self.tmp) and the shim's log (stderr) captured in self.err."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="kubelet-shim-test.")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.err = io.StringIO()
        patcher = mock.patch("sys.stderr", self.err)
        patcher.start()
        self.addCleanup(patcher.stop)

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)


def make_cert(folder, cn="kubelet-shim-test"):
    """A self-signed certificate and key made with openssl (the caller skips without it)."""
    cert, key = os.path.join(folder, "test.crt"), os.path.join(folder, "test.key")
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={cn}",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    return cert, key


def completed(cmd=None, rc=0, stdout="", stderr=""):
    return subprocess.CompletedProcess(cmd or [], rc, stdout, stderr)
