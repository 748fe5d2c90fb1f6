"""Settings, counters and life-cycle states of a sequenced-UDP connection end.

How this works: :class:`SequencingConfig` is validated once when made (a
UsageError names the bad knob); the connection copies the fields it reads per
datagram. :class:`SequencingStatistics` are the counters one connection end
keeps, :class:`HandshakeStatistics` those of a server's acceptor.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass

from netlab.errors import UsageError
from netlab.proto.seq.congestion import CONTROLLERS
from netlab.proto.seq.rto import DEFAULT_MAXIMUM, RFC_FLOOR
from netlab.proto.seq.wire import HEADER_SIZE, MASK_64, MAX_DATAGRAM_SIZE

#: Every INITIAL is padded to exactly this many bytes (QUIC's minimum), so the
#: server's answer fits well inside the amplification budget; every end accepts
#: datagrams of at least this size during the handshake.
INITIAL_SIZE = 1200
#: Before address validation the server sends at most this many times the bytes received.
AMPLIFICATION_FACTOR = 3
#: Most SACK blocks one ACK carries (the lowest ranges first).
MAX_SACK_BLOCKS = 64
#: Longest wait between two transmissions of one handshake datagram (unless the
#: initial RTO is longer): the handshake backs off from the initial RTO up to
#: this, so a lossy path gets many tries within the handshake's bound.
HANDSHAKE_INTERVAL_CAP = 2.0
#: The loss-detection timers a configuration may name; the first is the default.
LOSS_TIMERS = ("pto", "rto")
#: The smallest datagram size a connection may be configured with.
SMALLEST_DATAGRAM = HEADER_SIZE + 64


def peer_datagram_limit(announced: int | None) -> int:
    """The largest datagram we may send a peer that announced ``announced`` in its handshake.

    A peer that announced nothing (None or 0) is taken to accept INITIAL_SIZE,
    the size every end must accept; an announcement is kept within
    SMALLEST_DATAGRAM..MAX_DATAGRAM_SIZE.
    """
    if not announced:
        return INITIAL_SIZE
    return max(SMALLEST_DATAGRAM, min(MAX_DATAGRAM_SIZE, announced))


class PeerViolation(Exception):
    """Raised inside the sequencing parts when the peer broke the protocol; the
    connection turns it into :class:`~netlab.errors.RemoteProtocolError` (and a RESET)."""


@dataclass(frozen=True)
class SequencingConfig:
    """Tunable knobs of one connection end; the defaults suit a real network.

    Attributes:
        max_datagram_size: largest datagram in bytes, header included (1200 like
            QUIC; up to 65507 on loopback). It is announced in the handshake
            as the largest datagram this end accepts; each end sends datagrams
            no larger than the smaller of its own and the peer's.
        receive_window: datagrams we accept beyond the cumulative point; bounds
            the reorder buffer and the unread messages.
        rto_floor: lowest retransmission timeout in seconds (RFC 6298: 1 s;
            :data:`FAST_FLOOR` is 20 ms).
        initial_rto: timeout before the first round-trip sample.
        max_rto: cap of the exponential backoff.
        retry_limit: retransmissions of one datagram by the loss timer (probes or
            timeouts; not those acknowledgements cause) before the connection fails.
        ack_delay: seconds a pure ACK may wait for more data or a reply to ride on.
        ack_every: acknowledge at once after this many unacknowledged datagrams
            (0: automatic, max(2, receive_window // 4)).
        keepalive_interval: send a PING after this long without sending.
        idle_timeout: fail the connection after this long without hearing the peer.
        max_message_size: largest message in bytes, either direction.
        initial_sequence: first sequence number we use (None: random below 2**63).
        handshake_timeout: seconds the handshake may take in all (the client's
            INITIAL and COOKIE_ECHO, the server's ACCEPT until the client
            confirms it) before the connection fails; None: ``1 + retry_limit``
            transmissions of each handshake datagram instead.
        congestion: the congestion controller: ``none`` (only the receive
            window limits the flight), ``reno`` or ``cubic``
            (:mod:`netlab.proto.seq.congestion`).
        congestion_trace: keep a trace of the controller's window over time.
        loss_timer: what finds losses no acknowledgement reveals: ``pto``
            (RFC 9002's probe timeout: probes, no loss declared, the window
            kept) or ``rto`` (RFC 6298's retransmission timeout: datagrams
            declared lost, the window collapsed), see :data:`LOSS_TIMERS`.
    """

    max_datagram_size: int = 1200
    receive_window: int = 256
    rto_floor: float = RFC_FLOOR
    initial_rto: float = RFC_FLOOR
    max_rto: float = DEFAULT_MAXIMUM
    retry_limit: int = 10
    ack_delay: float = 0.005
    ack_every: int = 0
    keepalive_interval: float = 15.0
    idle_timeout: float = 60.0
    max_message_size: int = 16 * 1024 * 1024
    initial_sequence: int | None = None
    handshake_timeout: float | None = None
    congestion: str = "none"
    congestion_trace: bool = False
    loss_timer: str = "pto"

    def __post_init__(self) -> None:
        if self.loss_timer not in LOSS_TIMERS:
            raise UsageError(f"unknown loss timer {self.loss_timer!r}: use one of {', '.join(LOSS_TIMERS)}")
        if self.congestion not in CONTROLLERS:
            raise UsageError(
                f"unknown congestion control {self.congestion!r}: use one of {', '.join(CONTROLLERS)}"
            )
        if not SMALLEST_DATAGRAM <= self.max_datagram_size <= MAX_DATAGRAM_SIZE:
            raise UsageError(
                f"datagram size {self.max_datagram_size} is out of range: use {SMALLEST_DATAGRAM}-{MAX_DATAGRAM_SIZE}"
            )
        if not 1 <= self.receive_window < 1 << 31:
            raise UsageError(
                f"receive window {self.receive_window} is out of range: use 1 or more datagrams"
            )
        if (
            self.rto_floor <= 0
            or self.initial_rto <= 0
            or self.max_rto < self.rto_floor
        ):
            raise UsageError(
                "RTO floor and initial RTO must be positive and the RTO cap at least the floor"
            )
        if self.retry_limit < 0:
            raise UsageError(
                f"retry limit {self.retry_limit} is negative: use 0 or more"
            )
        if self.ack_delay < 0 or self.ack_every < 0:
            raise UsageError("ack delay and ack frequency must not be negative")
        if self.keepalive_interval <= 0 or self.idle_timeout <= 0:
            raise UsageError("keepalive interval and idle timeout must be positive")
        if self.handshake_timeout is not None and self.handshake_timeout <= 0:
            raise UsageError(f"handshake timeout {self.handshake_timeout:g} s must be positive")
        if (
            self.initial_sequence is not None
            and not 0 <= self.initial_sequence <= MASK_64
        ):
            raise UsageError(
                f"initial sequence {self.initial_sequence} does not fit in 64 bits"
            )

    @property
    def fragment_size(self) -> int:
        """Payload bytes per DATA datagram."""
        return self.max_datagram_size - HEADER_SIZE

    @property
    def acknowledge_every(self) -> int:
        """The effective ``ack_every``."""
        return self.ack_every or max(2, self.receive_window // 4)

    def choose_initial_sequence(self) -> int:
        """The configured initial sequence number, or a random one below 2**63."""
        return (
            self.initial_sequence
            if self.initial_sequence is not None
            else secrets.randbits(63)
        )


@dataclass
class SequencingStatistics:
    """Counters of one connection end, in the spirit of iperf3's UDP report.

    ``bytes_*`` count whole datagrams (headers included); ``payload_bytes_*``
    count message bytes only. ``congestion_window`` is None under ``none``
    (no limit); ``slow_start_threshold`` is None before the first loss;
    ``congestion_events`` counts window reductions (losses once per
    recovery, RFC 6298 timeouts and RFC 9002 persistent congestion);
    ``retransmission_timeouts`` counts loss-timer expiries that resent data
    (retransmission timeouts under ``loss_timer="rto"``, probe timeouts
    under ``"pto"``).
    """

    datagrams_sent: int = 0
    datagrams_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    data_datagrams_sent: int = 0
    acks_sent: int = 0
    messages_sent: int = 0
    messages_delivered: int = 0
    payload_bytes_sent: int = 0
    payload_bytes_delivered: int = 0
    retransmits_timeout: int = 0
    retransmits_fast: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    out_of_window: int = 0
    checksum_failures: int = 0
    malformed: int = 0
    srtt: float | None = None
    rttvar: float | None = None
    rto: float = RFC_FLOOR
    congestion: str = "none"
    congestion_window: int | None = None
    slow_start_threshold: int | None = None
    bytes_in_flight: int = 0
    congestion_events: int = 0
    retransmission_timeouts: int = 0
    started_at: float = 0.0
    updated_at: float = 0.0

    @property
    def retransmits(self) -> int:
        """All retransmissions, by timeout and fast."""
        return self.retransmits_timeout + self.retransmits_fast

    @property
    def elapsed(self) -> float:
        """Seconds between the connection's start and this snapshot."""
        return self.updated_at - self.started_at

    @property
    def goodput(self) -> float:
        """Message bytes delivered to the application per second."""
        return self.payload_bytes_delivered / self.elapsed if self.elapsed > 0 else 0.0


@dataclass
class HandshakeStatistics:
    """What a server's stateless acceptor saw before any connection existed."""

    initials: int = 0
    retries_sent: int = 0
    cookies_accepted: int = 0
    cookies_rejected: int = 0
    resets_sent: int = 0
    amplification_drops: int = 0
    checksum_failures: int = 0
    malformed: int = 0
    ignored: int = 0
    replays_refused: int = 0
    replay_memory_full: int = 0
    bytes_received: int = 0
    bytes_sent: int = 0


class ConnectionState(enum.Enum):
    """Where a connection end is in its life."""

    CONNECTING = "connecting"
    ESTABLISHED = "established"
    CLOSED = "closed"
    FAILED = "failed"
