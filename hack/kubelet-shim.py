#!/usr/bin/env python3
"""Kubelet stand-in (no kubelet with a CRIU runtime can run here; runs busybox as the counter
stand-in, restores checkpoint images with CRIU, pulls and runs any other OCI image with runc on the
host network): the launcher of the package
hack/kubelet_shim/, whose docstring (python3 -c 'import kubelet_shim; help(kubelet_shim)' in hack/)
has the full usage. Checkpoint endpoint only:

    kubelet-shim.py --port P --cert C --key K --pods DIR --checkpoint-dir OUT

Node mode (the whole kubelet of one worker node):

    kubelet-shim.py --node NAME --kubeconfig FILE (--state-dir DIR | --pods DIR) [--port P] ...
"""
import os, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kubelet_shim.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
