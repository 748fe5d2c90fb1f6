"""Sans-IO sequencing for UDP: reliable, ordered, exactly-once messages over datagrams.

How this works: a :class:`SequencingConnection` is one end of one connection.
It never touches a socket or a clock: the caller feeds it datagrams with
``receive_datagram(data, now)``, asks it to ``send_message``, calls
``handle_timeout(now)`` when ``next_deadline()`` has passed, and after any of
these sends whatever ``datagrams_to_send()`` returns. Whole messages come out
of ``next_message()``. A server keeps one stateless :class:`SequencingAcceptor`
for datagrams of unknown connections; it creates a connection only after the
client has echoed an address-validation cookie (see :mod:`seq_cookie`).

The wire format (36-byte header, SACK blocks, CRC32) is documented byte by byte
in :mod:`netlab.proto.seq_wire`. The mechanisms, each in one place below:

- Handshake: INITIAL (padded to 1200 bytes) -> RETRY(cookie) -> COOKIE_ECHO ->
  ACCEPT. Before the cookie comes back, the server answers each datagram with
  at most 3x its size (QUIC's anti-amplification rule) and keeps no state.
- Sequence numbers count datagrams, are full integers inside and 64-bit on the
  wire (serial arithmetic across the wrap); every DATA datagram uses one, and so
  does the FIN that ends a direction.
- The receiver acknowledges cumulatively (``acknowledgement``) and selectively
  (SACK blocks of what it holds beyond), delays pure ACKs (every ``ack_every``
  datagrams or after ``ack_delay``) and piggybacks them on its own DATA; gaps,
  duplicates, FIN and PING are acknowledged at once. It advertises a window
  that bounds its reorder buffer and the messages the application has not read.
- The sender keeps unacknowledged datagrams in send-time order, so the
  retransmission timer (RFC 6298, :mod:`seq_rto`) only looks at the oldest.
  A datagram is retransmitted early (fast retransmit) after three duplicate
  ACKs or once a datagram three numbers above it has been acknowledged; a
  retransmission lost again is resent once a datagram sent after it has been
  acknowledged (RACK's rule). A datagram sent more than ``1 + retry_limit``
  times fails the connection.
- Messages larger than a datagram are split into fragments; the last one has
  MESSAGE_END. Delivery is in order and exactly once: numbers below the
  cumulative point are duplicates forever, and the payload digests of recent
  ones catch a replay that reuses a number with other bytes (a protocol error).
- Keepalive PINGs after ``keepalive_interval`` of sending nothing; silence for
  ``idle_timeout`` fails the connection. FIN closes one direction (like TCP);
  RESET aborts both.
"""

from __future__ import annotations

import enum
import secrets
from collections import OrderedDict, deque
from collections.abc import Hashable
from dataclasses import dataclass, replace

from netlab.errors import (
    BrokenError,
    ClosedError,
    ConnectionRefused,
    ConnectTimeout,
    LocalProtocolError,
    NetlabError,
    RemoteProtocolError,
    UsageError,
    WriteTimeout,
)
from netlab.proto.seq_cookie import COOKIE_SIZE, CookieIssuer
from netlab.proto.seq_ranges import RangeSet
from netlab.proto.seq_rto import (
    DEFAULT_MAXIMUM,
    FAST_FLOOR,
    RFC_FLOOR,
    RetransmissionTimer,
)
from netlab.proto.seq_wire import (
    CHECKSUM_OFFSET,
    FLAG_ACK_NOW,
    FLAG_FIN,
    FLAG_MESSAGE_END,
    HALF_64,
    HEAD,
    HEADER,
    HEADER_SIZE,
    MASK_64,
    MAX_DATAGRAM_SIZE,
    SACK_BLOCK,
    SACK_BLOCK_SIZE,
    VERSION,
    Datagram,
    DatagramType,
    Header,
    MalformedDatagram,
    crc32,
    decode_header,
    encode,
    pack_sack_blocks,
)

__all__ = [
    "AMPLIFICATION_FACTOR",
    "FAST_FLOOR",
    "INITIAL_SIZE",
    "RFC_FLOOR",
    "ConnectionState",
    "HandshakeStatistics",
    "SequencingAcceptor",
    "SequencingConfig",
    "SequencingConnection",
    "SequencingStatistics",
]

#: Every INITIAL is padded to this many bytes (QUIC's minimum), so the server's
#: answer fits well inside the amplification budget.
INITIAL_SIZE = 1200
#: Before address validation the server sends at most this many times the bytes received.
AMPLIFICATION_FACTOR = 3
#: Most SACK blocks one ACK carries (the lowest ranges first).
MAX_SACK_BLOCKS = 64
#: Datagram types as plain ints for the per-datagram paths (an IntEnum member
#: lookup costs more than the comparison).
_DATA = int(DatagramType.DATA)
_ACK = int(DatagramType.ACK)
_PING = int(DatagramType.PING)
_RESET = int(DatagramType.RESET)
_COOKIE_ECHO = int(DatagramType.COOKIE_ECHO)
_RETRY = int(DatagramType.RETRY)
_ACCEPT = int(DatagramType.ACCEPT)
_FIRST_TYPE = int(DatagramType.INITIAL)
_LAST_TYPE = int(DatagramType.RESET)
_WRAP = 1 << 64
#: Payloads up to this size are copied out of a received datagram (cheaper than
#: a view for small ones); larger fragments of a longer message stay views into
#: the datagram until the message is joined, so they are copied only once.
_COPY_LIMIT = 2048
_unpack_header = HEADER.unpack_from
_pack_head = HEAD.pack
_crc32 = crc32
#: Datagrams of a direction that a duplicate-with-other-bytes check remembers beyond the window.
_SMALLEST_DATAGRAM = HEADER_SIZE + 64


@dataclass(frozen=True)
class SequencingConfig:
    """Tunable knobs of one connection end; the defaults suit a real network.

    Attributes:
        max_datagram_size: largest datagram in bytes, header included (1200 like
            QUIC; up to 65507 on loopback).
        receive_window: datagrams we accept beyond the cumulative point; bounds
            the reorder buffer and the unread messages.
        rto_floor: lowest retransmission timeout in seconds (RFC 6298: 1 s;
            :data:`FAST_FLOOR` is 20 ms).
        initial_rto: timeout before the first round-trip sample.
        max_rto: cap of the exponential backoff.
        retry_limit: retransmissions of one datagram before the connection fails.
        ack_delay: seconds a pure ACK may wait for more data or a reply to ride on.
        ack_every: acknowledge at once after this many unacknowledged datagrams
            (0: automatic, max(2, receive_window // 4)).
        keepalive_interval: send a PING after this long without sending.
        idle_timeout: fail the connection after this long without hearing the peer.
        max_message_size: largest message in bytes, either direction.
        initial_sequence: first sequence number we use (None: random below 2**63).
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

    def __post_init__(self) -> None:
        if not _SMALLEST_DATAGRAM <= self.max_datagram_size <= MAX_DATAGRAM_SIZE:
            raise UsageError(
                f"datagram size {self.max_datagram_size} is out of range: use {_SMALLEST_DATAGRAM}-{MAX_DATAGRAM_SIZE}"
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
    count message bytes only.
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
    bytes_received: int = 0
    bytes_sent: int = 0


class ConnectionState(enum.Enum):
    """Where a connection end is in its life."""

    CONNECTING = "connecting"
    ESTABLISHED = "established"
    CLOSED = "closed"
    FAILED = "failed"


_CONNECTING = ConnectionState.CONNECTING
_ESTABLISHED = ConnectionState.ESTABLISHED
_FAILED = ConnectionState.FAILED


class _Sent:
    """One DATA datagram waiting for its acknowledgement."""

    __slots__ = (
        "deadline",
        "flags",
        "payload",
        "payload_checksum",
        "sent_at",
        "transmissions",
    )

    def __init__(
        self,
        payload: bytes | memoryview,
        flags: int,
        payload_checksum: int,
        now: float,
        rto: float,
    ) -> None:
        self.payload = payload
        self.flags = flags
        self.payload_checksum = payload_checksum
        self.sent_at = now
        self.deadline = now + rto
        self.transmissions = 1


class SequencingConnection:
    """One end of a sequenced connection (sans-IO: bytes and time in, bytes out)."""

    def __init__(
        self,
        config: SequencingConfig,
        connection_id: int,
        now: float,
        *,
        is_client: bool,
    ) -> None:
        """Use :meth:`connect` (client) or :class:`SequencingAcceptor` (server) instead."""
        self.config = config
        self.connection_id = connection_id
        self.is_client = is_client
        self.state = ConnectionState.CONNECTING
        self.error: NetlabError | None = None
        self._timer = RetransmissionTimer(
            config.rto_floor, config.initial_rto, config.max_rto
        )
        self._stats = SequencingStatistics(
            rto=self._timer.rto, started_at=now, updated_at=now
        )
        self._outbox: list[Datagram] = []
        self._fragment_size = config.fragment_size
        self._ack_every = config.acknowledge_every
        # Copies of config fields read for every datagram (an attribute less each).
        self._receive_window = config.receive_window
        self._ack_delay = config.ack_delay
        self._max_message_size = config.max_message_size
        self._idle_timeout = config.idle_timeout
        self._keepalive_interval = config.keepalive_interval
        # Sending side.
        self._initial_sequence = config.choose_initial_sequence()
        self._next_sequence = self._initial_sequence
        self._send_base = self._initial_sequence
        self._peer_edge = self._initial_sequence
        self._pending: deque[tuple[bytes | memoryview, int]] = deque()
        self._pending_bytes = 0
        self._outstanding: OrderedDict[int, _Sent] = OrderedDict()
        self._resent_outstanding = 0  # outstanding datagrams sent more than once
        self._sacked = RangeSet()
        self._fast_scan = self._initial_sequence
        self._duplicate_acks = 0
        self._fin_queued = False
        self._fin_sequence: int | None = None
        self._persist_deadline: float | None = None
        # Receiving side.
        self._receive_next = 0
        self._advertised_edge = 0
        self._reorder: dict[int, tuple[bytes | memoryview, int, int]] = {}
        self._received_ranges = RangeSet()
        self._delivered_checksums: dict[int, int] = {}
        self._partial: list[bytes | memoryview] = []
        self._partial_bytes = 0
        self._messages: deque[tuple[bytes, int]] = deque()
        self._queued_datagrams = 0
        self._peer_finished = False
        self._application_closed = False
        self._unacknowledged_received = 0
        self._ack_now = False
        self._ack_deadline: float | None = None
        # Liveness and handshake.
        self._last_sent = now
        self._last_received = now
        self._cookie = b""
        self._handshake_deadline: float | None = None
        self._handshake_transmissions = 0
        self._handshake_sent_at = now
        self._finished_at: float | None = None
        self._lingered = False

    # ----------------------------------------------------------------- creation

    @classmethod
    def connect(
        cls, config: SequencingConfig, now: float, connection_id: int | None = None
    ) -> SequencingConnection:
        """Start a client connection; its INITIAL is waiting in ``datagrams_to_send()``.

        Args:
            config: the client's settings.
            now: the current time in seconds (any monotonic clock).
            connection_id: 64-bit id; random when None.
        Returns:
            A connection in state CONNECTING.
        """
        identifier = (
            connection_id if connection_id is not None else secrets.randbits(64)
        )
        connection = cls(config, identifier, now, is_client=True)
        connection._send_handshake(now)
        return connection

    @classmethod
    def _accepted(
        cls, config: SequencingConfig, header: Header, now: float
    ) -> SequencingConnection:
        connection = cls(config, header.connection_id, now, is_client=False)
        connection._establish(header.sequence, header.window, now)
        connection._send_accept(now)
        return connection

    # -------------------------------------------------------------- public API

    def send_message(self, message: bytes, now: float) -> None:
        """Queue one message; it goes out as window space allows.

        Args:
            message: the bytes; delivered as exactly one message.
            now: current time.
        Raises:
            LocalProtocolError: larger than ``max_message_size``.
            ClosedError: after shutdown_write/close/reset; the stored error after a failure.
        """
        if self.error is not None:
            raise self.error
        if self._fin_queued:
            raise ClosedError(
                "this connection's sending side is closed: open a new connection to send more"
            )
        size = len(message)
        if size > self._max_message_size:
            raise LocalProtocolError(
                f"message of {size} bytes exceeds the {self._max_message_size}-byte limit: split it"
            )
        if type(message) is not bytes:
            message = bytes(message)
        chunk = self._fragment_size
        if size <= chunk:
            self._pending.append((message, FLAG_MESSAGE_END))
        else:
            view = memoryview(message)
            last = size - chunk
            for offset in range(0, size, chunk):
                self._pending.append(
                    (
                        view[offset : offset + chunk],
                        FLAG_MESSAGE_END if offset >= last else 0,
                    )
                )
        self._pending_bytes += size
        self._stats.messages_sent += 1
        if self.state is _ESTABLISHED:
            self._transmit_pending(now)

    def next_message(self) -> bytes | None:
        """The next whole message, or None when none is ready (see ``at_end``)."""
        if not self._messages:
            return None
        message, fragments = self._messages.popleft()
        self._queued_datagrams -= fragments
        capacity = self.config.receive_window
        edge = self._receive_next + capacity - self._queued_datagrams
        if edge - self._advertised_edge >= max(1, capacity // 4):
            self._ack_now = True
        return message

    @property
    def has_message(self) -> bool:
        """True when ``next_message()`` would return a message."""
        return bool(self._messages)

    @property
    def at_end(self) -> bool:
        """True when the peer finished sending and every message has been read."""
        return self._peer_finished and not self._messages

    @property
    def is_established(self) -> bool:
        """True once the handshake completed (also while closing)."""
        return (
            self.state is ConnectionState.ESTABLISHED
            or self.state is ConnectionState.CLOSED
        )

    @property
    def send_backlog(self) -> int:
        """Message bytes queued or in flight (not yet acknowledged)."""
        return self._pending_bytes

    @property
    def all_acknowledged(self) -> bool:
        """True when nothing we sent (FIN included) awaits acknowledgement."""
        return not self._pending and not self._outstanding

    def receive_datagram(
        self, data: bytes | bytearray | memoryview, now: float
    ) -> None:
        """Feed one datagram from the peer.

        The connection keeps ``bytes`` (or views into them: they are
        immutable) and copies any other buffer, which the caller may then reuse.

        Damaged or foreign datagrams are counted and dropped.

        Args:
            data: the datagram exactly as received.
            now: current time.
        Raises:
            RemoteProtocolError: the peer broke the protocol (the connection fails).
        """
        if type(data) is not bytes:
            data = bytes(data)
        stats = self._stats
        size = len(data)
        stats.datagrams_received += 1
        stats.bytes_received += size
        # The checks of seq_wire.decode_header, inlined: this runs for every datagram.
        if size < HEADER_SIZE:
            stats.malformed += 1
            return
        (
            kind,
            flags,
            sack_count,
            version,
            connection_id,
            wire_sequence,
            wire_acknowledgement,
            window,
            checksum,
        ) = _unpack_header(data)
        payload_offset = HEADER_SIZE + sack_count * SACK_BLOCK_SIZE
        if (
            version != VERSION
            or not _FIRST_TYPE <= kind <= _LAST_TYPE
            or payload_offset > size
        ):
            stats.malformed += 1
            return
        payload: bytes | memoryview
        if size - payload_offset <= _COPY_LIMIT or (
            flags & FLAG_MESSAGE_END and not self._partial
        ):
            payload = data[payload_offset:]
        else:
            payload = memoryview(data)[payload_offset:]
        payload_checksum = _crc32(payload)
        computed = _crc32(data[:CHECKSUM_OFFSET], payload_checksum)
        if sack_count:
            computed = _crc32(data[HEADER_SIZE:payload_offset], computed)
        if computed != checksum:
            stats.checksum_failures += 1
            return
        if connection_id != self.connection_id:
            stats.malformed += 1
            return
        state = self.state
        if state is _FAILED:
            return
        self._last_received = now
        if kind == _DATA or kind == _ACK or kind == _PING:
            if state is _CONNECTING:
                return
            self._process_acknowledgement(
                kind,
                wire_acknowledgement,
                window,
                tuple(SACK_BLOCK.iter_unpack(data[HEADER_SIZE:payload_offset]))
                if sack_count
                else (),
                now,
            )
            if kind == _DATA:
                self._process_data(wire_sequence, flags, payload_checksum, payload, now)
            elif kind == _PING:
                self._ack_now = True
        elif kind == _RESET:
            self._process_reset(now)
        elif state is _CONNECTING and self.is_client:
            self._process_handshake_reply(
                kind, wire_sequence, wire_acknowledgement, window, payload, now
            )
        elif kind == _COOKIE_ECHO and not self.is_client:
            # Our ACCEPT was lost and the client repeats its echo.
            self._emit_control(DatagramType.ACCEPT, 0, self._initial_sequence, now)
        if (
            self._handshake_deadline is not None
            and not self.is_client
            and kind >= _DATA
        ):
            self._handshake_deadline = None  # The client heard our ACCEPT.
        if self._peer_finished and self.state is _ESTABLISHED:
            self._check_finished(now)

    def handle_timeout(self, now: float) -> None:
        """Run every timer that is due: retransmission, delayed ACK, keepalive, idle.

        Args:
            now: current time; call when ``now >= next_deadline()``.
        """
        state = self.state
        if state is ConnectionState.FAILED:
            return
        if self._finished_at is not None:
            if now >= self._linger_end():
                self._lingered = True
            if self._ack_deadline is not None and now >= self._ack_deadline:
                self._ack_now = True
            return
        if (
            not self._outstanding
            and now >= self._last_received + self.config.idle_timeout
        ):
            self._fail(
                BrokenError(
                    f"heard nothing from the peer for {self.config.idle_timeout:g} s: it vanished; reconnect"
                ),
                now,
            )
            return
        if state is ConnectionState.CONNECTING:
            if self._handshake_deadline is not None and now >= self._handshake_deadline:
                if self._handshake_transmissions > self.config.retry_limit:
                    self._fail(
                        ConnectTimeout(
                            f"no handshake answer after {self._handshake_transmissions} attempts: "
                            "is a netlab udp server listening there?"
                        ),
                        now,
                    )
                    return
                self._timer.back_off()
                self._send_handshake(now)
            return
        if self._handshake_deadline is not None and now >= self._handshake_deadline:
            if self._handshake_transmissions > self.config.retry_limit:
                self._fail(
                    BrokenError(
                        f"the client never confirmed the handshake after {self._handshake_transmissions} "
                        "transmissions: it is unreachable or gone"
                    ),
                    now,
                )
                return
            self._timer.back_off()
            self._send_accept(now)
        outstanding = self._outstanding
        backed_off = False
        while outstanding:
            sequence, record = next(iter(outstanding.items()))
            if record.deadline > now:
                break
            if record.transmissions > self.config.retry_limit:
                self._fail(
                    WriteTimeout(
                        f"the peer did not acknowledge datagram {sequence & MASK_64} after "
                        f"{record.transmissions} transmissions: it is unreachable or gone; reconnect"
                    ),
                    now,
                )
                return
            if not backed_off:
                self._timer.back_off()
                backed_off = True
            self._retransmit(sequence, record, now)
            self._stats.retransmits_timeout += 1
        if self._persist_deadline is not None and now >= self._persist_deadline:
            self._emit_control(
                DatagramType.PING, FLAG_ACK_NOW, self._next_sequence, now
            )
            self._persist_deadline = now + self._timer.rto
        if self._ack_deadline is not None and now >= self._ack_deadline:
            self._ack_now = True
        if (
            state is ConnectionState.ESTABLISHED
            and now >= self._last_sent + self.config.keepalive_interval
            and not self._ack_now
        ):
            self._emit_control(
                DatagramType.PING, FLAG_ACK_NOW, self._next_sequence, now
            )

    def next_deadline(self) -> float | None:
        """The earliest time ``handle_timeout`` has work to do (None: no timer runs)."""
        state = self.state
        if state is _FAILED:
            return None
        if self._finished_at is not None:
            return None if self._lingered else self._linger_end()
        deadline = self._last_received + self._idle_timeout
        if state is _CONNECTING:
            if (
                self._handshake_deadline is not None
                and self._handshake_deadline < deadline
            ):
                deadline = self._handshake_deadline
            return deadline
        for oldest in self._outstanding.values():
            # While data is in flight the retry limit, not the idle timeout, decides.
            deadline = oldest.deadline
            break
        if self._handshake_deadline is not None and self._handshake_deadline < deadline:
            deadline = self._handshake_deadline
        if self._ack_now:
            return self._last_received
        if self._ack_deadline is not None and self._ack_deadline < deadline:
            deadline = self._ack_deadline
        if self._persist_deadline is not None and self._persist_deadline < deadline:
            deadline = self._persist_deadline
        if state is _ESTABLISHED:
            keepalive = self._last_sent + self._keepalive_interval
            if keepalive < deadline:
                deadline = keepalive
        return deadline

    def datagrams_to_send(self) -> list[Datagram]:
        """Take the datagrams to send now, each ``(header, payload)`` for ``sendmsg``."""
        if self._ack_now and self.state is not ConnectionState.FAILED:
            self._emit_ack()
        outbox = self._outbox
        if outbox:
            self._outbox = []
        return outbox

    def shutdown_write(self, now: float) -> None:
        """Send FIN after everything queued: the peer reads end of stream.

        Raises:
            the stored error after a failure.
        """
        if self.error is not None:
            raise self.error
        if self._fin_queued:
            return
        self._fin_queued = True
        self._pending.append((b"", FLAG_FIN))
        if self.state is _ESTABLISHED:
            self._transmit_pending(now)

    def close(self, now: float) -> None:
        """Stop both directions: FIN after queued data; new incoming data is answered with RESET."""
        if self.error is not None:
            return
        self._application_closed = True
        self._messages.clear()
        self._queued_datagrams = 0
        self.shutdown_write(now)

    def reset(self, now: float) -> None:
        """Abort at once: tell the peer with RESET and fail locally with ClosedError."""
        if self.error is not None:
            return
        if self.state is not ConnectionState.CONNECTING or self._cookie:
            self._emit_control(DatagramType.RESET, 0, self._next_sequence, now)
        self._fail(ClosedError("this connection was reset by us: open a new one"), now)

    def fail(self, error: NetlabError, now: float) -> None:
        """Fail for a reason learned outside the protocol (e.g. ICMP port unreachable)."""
        if self.error is None:
            self._fail(error, now)

    def is_done(self) -> bool:
        """True when the owner may forget this connection (failed, or closed and lingered)."""
        if self.state is ConnectionState.FAILED:
            return not self._outbox
        return self._lingered

    def _linger_end(self) -> float:
        # Like TCP's TIME_WAIT: stay long enough to acknowledge the peer's
        # retransmitted FIN if our last ACK was lost (the peer's timer may be
        # backed off, so several of our RTOs and at least a second).
        assert self._finished_at is not None
        return self._finished_at + min(
            self.config.max_rto, max(1.0, 4 * self._timer.rto)
        )

    def statistics(self, now: float) -> SequencingStatistics:
        """A snapshot of the counters and the current SRTT, RTTVAR and RTO."""
        timer = self._timer
        return replace(
            self._stats,
            srtt=timer.srtt,
            rttvar=timer.rttvar,
            rto=timer.rto,
            updated_at=now,
        )

    @property
    def timer(self) -> RetransmissionTimer:
        """The RFC 6298 timer (read-only use: SRTT, RTTVAR, RTO)."""
        return self._timer

    # --------------------------------------------------------------- handshake

    def _send_handshake(self, now: float) -> None:
        if self._cookie:
            self._emit_control(
                DatagramType.COOKIE_ECHO, 0, self._initial_sequence, now, self._cookie
            )
        else:
            padding = bytes(INITIAL_SIZE - HEADER_SIZE)
            self._emit_control(
                DatagramType.INITIAL, 0, self._initial_sequence, now, padding
            )
        self._handshake_transmissions += 1
        self._handshake_sent_at = now
        self._handshake_deadline = now + self._timer.rto

    def _send_accept(self, now: float) -> None:
        """Server: (re)send ACCEPT until the client shows it arrived."""
        self._emit_control(DatagramType.ACCEPT, 0, self._initial_sequence, now)
        self._handshake_transmissions += 1
        self._handshake_deadline = now + self._timer.rto

    def _process_handshake_reply(
        self,
        kind: int,
        wire_sequence: int,
        wire_acknowledgement: int,
        window: int,
        payload: bytes | memoryview,
        now: float,
    ) -> None:
        if kind == _RETRY:
            cookie = bytes(payload)
            if len(cookie) != COOKIE_SIZE or cookie == self._cookie:
                return
            self._cookie = cookie
            self._handshake_transmissions = 0
            self._send_handshake(now)
        elif kind == _ACCEPT:
            if wire_acknowledgement != self._initial_sequence & MASK_64:
                return
            self._handshake_deadline = None
            if self._handshake_transmissions == 1:
                # The echo was sent once: a valid round-trip sample (Karn's rule).
                self._timer.add_sample(now - self._handshake_sent_at)
            self._establish(wire_sequence, window, now)
            self._ack_now = True  # Confirms the handshake unless data carries it first.
            self._transmit_pending(now)

    def _establish(
        self, peer_initial_sequence: int, peer_window: int, now: float
    ) -> None:
        self.state = ConnectionState.ESTABLISHED
        self._receive_next = peer_initial_sequence
        self._advertised_edge = peer_initial_sequence
        self._delivered_checksums = {}
        self._peer_edge = self._send_base + peer_window
        self._last_received = now

    # ------------------------------------------------------------- receiving

    def _process_data(
        self,
        wire_sequence: int,
        flags: int,
        checksum: int,
        payload: bytes | memoryview,
        now: float,
    ) -> None:
        stats = self._stats
        receive_next = self._receive_next
        # Serial arithmetic (seq_wire.unwrap_sequence), inlined.
        difference = (wire_sequence - receive_next) & MASK_64
        if difference >= HALF_64:
            stats.duplicates += 1
            remembered = self._delivered_checksums.get(receive_next + difference - _WRAP)
            if remembered is not None and remembered != checksum:
                self._violation(
                    f"datagram {wire_sequence} was repeated with different bytes", now
                )
            self._ack_now = True
            return
        edge = receive_next + self._receive_window - self._queued_datagrams
        if edge < self._advertised_edge:
            edge = self._advertised_edge
        if difference >= edge - receive_next:
            stats.out_of_window += 1
            self._ack_now = True
            return
        if self._application_closed and not flags & FLAG_FIN:
            # Nobody will read this: abort like TCP does on data after close().
            self._fail(ClosedError("this connection is closed"), now, notify_peer=True)
            return
        if difference:
            sequence = receive_next + difference
            reorder = self._reorder
            held = reorder.get(sequence)
            if held is not None:
                stats.duplicates += 1
                if held[1] != checksum or held[2] != flags & (
                    FLAG_MESSAGE_END | FLAG_FIN
                ):
                    self._violation(
                        f"datagram {wire_sequence} was repeated with different bytes",
                        now,
                    )
            else:
                stats.out_of_order += 1
                reorder[sequence] = (
                    payload,
                    checksum,
                    flags & (FLAG_MESSAGE_END | FLAG_FIN),
                )
                self._received_ranges.add(sequence, sequence + 1)
            self._ack_now = True
            return
        # In order: deliver it and whatever it unblocks from the reorder buffer.
        self._accept_in_order(payload, checksum, flags, now)
        reorder = self._reorder
        if reorder:
            while self._receive_next in reorder:
                payload, held_checksum, held_flags = reorder.pop(self._receive_next)
                self._accept_in_order(payload, held_checksum, held_flags, now)
            self._received_ranges.discard_below(self._receive_next)
            self._ack_now = True
        self._unacknowledged_received += 1
        if (
            flags & (FLAG_ACK_NOW | FLAG_FIN)
            or self._unacknowledged_received >= self._ack_every
        ):
            self._ack_now = True
        elif self._ack_deadline is None:
            self._ack_deadline = now + self._ack_delay

    def _accept_in_order(
        self, payload: bytes | memoryview, checksum: int, flags: int, now: float
    ) -> None:
        sequence = self._receive_next
        self._receive_next = sequence + 1
        checksums = self._delivered_checksums
        checksums[sequence] = checksum
        checksums.pop(sequence - self._receive_window, None)
        if flags & FLAG_FIN:
            self._peer_finished = True
            self._ack_now = True
            return
        partial = self._partial
        if flags & FLAG_MESSAGE_END and not partial:
            # The whole message in one datagram (the common case of small messages).
            message = payload if type(payload) is bytes else bytes(payload)
            fragments = 1
            if len(message) > self._max_message_size:
                self._violation(
                    f"a message grew beyond {self._max_message_size} bytes", now
                )
        else:
            partial.append(payload)
            self._partial_bytes += len(payload)
            if self._partial_bytes > self._max_message_size:
                self._violation(
                    f"a message grew beyond {self._max_message_size} bytes", now
                )
            if not flags & FLAG_MESSAGE_END:
                return
            fragments = len(partial)
            message = b"".join(partial)
            self._partial = []
            self._partial_bytes = 0
        stats = self._stats
        stats.messages_delivered += 1
        stats.payload_bytes_delivered += len(message)
        if not self._application_closed:
            self._messages.append((message, fragments))
            self._queued_datagrams += fragments

    def _receive_edge(self) -> int:
        edge = self._receive_next + self._receive_window - self._queued_datagrams
        advertised = self._advertised_edge
        return edge if edge > advertised else advertised

    def _process_reset(self, now: float) -> None:
        if self._finished_at is not None or (
            self._peer_finished and self.all_acknowledged
        ):
            self._finish(now)
        elif self.state is ConnectionState.CONNECTING:
            self._fail(
                ConnectionRefused(
                    "the server refused the handshake: check the address and port"
                ),
                now,
            )
        else:
            self._fail(BrokenError("the peer reset the connection: reconnect"), now)

    # --------------------------------------------------------------- sending

    def _process_acknowledgement(
        self,
        kind: int,
        wire_acknowledgement: int,
        window: int,
        sack_blocks: tuple[tuple[int, int], ...],
        now: float,
    ) -> None:
        send_base = self._send_base
        # Serial arithmetic (seq_wire.unwrap_sequence), inlined.
        difference = (wire_acknowledgement - send_base) & MASK_64
        if difference >= HALF_64:
            return  # An old, reordered datagram: its acknowledgement says nothing new.
        acknowledgement = send_base + difference
        if acknowledgement > self._next_sequence:
            self._violation(
                f"the peer acknowledged {wire_acknowledgement}, which we never sent",
                now,
            )
            return
        outstanding = self._outstanding
        sacked = self._sacked
        pop = outstanding.pop
        released: list[_Sent] = []  # acknowledged now, cumulatively or selectively
        if difference:
            for sequence in range(send_base, acknowledgement):
                record = pop(sequence, None)
                if record is not None:
                    released.append(record)
            self._send_base = acknowledgement
            self._duplicate_acks = 0
            if sacked.starts:
                sacked.discard_below(acknowledgement)
        if sack_blocks:
            limit = self._next_sequence
            for offset, length in sack_blocks:
                start = acknowledgement + offset
                end = start + length
                end = min(end, limit)
                if start >= end or start <= acknowledgement:
                    continue
                for new_start, new_end in sacked.add(start, end):
                    for sequence in range(new_start, new_end):
                        record = pop(sequence, None)
                        if record is not None:
                            released.append(record)
        progress = bool(difference or released)
        newest_sample: float | None = None  # of a datagram sent once (Karn)
        newest_resent: float | None = None  # of a retransmitted one
        for record in released:
            self._pending_bytes -= len(record.payload)
            if record.transmissions == 1:
                if newest_sample is None or record.sent_at > newest_sample:
                    newest_sample = record.sent_at
            else:
                self._resent_outstanding -= 1
                if newest_resent is None or record.sent_at > newest_resent:
                    newest_resent = record.sent_at
        if newest_sample is not None:
            self._timer.add_sample(now - newest_sample)
        edge = acknowledgement + window
        window_opened = edge > self._peer_edge
        if window_opened:
            self._peer_edge = edge
        if not progress and not window_opened and kind == _ACK and outstanding:
            # A duplicate ACK (RFC 5681): nothing new, same cumulative point.
            self._duplicate_acks += 1
            if self._duplicate_acks == 3:
                record = outstanding.get(acknowledgement)
                if record is not None:
                    self._retransmit(acknowledgement, record, now)
                    self._stats.retransmits_fast += 1
        if sacked.ends:
            lost_below = sacked.ends[-1] - 3
            scan = max(self._send_base, self._fast_scan)
            if scan < lost_below:
                get = outstanding.get
                for sequence in range(scan, lost_below):
                    record = get(sequence)
                    if record is not None and record.transmissions == 1:
                        self._retransmit(sequence, record, now)
                        self._stats.retransmits_fast += 1
                self._fast_scan = lost_below
        if self._resent_outstanding:
            newest = newest_sample
            if newest_resent is not None and (newest is None or newest_resent > newest):
                newest = newest_resent
            if newest is not None:
                self._retransmit_lost_retransmissions(newest, now)
        if progress or window_opened:
            self._persist_deadline = None
            if self._pending:
                self._transmit_pending(now)

    def _transmit_pending(self, now: float) -> None:
        pending = self._pending
        edge = self._peer_edge
        if not pending:
            return
        if self._next_sequence >= edge:
            if not self._outstanding and self._persist_deadline is None:
                self._persist_deadline = now + self._timer.rto
            return
        outstanding = self._outstanding
        outbox = self._outbox
        rto = self._timer.rto
        connection_id = self.connection_id
        receive_next = self._receive_next
        wire_acknowledgement = receive_next & MASK_64
        # Bounded by receive_window (< 2**31), so it always fits the 32-bit field.
        edge_we_offer = receive_next + self._receive_window - self._queued_datagrams
        if edge_we_offer < self._advertised_edge:
            edge_we_offer = self._advertised_edge
        window = edge_we_offer - receive_next
        sequence = self._next_sequence
        first = sequence
        sent_bytes = 0
        while pending and sequence < edge:
            payload, flags = pending.popleft()
            # seq_wire.encode, inlined: the payload's CRC32 is kept for retransmissions.
            checksum = _crc32(payload)
            outstanding[sequence] = _Sent(payload, flags, checksum, now, rto)
            head = _pack_head(
                _DATA,
                flags,
                0,
                VERSION,
                connection_id,
                sequence & MASK_64,
                wire_acknowledgement,
                window,
            )
            outbox.append((head + _crc32(head, checksum).to_bytes(4, "big"), payload))
            sent_bytes += len(payload)
            if flags & FLAG_FIN:
                self._fin_sequence = sequence
            sequence += 1
        count = sequence - first
        self._next_sequence = sequence
        stats = self._stats
        stats.datagrams_sent += count
        stats.data_datagrams_sent += count
        stats.bytes_sent += sent_bytes + count * HEADER_SIZE
        stats.payload_bytes_sent += sent_bytes
        self._last_sent = now
        # Our acknowledgement left with the data (_note_acknowledgement_sent, inlined).
        self._advertised_edge = edge_we_offer
        if not self._reorder:
            self._ack_now = False
            self._ack_deadline = None
            self._unacknowledged_received = 0

    def _retransmit_lost_retransmissions(self, acknowledged_sent_at: float, now: float) -> None:
        """Resend each retransmission that was sent before a datagram the peer has since acknowledged.

        The duplicate-ACK and SACK rules act once per datagram; without this
        (RACK's time-based rule, RFC 8985, kept to retransmissions) a lost
        retransmission waits for the timer, and the window stalls with it.
        """
        lost: list[tuple[int, _Sent]] = []
        for sequence, record in self._outstanding.items():  # in send-time order
            if record.sent_at >= acknowledged_sent_at:
                break
            if record.transmissions > 1:
                lost.append((sequence, record))
        for sequence, record in lost:
            self._retransmit(sequence, record, now)
            self._stats.retransmits_fast += 1

    def _retransmit(self, sequence: int, record: _Sent, now: float) -> None:
        if record.transmissions == 1:
            self._resent_outstanding += 1
        record.transmissions += 1
        record.sent_at = now
        record.deadline = now + self._timer.rto
        self._outstanding.move_to_end(sequence)
        window = self._receive_edge() - self._receive_next
        datagram = encode(
            DatagramType.DATA,
            record.flags,
            self.connection_id,
            sequence,
            self._receive_next,
            window,
            record.payload,
            b"",
            record.payload_checksum,
        )
        self._outbox.append(datagram)
        stats = self._stats
        stats.datagrams_sent += 1
        stats.data_datagrams_sent += 1
        stats.bytes_sent += len(datagram[0]) + len(record.payload)
        self._last_sent = now
        self._note_acknowledgement_sent(window)

    def _note_acknowledgement_sent(self, window: int) -> None:
        """A datagram carrying our acknowledgement left: a pending pure ACK is no longer needed."""
        self._advertised_edge = self._receive_next + window
        if not self._reorder:
            self._ack_now = False
            self._ack_deadline = None
            self._unacknowledged_received = 0

    def _emit_ack(self) -> None:
        receive_next = self._receive_next
        window = self._receive_edge() - receive_next
        sack = b""
        if self._received_ranges:
            room = (self.config.max_datagram_size - HEADER_SIZE) // SACK_BLOCK_SIZE
            sack = pack_sack_blocks(
                self._received_ranges.ranges(min(room, MAX_SACK_BLOCKS)), receive_next
            )
        datagram = encode(
            DatagramType.ACK,
            0,
            self.connection_id,
            self._next_sequence,
            receive_next,
            window,
            b"",
            sack,
        )
        self._outbox.append(datagram)
        stats = self._stats
        stats.datagrams_sent += 1
        stats.acks_sent += 1
        stats.bytes_sent += len(datagram[0])
        self._advertised_edge = receive_next + window
        self._ack_now = False
        self._ack_deadline = None
        self._unacknowledged_received = 0

    def _emit_control(
        self,
        datagram_type: DatagramType,
        flags: int,
        sequence: int,
        now: float,
        payload: bytes = b"",
    ) -> None:
        receive_next = self._receive_next
        window = self.config.receive_window
        if self.state is not ConnectionState.CONNECTING:
            window = self._receive_edge() - receive_next
            self._advertised_edge = receive_next + window
        datagram = encode(
            datagram_type,
            flags,
            self.connection_id,
            sequence,
            receive_next,
            window,
            payload,
        )
        self._outbox.append(datagram)
        stats = self._stats
        stats.datagrams_sent += 1
        stats.bytes_sent += len(datagram[0]) + len(payload)
        self._last_sent = now

    # ------------------------------------------------------------ life cycle

    def _check_finished(self, now: float) -> None:
        if (
            self._finished_at is None
            and self._peer_finished
            and self._fin_sequence is not None
            and self._send_base > self._fin_sequence
        ):
            self._finish(now)

    def _finish(self, now: float) -> None:
        self.state = ConnectionState.CLOSED
        if self._finished_at is None:
            self._finished_at = now

    def _violation(self, reason: str, now: float) -> None:
        error = RemoteProtocolError(f"the peer broke the sequencing protocol: {reason}")
        self._fail(error, now, notify_peer=True)
        raise error

    def _fail(
        self, error: NetlabError, now: float, *, notify_peer: bool = False
    ) -> None:
        if notify_peer:
            self._emit_control(DatagramType.RESET, 0, self._next_sequence, now)
        self.state = ConnectionState.FAILED
        self.error = error
        self._outstanding.clear()
        self._resent_outstanding = 0
        self._pending.clear()
        self._ack_now = False


class SequencingAcceptor:
    """A server's stateless front door: answers handshakes, creates connections.

    It keeps no state per client: an INITIAL gets a RETRY with a cookie, a
    valid COOKIE_ECHO gets a new :class:`SequencingConnection` (whose ACCEPT is
    returned), a datagram for an unknown connection gets a RESET. No answer is
    ever larger than :data:`AMPLIFICATION_FACTOR` times the datagram it answers.
    """

    def __init__(
        self, config: SequencingConfig, issuer: CookieIssuer | None = None
    ) -> None:
        """Args:
        config: settings for the connections it creates.
        issuer: the cookie maker; a fresh random secret when None.
        """
        self.config = config
        self.issuer = issuer if issuer is not None else CookieIssuer()
        self.stats = HandshakeStatistics()

    def handle_datagram(
        self, data: bytes | bytearray | memoryview, address: Hashable, now: float
    ) -> tuple[list[Datagram], SequencingConnection | None]:
        """Answer one datagram that belongs to no known connection.

        Args:
            data: the datagram as received.
            address: the sender's address (opaque, hashable; bytes are used as is).
            now: current time.
        Returns:
            ``(datagrams to send back to address, new connection or None)``.
        """
        view = data if isinstance(data, memoryview) else memoryview(data)
        size = len(view)
        stats = self.stats
        stats.bytes_received += size
        try:
            header = decode_header(view)
        except MalformedDatagram as exc:
            if exc.checksum_failure:
                stats.checksum_failures += 1
            else:
                stats.malformed += 1
            return [], None
        kind = header.type
        connection_id = header.connection_id
        if kind == DatagramType.INITIAL:
            stats.initials += 1
            if size < INITIAL_SIZE:
                stats.ignored += 1
                return [], None
            return self._answer_unvalidated(
                self._retry(header, address, now), size
            ), None
        if kind == DatagramType.COOKIE_ECHO:
            cookie = view[header.payload_offset :]
            if not self.issuer.verify(cookie, address, connection_id, now):
                stats.cookies_rejected += 1
                return self._answer_unvalidated(
                    self._retry(header, address, now), size
                ), None
            stats.cookies_accepted += 1
            connection = SequencingConnection._accepted(self.config, header, now)
            replies = connection.datagrams_to_send()
            stats.bytes_sent += sum(
                len(head) + len(payload) for head, payload in replies
            )
            return replies, connection
        if (
            kind == DatagramType.DATA
            or kind == DatagramType.ACK
            or kind == DatagramType.PING
        ):
            reset = encode(DatagramType.RESET, 0, connection_id, 0, header.sequence, 0)
            stats.resets_sent += 1
            return self._answer_unvalidated(reset, size), None
        stats.ignored += 1
        return [], None

    def _retry(self, header: Header, address: Hashable, now: float) -> Datagram:
        self.stats.retries_sent += 1
        cookie = self.issuer.make(address, header.connection_id, now)
        return encode(
            DatagramType.RETRY, 0, header.connection_id, 0, header.sequence, 0, cookie
        )

    def _answer_unvalidated(self, reply: Datagram, received: int) -> list[Datagram]:
        """Apply the anti-amplification rule to an answer to an unproven address."""
        size = len(reply[0]) + len(reply[1])
        if size > AMPLIFICATION_FACTOR * received:
            self.stats.amplification_drops += 1
            return []
        self.stats.bytes_sent += size
        return [reply]
