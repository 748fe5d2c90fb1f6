"""The conversation state machine, shared by both ends (as h11 tracks both).

Rule: everything that affects the order of messages lives here. A
:class:`Session` wraps one framer: ``send`` checks that the message is allowed
now (``LocalProtocolError`` otherwise) and returns its bytes; ``next_event``
decodes the peer's next message and checks it too (``RemoteProtocolError``).

States and who moves them::

    IDLE ──Request(c)──▶ BUSY ──Output(s)*──▶ BUSY ──Exit/Error(s)──▶ IDLE
    IDLE ──Challenge(s)──▶ CHALLENGED ──Authenticate(c)──▶ AUTHENTICATING
    AUTHENTICATING ──AuthOk(s)──▶ IDLE (authenticated)
    any ──Error(s, request_id 0)──▶ CLOSED        connection-level failure

A Challenge is only valid as the server's first message. A server that
requires authentication treats a Request before AuthOk as a protocol error
(it answers with a connection-level AUTH_REQUIRED Error). Request ids must
increase, so a replayed request is a protocol error, never a second execution.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TypeVar

from netlab.errors import LocalProtocolError, RemoteProtocolError
from netlab.proto.framing.base import Framer, Role
from netlab.proto.messages import (
    Authenticate,
    AuthOk,
    Challenge,
    Error,
    Exit,
    Message,
    Output,
    Request,
    _Sentinel,
)

_Encoded = TypeVar("_Encoded", bytes, tuple[bytes, ...])


class State(enum.Enum):
    """Where the conversation is."""

    IDLE = "idle"
    CHALLENGED = "challenged"
    AUTHENTICATING = "authenticating"
    BUSY = "busy"
    CLOSED = "closed"


_SENT_BY = {
    Request: Role.CLIENT,
    Authenticate: Role.CLIENT,
    Output: Role.SERVER,
    Exit: Role.SERVER,
    Error: Role.SERVER,
    Challenge: Role.SERVER,
    AuthOk: Role.SERVER,
}


class Session:
    """One end of a conversation: a framer plus the order rules."""

    def __init__(self, role: Role, framer: Framer, *, auth_required: bool = False) -> None:
        """Args:
        role: which end this is.
        framer: the framing in use (``make_framer``); owned by the session.
        auth_required: server only — refuse requests until authenticated.
        """
        self.role = role
        self.framer = framer
        self.state = State.IDLE
        self.auth_required = auth_required
        self.authenticated = False
        self.current_request_id = 0
        self._server_has_spoken = False
        self._peer = Role.SERVER if role is Role.CLIENT else Role.CLIENT

    @property
    def receive_size(self) -> int:
        """How many bytes to ask for in one receive (1024 for the raw framing)."""
        return self.framer.receive_size

    def send(self, message: Message) -> bytes:
        """Check that we may send ``message`` now and return its bytes.

        Raises:
            LocalProtocolError: the message is out of order or not encodable.
        """
        return self._send(message, self.framer.encode)

    def send_parts(self, message: Message) -> tuple[bytes, ...]:
        """Like :meth:`send`, as buffers to send gathered (output data is not copied)."""
        return self._send(message, self.framer.encode_parts)

    def _send(self, message: Message, encode: Callable[[Message], _Encoded]) -> _Encoded:
        state, request_id, authenticated, spoken = (
            self.state, self.current_request_id, self.authenticated, self._server_has_spoken
        )
        self._advance(message, self.role, LocalProtocolError)
        try:
            return encode(message)
        except LocalProtocolError:
            # Nothing was sent, so the conversation has not moved.
            self.state, self.current_request_id, self.authenticated, self._server_has_spoken = (
                state, request_id, authenticated, spoken
            )
            raise

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from one receive (``b""`` when the peer closed)."""
        self.framer.receive_data(data)

    def get_buffer(self, size: int) -> memoryview:
        """A buffer of at least ``size`` bytes to receive into (see ``Framer.get_buffer``)."""
        return self.framer.get_buffer(size)

    def buffer_updated(self, count: int) -> None:
        """Take ``count`` bytes received into :meth:`get_buffer`'s buffer (0 when the peer closed)."""
        self.framer.buffer_updated(count)

    def data_to_send(self) -> bytes:
        """Bytes the framing must send now (the ack framing's acks and bodies)."""
        return self.framer.data_to_send()

    def next_event(self) -> Message | _Sentinel:
        """Return the peer's next message, NEED_DATA or END_OF_STREAM.

        Raises:
            RemoteProtocolError: malformed bytes or a message out of order.
        """
        message = self.framer.next_message()
        if type(message) is not _Sentinel:
            self._advance(message, self._peer, RemoteProtocolError)  # type: ignore[arg-type]
        return message

    def _advance(self, message: Message, sender: Role, error: type[Exception]) -> None:
        kind = type(message)
        if _SENT_BY.get(kind) is not sender:
            raise error(f"a {sender.value} may not send {kind.__name__}")
        state = self.state
        if kind is Output or kind is Exit:  # the steady flow of replies, checked first
            if state is not State.BUSY or message.request_id != self.current_request_id:  # type: ignore[union-attr]
                self._refuse_reply(message, error)  # type: ignore[arg-type]
            if kind is Exit:
                self.state = State.IDLE
        elif state is State.CLOSED:
            raise error(f"{kind.__name__} after the connection was closed by an error")
        elif kind is Request:
            self._check_request(message, error)  # type: ignore[arg-type]
        elif kind is Error:
            if message.request_id == 0:  # type: ignore[union-attr]
                self.state = State.CLOSED
            elif state is State.BUSY and message.request_id == self.current_request_id:  # type: ignore[union-attr]
                self.state = State.IDLE
            else:
                raise error(f"end of reply for request {message.request_id} while {self._describe()}")  # type: ignore[union-attr]
        elif kind is Challenge:
            if self._server_has_spoken or state not in (State.IDLE, State.BUSY):
                raise error("a challenge is only valid as the server's first message")
            if state is State.IDLE:
                self.state = State.CHALLENGED
        elif kind is Authenticate:
            if state is not State.CHALLENGED:
                raise error("authenticate without a challenge")
            self.state = State.AUTHENTICATING
        elif kind is AuthOk:
            if state is not State.AUTHENTICATING:
                raise error("auth-ok without an authenticate")
            self.state = State.IDLE
            self.authenticated = True
        if sender is Role.SERVER:
            self._server_has_spoken = True

    def _refuse_reply(self, message: Output | Exit, error: type[Exception]) -> None:
        if self.state is State.CLOSED:
            raise error(f"{type(message).__name__} after the connection was closed by an error")
        if type(message) is Output:
            raise error(f"output for request {message.request_id} while {self._describe()}")
        raise error(f"end of reply for request {message.request_id} while {self._describe()}")

    def _check_request(self, request: Request, error: type[Exception]) -> None:
        if self.state is not State.IDLE:
            raise error(f"request {request.request_id} while {self._describe()}")
        if self.auth_required and not self.authenticated:
            raise error("a request before authentication: this server requires a token")
        if request.request_id <= self.current_request_id:
            raise error(
                f"request id {request.request_id} does not increase (last was {self.current_request_id}): a replay?"
            )
        self.current_request_id = request.request_id
        self.state = State.BUSY

    def _describe(self) -> str:
        if self.state is State.BUSY:
            return f"request {self.current_request_id} is running"
        return f"the session is {self.state.value}"
