"""The conversation state machine, shared by both ends (as h11 tracks both).

Rule: everything that affects the state machine lives here. A
:class:`Session` wraps one framer: ``send`` checks that the message is allowed
now (``LocalProtocolError`` otherwise) and returns its bytes; ``next_event``
decodes the peer's next message and checks it too (``RemoteProtocolError``).

How this works: each message is first named as an :class:`Event` (an Error
with request id 0 is a connection-level failure, any other Error ends the
reply to a request). :data:`TRANSITIONS` maps (state, event) to the next
state; a pair missing from it is a protocol error. A few guards that need more
than the state sit beside the table in :meth:`Session._advance`: replies must
name the running request, request ids must increase (a replayed request is a
protocol error, never a second execution), a server that requires
authentication refuses a Request before AuthOk (it answers with a
connection-level AUTH_REQUIRED Error), and a Challenge is only valid as the
server's first message. Input and Signal must name the current request; they
are also valid just after its reply ended (the client may have sent them before
it saw the end), and the server then drops them.

The table, drawn (``c``: sent by the client, ``s``: by the server; checked
against :data:`TRANSITIONS` by the tests, and printed by :func:`diagram`)::

    IDLE ──Request(c)──▶ BUSY
    BUSY ──Output(s)──▶ BUSY
    BUSY ──Exit(s)──▶ IDLE
    BUSY ──Error(s)──▶ IDLE
    BUSY ──Input(c)──▶ BUSY
    IDLE ──Input(c)──▶ IDLE
    BUSY ──Signal(c)──▶ BUSY
    IDLE ──Signal(c)──▶ IDLE
    IDLE ──Challenge(s)──▶ CHALLENGED
    BUSY ──Challenge(s)──▶ BUSY
    CHALLENGED ──Authenticate(c)──▶ AUTHENTICATING
    AUTHENTICATING ──AuthOk(s)──▶ IDLE
    IDLE ──ConnectionError(s)──▶ CLOSED
    CHALLENGED ──ConnectionError(s)──▶ CLOSED
    AUTHENTICATING ──ConnectionError(s)──▶ CLOSED
    BUSY ──ConnectionError(s)──▶ CLOSED
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
    Input,
    Message,
    Output,
    Request,
    Signal,
    _Sentinel,
)

_Encoded = TypeVar("_Encoded", bytes, tuple[bytes, ...])


class State(enum.Enum):
    """Where the conversation is."""

    #: members are singletons: hash by identity in C (Enum's own __hash__ is Python code, run ~12 times
    #: per request by the transition look-ups)
    __hash__ = object.__hash__

    IDLE = "idle"
    CHALLENGED = "challenged"
    AUTHENTICATING = "authenticating"
    BUSY = "busy"
    CLOSED = "closed"


class Event(enum.Enum):
    """What a message means to the state machine."""

    __hash__ = object.__hash__

    REQUEST = "Request"
    OUTPUT = "Output"
    EXIT = "Exit"
    ERROR = "Error"  # the end of the reply to one request
    CONNECTION_ERROR = "ConnectionError"  # an Error with request id 0
    INPUT = "Input"  # stdin for the running command
    SIGNAL = "Signal"  # a signal for the running command
    CHALLENGE = "Challenge"
    AUTHENTICATE = "Authenticate"
    AUTH_OK = "AuthOk"


# Reading an enum member as a class attribute (Event.REQUEST) runs a descriptor in Python
# (about 0.1-0.3 us); the per-message checks below read these module names instead.
_ERROR, _CONNECTION_ERROR = Event.ERROR, Event.CONNECTION_ERROR
_AUTH_OK = Event.AUTH_OK
_SERVER = Role.SERVER

#: Who may send each event.
SENT_BY = {
    Event.REQUEST: Role.CLIENT,
    Event.AUTHENTICATE: Role.CLIENT,
    Event.INPUT: Role.CLIENT,
    Event.SIGNAL: Role.CLIENT,
    Event.OUTPUT: Role.SERVER,
    Event.EXIT: Role.SERVER,
    Event.ERROR: Role.SERVER,
    Event.CONNECTION_ERROR: Role.SERVER,
    Event.CHALLENGE: Role.SERVER,
    Event.AUTH_OK: Role.SERVER,
}

#: (state, event) -> next state; a pair that is not here is a protocol error.
TRANSITIONS: dict[tuple[State, Event], State] = {
    (State.IDLE, Event.REQUEST): State.BUSY,
    (State.BUSY, Event.OUTPUT): State.BUSY,
    (State.BUSY, Event.EXIT): State.IDLE,
    (State.BUSY, Event.ERROR): State.IDLE,
    # Input and Signal for the running request, or late for the one that just ended.
    (State.BUSY, Event.INPUT): State.BUSY,
    (State.IDLE, Event.INPUT): State.IDLE,
    (State.BUSY, Event.SIGNAL): State.BUSY,
    (State.IDLE, Event.SIGNAL): State.IDLE,
    (State.IDLE, Event.CHALLENGE): State.CHALLENGED,
    # A client may send its request before the server's challenge arrives.
    (State.BUSY, Event.CHALLENGE): State.BUSY,
    (State.CHALLENGED, Event.AUTHENTICATE): State.AUTHENTICATING,
    (State.AUTHENTICATING, Event.AUTH_OK): State.IDLE,
    **{
        (state, Event.CONNECTION_ERROR): State.CLOSED
        for state in (State.IDLE, State.CHALLENGED, State.AUTHENTICATING, State.BUSY)
    },
}

_EVENT_OF_TYPE = {
    Request: Event.REQUEST,
    Output: Event.OUTPUT,
    Exit: Event.EXIT,
    Input: Event.INPUT,
    Signal: Event.SIGNAL,
    Challenge: Event.CHALLENGE,
    Authenticate: Event.AUTHENTICATE,
    AuthOk: Event.AUTH_OK,
}
#: Events that must name the current request.
_REPLIES = frozenset({Event.OUTPUT, Event.EXIT, Event.ERROR, Event.INPUT, Event.SIGNAL})
#: :data:`TRANSITIONS` by state, then event: the same table, read without building a key per message.
_NEXT_STATE: dict[State, dict[Event, State]] = {
    state: {event: target for (source, event), target in TRANSITIONS.items() if source is state} for state in State
}

# The guard beside the table that an event needs (see Session._advance).
_NO_GUARD, _SAME_REQUEST, _NEW_REQUEST, _FIRST_WORD = 0, 1, 2, 3
_Route = tuple[Event, State, int]


def _guard(event: Event) -> int:
    if event in _REPLIES:
        return _SAME_REQUEST
    if event is Event.REQUEST:
        return _NEW_REQUEST
    if event is Event.CHALLENGE:
        return _FIRST_WORD
    return _NO_GUARD


def _routes(sender: Role) -> dict[State, dict[type, _Route]]:
    """:data:`TRANSITIONS` for what ``sender`` sends, by state and then message class: one look-up per message.

    Derived from the table (never edited by hand); Error is absent because its
    event depends on its request id (:meth:`Session._advance` reads it).
    """
    return {
        state: {kind: (event, target, _guard(event)) for kind, event in _EVENT_OF_TYPE.items()
                if SENT_BY[event] is sender and (target := _NEXT_STATE[state].get(event)) is not None}
        for state in State
    }


_ROUTES = {role: _routes(role) for role in Role}


def _reply_targets(routes: dict[State, dict[type, _Route]]) -> dict[State, State]:
    """Where an Output then an Exit lead from each state, composed from two :data:`_ROUTES` steps.

    Only states where both steps exist and need nothing beyond "names the
    current request" are here (:meth:`Session.send_reply` checks that guard once
    for both); from any other state the reply takes the two steps one by one.
    """
    targets = {}
    for state, by_kind in routes.items():
        output_route = by_kind.get(Output)
        if output_route is None or output_route[2] != _SAME_REQUEST:
            continue
        exit_route = routes[output_route[1]].get(Exit)
        if exit_route is not None and exit_route[2] == _SAME_REQUEST:
            targets[state] = exit_route[1]
    return targets


_REPLY_TARGETS = {role: _reply_targets(_ROUTES[role]) for role in Role}


def diagram() -> str:
    """The transition table drawn one transition per line, as in this module's docstring."""
    return "\n".join(
        f"{state.name} ──{event.value}({SENT_BY[event].value[0]})──▶ {target.name}"
        for (state, event), target in TRANSITIONS.items()
    )


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
        # bound once: the per-message calls
        self._sends, self._receives = _ROUTES[role], _ROUTES[self._peer]
        self._encode, self._encode_parts = framer.encode, framer.encode_parts
        self._encode_reply, self._reply_target = framer.encode_reply, _REPLY_TARGETS[role]
        self._next_reply, self._peer_reply_target = framer.next_reply, _REPLY_TARGETS[self._peer]
        self._next_message, self._next_control_message = framer.next_message, framer.next_control_message

    @property
    def receive_size(self) -> int:
        """How many bytes to ask for in one receive (1024 for the raw framing)."""
        return self.framer.receive_size

    def send(self, message: Message) -> bytes:
        """Check that we may send ``message`` now and return its bytes.

        Raises:
            LocalProtocolError: the message is out of order or not encodable
            (then the conversation has not moved).
        """
        return self._advance(message, self._sends, self.role, LocalProtocolError, self._encode)  # type: ignore[return-value]

    def send_reply(self, output: Output, end: Exit) -> bytes:
        """Send an Output and the Exit after it in one step: ``send(output) + send(end)``, checked and encoded at once.

        The step is :data:`TRANSITIONS`' two steps composed (``_REPLY_TARGETS``);
        where it does not apply (another state, another request's id) the two
        :meth:`send` calls run in turn and raise what they raise.

        Raises:
            LocalProtocolError: either message is out of order or not encodable.
        """
        target = self._reply_target.get(self.state)
        if target is None or output.request_id != self.current_request_id or end.request_id != output.request_id:
            return self.send(output) + self.send(end)
        encoded = self._encode_reply(output, end)
        self.state = target
        self._server_has_spoken = True  # only a server's table composes a reply (Output and Exit are its to send)
        return encoded

    def send_parts(self, message: Message) -> tuple[bytes, ...]:
        """Like :meth:`send`, as buffers to send gathered (output data is not copied)."""
        return self._advance(message, self._sends, self.role, LocalProtocolError,  # type: ignore[return-value]
                             self._encode_parts)

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
        message = self._next_message()
        if type(message) is not _Sentinel:
            self._advance(message, self._receives, self._peer, RemoteProtocolError)  # type: ignore[arg-type]
        return message

    def next_reply(self) -> tuple[Output, Exit] | _Sentinel | None:
        """Client: the server's next two messages in one step when they are, both whole, an output chunk and
        the usual Exit (a status or none, no limits) of the running request.

        The step is :data:`TRANSITIONS`' two steps composed (``_REPLY_TARGETS``,
        as :meth:`send_reply`); the framer takes the pair only when both name the
        running request (the guard), so nothing here can be refused. Returns
        NEED_DATA when nothing is buffered, None otherwise (nothing consumed:
        :meth:`next_event` takes the next message and checks it on its own).
        """
        target = self._peer_reply_target.get(self.state)
        if target is None:
            return None
        reply = self._next_reply(self.current_request_id)
        if type(reply) is tuple:
            self.state = target
            self._server_has_spoken = True  # only a server's replies compose
        return reply

    def next_control_event(self) -> Message | _Sentinel:
        """While a request runs (server): the client's next Input or Signal, NEED_DATA,
        END_OF_STREAM, or NOT_CONTROL when another message (a pipelined request) is next;
        that one stays buffered for :meth:`next_event` (see ``Framer.next_control_message``).

        Raises:
            RemoteProtocolError: malformed bytes or a message out of order.
        """
        message = self._next_control_message()
        if type(message) is not _Sentinel:
            self._advance(message, self._receives, self._peer, RemoteProtocolError)  # type: ignore[arg-type]
        return message

    def _advance(self, message: Message, routes: dict[State, dict[type, _Route]], sender: Role,
                 error: type[Exception], encode: Callable[[Message], _Encoded] | None = None) -> _Encoded | None:
        """Move the state by :data:`TRANSITIONS` (and the guards beside it), or raise ``error``.

        ``routes`` is the table for what ``sender`` sends (:data:`_ROUTES`). With
        ``encode`` (sending), the message is encoded after every check and
        before anything moves, so a message that cannot be encoded leaves the
        conversation where it was; its bytes are returned.
        """
        route = routes[self.state].get(type(message))
        if route is None:  # an Error (its event depends on its id), or a message not allowed now
            route = self._route_slowly(message, sender, error)
        event, target, guard = route
        if guard:
            if guard == _SAME_REQUEST:
                if message.request_id != self.current_request_id:  # type: ignore[union-attr]
                    raise error(self._refusal(message, event))
            elif guard == _NEW_REQUEST:
                if self.auth_required and not self.authenticated:
                    raise error("a request before authentication: this server requires a token")
                if message.request_id <= self.current_request_id:  # type: ignore[union-attr]
                    raise error(f"request id {message.request_id} does not increase "  # type: ignore[union-attr]
                                f"(last was {self.current_request_id}): a replay?")
            elif self._server_has_spoken:  # _FIRST_WORD
                raise error(self._refusal(message, event))
        encoded = None if encode is None else encode(message)
        if guard == _NEW_REQUEST:
            self.current_request_id = message.request_id  # type: ignore[union-attr]
        elif event is _AUTH_OK:
            self.authenticated = True
        self.state = target
        if sender is _SERVER:
            self._server_has_spoken = True
        return encoded

    def _route_slowly(self, message: Message, sender: Role, error: type[Exception]) -> _Route:
        """The route of a message :data:`_ROUTES` does not hold: an Error's, or the reason it is refused."""
        kind = type(message)
        if kind is Error:
            event = _CONNECTION_ERROR if message.request_id == 0 else _ERROR  # type: ignore[union-attr]
        else:
            event = _EVENT_OF_TYPE.get(kind)  # type: ignore[assignment]
        if event is None or SENT_BY[event] is not sender:
            raise error(f"a {sender.value} may not send {kind.__name__}")
        target = _NEXT_STATE[self.state].get(event)
        if target is None:
            raise error(self._refusal(message, event))
        return event, target, _guard(event)

    def _refusal(self, message: Message, event: Event) -> str:
        """Why ``message`` may not come now."""
        if self.state is State.CLOSED:
            return f"{type(message).__name__} after the connection was closed by an error"
        if event is Event.CHALLENGE:
            return "a challenge is only valid as the server's first message"
        if event is Event.OUTPUT:
            return f"output for request {message.request_id} while {self._describe()}"  # type: ignore[union-attr]
        if event is Event.INPUT or event is Event.SIGNAL:
            return f"{event.value.lower()} for request {message.request_id} while {self._describe()}"  # type: ignore[union-attr]
        if event is Event.EXIT or event is Event.ERROR:
            return f"end of reply for request {message.request_id} while {self._describe()}"  # type: ignore[union-attr]
        if event is Event.REQUEST:
            return f"request {message.request_id} while {self._describe()}"  # type: ignore[union-attr]
        if event is Event.AUTHENTICATE:
            return "authenticate without a challenge"
        return "auth-ok without an authenticate"

    def _describe(self) -> str:
        if self.state is State.BUSY:
            return f"request {self.current_request_id} is running"
        return f"the session is {self.state.value}"
