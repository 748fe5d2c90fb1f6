"""The receiving half of a sequenced connection: ordering, reassembly, acknowledgements.

How this works: :class:`Receiver` holds everything about what the peer sent
us: the next sequence number expected (``next``, the cumulative
acknowledgement), a reorder buffer of datagrams beyond it, the ranges held
there (they become SACK blocks), partly reassembled messages and the whole
messages the application has not read. ``receive_data`` takes one DATA
datagram and decides; it never builds a datagram. It tells the connection
what to do through two flags: ``ack_now`` (acknowledge at once: a gap, a
duplicate, FIN, ACK_NOW, enough unacknowledged data) and ``ack_deadline``
(a delayed ACK is due then). The receive window's edge, the highest sequence
number we accept plus one, is computed by :meth:`Receiver.edge` alone; it
never moves back below what we advertised (shrinking an offered window would
make a correct sender look like a violator).

Numbers below ``next`` are duplicates forever; the CRC32 digests of recently
delivered ones catch a peer that repeats a number with other bytes
(:class:`~netlab.proto.seq.config.PeerViolation`).
"""

from __future__ import annotations

from collections import deque

from netlab.proto.seq.config import PeerViolation, SequencingConfig, SequencingStatistics
from netlab.proto.seq.ranges import RangeSet
from netlab.proto.seq.wire import FLAG_ACK_NOW, FLAG_FIN, FLAG_MESSAGE_END, unwrap_sequence

#: What :meth:`Receiver.receive_data` asks of the connection beyond acknowledging.
ACCEPTED = 0
#: Data arrived after the application closed: abort like TCP (RESET).
ABORT = 1

_KEPT_FLAGS = FLAG_MESSAGE_END | FLAG_FIN


class Receiver:
    """What we received from the peer and what we owe it in acknowledgements."""

    __slots__ = (
        "ack_deadline",
        "ack_delay",
        "ack_every",
        "ack_now",
        "advertised_edge",
        "application_closed",
        "capacity",
        "delivered_checksums",
        "max_message_size",
        "messages",
        "next",
        "partial",
        "partial_bytes",
        "peer_finished",
        "queued_datagrams",
        "ranges",
        "reorder",
        "stats",
        "unacknowledged",
    )

    def __init__(self, config: SequencingConfig, stats: SequencingStatistics) -> None:
        """Args:
        config: the connection's settings (window, ACK frequency and delay, message limit).
        stats: the connection's counters, updated in place.
        """
        self.capacity = config.receive_window
        self.ack_every = config.acknowledge_every
        self.ack_delay = config.ack_delay
        self.max_message_size = config.max_message_size
        self.stats = stats
        self.next = 0
        self.advertised_edge = 0
        self.reorder: dict[int, tuple[bytes | memoryview, int, int]] = {}
        self.ranges = RangeSet()
        self.delivered_checksums: dict[int, int] = {}
        self.partial: list[bytes | memoryview] = []
        self.partial_bytes = 0
        self.messages: deque[tuple[bytes, int]] = deque()
        self.queued_datagrams = 0
        self.peer_finished = False
        self.application_closed = False
        self.unacknowledged = 0
        self.ack_now = False
        self.ack_deadline: float | None = None

    def start(self, peer_initial_sequence: int) -> None:
        """The handshake told us the peer's first sequence number."""
        self.next = peer_initial_sequence
        self.advertised_edge = peer_initial_sequence
        self.delivered_checksums = {}

    def edge(self) -> int:
        """One past the highest sequence number we accept now (never below what we advertised)."""
        edge = self.next + self.capacity - self.queued_datagrams
        advertised = self.advertised_edge
        return edge if edge > advertised else advertised

    def window(self) -> int:
        """The window field of a datagram we send now: datagrams accepted beyond ``next``."""
        return self.edge() - self.next

    def acknowledged(self, edge: int) -> None:
        """A datagram carrying our acknowledgement and ``edge`` left with our data.

        A pending ACK is no longer needed, unless a gap is open (SACK blocks
        only travel in pure ACKs).
        """
        self.advertised_edge = edge
        if not self.reorder:
            self.ack_now = False
            self.ack_deadline = None
            self.unacknowledged = 0

    def pure_ack_sent(self, edge: int) -> None:
        """A pure ACK (with SACK blocks) advertising ``edge`` left."""
        self.advertised_edge = edge
        self.ack_now = False
        self.ack_deadline = None
        self.unacknowledged = 0

    def next_message(self) -> bytes | None:
        """The next whole message for the application, or None.

        Reading frees window space; once a quarter of the window opened beyond
        what we advertised, an ACK (a window update) is due at once.
        """
        if not self.messages:
            return None
        message, fragments = self.messages.popleft()
        self.queued_datagrams -= fragments
        if self.edge() - self.advertised_edge >= max(1, self.capacity // 4):
            self.ack_now = True
        return message

    def close(self) -> None:
        """The application will read no more: drop what is queued, answer new data with RESET."""
        self.application_closed = True
        self.messages.clear()
        self.queued_datagrams = 0

    def receive_data(
        self,
        wire_sequence: int,
        flags: int,
        checksum: int,
        payload: bytes | memoryview,
        now: float,
    ) -> int:
        """Take one DATA datagram (FIN included).

        Args:
            wire_sequence: its 64-bit sequence number.
            flags: its flags byte.
            checksum: CRC32 of its payload.
            payload: its payload (kept; bytes or a view into immutable bytes).
            now: current time.
        Returns:
            ACCEPTED, or ABORT when the application had closed.
        Raises:
            PeerViolation: a number repeated with other bytes, or a message beyond the limit.
        """
        stats = self.stats
        receive_next = self.next
        sequence = unwrap_sequence(wire_sequence, receive_next)
        if sequence < receive_next:
            stats.duplicates += 1
            remembered = self.delivered_checksums.get(sequence)
            if remembered is not None and remembered != checksum:
                raise PeerViolation(f"datagram {wire_sequence} was repeated with different bytes")
            self.ack_now = True
            return ACCEPTED
        if sequence >= self.edge():
            stats.out_of_window += 1
            self.ack_now = True
            return ACCEPTED
        if self.application_closed and not flags & FLAG_FIN:
            return ABORT
        if sequence != receive_next:
            reorder = self.reorder
            held = reorder.get(sequence)
            if held is not None:
                stats.duplicates += 1
                if held[1] != checksum or held[2] != flags & _KEPT_FLAGS:
                    raise PeerViolation(f"datagram {wire_sequence} was repeated with different bytes")
            else:
                stats.out_of_order += 1
                reorder[sequence] = (payload, checksum, flags & _KEPT_FLAGS)
                self.ranges.add(sequence, sequence + 1)
            self.ack_now = True
            return ACCEPTED
        # In order: deliver it and whatever it unblocks from the reorder buffer.
        self._accept_in_order(payload, checksum, flags)
        reorder = self.reorder
        if reorder:
            while self.next in reorder:
                payload, held_checksum, held_flags = reorder.pop(self.next)
                self._accept_in_order(payload, held_checksum, held_flags)
            self.ranges.discard_below(self.next)
            self.ack_now = True
        self.unacknowledged += 1
        if flags & (FLAG_ACK_NOW | FLAG_FIN) or self.unacknowledged >= self.ack_every:
            self.ack_now = True
        elif self.ack_deadline is None:
            self.ack_deadline = now + self.ack_delay
        return ACCEPTED

    def _accept_in_order(self, payload: bytes | memoryview, checksum: int, flags: int) -> None:
        sequence = self.next
        self.next = sequence + 1
        checksums = self.delivered_checksums
        checksums[sequence] = checksum
        checksums.pop(sequence - self.capacity, None)
        if flags & FLAG_FIN:
            self.peer_finished = True
            self.ack_now = True
            return
        partial = self.partial
        limit = self.max_message_size
        if flags & FLAG_MESSAGE_END and not partial:
            # The whole message in one datagram (the common case of small messages).
            message = payload if type(payload) is bytes else bytes(payload)
            fragments = 1
            if len(message) > limit:
                raise PeerViolation(f"a message grew beyond {limit} bytes")
        else:
            partial.append(payload)
            self.partial_bytes += len(payload)
            if self.partial_bytes > limit:
                raise PeerViolation(f"a message grew beyond {limit} bytes")
            if not flags & FLAG_MESSAGE_END:
                return
            fragments = len(partial)
            message = b"".join(partial)
            self.partial = []
            self.partial_bytes = 0
        stats = self.stats
        stats.messages_delivered += 1
        stats.payload_bytes_delivered += len(message)
        if not self.application_closed:
            self.messages.append((message, fragments))
            self.queued_datagrams += fragments
