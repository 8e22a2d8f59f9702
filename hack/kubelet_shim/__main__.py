"""python3 -m kubelet_shim (with hack/ on sys.path): the same as hack/kubelet-shim.py."""
import sys

from .cli import main

sys.exit(main(prog="python3 -m kubelet_shim"))
