"""Unit tests of the kubelet shim's pure parts; run with hack/test-shim.sh (no runc, CRIU, registry
or API server needed: each module's docstring says which real thing its stubs replace)."""
