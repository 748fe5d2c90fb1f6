"""The syscall tap: record every send and receive of a connection, on any transport.

How this works: :class:`TappedConnection` wraps a connection and, after each
``send`` or ``receive`` returns, appends one :class:`TapEvent` (monotonic time
when the call returned, direction, byte count, the first bytes) to a
:class:`TapRecorder`. One recorder may watch many connections from many
threads; each event names its connection. End of stream shows as a ``recv`` of
size 0; calls that raise record nothing (the error reaches the caller). The
inspector renders ``recorder.events()`` as a table.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Literal

from netlab.transport.base import DEFAULT_RECEIVE_SIZE, Connection, WrappedConnection

Direction = Literal["send", "recv"]
DEFAULT_PREVIEW_SIZE = 16


@dataclass(frozen=True)
class TapEvent:
    """One completed send or receive.

    Attributes:
        time: ``time.monotonic()`` when the call returned.
        direction: ``"send"`` or ``"recv"``.
        size: bytes moved (0 for a receive at end of stream).
        preview: the first bytes, at most the recorder's ``preview_size``.
        connection: the tapped connection's label (default its local -> peer address).
    """

    time: float
    direction: Direction
    size: int
    preview: bytes
    connection: str


class TapRecorder:
    """A thread-safe, append-only list of tap events."""

    def __init__(self, preview_size: int = DEFAULT_PREVIEW_SIZE) -> None:
        """Create an empty recorder.

        Args:
            preview_size: how many leading bytes of each transfer to keep.
        """
        if preview_size < 0:
            raise ValueError(f"preview_size must be 0 or more, got {preview_size}")
        self.preview_size = preview_size
        self._events: list[TapEvent] = []
        self._lock = threading.Lock()

    def record(self, direction: Direction, data: bytes | memoryview, connection: str, at: float | None = None) -> None:
        """Append an event for ``data`` moved in ``direction`` at ``at`` (default: now)."""
        when = time.monotonic() if at is None else at
        event = TapEvent(when, direction, len(data), bytes(data[: self.preview_size]), connection)
        with self._lock:
            self._events.append(event)

    def events(self) -> list[TapEvent]:
        """A copy of the events so far, in time order."""
        with self._lock:
            return sorted(self._events, key=lambda event: event.time)

    def clear(self) -> None:
        """Forget all events."""
        with self._lock:
            self._events.clear()


class TappedConnection(WrappedConnection):
    """Wraps a connection and records each successful send and receive."""

    def __init__(self, inner: Connection, recorder: TapRecorder, label: str | None = None) -> None:
        """Wrap ``inner``.

        Args:
            inner: the connection to watch.
            recorder: where events go.
            label: names this connection in events; default ``"local -> peer"``.
        """
        super().__init__(inner)
        self.recorder = recorder
        self.label = label if label is not None else f"{inner.local_address} -> {inner.peer_address}"

    def send(self, data: bytes, timeout: float | None = None) -> None:
        """Send through the inner connection, then record it at the time the call began.

        Stamping the start keeps a send before the peer's matching recv in the
        event order, even when the peer wakes before send() returns here.
        """
        started = time.monotonic()
        self.inner.send(data, timeout)
        self.recorder.record("send", data, self.label, started)

    def receive(self, max_bytes: int = DEFAULT_RECEIVE_SIZE, timeout: float | None = None) -> bytes:
        """Receive from the inner connection, then record it."""
        data = self.inner.receive(max_bytes, timeout)
        self.recorder.record("recv", data, self.label)
        return data

    def receive_into(self, buffer: memoryview, timeout: float | None = None) -> int:
        """Receive into ``buffer`` through the inner connection (in place where it can), then record it."""
        count = self.inner.receive_into(buffer, timeout)
        self.recorder.record("recv", buffer[:count], self.label)
        return count

