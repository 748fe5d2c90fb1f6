"""SIGTERM handled like Ctrl-C, so every ``finally`` (namespace teardown, partial results) runs.

How this works: while the ``with`` block runs, a SIGTERM raises
KeyboardInterrupt in the main thread, the same path Ctrl-C takes; the previous
handler comes back afterwards. Off the main thread it does nothing (Python only
lets the main thread set handlers). A process forked inside the block (pyroute2
forks helpers to create namespaces) gets the default SIGTERM back at once, so
stopping such a helper never runs the parent's cleanup code in the copy.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _default_in_child() -> None:
    if signal.getsignal(signal.SIGTERM) is _interrupt:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


os.register_at_fork(after_in_child=_default_in_child)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt for the length of the block."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
