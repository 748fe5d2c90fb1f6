"""Network namespaces in tests: the pytest mark for tests that build a lab (root)."""

from __future__ import annotations

import os

import pytest

from netlab.lab.namespace import can_make_namespaces

needs_namespaces = pytest.mark.skipif(
    not (can_make_namespaces() and os.path.exists("/proc/self/ns/net")),
    reason="network namespaces need root (CAP_SYS_ADMIN and CAP_NET_ADMIN)",
)
