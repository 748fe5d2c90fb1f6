"""Bounded waits for tests: poll a condition no event announces, never forever."""

from __future__ import annotations

import time
from collections.abc import Callable

POLL_INTERVAL = 0.005


def wait_until(condition: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``condition`` until it is true, bounded by ``timeout`` seconds.

    Raises:
        AssertionError: it was still false when the time ran out (``what`` names it).
    """
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(POLL_INTERVAL)
