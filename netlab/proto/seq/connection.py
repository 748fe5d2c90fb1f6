"""One end of a sequenced-UDP connection: handshake, sending, timers (sans-IO).

How this works: a :class:`SequencingConnection` never touches a socket or a
clock. The caller feeds it datagrams with ``receive_datagram(data, now)``,
asks it to ``send_message``, calls ``handle_timeout(now)`` when
``next_deadline()`` has passed, and after any of these sends whatever
``datagrams_to_send()`` returns. Whole messages come out of ``next_message()``.

It is put together from parts, each deciding one thing:

- :mod:`~netlab.proto.seq.wire` parses and builds every datagram;
- :class:`~netlab.proto.seq.receiver.Receiver` orders, reassembles and
  decides when we owe an acknowledgement;
- :class:`~netlab.proto.seq.recovery.LossRecovery` tracks what is in flight
  and decides what is lost; its congestion controller
  (:mod:`~netlab.proto.seq.congestion`) decides how much may be in flight;
- :class:`~netlab.proto.seq.handshake.Handshake` decides what handshake
  datagram to send, when to resend it and when to give up;
- this module sends what those parts decide, cuts messages into DATA
  datagrams within the peer's window, and owns every timer:
  :meth:`next_deadline` and :meth:`handle_timeout` are the one place they are
  read and run.

Handshake (the client side's decisions are in
:mod:`~netlab.proto.seq.handshake`, the server's stateless half in
:mod:`~netlab.proto.seq.acceptor`): INITIAL (padded to 1,200 bytes) ->
RETRY(cookie) -> COOKIE_ECHO(cookie) -> ACCEPT. Keepalive PINGs after
``keepalive_interval`` of sending nothing; silence for ``idle_timeout`` fails
the connection. FIN closes one direction (like TCP); RESET aborts both.
"""

from __future__ import annotations

import secrets
from collections import deque
from dataclasses import replace

from netlab.errors import (
    BrokenError,
    ClosedError,
    ConnectionRefused,
    LocalProtocolError,
    NetlabError,
    RemoteProtocolError,
    WriteTimeout,
)
from netlab.proto.seq.config import (
    MAX_SACK_BLOCKS,
    ConnectionState,
    PeerViolation,
    SequencingConfig,
    SequencingStatistics,
    peer_datagram_limit,
)
from netlab.proto.seq.congestion import UNLIMITED, TraceRow, make_controller
from netlab.proto.seq.handshake import Handshake
from netlab.proto.seq.receiver import ABORT, Receiver
from netlab.proto.seq.recovery import (
    LOST_TIMEOUT,
    TIMER_NOTHING,
    TIMER_PROBE,
    TIMER_RETRANSMISSION,
    LossRecovery,
    RetryLimit,
    Sent,
)
from netlab.proto.seq.rto import RetransmissionTimer
from netlab.proto.seq.wire import (
    DATAGRAM_LIMIT,
    FLAG_ACK_NOW,
    FLAG_FIN,
    FLAG_MESSAGE_END,
    HEADER_SIZE,
    MASK_64,
    SACK_BLOCK_SIZE,
    Datagram,
    DatagramType,
    Header,
    MalformedDatagram,
    crc32,
    encode,
    pack_sack_blocks,
    unpack_fields,
    unpack_sack_blocks,
    verify_checksum,
)

#: Datagram types as plain ints for the per-datagram paths (an IntEnum member
#: lookup costs more than the comparison).
_DATA = int(DatagramType.DATA)
_ACK = int(DatagramType.ACK)
_PING = int(DatagramType.PING)
_RESET = int(DatagramType.RESET)
_COOKIE_ECHO = int(DatagramType.COOKIE_ECHO)
_RETRY = int(DatagramType.RETRY)
_ACCEPT = int(DatagramType.ACCEPT)
#: Payloads up to this size are copied out of a received datagram (cheaper than
#: a view for small ones); larger fragments of a longer message stay views into
#: the datagram until the message is joined, so they are copied only once.
_COPY_LIMIT = 2048

_CONNECTING = ConnectionState.CONNECTING
_ESTABLISHED = ConnectionState.ESTABLISHED
_CLOSED = ConnectionState.CLOSED
_FAILED = ConnectionState.FAILED


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
        """Use :meth:`connect` (client) or :class:`~netlab.proto.seq.acceptor.SequencingAcceptor` (server) instead."""
        self.config = config
        self.connection_id = connection_id
        self.is_client = is_client
        self.state = ConnectionState.CONNECTING
        self.error: NetlabError | None = None
        self._initial_sequence = config.choose_initial_sequence()
        controller = make_controller(
            config.congestion, config.max_datagram_size, now, trace=config.congestion_trace
        )
        self._recovery = LossRecovery(config, self._initial_sequence, controller)
        self._stats = SequencingStatistics(
            rto=self._recovery.timer.rto, started_at=now, updated_at=now
        )
        self._receiver = Receiver(config, self._stats)
        self._outbox: list[Datagram] = []
        # Until the peer announces its limit, messages are cut for our own;
        # a smaller announcement cuts what is still queued again.
        self._datagram_size = config.max_datagram_size
        self._fragment_size = config.fragment_size
        # Copies of config fields read for every datagram (an attribute less each).
        self._max_message_size = config.max_message_size
        self._idle_timeout = config.idle_timeout
        self._keepalive_interval = config.keepalive_interval
        # Sending side.
        self._next_sequence = self._initial_sequence
        self._pending: deque[tuple[bytes | memoryview, int]] = deque()
        self._pending_bytes = 0
        self._fin_queued = False
        self._fin_sequence: int | None = None
        self._persist_deadline: float | None = None
        # Liveness and handshake (its own backoff: it never inflates the data RTO).
        self._last_sent = now
        self._last_received = now
        self._handshake = Handshake(config, self._recovery.timer.rto, now)
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
    def accepted(
        cls, config: SequencingConfig, header: Header, now: float, peer_limit: int | None = None
    ) -> SequencingConnection:
        """Server side: the connection a valid COOKIE_ECHO creates; its ACCEPT waits to be sent.

        Args:
            config: the server's settings.
            header: the COOKIE_ECHO's header.
            now: current time.
            peer_limit: the largest datagram the client announced (None: it announced none).
        """
        connection = cls(config, header.connection_id, now, is_client=False)
        connection._learn_peer_limit(peer_limit)
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
        return self._receiver.next_message()

    @property
    def has_message(self) -> bool:
        """True when ``next_message()`` would return a message."""
        return bool(self._receiver.messages)

    @property
    def at_end(self) -> bool:
        """True when the peer finished sending and every message has been read."""
        receiver = self._receiver
        return receiver.peer_finished and not receiver.messages

    @property
    def is_established(self) -> bool:
        """True once the handshake completed (also while closing)."""
        return self.state is _ESTABLISHED or self.state is _CLOSED

    @property
    def send_backlog(self) -> int:
        """Message bytes queued or in flight (not yet acknowledged)."""
        return self._pending_bytes

    @property
    def all_acknowledged(self) -> bool:
        """True when nothing we sent (FIN included) awaits acknowledgement."""
        return not self._pending and not self._recovery.unacknowledged

    @property
    def datagram_size(self) -> int:
        """The largest datagram we send: our own limit, or the peer's announced one if smaller."""
        return self._datagram_size

    @property
    def fragment_size(self) -> int:
        """Message bytes per DATA datagram we send (``datagram_size`` less the header)."""
        return self._fragment_size

    @property
    def next_sequence(self) -> int:
        """The full sequence number our next DATA datagram will use."""
        return self._next_sequence

    @property
    def queued_datagrams(self) -> int:
        """Datagrams of received messages the application has not read yet."""
        return self._receiver.queued_datagrams

    @property
    def handshake_pending(self) -> bool:
        """True while a handshake datagram of ours waits for its answer."""
        return self._handshake.deadline is not None

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
        stats.datagrams_received += 1
        stats.bytes_received += len(data)
        try:
            (
                kind,
                flags,
                sack_count,
                connection_id,
                wire_sequence,
                wire_acknowledgement,
                window,
                checksum,
                payload_offset,
            ) = unpack_fields(data)
        except MalformedDatagram:
            stats.malformed += 1
            return
        payload: bytes | memoryview
        if len(data) - payload_offset <= _COPY_LIMIT or (
            flags & FLAG_MESSAGE_END and not self._receiver.partial
        ):
            payload = data[payload_offset:]
        else:
            payload = memoryview(data)[payload_offset:]
        payload_checksum = crc32(payload)
        if not verify_checksum(data, payload_checksum, payload_offset, checksum):
            stats.checksum_failures += 1
            return
        if connection_id != self.connection_id:
            stats.malformed += 1
            return
        state = self.state
        if state is _FAILED:
            return
        self._last_received = now
        try:
            if kind == _DATA or kind == _ACK or kind == _PING:
                if state is _CONNECTING:
                    return
                self._process_acknowledgement(
                    kind == _ACK,
                    wire_acknowledgement,
                    window,
                    unpack_sack_blocks(data, payload_offset) if sack_count else (),
                    now,
                )
                if kind == _DATA:
                    if self._receiver.receive_data(
                        wire_sequence, flags, payload_checksum, payload, now
                    ) == ABORT:
                        # Nobody will read this: abort like TCP does on data after close().
                        self._fail(ClosedError("this connection is closed"), now, notify_peer=True)
                        return
                elif kind == _PING:
                    self._receiver.ack_now = True
            elif kind == _RESET:
                self._process_reset(now)
            elif state is _CONNECTING and self.is_client:
                self._process_handshake_reply(
                    kind, wire_sequence, wire_acknowledgement, window, payload, now
                )
            elif kind == _ACCEPT and self.is_client:
                # The server repeats its ACCEPT: our confirming ACK was lost.
                self._receiver.ack_now = True
            elif kind == _COOKIE_ECHO and not self.is_client:
                # Our ACCEPT was lost and the client repeats its echo.
                self._emit_control(
                    DatagramType.ACCEPT, 0, self._initial_sequence, now, self._handshake.announcement
                )
        except PeerViolation as exc:
            error = RemoteProtocolError(f"the peer broke the sequencing protocol: {exc}")
            self._fail(error, now, notify_peer=True)
            raise error from None
        if (
            self._handshake.deadline is not None
            and not self.is_client
            and kind >= _DATA
        ):
            self._handshake.confirmed()  # The client heard our ACCEPT.
        if self._receiver.peer_finished and self.state is _ESTABLISHED:
            self._check_finished(now)

    def next_deadline(self) -> float | None:
        """The earliest time ``handle_timeout`` has work to do (None: no timer runs).

        Every timer of the connection is read here: idle, handshake,
        retransmission, delayed ACK, persist (zero window), keepalive, linger.
        """
        state = self.state
        if state is _FAILED:
            return None
        if self._finished_at is not None:
            return None if self._lingered else self._linger_end()
        deadline = self._last_received + self._idle_timeout
        handshake = self._handshake.deadline
        if state is _CONNECTING:
            if handshake is not None and handshake < deadline:
                deadline = handshake
            return deadline
        loss_deadline = self._recovery.deadline()
        if loss_deadline is not None:
            # While data is in flight the retry limit, not the idle timeout, decides.
            deadline = loss_deadline
        if handshake is not None and handshake < deadline:
            deadline = handshake
        receiver = self._receiver
        if receiver.ack_now:
            return self._last_received
        if receiver.ack_deadline is not None and receiver.ack_deadline < deadline:
            deadline = receiver.ack_deadline
        if self._persist_deadline is not None and self._persist_deadline < deadline:
            deadline = self._persist_deadline
        if state is _ESTABLISHED:
            keepalive = self._last_sent + self._keepalive_interval
            if keepalive < deadline:
                deadline = keepalive
        return deadline

    def handle_timeout(self, now: float) -> None:
        """Run every timer that is due: retransmission, delayed ACK, keepalive, idle.

        Args:
            now: current time; call when ``now >= next_deadline()``.
        """
        state = self.state
        if state is _FAILED:
            return
        receiver = self._receiver
        if self._finished_at is not None:
            if now >= self._linger_end():
                self._lingered = True
            if receiver.ack_deadline is not None and now >= receiver.ack_deadline:
                receiver.ack_now = True
            return
        recovery = self._recovery
        if not recovery.unacknowledged and now >= self._last_received + self._idle_timeout:
            self._fail(
                BrokenError(
                    f"heard nothing from the peer for {self._idle_timeout:g} s: it vanished; reconnect"
                ),
                now,
            )
            return
        handshake = self._handshake.deadline
        if handshake is not None and now >= handshake:
            if not self._handshake_timed_out(now):
                return
        if state is _CONNECTING:
            return
        outcome = recovery.on_timeout(self._next_sequence, now)
        if isinstance(outcome, RetryLimit):
            # RESET: a peer that still hears us (only its acknowledgements are
            # lost) fails now instead of waiting out its idle timeout.
            self._fail(
                WriteTimeout(
                    f"the peer did not acknowledge datagram {outcome.sequence & MASK_64} after "
                    f"{outcome.transmissions} transmissions: it is unreachable or gone; reconnect"
                ),
                now,
                notify_peer=True,
            )
            return
        if outcome == TIMER_PROBE:
            self._stats.retransmission_timeouts += 1
            self._send_probes(now)
        elif outcome != TIMER_NOTHING:
            if outcome == TIMER_RETRANSMISSION:
                self._stats.retransmission_timeouts += 1
            self._send_lost(now)
            self._transmit_pending(now)
        if self._persist_deadline is not None and now >= self._persist_deadline:
            self._emit_control(DatagramType.PING, FLAG_ACK_NOW, self._next_sequence, now)
            self._persist_deadline = now + recovery.timer.rto
        if receiver.ack_deadline is not None and now >= receiver.ack_deadline:
            receiver.ack_now = True
        if (
            state is _ESTABLISHED
            and now >= self._last_sent + self._keepalive_interval
            and not receiver.ack_now
        ):
            self._emit_control(DatagramType.PING, FLAG_ACK_NOW, self._next_sequence, now)

    def datagrams_to_send(self) -> list[Datagram]:
        """Take the datagrams to send now, each ``(header, payload)`` for ``sendmsg``."""
        if self._receiver.ack_now and self.state is not _FAILED:
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
        self._receiver.close()
        self.shutdown_write(now)

    def reset(self, now: float) -> None:
        """Abort at once: tell the peer with RESET and fail locally with ClosedError."""
        if self.error is not None:
            return
        if self.state is not _CONNECTING or self._handshake.cookie:
            self._emit_control(DatagramType.RESET, 0, self._next_sequence, now)
        self._fail(ClosedError("this connection was reset by us: open a new one"), now)

    def fail(self, error: NetlabError, now: float) -> None:
        """Fail for a reason learned outside the protocol (e.g. ICMP port unreachable)."""
        if self.error is None:
            self._fail(error, now)

    def is_done(self) -> bool:
        """True when the owner may forget this connection (failed, or closed and lingered)."""
        if self.state is _FAILED:
            return not self._outbox
        return self._lingered

    def statistics(self, now: float) -> SequencingStatistics:
        """A snapshot of the counters and the current SRTT, RTTVAR and RTO."""
        timer = self._recovery.timer
        controller = self._recovery.controller
        window = controller.congestion_window
        return replace(
            self._stats,
            srtt=timer.srtt,
            rttvar=timer.rttvar,
            rto=timer.rto,
            congestion=controller.name,
            congestion_window=None if window >= UNLIMITED else window,
            slow_start_threshold=controller.slow_start_threshold,
            bytes_in_flight=controller.bytes_in_flight,
            congestion_events=controller.congestion_events,
            updated_at=now,
        )

    @property
    def congestion_trace(self) -> list[TraceRow] | None:
        """The congestion controller's trace (``congestion_trace`` in the config), or None."""
        return self._recovery.controller.trace

    @property
    def timer(self) -> RetransmissionTimer:
        """The RFC 6298 timer (read-only use: SRTT, RTTVAR, RTO)."""
        return self._recovery.timer

    # --------------------------------------------------------------- handshake

    def _send_handshake(self, now: float) -> None:
        """Client: send the INITIAL or COOKIE_ECHO the handshake asks for."""
        kind, payload = self._handshake.request(now)
        self._emit_control(kind, 0, self._initial_sequence, now, payload)

    def _send_accept(self, now: float) -> None:
        """Server: (re)send ACCEPT until the client shows it arrived."""
        payload = self._handshake.accept(now)
        self._emit_control(DatagramType.ACCEPT, 0, self._initial_sequence, now, payload)

    def _handshake_timed_out(self, now: float) -> bool:
        """Our handshake datagram went unanswered: send it again, or fail at the bound.

        Returns:
            False when the connection failed.
        """
        connecting = self.state is _CONNECTING
        error = self._handshake.back_off(now, connecting=connecting)
        if error is not None:
            self._fail(error, now)
            return False
        if connecting:
            self._send_handshake(now)
        else:
            self._send_accept(now)
        return True

    def _process_handshake_reply(
        self,
        kind: int,
        wire_sequence: int,
        wire_acknowledgement: int,
        window: int,
        payload: bytes | memoryview,
        now: float,
    ) -> None:
        handshake = self._handshake
        if kind == _RETRY:
            if handshake.take_cookie(payload, self._recovery.timer.rto):
                self._send_handshake(now)
        elif kind == _ACCEPT:
            if wire_acknowledgement != self._initial_sequence & MASK_64:
                return
            sample = handshake.answered(now)
            self._learn_peer_limit(
                DATAGRAM_LIMIT.unpack_from(payload)[0] if len(payload) >= DATAGRAM_LIMIT.size else None
            )
            if sample is not None:
                self._recovery.timer.add_sample(sample)
            self._establish(wire_sequence, window, now)
            self._receiver.ack_now = True  # Confirms the handshake unless data carries it first.
            self._transmit_pending(now)

    def _learn_peer_limit(self, announced: int | None) -> None:
        """Send no datagram larger than the peer accepts; cut what is queued again if it must."""
        size = min(self.config.max_datagram_size, peer_datagram_limit(announced))
        fragment = size - HEADER_SIZE
        if fragment < self._fragment_size and self._pending:
            cut: deque[tuple[bytes | memoryview, int]] = deque()
            for payload, flags in self._pending:
                if len(payload) <= fragment:
                    cut.append((payload, flags))
                    continue
                view = memoryview(payload)
                last = len(view) - fragment
                for offset in range(0, len(view), fragment):
                    cut.append((view[offset : offset + fragment], flags if offset >= last else 0))
            self._pending = cut
        self._datagram_size = size
        self._fragment_size = fragment
        self._recovery.controller.set_max_datagram(size)

    def _establish(
        self, peer_initial_sequence: int, peer_window: int, now: float
    ) -> None:
        self.state = _ESTABLISHED
        self._receiver.start(peer_initial_sequence)
        self._recovery.peer_edge = self._recovery.send_base + peer_window
        self._last_received = now

    def _process_reset(self, now: float) -> None:
        if self._finished_at is not None or (
            self._receiver.peer_finished and self.all_acknowledged
        ):
            self._finish(now)
        elif self.state is _CONNECTING:
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
        is_pure_ack: bool,
        wire_acknowledgement: int,
        window: int,
        sack_blocks: tuple[tuple[int, int], ...],
        now: float,
    ) -> None:
        recovery = self._recovery
        released_bytes, opened = recovery.on_acknowledgement(
            is_pure_ack, wire_acknowledgement, window, sack_blocks, self._next_sequence, now
        )
        self._pending_bytes -= released_bytes
        if recovery.lost:
            self._send_lost(now)
            opened = True  # lost datagrams left the flight: the congestion window may have room
        if opened:
            self._persist_deadline = None
            if self._pending:
                self._transmit_pending(now)

    def _send_lost(self, now: float) -> None:
        """Send again the lost datagrams the congestion window allows (all under ``none``)."""
        resend = self._recovery.take_retransmissions(now)
        if not resend:
            return
        by_timeout = 0
        for sequence, record in resend:
            self._retransmit(sequence, record, now)
            by_timeout += record.lost_by == LOST_TIMEOUT
        stats = self._stats
        stats.retransmits_timeout += by_timeout
        stats.retransmits_fast += len(resend) - by_timeout

    def _send_probes(self, now: float) -> None:
        """Send the probes of a probe timeout (loss recovery already marked them resent)."""
        probes = self._recovery.probes
        for sequence, record in probes:
            self._retransmit(sequence, record, now)
        self._stats.retransmits_timeout += len(probes)

    def _transmit_pending(self, now: float) -> None:
        """Send queued datagrams while the peer's window has room."""
        pending = self._pending
        if not pending:
            return
        recovery = self._recovery
        edge = recovery.peer_edge
        if self._next_sequence >= edge:
            if not recovery.unacknowledged and self._persist_deadline is None:
                self._persist_deadline = now + recovery.timer.rto
            return
        controller = recovery.controller
        room = controller.window_room
        if room <= 0 or recovery.lost:
            return  # the congestion window is full, or lost datagrams go first
        outstanding = recovery.outstanding
        outbox = self._outbox
        rto = recovery.timer.rto
        connection_id = self.connection_id
        receiver = self._receiver
        acknowledgement = receiver.next
        edge_we_offer = receiver.edge()
        window = edge_we_offer - acknowledgement
        sequence = self._next_sequence
        first = sequence
        sent_bytes = 0
        while pending and sequence < edge and room > 0:
            payload, flags = pending.popleft()
            checksum = crc32(payload)  # kept for retransmissions
            record = outstanding[sequence] = Sent(payload, flags, checksum, now, rto)
            room -= record.size
            outbox.append(
                encode(_DATA, flags, connection_id, sequence, acknowledgement, window, payload, b"", checksum)
            )
            sent_bytes += len(payload)
            if flags & FLAG_FIN:
                self._fin_sequence = sequence
            sequence += 1
        count = sequence - first
        self._next_sequence = sequence
        recovery.last_sent_at = now
        controller.on_packet_sent(sent_bytes + count * HEADER_SIZE, now)
        stats = self._stats
        stats.datagrams_sent += count
        stats.data_datagrams_sent += count
        stats.bytes_sent += sent_bytes + count * HEADER_SIZE
        stats.payload_bytes_sent += sent_bytes
        self._last_sent = now
        receiver.acknowledged(edge_we_offer)

    def _retransmit(self, sequence: int, record: Sent, now: float) -> None:
        """Encode ``record`` again (loss recovery already marked it resent)."""
        receiver = self._receiver
        edge = receiver.edge()
        datagram = encode(
            _DATA,
            record.flags,
            self.connection_id,
            sequence,
            receiver.next,
            edge - receiver.next,
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
        receiver.acknowledged(edge)

    def _emit_ack(self) -> None:
        receiver = self._receiver
        acknowledgement = receiver.next
        edge = receiver.edge()
        sack = b""
        if receiver.ranges:
            room = (self._datagram_size - HEADER_SIZE) // SACK_BLOCK_SIZE
            sack = pack_sack_blocks(
                receiver.ranges.ranges(min(room, MAX_SACK_BLOCKS)), acknowledgement
            )
        datagram = encode(
            _ACK,
            0,
            self.connection_id,
            self._next_sequence,
            acknowledgement,
            edge - acknowledgement,
            b"",
            sack,
        )
        self._outbox.append(datagram)
        stats = self._stats
        stats.datagrams_sent += 1
        stats.acks_sent += 1
        stats.bytes_sent += len(datagram[0])
        receiver.pure_ack_sent(edge)

    def _emit_control(
        self,
        datagram_type: DatagramType,
        flags: int,
        sequence: int,
        now: float,
        payload: bytes = b"",
    ) -> None:
        receiver = self._receiver
        acknowledgement = receiver.next
        window = self.config.receive_window
        if self.state is not _CONNECTING:
            edge = receiver.edge()
            window = edge - acknowledgement
            receiver.advertised_edge = edge
        datagram = encode(
            datagram_type,
            flags,
            self.connection_id,
            sequence,
            acknowledgement,
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
            and self._receiver.peer_finished
            and self._fin_sequence is not None
            and self._recovery.send_base > self._fin_sequence
        ):
            self._finish(now)

    def _finish(self, now: float) -> None:
        self.state = _CLOSED
        if self._finished_at is None:
            self._finished_at = now

    def _linger_end(self) -> float:
        # Like TCP's TIME_WAIT: stay long enough to acknowledge the peer's
        # retransmitted FIN if our last ACK was lost (the peer's timer may be
        # backed off, so several of our RTOs and at least a second).
        assert self._finished_at is not None
        return self._finished_at + min(
            self.config.max_rto, max(1.0, 4 * self._recovery.timer.rto)
        )

    def _fail(
        self, error: NetlabError, now: float, *, notify_peer: bool = False
    ) -> None:
        if notify_peer:
            self._emit_control(DatagramType.RESET, 0, self._next_sequence, now)
        self.state = _FAILED
        self.error = error
        self._recovery.clear()
        self._pending.clear()
        self._receiver.ack_now = False
