"""One connection end's handshake: what to send, when to resend, when to give up (sans-IO).

How this works: a :class:`Handshake` never builds a datagram and never fails
the connection itself; it returns decisions and the connection acts on them.
The client asks :meth:`Handshake.request` for the datagram to send (INITIAL,
padded to :data:`~netlab.proto.seq.config.INITIAL_SIZE`, until a RETRY gave
it a cookie, then COOKIE_ECHO); the server asks :meth:`Handshake.accept` for
its ACCEPT's payload. Each of these arms :attr:`Handshake.deadline`. When the
deadline passes, :meth:`Handshake.back_off` either doubles the interval (up to
:data:`~netlab.proto.seq.config.HANDSHAKE_INTERVAL_CAP`, and never inflating
the data RTO) so the caller sends again, or returns the error that ends the
connection: after ``handshake_timeout`` seconds when that is set, else after
``1 + retry_limit`` transmissions.

Handshake (client side; the server's stateless half is
:mod:`~netlab.proto.seq.acceptor`): INITIAL -> RETRY(cookie) ->
COOKIE_ECHO(cookie) -> ACCEPT; the client's first datagram after ACCEPT
(an ACK, or DATA carrying the acknowledgement) tells the server it arrived.
"""

from __future__ import annotations

from netlab.errors import BrokenError, ConnectTimeout, NetlabError
from netlab.proto.seq.config import HANDSHAKE_INTERVAL_CAP, INITIAL_SIZE, SequencingConfig
from netlab.proto.seq.cookie import COOKIE_SIZE
from netlab.proto.seq.wire import DATAGRAM_LIMIT, HEADER_SIZE, DatagramType


class Handshake:
    """The handshake's timers, cookie and counts for one connection end.

    Attributes:
        cookie: the cookie the server's RETRY gave us (client; empty until then).
        deadline: when the datagram we sent last goes unanswered (None: nothing awaits an answer).
        transmissions: handshake datagrams sent since the last fresh cookie.
    """

    __slots__ = (
        "_announcement",
        "_bound",
        "_interval",
        "_interval_cap",
        "_retry_limit",
        "_sent_at",
        "_started",
        "cookie",
        "deadline",
        "transmissions",
    )

    def __init__(self, config: SequencingConfig, rto: float, now: float) -> None:
        """Start the handshake's clock.

        Args:
            config: the connection's settings (bound, retry limit, our datagram limit).
            rto: the first wait for an answer (the retransmission timer's RTO).
            now: current time.
        """
        self.cookie = b""
        self.deadline: float | None = None
        self.transmissions = 0
        self._sent_at = now
        self._started = now
        self._interval = rto
        self._interval_cap = max(config.initial_rto, HANDSHAKE_INTERVAL_CAP)
        self._bound = config.handshake_timeout
        self._retry_limit = config.retry_limit
        self._announcement = DATAGRAM_LIMIT.pack(config.max_datagram_size)

    @property
    def announcement(self) -> bytes:
        """Our largest datagram, as every handshake datagram announces it."""
        return self._announcement

    def request(self, now: float) -> tuple[DatagramType, bytes]:
        """Client: the handshake datagram to send now (its type and payload); arms the deadline."""
        announcement = self._announcement
        self.transmissions += 1
        self._sent_at = now
        self._arm(now)
        if self.cookie:
            return DatagramType.COOKIE_ECHO, self.cookie + announcement
        padding = bytes(INITIAL_SIZE - HEADER_SIZE - len(announcement))
        return DatagramType.INITIAL, announcement + padding

    def accept(self, now: float) -> bytes:
        """Server: the ACCEPT's payload to (re)send until the client shows it arrived; arms the deadline."""
        self.transmissions += 1
        self._arm(now)
        return self._announcement

    def take_cookie(self, payload: bytes | memoryview, rto: float) -> bool:
        """Client: a RETRY arrived. True when it carries a fresh cookie: send :meth:`request` again.

        A fresh cookie starts the count and the backoff over (the server
        answered, so the path works).
        """
        cookie = bytes(payload)
        if len(cookie) != COOKIE_SIZE or cookie == self.cookie:
            return False
        self.cookie = cookie
        self.transmissions = 0
        self._interval = rto
        return True

    def answered(self, now: float) -> float | None:
        """Client: the ACCEPT arrived. Returns a round-trip sample, or None when it is ambiguous.

        Only an echo sent once gives a valid sample (Karn's rule).
        """
        self.deadline = None
        if self.transmissions == 1:
            return now - self._sent_at
        return None

    def confirmed(self) -> None:
        """Server: the client's first datagram after ACCEPT arrived; stop resending."""
        self.deadline = None

    def back_off(self, now: float, *, connecting: bool) -> NetlabError | None:
        """Our handshake datagram went unanswered: back off, or give up at the bound.

        Args:
            now: current time, at or after :attr:`deadline`.
            connecting: True for a client still waiting for ACCEPT, False for
                a server waiting for the client to confirm.
        Returns:
            None when the caller should send the handshake datagram again (the
            interval has doubled); else the error that ends the connection,
            naming the bound.
        """
        bound = self._bound
        attempts = self.transmissions
        if bound is not None:
            given_up = now >= self._started + bound
            limit = (
                f"within {bound:g} s ({attempts} attempts, "
                f"resent with backoff up to {self._interval_cap:g} s apart)"
            )
        else:
            given_up = attempts > self._retry_limit
            limit = f"after {attempts} attempts"
        if given_up:
            if connecting and self.cookie:
                # A server answered our INITIAL with a cookie but never accepted the echo.
                return ConnectTimeout(
                    f"the server sent a cookie but never accepted {limit}: its accept queue is full "
                    "(it accepts no new connection until the application accepts one), or the path "
                    "loses what we send; try again later"
                )
            if connecting:
                return ConnectTimeout(
                    f"no handshake answer {limit}: is a netlab udp server listening there?"
                )
            return BrokenError(
                f"the client never confirmed the handshake {limit}: it is unreachable or gone"
            )
        self._interval = min(2 * self._interval, self._interval_cap)
        return None

    def _arm(self, now: float) -> None:
        """Wait one handshake interval for the answer, never past the handshake's bound."""
        deadline = now + self._interval
        bound = self._bound
        if bound is not None and deadline > self._started + bound:
            deadline = self._started + bound
        self.deadline = deadline
