"""A pytest mark for tests that capture packets: they need root or CAP_NET_RAW."""

from __future__ import annotations

import pytest

from netlab.inspect.sniffer import has_capture_privilege

needs_capture = pytest.mark.skipif(
    not has_capture_privilege(), reason="packet capture needs root or CAP_NET_RAW (AF_PACKET socket)"
)
