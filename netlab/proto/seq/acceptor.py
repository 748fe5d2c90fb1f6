"""A server's stateless front door for sequenced UDP (the handshake's server half).

How this works: a :class:`SequencingAcceptor` answers datagrams that belong to
no known connection. An INITIAL of the right size gets a RETRY carrying a
cookie (:mod:`~netlab.proto.seq.cookie`) and the server keeps nothing; a
COOKIE_ECHO whose cookie verifies for the sender's address and connection id
creates a :class:`~netlab.proto.seq.connection.SequencingConnection` (its
ACCEPT waits in the connection's outbox); DATA, ACK or PING for an unknown
connection gets a RESET. Until an address is proven by its cookie, no answer
is larger than :data:`~netlab.proto.seq.config.AMPLIFICATION_FACTOR` times
the datagram it answers (QUIC's anti-amplification rule).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

from netlab.proto.seq.config import (
    AMPLIFICATION_FACTOR,
    INITIAL_SIZE,
    HandshakeStatistics,
    SequencingConfig,
)
from netlab.proto.seq.connection import SequencingConnection
from netlab.proto.seq.cookie import COOKIE_SIZE, CookieIssuer, address_bytes
from netlab.proto.seq.wire import (
    DATAGRAM_LIMIT,
    Datagram,
    DatagramType,
    Header,
    MalformedDatagram,
    decode_header,
    encode,
)

#: Most (address, connection id) pairs remembered against replays at once.
REMEMBERED_LIMIT = 65536


class SequencingAcceptor:
    """A server's stateless front door: answers handshakes, creates connections.

    It keeps no state for a handshake under way: an INITIAL gets a RETRY with
    a cookie, a valid COOKIE_ECHO gets a new :class:`SequencingConnection`
    (whose ACCEPT is returned), a datagram for an unknown connection gets a
    RESET. No answer is ever larger than :data:`AMPLIFICATION_FACTOR` times
    the datagram it answers.

    The one thing it remembers is which (address, connection id) pairs it
    accepted while their cookies may still verify (two cookie lifetimes): a
    COOKIE_ECHO for such a pair again is a replay (a recorded session sent
    anew) and is refused, so a replayed session never runs its commands a
    second time. At most :data:`REMEMBERED_LIMIT` pairs are kept; while that
    many are, new handshakes are refused (counted in ``replay_memory_full``).
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
        # (address, connection id) -> when its cookies can no longer verify; oldest first.
        self._accepted: OrderedDict[tuple[bytes, int], float] = OrderedDict()

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
            offset = header.payload_offset
            cookie = view[offset : offset + COOKIE_SIZE]
            announced = (
                DATAGRAM_LIMIT.unpack_from(view, offset + COOKIE_SIZE)[0]
                if size - offset >= COOKIE_SIZE + DATAGRAM_LIMIT.size
                else None
            )
            if not self.issuer.verify(cookie, address, connection_id, now):
                stats.cookies_rejected += 1
                return self._answer_unvalidated(
                    self._retry(header, address, now), size
                ), None
            if not self._remember(address_bytes(address), connection_id, now):
                return [], None
            stats.cookies_accepted += 1
            connection = SequencingConnection.accepted(self.config, header, now, announced)
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

    def _remember(self, address: bytes, connection_id: int, now: float) -> bool:
        """Note an accepted pair; False (and counted) for a replay or a full memory."""
        accepted = self._accepted
        while accepted:
            oldest = next(iter(accepted.values()))
            if oldest > now:
                break
            accepted.popitem(last=False)
        key = (address, connection_id)
        if key in accepted:
            self.stats.replays_refused += 1
            return False
        if len(accepted) >= REMEMBERED_LIMIT:
            self.stats.replay_memory_full += 1
            return False
        accepted[key] = now + 2 * self.issuer.lifetime
        return True

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
