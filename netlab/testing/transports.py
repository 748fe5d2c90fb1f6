"""Every transport a test can run over, and how to get a fresh address on it.

How this works: :data:`TRANSPORT_CASES` names each transport with what a test
needs to know of it (does one send arrive as one receive, is it a socket);
:func:`unavailable_reason` says why one cannot run on this machine (IPv6 off);
:func:`listen_url` gives a fresh loopback or temp-dir address, skipping the
calling pytest test when the transport is unavailable; :class:`SinkConnection`
is a connection with no peer, for driving a handler or a writer in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

from netlab.transport.address import IPV6_SCHEMES, SCHEMES, ephemeral_url, ipv6_loopback_available
from netlab.transport.base import Connection


@dataclass(frozen=True)
class TransportCase:
    """One transport as the tests see it.

    Attributes:
        name: its scheme.
        preserves_boundaries: one send arrives as exactly one receive.
        is_socket: it has a file descriptor (memory has none).
    """

    name: str
    preserves_boundaries: bool
    is_socket: bool

    def make_url(self, directory: str, name: str = "netlab.sock") -> str:
        """A fresh address to listen on (a UNIX socket file ``name`` goes in ``directory``)."""
        return ephemeral_url(self.name, directory, name)


TRANSPORT_CASES: dict[str, TransportCase] = {
    name: TransportCase(name, preserves_boundaries=name in ("unix-seqpacket", "udp", "udp6"),
                        is_socket=name != "memory")
    for name in SCHEMES
}


def unavailable_reason(transport: str) -> str | None:
    """Why ``transport`` cannot run on this machine, or None when it can."""
    if transport in IPV6_SCHEMES and not ipv6_loopback_available():
        return f"{transport}: IPv6 loopback (::1) is not available on this machine"
    return None


def skip_unless_available(transport: str) -> None:
    """Skip the calling pytest test when ``transport`` cannot run here, saying why."""
    reason = unavailable_reason(transport)
    if reason is not None:
        import pytest  # only tests call this

        pytest.skip(reason)


def listen_url(transport: str, directory: object) -> str:
    """A fresh address for ``transport`` (skips the calling test when it is unavailable here)."""
    skip_unless_available(transport)
    return TRANSPORT_CASES[transport].make_url(str(directory))


class SinkConnection(Connection):
    """A connection with no peer: sends are counted (``sends``) and, with ``keep``, recorded (``sent``).

    Nothing can be received from it. ``limit`` makes it a message transport
    with that message size limit (as seqpacket or udp); None, a byte stream.
    """

    def __init__(self, limit: int | None = None, *, keep: bool = True) -> None:
        self.preserves_boundaries = limit is not None
        self.max_message_size = limit
        self.sends = 0
        self.sent: list[bytes] = []
        self._keep = keep

    def send(self, data: bytes, timeout: float | None = None) -> None:
        self.sends += 1
        if self._keep:
            self.sent.append(data)

    def receive(self, max_bytes: int = 65536, timeout: float | None = None) -> bytes:
        raise AssertionError("a SinkConnection has no peer to receive from")

    def shutdown_write(self) -> None:
        pass

    def close(self) -> None:
        pass

    def fileno(self) -> int:
        return -1
