#!/usr/bin/env bash
# Unit tests of the kubelet stand-in, the Python package hack/kubelet_shim/ (stdlib unittest; no lab,
# runc, registry or API server needed). Works from any directory; extra arguments go to unittest
# (e.g. -v, -k lease). Exits non-zero when a test fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec python3 -B -m unittest discover -s hack/kubelet_shim/tests -t hack "$@"
