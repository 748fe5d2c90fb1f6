"""The command service's client: one connection, any number of commands.

How this works: a :class:`Client` connects through the transport layer, runs
the optional authentication step, then for each command sends one Request and
reads Output chunks until the Exit or Error, feeding a client :class:`Session`.
Output is handed to ``on_output`` as it arrives (so ``netlab exec`` streams);
with ``verify`` the request asks the server for the SHA-256 of stdout and the
client hashes what arrives, so :attr:`Reply.verified` can compare the two.

Where the framing carries them (length), ``stdin`` names a file descriptor
whose bytes a thread forwards as Input messages (an empty one at its end), and
an interrupt (Ctrl-C) while the reply is awaited becomes a Signal request
(``INT``), after which the client keeps reading to the remote status (130 for
SIGINT); a second interrupt gives up. Sends from the two threads go through
one lock. With the raw framing, whose replies have no end on the wire, a reply
ends after :data:`RAW_QUIET_PERIOD` seconds without a byte.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from netlab.errors import (
    AuthError,
    NetlabError,
    PolicyError,
    ReadTimeout,
    RemoteProtocolError,
    ServerError,
    UsageError,
)
from netlab.proto.auth import answer_challenge
from netlab.proto.framing import DEFAULT_MAX_FRAME, AckFramer, Role, make_framer
from netlab.proto.framing.guess import guess_framing
from netlab.proto.messages import (
    END_OF_STREAM,
    NEED_DATA,
    STDOUT,
    AuthOk,
    Challenge,
    Error,
    ErrorCode,
    Exit,
    Input,
    Message,
    Output,
    Request,
    Signal,
)
from netlab.proto.session import Session, State
from netlab.service.channel import MESSAGE_RECEIVE_SIZE, Channel, receive_size_for
from netlab.service.commandline import split_command_line
from netlab.transport import connect
from netlab.transport.address import Address
from netlab.transport.base import DEFAULT_RECEIVE_SIZE, Connection

OutputCallback = Callable[[int, bytes], None]
#: An argument shlex.quote leaves alone (its own test, applied to all arguments at once).
_needs_no_quotes = re.compile(r"[\w@%+=:,./-]+", re.ASCII).fullmatch
#: Bytes one receive may bring when the framer parses in place (length): fewer
#: system calls for bulk output (measured: as fast as 1 MiB, about 25 % faster than 64 KiB).
IN_PLACE_RECEIVE_SIZE = 256 * 1024
#: With the raw framing a reply ends when nothing arrives for this long (seconds):
#: nothing on the wire marks its end, and a command with no output sends nothing.
RAW_QUIET_PERIOD = 1.0
#: Bytes of the server's first reply kept to name its framing when ours does not match.
FIRST_BYTES_KEPT = 256
#: Seconds an ack client waits for the 'ok' to its size line (an ack server answers
#: at once; a length server waits silently for the rest of a 4-byte length).
FRAMING_PROBE_TIMEOUT = 1.5
#: Seconds a client keeps reading after a protocol error, to see what the server speaks.
MISMATCH_READ_ON = 0.5
#: Bytes of stdin read and sent as one Input message.
STDIN_CHUNK_SIZE = 64 * 1024


@dataclass(slots=True)
class Reply:
    """What one command returned: the server's :class:`Exit` (the outcome, as the server sent it),
    the output as it arrived, what the client counted and hashed of it, and client-side timings in seconds."""

    exit: Exit
    stdout: bytes = b""
    stderr: bytes = b""
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    stdout_sha256: bytes = b""
    first_byte: float = 0.0
    total: float = 0.0
    #: the Signal requests sent while it ran (e.g. ``["INT"]`` after a Ctrl-C)
    signals_sent: tuple[str, ...] = ()

    @property
    def verified(self) -> bool | None:
        """True/False when both ends hashed stdout; None when there is nothing to compare."""
        if not self.exit.stdout_sha256 or not self.stdout_sha256:
            return None
        return self.exit.stdout_sha256 == self.stdout_sha256


class Client:
    """A connection to a netlab command server."""

    def __init__(
        self,
        address: Address | str,
        *,
        framing: str = "length",
        connect_timeout: float = 5.0,
        read_timeout: float | None = 60.0,
        token: bytes | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        connection: Connection | None = None,
        connect_options: Mapping[str, Any] | None = None,
    ) -> None:
        """Connect (unless ``connection`` is given) and authenticate when a token is given.

        ``connect_options`` are the transport's options (``rto_floor``,
        ``impairment``, ... for UDP), as :func:`netlab.transport.connect` takes them.

        Raises:
            ConnectError, ConnectTimeout, AuthError, ProtocolError, UsageError
            (an option the transport does not take).
        """
        if connection is None:
            connection = connect(address, connect_timeout, **(connect_options or {}))
        self.connection = connection
        self.read_timeout = read_timeout
        self.session = Session(Role.CLIENT, make_framer(framing, Role.CLIENT, max_frame))
        receive_size = receive_size_for(self.session, self.connection)
        if framing == "length":  # it parses in its own reused area: a large receive costs no allocation
            receive_size = max(receive_size, IN_PLACE_RECEIVE_SIZE)
        self.channel = Channel(self.connection, self.session, receive_size)
        self._next_request_id = 1
        self.framing = framing
        #: raw framing: seconds without a byte that end a reply
        self.raw_quiet_period = RAW_QUIET_PERIOD
        #: raw framing: a reply is all that arrives until the quiet period (else one receive, as the tutorial)
        self.raw_whole_reply = False
        self._send_lock = threading.Lock()
        self._signals_sent: list[str] = []
        # only the ack framing waits for an 'ok' to a size line: the others never probe
        self._may_await_ack = isinstance(self.session.framer, AckFramer)
        self._carries_stdin = self.session.framer.capabilities.stdin_and_signals
        self._interruptible = False
        #: the first bytes the server sent (up to FIRST_BYTES_KEPT), to name its framing on a mismatch
        self.first_bytes = b""
        self._closed_by_server = False
        self._understood = False  # a message from the server was parsed
        if token is not None:
            self._authenticate(token)

    def run(
        self,
        command: str | Sequence[str],
        *,
        timeout: float = 0.0,
        on_output: OutputCallback | None = None,
        keep_output: bool = True,
        verify: bool = False,
        stdin: int | None = None,
        interruptible: bool = False,
    ) -> Reply:
        """Run one command and return its reply.

        Args:
            command: a command line (split like a shell would, never run by one)
                or an argv.
            timeout: ask the server for a shorter command timeout (0 = its default).
            on_output: called with (STDOUT|STDERR, chunk) as output arrives.
            keep_output: keep stdout/stderr in the reply (False for bulk transfers).
            verify: ask for the server's SHA-256 of stdout and hash what
                arrives (see :attr:`Reply.verified`).
            stdin: a file descriptor to forward to the command's stdin until
                its end (length framing only; otherwise the command's stdin is empty).
            interruptible: turn the first KeyboardInterrupt while waiting for
                the reply into a Signal request ``INT`` (length framing only).
        Raises:
            PolicyError (the server refused it), AuthError, ReadTimeout,
            ProtocolError, TransportError.
        """
        if isinstance(command, str):
            line = command
            try:
                argv = tuple(split_command_line(command))
            except PolicyError as exc:
                raise UsageError(str(exc)) from None
        else:
            argv = tuple(command)
            line = quoted_line(argv)
            if not argv:
                raise UsageError("no command given")
        carries_stdin = self._carries_stdin
        forward_stdin = stdin is not None and carries_stdin
        framing = self.framing
        if framing == "length":
            line += "\n"  # so that a line-framing server answers at once: a mismatch is named, not waited for
        request = Request(self._next_request_id, argv, line, timeout, verify, forward_stdin)
        self._next_request_id += 1
        if self._signals_sent:
            self._signals_sent = []
        self._interruptible = interruptible and carries_stdin
        started = time.monotonic()
        if framing == "raw":
            return self._run_raw(request, started, on_output, keep_output)
        with self._send_lock:
            self.channel.send(self.session.send(request), self.read_timeout)
        if forward_stdin:
            threading.Thread(target=self._forward_stdin, args=(stdin, request.request_id),
                             name="netlab-stdin", daemon=True).start()
        try:
            return self._read_reply(started, on_output, keep_output, hashlib.sha256() if verify else None)
        finally:
            self._interruptible = False

    def _run_raw(self, request: Request, started: float, on_output: OutputCallback | None,
                 keep_output: bool) -> Reply:
        """The raw framing has no conversation to check and no end of reply on the wire.

        The command line goes out as the framing encodes it. The reply is what
        one receive of the tutorial's 1024 bytes brings, or, with
        :attr:`raw_whole_reply` (``netlab exec``), everything that arrives
        until :attr:`raw_quiet_period` seconds pass without a byte. Either way
        a command with no output costs the quiet period, not the read timeout
        (or the server closing). The Exit carries no status.
        """
        connection = self.connection
        # The newline makes a line or ack server answer at once (a raw server strips it).
        self.channel.send(self.session.framer.encode(request) + b"\n", self.read_timeout)
        quiet = self.raw_quiet_period if self.read_timeout is None else min(self.read_timeout, self.raw_quiet_period)
        whole = self.raw_whole_reply
        if whole:
            size = MESSAGE_RECEIVE_SIZE if connection.preserves_boundaries else DEFAULT_RECEIVE_SIZE
        else:
            size = self.channel.receive_size
        stdout: list[bytes] = []
        received = 0
        first_byte = 0.0
        tail = b""
        while True:
            try:
                data = connection.receive(size, quiet)
            except ReadTimeout:
                break
            if not data:
                self._closed_by_server = True
                break
            tail = (tail + data)[-FIRST_BYTES_KEPT:]
            if not first_byte:
                first_byte = time.monotonic() - started
            received += len(data)
            self._remember_first_bytes(data)
            if keep_output:
                stdout.append(data)
            if on_output is not None:
                on_output(STDOUT, data)
            if not whole:
                break
        ended = time.monotonic() - started
        for seen in (self.first_bytes, tail):
            guess = guess_framing(seen, closed=self._closed_by_server)
            if guess not in (None, "raw"):
                raise RemoteProtocolError(f"the server seems to speak the {guess} framing, not raw: use --framing "
                                          f"{guess} (it answered {seen[:60]!r})")
        return Reply(Exit(request.request_id, None, stdout_bytes=received), b"".join(stdout), b"", received, 0,
                     b"", first_byte or ended, ended)

    def _remember_first_bytes(self, data: bytes) -> None:
        """Keep the first bytes the server sent: they say what it speaks when the framing does not match."""
        missing = FIRST_BYTES_KEPT - len(self.first_bytes)
        if missing > 0:
            self.first_bytes += data[:missing]

    def send_signal(self, name: str) -> None:
        """Ask the server to deliver signal ``name`` (e.g. ``INT``) to the running command.

        Raises:
            LocalProtocolError: the framing cannot carry a signal, or no command runs.
            TransportError: the send failed.
        """
        with self._send_lock:
            self._send(self.session.send(Signal(self.session.current_request_id, name)))
        self._signals_sent.append(name)

    def _forward_stdin(self, descriptor: int, request_id: int) -> None:
        """Send what ``descriptor`` gives as Input until its end or the end of the reply."""
        session = self.session
        while True:
            try:
                data = os.read(descriptor, STDIN_CHUNK_SIZE)
            except OSError:
                data = b""  # unreadable: the command sees the end of its input
            with self._send_lock:
                if session.state is not State.BUSY or session.current_request_id != request_id:
                    return  # the reply ended: the command no longer reads
                try:
                    self._send(session.send(Input(request_id, data)))
                except NetlabError:
                    return  # the connection failed: the reader reports it
            if not data:
                return

    def _read_reply(
        self, started: float, on_output: OutputCallback | None, keep_output: bool, stdout_hash: hashlib._Hash | None
    ) -> Reply:
        stdout: list[bytes] = []
        stderr: list[bytes] = []
        stdout_bytes = stderr_bytes = 0
        first_byte = 0.0
        next_reply, next_event = self.session.next_reply, self.session.next_event
        while True:
            # what already arrived first; a receive only when the session needs more bytes
            found = next_reply()  # an output chunk and the Exit together (a built-in's usual reply), in one step
            if found is NEED_DATA:
                self._receive_or_mismatch()
                continue
            events: tuple[Any, ...]
            if found is not None:
                events = found  # type: ignore[assignment]
            else:
                try:
                    event = next_event()
                except RemoteProtocolError as exc:
                    raise self._mismatch(exc) from None
                if event is NEED_DATA:
                    self._receive_or_mismatch()
                    continue
                if event is END_OF_STREAM:
                    raise self._mismatch(RemoteProtocolError(
                        "the server closed the connection before the end of the reply"))
                events = (event,)
            self._understood = True
            for event in events:
                kind = type(event)
                if kind is Output:
                    if not first_byte:
                        first_byte = time.monotonic() - started
                    data = event.data
                    if event.stream == STDOUT:
                        stdout_bytes += len(data)
                        if stdout_hash is not None:
                            stdout_hash.update(data)
                        if keep_output:
                            stdout.append(data)
                    else:
                        stderr_bytes += len(data)
                        if keep_output:
                            stderr.append(data)
                    if on_output is not None:
                        on_output(event.stream, data)
                elif kind is Exit:
                    ended = time.monotonic() - started
                    return Reply(
                        event,
                        b"".join(stdout),
                        b"".join(stderr),
                        stdout_bytes,
                        stderr_bytes,
                        b"" if stdout_hash is None else stdout_hash.digest(),
                        first_byte or ended,
                        ended,
                        tuple(self._signals_sent) if self._signals_sent else (),
                    )
                elif kind is Error:
                    raise _error_to_exception(event)
                elif kind is Challenge:
                    raise AuthError("the server requires a token: pass --token-file PATH (or set NETLAB_TOKEN)")
                else:
                    raise RemoteProtocolError(f"unexpected {kind.__name__} while waiting for a reply")

    def _next_event(self) -> Message:
        """Return the next message, receiving (and sending the framing's acks) as needed."""
        session = self.session
        try:
            event = session.next_event()
            while event is NEED_DATA:
                self._receive()
                event = session.next_event()
        except RemoteProtocolError as exc:
            raise self._mismatch(exc) from None
        if event is END_OF_STREAM:
            raise self._mismatch(RemoteProtocolError("the server closed the connection before the end of the reply"))
        self._understood = True
        return event  # type: ignore[return-value]

    def _receive_or_mismatch(self) -> None:
        """:meth:`_receive`, its protocol errors said as :meth:`_mismatch` says them."""
        try:
            self._receive()
        except RemoteProtocolError as exc:
            raise self._mismatch(exc) from None

    def _receive(self) -> None:
        """One receive into the session (and the framing's acks sent): the session said it needs more bytes.

        An interrupt while waiting becomes a Signal request ``INT`` when asked
        for (the caller then keeps reading); an ack client's size-line probe
        waits :data:`FRAMING_PROBE_TIMEOUT` at most.
        """
        channel = self.channel
        timeout = self.read_timeout
        if self._may_await_ack and self._awaits_ack():  # an ack server answers a size line at once
            timeout = FRAMING_PROBE_TIMEOUT if timeout is None else min(timeout, FRAMING_PROBE_TIMEOUT)
        try:
            if len(self.first_bytes) < FIRST_BYTES_KEPT:  # kept to name the server's framing on a mismatch
                data = self.connection.receive(channel.receive_size, timeout)
                self._remember_first_bytes(data)
                self._closed_by_server = not data
                channel.feed(data, timeout)
            else:
                self._closed_by_server = not channel.receive(timeout)
        except KeyboardInterrupt:
            if not self._interruptible or self._signals_sent:
                raise
            self.send_signal("INT")  # like ssh: the remote command gets SIGINT, we wait for its status
        except ReadTimeout:
            if timeout is not self.read_timeout and self._may_await_ack and self._awaits_ack():
                raise RemoteProtocolError(
                    f"the server did not answer 'ok' to a size line within {FRAMING_PROBE_TIMEOUT:g} s: "
                    "it does not speak the ack framing; it seems to speak length (it waits silently for "
                    "the rest of a 4-byte length): use --framing length") from None
            raise

    def _awaits_ack(self) -> bool:
        framer = self.session.framer
        return isinstance(framer, AckFramer) and framer.awaiting_ack

    def _mismatch(self, error: RemoteProtocolError) -> RemoteProtocolError:
        """``error``, or a clearer one when the server's first bytes show it speaks another framing."""
        if self._understood:  # the server spoke our framing before: this is another failure
            return error
        self._read_on_for_guess()
        guess = guess_framing(self.first_bytes, closed=self._closed_by_server)
        if guess is None or guess == self.framing:
            return error
        maybe = " (or it is not a netlab server)" if guess == "raw" else ""
        return RemoteProtocolError(f"the server seems to speak the {guess} framing{maybe}, not {self.framing}: "
                                   f"use --framing {guess} ({error})")

    def _read_on_for_guess(self) -> None:
        """After a protocol error: read what else the server sends within a moment, and whether it closes."""
        deadline = time.monotonic() + MISMATCH_READ_ON
        while not self._closed_by_server and len(self.first_bytes) < FIRST_BYTES_KEPT:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                data = self.connection.receive(FIRST_BYTES_KEPT, remaining)
            except NetlabError:
                return
            self._closed_by_server = not data
            self._remember_first_bytes(data)

    def _send(self, data: bytes) -> None:
        self.channel.send(data, self.read_timeout)

    def _authenticate(self, token: bytes) -> None:
        try:
            event = self._next_event()
        except ReadTimeout:
            raise AuthError("a token was given but the server sent no challenge: it does not use authentication, "
                            "or it is not a netlab length-framing server") from None
        if type(event) is Error:  # turned away before the challenge (busy, too many starting up): say why
            raise _error_to_exception(event)  # type: ignore[arg-type]
        if type(event) is not Challenge:
            raise RemoteProtocolError(f"expected a challenge, got {type(event).__name__}")
        self._send(self.session.send(answer_challenge(token, event)))  # type: ignore[arg-type]
        event = self._next_event()
        if type(event) is Error:
            raise _error_to_exception(event)  # type: ignore[arg-type]
        if type(event) is not AuthOk:
            raise RemoteProtocolError(f"expected auth-ok, got {type(event).__name__}")

    def close(self) -> None:
        """Close the connection."""
        self.connection.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def quoted_line(argv: tuple[str, ...]) -> str:
    """``shlex.join(argv)``: the line a shell would split back into ``argv`` (arguments quoted only where needed)."""
    line = " ".join(argv)
    # ASCII letters and digits need no quotes (checked without a regex); else shlex.quote's own test on each
    if (line.isascii() and all(map(str.isalnum, argv))) or all(map(_needs_no_quotes, argv)):
        return line
    return shlex.join(argv)


def _error_to_exception(error: Error) -> Exception:
    text = f"server: {error.code.label}: {error.message}"
    if error.code is ErrorCode.COMMAND_REFUSED:
        return PolicyError(text)
    if error.code in (ErrorCode.AUTH_REQUIRED, ErrorCode.AUTH_FAILED):
        return AuthError(text)
    return ServerError(text)
