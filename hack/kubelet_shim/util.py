"""Shared constants, logging, time formats and small file helpers of the kubelet shim."""
import datetime, os, re, sys, time

# hack/ (the folder of runc-pod.sh), one level above this package.
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNC_POD = os.path.join(HERE, "runc-pod.sh")
NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
CHECKPOINT_ANNOTATIONS = ("io.kubernetes.cri-o.annotations.checkpoint.name", "org.criu.checkpoint.container.name")
FRESH_IMAGE_ID = "sha256:busybox-static-lab"


def log(msg):
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] kubelet-shim: {msg}\n")
    sys.stderr.flush()


_last_logged = {}


def log_limited(key, msg, every=30.0):
    """Logs msg unless the same key was logged in the last `every` seconds (API outages)."""
    now = time.monotonic()
    if now - _last_logged.get(key, -1e9) >= every:
        _last_logged[key] = now
        log(msg)


def rfc3339(t=None):
    return datetime.datetime.fromtimestamp(time.time() if t is None else t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_time():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def tail(text, n=400):
    text = (text or "").strip()
    # skopeo/logrus lines: keep the message, not the timestamp and level.
    text = re.sub(r'time="[^"]*" level=\w+ msg="((?:[^"\\]|\\.)*)"', lambda m: m.group(1).replace('\\"', '"'), text)
    return text if len(text) <= n else "..." + text[-n:]


def read(path, default=""):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def write(path, text):
    with open(path, "w") as f:
        f.write(text + "\n")
