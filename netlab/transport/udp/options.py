"""Settings and counters of a UDP endpoint.

How this works: :class:`UdpOptions` is what ``listen``/``connect`` accept as
keyword arguments; it checks unknown names and, through the sequencing
settings it implies, every value, before a socket exists.
:class:`ListenerStatistics` counts what the socket loop saw besides the
connections' own counters.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from netlab.errors import UsageError
from netlab.proto.seq import RFC_FLOOR, HandshakeStatistics, SequencingConfig
from netlab.transport.impairment import Impairment

#: Bytes the kernel charges a socket buffer per datagram beyond its payload (skb truesize).
KERNEL_OVERHEAD = 1024


@dataclass(frozen=True)
class UdpOptions:
    """Settings of a UDP endpoint (listener or client).

    Attributes:
        payload_size: largest datagram in bytes, header included (1200 by
            default as QUIC; up to 65507 on loopback).
        rto_floor: lowest retransmission timeout (RFC 6298: 1 s; 0.02 for a
            fast, KCP-like recovery).
        initial_rto: retransmission timeout before the first RTT sample.
        retry_limit: retransmissions of one datagram by the loss timer (probes or
            timeouts; not those acknowledgements cause) before the connection fails.
        window: receive window in datagrams.
        impairment: seeded loss/duplication/reordering/delay/corruption, or None.
        socket_buffer_size: SO_RCVBUF and SO_SNDBUF in bytes.
        send_buffer_size: message bytes queued or in flight before ``send`` blocks.
        linger: seconds a closed connection keeps delivering its last data.
        idle_timeout: fail a connection that heard nothing for this long.
        keepalive_interval: PING after this long without sending.
        handshake_timeout: seconds a server waits for a client to confirm the
            handshake (a client's connect uses its own timeout instead).
        congestion: congestion control: ``none`` (only the receive window
            limits the flight), ``reno`` or ``cubic``.
        congestion_trace: keep each connection's window over time
            (``connection.congestion_trace``).
        loss_timer: ``pto`` (RFC 9002's probe timeout, the default) or ``rto``
            (RFC 6298's retransmission timeout), see docs/udp-sequencing.md.
        segment_offload: send runs of equal-sized datagrams with one system
            call (UDP GSO) and read them back with one (UDP GRO) where the
            kernel allows (Linux >= 4.18), each datagram still whole on the
            wire; off: one system call per datagram. Never with an impairment.
    """

    payload_size: int = 1200
    rto_floor: float = RFC_FLOOR
    initial_rto: float = RFC_FLOOR
    retry_limit: int = 10
    window: int = 256
    impairment: Impairment | None = None
    socket_buffer_size: int = 4 * 1024 * 1024
    send_buffer_size: int = 4 * 1024 * 1024
    linger: float = 10.0
    idle_timeout: float = 60.0
    keepalive_interval: float = 15.0
    handshake_timeout: float = 10.0
    congestion: str = "none"
    congestion_trace: bool = False
    loss_timer: str = "pto"
    segment_offload: bool = True

    def sequencing_config(self) -> SequencingConfig:
        """The state-machine settings these options imply."""
        return SequencingConfig(
            max_datagram_size=self.payload_size,
            # never advertise more than the socket buffer can hold, or the
            # kernel drops what the window allowed (each datagram costs its
            # size plus the kernel's per-packet overhead)
            receive_window=max(8, min(self.window, self.socket_buffer_size // (self.payload_size + KERNEL_OVERHEAD))),
            rto_floor=self.rto_floor,
            initial_rto=max(self.initial_rto, self.rto_floor),
            retry_limit=self.retry_limit,
            idle_timeout=self.idle_timeout,
            keepalive_interval=self.keepalive_interval,
            handshake_timeout=self.handshake_timeout,
            congestion=self.congestion,
            congestion_trace=self.congestion_trace,
            loss_timer=self.loss_timer,
        )

    @classmethod
    def build(cls, options: UdpOptions | None = None, **changes: Any) -> UdpOptions:
        """``options`` (or the defaults) with keyword changes; UsageError for unknown names."""
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise UsageError(
                f"unknown udp option(s) {', '.join(unknown)}: use {', '.join(sorted(known))}"
            )
        result = replace(options or cls(), **changes)
        result.sequencing_config()  # validates
        return result


@dataclass
class ListenerStatistics:
    """What a UDP endpoint's socket loop saw, besides the connections' own counters."""

    datagrams_received: int = 0
    bytes_received: int = 0
    oversized: int = 0
    icmp_errors: int = 0
    receive_errors: int = 0
    send_errors: int = 0
    send_buffer_full: int = 0
    #: segmented sends the kernel refused (the endpoint then sends each datagram alone)
    segmentation_refused: int = 0
    address_mismatches: int = 0
    unknown_connection: int = 0
    accept_queue_drops: int = 0
    half_open_drops: int = 0
    connections_accepted: int = 0
    handshake: HandshakeStatistics = field(default_factory=HandshakeStatistics)

    def snapshot(self) -> ListenerStatistics:
        """A copy, the handshake's counters too, that the socket loop's later counting leaves as it is."""
        return replace(self, handshake=replace(self.handshake))

    @property
    def garbage(self) -> int:
        """Datagrams for no connection that were not ours at all."""
        return self.handshake.malformed

    @property
    def checksum_failures(self) -> int:
        """Damaged datagrams for no known connection (connections count their own)."""
        return self.handshake.checksum_failures
