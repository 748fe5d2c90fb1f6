"""A connection wrapper that cuts every send into tiny writes, to force partial reads.

How this works: like toxiproxy's "slicer" toxic, :class:`SlicingConnection`
splits each ``send`` into pieces of ``min_size``..``max_size`` bytes (sizes
drawn from the caller's seeded ``random.Random``, so a run can be repeated) and
sends them one by one with a short pause between them. The receiver then sees a
frame arrive in several ``receive`` calls, which is what the framing code must
survive. Receiving and closing pass straight through.
"""

from __future__ import annotations

import random
import time

from netlab.errors import WriteTimeout
from netlab.transport.base import DEFAULT_RECEIVE_SIZE, Connection, WrappedConnection


class SlicingConnection(WrappedConnection):
    """Wraps a connection; each send becomes several small writes with delays.

    Boundaries are not preserved: one send arrives as many receives even on
    seqpacket, so ``preserves_boundaries`` is False.
    """

    def __init__(
        self,
        inner: Connection,
        rng: random.Random,
        min_size: int = 1,
        max_size: int = 16,
        delay: float = 0.0005,
    ) -> None:
        """Wrap ``inner``.

        Args:
            inner: the connection to write through.
            rng: chooses each piece's size; seed it for repeatable runs.
            min_size: smallest piece in bytes (at least 1).
            max_size: largest piece in bytes (at least min_size).
            delay: seconds to pause between pieces (0 for none).
        """
        if min_size < 1 or max_size < min_size:
            raise ValueError(f"need 1 <= min_size <= max_size, got min_size={min_size}, max_size={max_size}")
        if delay < 0:
            raise ValueError(f"delay must be 0 or more seconds, got {delay}")
        super().__init__(inner)
        self.preserves_boundaries = False
        self._rng = rng
        self._min_size = min_size
        self._max_size = max_size
        self._delay = delay

    def send(self, data: bytes, timeout: float | None = None) -> None:
        """Send ``data`` as pieces of random size with pauses between them.

        Args:
            data: the bytes to send.
            timeout: total seconds for the whole send, pauses included.
        Raises:
            WriteTimeout when the pieces do not all go out in time; whatever the
            inner connection raises.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        view = memoryview(data)
        offset = 0
        while offset < len(view):
            size = self._rng.randint(self._min_size, self._max_size)
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise WriteTimeout(
                    f"slicing {len(view)} bytes to {self.peer_address} took longer than {timeout:g} s "
                    f"({offset} sent): raise the timeout or lower the delay"
                )
            self.inner.send(bytes(view[offset : offset + size]), remaining)
            offset += size
            if self._delay and offset < len(view):
                time.sleep(self._delay)

    def receive(self, max_bytes: int = DEFAULT_RECEIVE_SIZE, timeout: float | None = None) -> bytes:
        """Receive from the inner connection unchanged."""
        return self.inner.receive(max_bytes, timeout)

    def receive_into(self, buffer: memoryview, timeout: float | None = None) -> int:
        """Receive into ``buffer`` from the inner connection unchanged."""
        return self.inner.receive_into(buffer, timeout)
