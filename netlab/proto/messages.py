"""The typed messages of the command service.

A conversation is: an optional authentication step (``Challenge`` from the
server, ``Authenticate`` from the client, ``AuthOk``), then any number of
requests, each answered by output chunks and exactly one ``Exit`` or ``Error``.
While a request runs the client may send ``Input`` (the command's stdin, when
the request asked for it) and ``Signal`` (deliver a signal to the command, as
RFC 4254's "signal" channel request does).
``session.py`` enforces that order; ``codec.py`` and the framers turn these
values into bytes.

Messages are values: nothing mutates one after it is built. They are not
``frozen`` dataclasses only because a frozen constructor sets each field through
``object.__setattr__``, which costs several microseconds per round trip on the
hot path (about 0.9 us for an Exit instead of 0.15 us).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

STDOUT = 1
STDERR = 2


class ErrorCode(enum.IntEnum):
    """Stable error codes carried by :class:`Error` (names are part of the wire)."""

    BAD_REQUEST = 1
    COMMAND_REFUSED = 2
    AUTH_REQUIRED = 3
    AUTH_FAILED = 4
    SERVER_BUSY = 5
    SHUTTING_DOWN = 6
    INTERNAL = 7
    REQUEST_TIMEOUT = 8
    IDLE_TIMEOUT = 9

    @property
    def label(self) -> str:
        """The code as written in text framings, e.g. ``command-refused``."""
        return self.name.lower().replace("_", "-")


@dataclass(slots=True)
class Request:
    """Run a command. ``argv`` is what runs; ``line`` is what the user typed.

    ``timeout`` (seconds, 0 = the server's default) may only lower the server's
    command timeout. ``digest`` asks the server for the SHA-256 of stdout in
    the Exit (hashing costs ~32 us per 64 KiB on each end, so it is opt-in).
    ``stdin`` says the client sends the command's stdin as :class:`Input`
    messages (ending with an empty one); without it stdin is empty.
    """

    request_id: int
    argv: tuple[str, ...]
    line: str
    timeout: float = 0.0
    digest: bool = False
    stdin: bool = False


@dataclass(slots=True)
class Output:
    """A chunk of the command's stdout (``stream=STDOUT``) or stderr (``STDERR``)."""

    request_id: int
    stream: int
    data: bytes


@dataclass(slots=True)
class Exit:
    """The end of a reply: how the command ended, and what was sent.

    Exactly one of ``exit_status`` and ``signal`` is set when the framing can
    carry a status; both are None when it cannot (raw, ack). The reasons a
    server stopped the command carry the limit that stopped it:
    ``command_timeout`` (seconds) when ``timed_out``, ``output_cap`` (bytes per
    stream) when ``truncated``; both are 0 otherwise.
    """

    request_id: int
    exit_status: int | None
    signal: int | None = None
    duration: float = 0.0
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    stdout_sha256: bytes = b""
    truncated: bool = False
    timed_out: bool = False
    command_timeout: float = 0.0
    output_cap: int = 0


@dataclass(slots=True)
class Error:
    """The end of a reply that failed, or (``request_id`` 0) of the connection."""

    request_id: int
    code: ErrorCode
    message: str


@dataclass(slots=True)
class Input:
    """Client to server: bytes for the running command's stdin; empty ``data`` closes it."""

    request_id: int
    data: bytes


@dataclass(slots=True)
class Signal:
    """Client to server: deliver a signal to the running command's process group.

    ``name`` is the signal's name without ``SIG``, as RFC 4254 writes it (``INT``,
    ``TERM``, ``HUP``, ``KILL``, ``QUIT``, ``USR1``, ``USR2``).
    """

    request_id: int
    name: str


@dataclass(slots=True)
class Challenge:
    """Server to client: prove you know the token by MACing this nonce."""

    nonce: bytes


@dataclass(slots=True)
class Authenticate:
    """Client to server: HMAC-SHA256(token, context + nonce)."""

    mac: bytes


@dataclass(slots=True)
class AuthOk:
    """Server to client: authenticated; requests are now accepted."""


Message = Request | Output | Exit | Error | Input | Signal | Challenge | Authenticate | AuthOk


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: Returned by ``next_event`` when more bytes are needed for the next message.
NEED_DATA = _Sentinel("NEED_DATA")
#: Returned by ``next_event`` after the peer closed cleanly between messages.
END_OF_STREAM = _Sentinel("END_OF_STREAM")
#: Returned by ``next_control_event`` when the next message is not Input or Signal
#: (a pipelined request): it stays buffered until the running request ends.
NOT_CONTROL = _Sentinel("NOT_CONTROL")
