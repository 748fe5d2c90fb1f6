"""One connection of the command service, independent of transport and model.

How this works: a :class:`ConnectionHandler` owns a server :class:`Session` on
one transport connection. The server models only move bytes in
(:meth:`ConnectionHandler.feed`) and decide which thread runs a request
(:meth:`ConnectionHandler.take_request` / :meth:`ConnectionHandler.run_request`);
everything the service says goes out through :meth:`ConnectionHandler.send`,
one transport send per flush. Output of in-process built-ins is gathered and
sent with the Exit in one write (a ping-pong costs one send each way); output
of a real process is sent as it arrives.

Writes block (bounded by the write timeout) unless :attr:`ConnectionHandler.write_buffer`
is set: then they are queued there for an event loop to flush when the
socket can take them (the selector model), so a peer that never reads stalls
only itself.

Deadlines: a whole request must arrive within ``request_deadline`` of its first
byte; a connection that has not sent a request yet may idle only
``first_request_timeout``; with a token, it must authenticate within
``login_grace`` of connecting (sshd's LoginGraceTime), whatever it sends.

While a command runs the handler is also its :class:`CommandControl`: where
the framing carries Input and Signal (length), the executor's loop watches the
connection and :meth:`ConnectionHandler.poll` feeds stdin, delivers signals and
reports a hang-up (end of stream or a broken connection), on which the command's
process group is killed and the connection closed with the reason logged. The
text framings (raw, ack, line) read nothing while a command runs: their
clients may pipeline or half-close, so end of stream is not a hang-up there;
a client that left is noticed when output can no longer be sent.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass

from netlab.errors import NetlabError, PolicyError, ProtocolError, ReadTimeout, TransportError
from netlab.proto.auth import new_challenge, verify_answer
from netlab.proto.framing import DEFAULT_MAX_FRAME, OUTPUT_CHUNK_SIZE, Framer, Role, make_framer
from netlab.proto.messages import (
    END_OF_STREAM,
    NEED_DATA,
    NOT_CONTROL,
    Authenticate,
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
from netlab.service.admission import AuthThrottle, peer_host
from netlab.service.builtins import Builtin
from netlab.service.channel import MESSAGE_SEND_SIZE, Channel
from netlab.service.commandline import split_command_line
from netlab.service.control import RunningCommand, signal_number
from netlab.service.executor import SHELL, Executor
from netlab.service.log import ServerLog, render_argv
from netlab.transport.base import Connection

FLUSH_THRESHOLD = 64 * 1024
#: Output chunks over a byte stream (length framing): three times 64 KiB, so a
#: frame stays within the default 256 KiB ``max_frame``.
STREAM_OUTPUT_CHUNK_SIZE = 3 * OUTPUT_CHUNK_SIZE
WRITE_TIMEOUT = 30.0


def output_chunk_size(connection: Connection, framer: Framer) -> int:
    """The output chunk size for a connection: 64 KiB, 192 KiB, or a size whose frames fill whole datagrams.

    Over a byte stream with a fixed-overhead framing (length) a chunk is
    :data:`STREAM_OUTPUT_CHUNK_SIZE` (within ``max_frame``): a bulk reply then
    costs each end a third of the frames, and one send per frame. Sequenced UDP
    carries a message in datagrams of ``message_fragment_size``
    bytes: a 65,545-byte frame (64 KiB of output) would leave a nearly empty
    second datagram behind every full one, so where the framing's overhead is
    fixed the chunk is cut to the largest whole number of datagrams in 64 KiB.
    """
    fragment, overhead = connection.message_fragment_size, framer.output_overhead
    if overhead is None:
        return OUTPUT_CHUNK_SIZE
    if fragment is None:
        if connection.max_message_size is None:
            return max(1, min(STREAM_OUTPUT_CHUNK_SIZE, framer.max_frame - overhead))
        return OUTPUT_CHUNK_SIZE
    return min(OUTPUT_CHUNK_SIZE, fragment * max(1, OUTPUT_CHUNK_SIZE // fragment) - overhead)


@dataclass(frozen=True)
class ServiceConfig:
    """Connection limits and protocol settings shared by every server model."""

    framing: str = "length"
    token: bytes | None = None
    max_frame: int = DEFAULT_MAX_FRAME
    idle_timeout: float = 300.0
    request_deadline: float = 10.0
    write_timeout: float = WRITE_TIMEOUT
    #: seconds a connection may idle before its first request (the shorter of this and idle_timeout)
    first_request_timeout: float = 10.0
    #: with a token: seconds from connecting to authenticating, whatever the peer sends meanwhile
    login_grace: float = 10.0


class ConnectionHandler:
    """The command service speaking on one connection."""

    def __init__(self, connection: Connection, executor: Executor, config: ServiceConfig, log: ServerLog,
                 throttle: AuthThrottle | None = None) -> None:
        self.connection = connection
        self.executor = executor
        self.config = config
        self.log = log
        self.session = Session(
            Role.SERVER,
            make_framer(config.framing, Role.SERVER, config.max_frame),
            auth_required=config.token is not None,
        )
        self.channel = Channel(connection, self.session)
        # bound once: the per-request calls
        self._session_send, self._channel_send = self.session.send, self.channel.send
        self._channel_feed = self.channel.feed
        self._write_timeout = config.write_timeout
        #: bytes to ask for in one receive
        self.receive_size = self.channel.receive_size
        self.commands = 0
        #: requests taken so far (a connection with none is still starting up)
        self.requests = 0
        self.closed = False
        self.last_activity = time.monotonic()
        self.throttle = throttle
        self._login_deadline = self.last_activity + config.login_grace if config.token is not None else None
        #: set by an event loop: writes are queued here instead of blocking (see the module comment)
        self.write_buffer: bytearray | None = None
        #: when the write buffer last shrank (or was first filled)
        self.write_progress = self.last_activity
        #: when the first byte of a not-yet-whole request arrived (None: none pending)
        self.request_started: float | None = None
        self._challenge: Challenge | None = None
        self._pending = bytearray()
        self._request: Request | None = None
        # True once the session said NEED_DATA: nothing more to parse until feed().
        self._drained = False
        # The request whose output the executor is delivering, and how to send it.
        self._output_id = 0
        self._flush_output = True
        self._output_sink = self._send_output  # bound once, not per request
        # A built-in's first output chunk, held (unchecked, unencoded) to go out with its Exit in one
        # session step (Session.send_reply); any other output releases it into the queue first.
        self._held: Output | None = None
        self._send_reply = self.session.send_reply
        self._output_chunk_size = output_chunk_size(connection, self.session.framer)
        # Large output goes out gathered with its header (sendmsg) where one write
        # may hold what is queued plus one chunk (streams; seqpacket's ~208 KiB).
        limit = connection.max_message_size
        self._gather_output = limit is None or limit >= FLUSH_THRESHOLD + OUTPUT_CHUNK_SIZE + 64
        # The most an event loop's write hands the connection at once (where boundaries hold, a message).
        self._send_piece = MESSAGE_SEND_SIZE if limit is not None else 4 * MESSAGE_SEND_SIZE
        # The client's side channel while a command runs (length framing only).
        self._watches_client = self.session.framer.capabilities.stdin_and_signals
        self._running: Request | None = None
        self._control_error: ProtocolError | None = None
        #: why the client hung up while its command ran ("" while it did not)
        self._hung_up = ""
        # The request take_request returned last, what it runs (looked up once) and why it cannot run.
        self._taken: Request | None = None
        self._argv: Sequence[str] = ()
        self._builtin: Builtin | None = None
        self._refusal: PolicyError | None = None

    # -- the model-facing interface ---------------------------------------------

    def start(self) -> None:
        """Greet the client: send the auth challenge when a token is required.

        A failed send closes the connection (check :attr:`closed`); nothing is raised.
        """
        self.log.connection(self.connection.peer_address, self.connection.local_address, "connected")
        if self.config.token is not None:
            self._challenge = new_challenge()
            try:
                self.send(self._challenge, flush=True)
            except TransportError as exc:  # the peer left before we greeted it
                self.close(f"failed: {exc}")

    def feed(self, data: bytes) -> None:
        """Take bytes from one receive (``b""`` = the peer closed) and process them.

        A complete request is kept for :meth:`take_request`; authentication and
        protocol errors are answered here. Raises nothing a model must handle.
        """
        self.last_activity = time.monotonic()
        try:
            if self.write_buffer is None:
                self._channel_feed(data, self._write_timeout)
            else:  # an event loop's connection: what the framing must send now is queued
                self.session.receive_data(data)
                self._write(self.session.data_to_send())
        except ProtocolError as exc:
            self._fail_protocol(exc)
            return
        except TransportError as exc:
            self.close(f"failed: {exc}")
            return
        self._drained = False
        self._parse(bool(data))

    def take_request(self) -> Request | None:
        """Return the next complete request, including ones already buffered.

        Several requests can arrive in one receive (a pipelining client, or
        sticky packets): each is returned in turn without waiting for more bytes.
        """
        request = self._request
        if request is None:
            if self._drained or self.closed:
                return None
            self._parse(False)
            request = self._request
            if request is None:
                return None
        self._request = None
        self.requests += 1
        self._prepare(request)
        return request

    @property
    def runs_at_once(self) -> bool:
        """True when the request :meth:`take_request` returned last is an instant built-in (it never waits),
        which an event loop may run where it reads."""
        builtin = self._builtin
        return builtin is not None and not builtin.interruptible

    def _prepare(self, request: Request) -> None:
        """Split ``request``'s line when it has no argv and look up its built-in: once per request."""
        argv: Sequence[str] = request.argv
        self._refusal = None
        if not argv:
            try:
                # netlab's client ends the line with a newline (so a line server would answer): not part of the command
                argv = split_command_line(request.line.rstrip("\n"))
            except PolicyError as exc:
                self._refusal = exc
        self._taken, self._argv = request, argv
        self._builtin = None if self._refusal is not None else self.executor.builtin_for(argv)

    @property
    def starting_up(self) -> bool:
        """True until the peer authenticates (token) or sends its first whole request (no token)."""
        if self.session.auth_required:
            return not self.session.authenticated
        return self.requests == 0 and self._request is None

    def _parse(self, received: bool) -> None:
        """Decode buffered events until a request is ready or more bytes are needed."""
        try:
            while self._request is None and not self.closed:
                event = self.session.next_event()
                if event is NEED_DATA:
                    self._drained = True
                    if received and self.request_started is None:
                        self.request_started = self.last_activity
                    return
                self.request_started = None
                if event is END_OF_STREAM:
                    self.close("closed by peer")
                elif type(event) is Request:
                    self._request = event  # type: ignore[assignment]
                elif type(event) is Authenticate:
                    self._authenticate(event)  # type: ignore[arg-type]
        except ProtocolError as exc:
            self._fail_protocol(exc)
        except TransportError as exc:
            self.close(f"failed: {exc}")

    def _fail_protocol(self, exc: ProtocolError) -> None:
        unauthenticated = self.session.auth_required and not self.session.authenticated
        self.fail(ErrorCode.AUTH_REQUIRED if unauthenticated else ErrorCode.BAD_REQUEST, str(exc))

    def run_request(self, request: Request) -> None:
        """Run one request to its Exit or Error; transport failures close the connection.

        Raises nothing: a refused command is answered with an Error, a failure
        to start it with a request-level Error, a broken connection is closed.
        """
        if request is not self._taken:  # not from take_request (a caller that decodes requests itself)
            self._prepare(request)
        self._taken = None
        request_id = request.request_id
        line = request.line.rstrip("\n")
        argv, builtin = self._argv, self._builtin
        try:
            if self._refusal is not None:
                raise self._refusal
            # built-ins answer at once: gather their output and send it with the Exit
            self._flush_output = builtin is None
            self._output_id = request_id
            self._running = request
            self._hung_up = ""
            result = self.executor.run(argv, self._output_sink, line=line,
                                       timeout=request.timeout or None, digest=request.digest,
                                       chunk_size=self._output_chunk_size, stdin=request.stdin,
                                       control=self if self._watches_client else None,
                                       request_id=request_id, builtin=builtin)
        except PolicyError as exc:
            self.log.command(self.connection.peer_address, self.connection.local_address, argv or (line,), None,
                             reason=str(exc), line=line)
            self._answer_error(Error(request_id, ErrorCode.COMMAND_REFUSED, str(exc)))
            return
        except TransportError as exc:
            self.close(f"failed during {render_argv(argv)}: {exc}")
            return
        except ProtocolError as exc:
            self.fail(ErrorCode.INTERNAL, str(exc))
            return
        except OSError as exc:  # e.g. out of descriptors for the pipes: this request fails, the server serves on
            text = f"cannot run {render_argv(argv)} now: {exc.strerror or exc}; try again later"
            self.log.warning(f"{self.connection.peer_address}: {text}")
            self._answer_error(Error(request_id, ErrorCode.INTERNAL, text))
            return
        finally:
            self._running = None
        self.commands += 1
        if self._control_error is not None or self._hung_up:
            self.log.command(self.connection.peer_address, self.connection.local_address, argv, result, line=line)
            if self._control_error is not None:
                self._fail_protocol(self._control_error)
            else:
                self.close(f"{self._hung_up} while {render_argv(argv)} ran: its process group was killed "
                           f"(SIGTERM, then SIGKILL after {self.executor.policy.kill_grace:g} s)")
            return
        try:
            if not self._send_exit(result):
                return
        except NetlabError as exc:
            self.close(f"failed sending the exit of {render_argv(argv)}: {exc}")
        self.last_activity = time.monotonic()
        if not self.log.quiet:
            executed = (SHELL, "-c", line or shlex.join(argv)) if self.executor.policy.unsafe_shell else argv
            self.log.command(self.connection.peer_address, self.connection.local_address, executed, result, line=line)

    def _answer_error(self, error: Error) -> None:
        """Send a request-level Error (after any held output); a failed write closes the connection."""
        try:
            self._release_held()
            self.send(error, flush=True)
        except NetlabError as exc:
            self.close(f"failed sending an error: {exc}")

    def refuse(self, code: ErrorCode, text: str) -> None:
        """Turn a new connection away before greeting it: one Error if it fits now, close, no log line."""
        self.closed = True
        try:
            if self.session.state is not State.CLOSED:
                self.connection.send_available(self.session.send(Error(0, code, text)))
        except NetlabError:
            pass
        self.connection.close()

    def send(self, message: Message, *, flush: bool = False) -> None:
        """Queue ``message``; write the queue in one send when asked or when large.

        Raises:
            TransportError: the write failed (the caller closes the connection).
        """
        frame = self._session_send(message)
        pending = self._pending
        if pending:
            pending += frame
            if flush or len(pending) >= FLUSH_THRESHOLD:
                self._write(bytes(pending))
                pending.clear()
        elif flush or len(frame) >= FLUSH_THRESHOLD:
            if frame:
                self._write(frame)  # nothing queued: no copy
        else:
            pending += frame

    def _write(self, data: bytes) -> None:
        """Send ``data`` now (blocking, bounded), or, for an event loop, what the connection takes now
        and queue the rest (nothing waits)."""
        buffer = self.write_buffer
        if buffer is None:
            self._channel_send(data, self._write_timeout)
            return
        if not data:
            return
        if not buffer:
            if len(data) <= self._send_piece:  # nothing queued: try it at once, one send (a reply's usual case)
                sent = self.connection.send_available(data)
                if sent == len(data):
                    return
                data = data[sent:]
            self.write_progress = time.monotonic()
        buffer += data

    def flush_available(self) -> bool:
        """Send what the connection takes now from :attr:`write_buffer`; True once it is empty.

        Raises:
            TransportError: the write failed (the caller closes the connection).
        """
        buffer = self.write_buffer
        if not buffer:
            return True
        piece = self._send_piece
        while buffer:
            sent = self.connection.send_available(bytes(memoryview(buffer)[:piece]))
            if not sent:
                return False
            del buffer[:sent]
            self.write_progress = time.monotonic()
        return True

    def fail(self, code: ErrorCode, text: str) -> None:
        """Send a connection-level error if the framing can, then close."""
        try:
            self._release_held()
            if self.session.state is not State.CLOSED:
                self.send(Error(0, code, text), flush=True)
        except NetlabError:
            pass
        self.close(f"closed: {code.label}: {text}")

    def close(self, why: str) -> None:
        """Close the connection once and log why."""
        if self.closed:
            return
        self.closed = True
        if self.write_buffer:
            try:  # what fits now (a queued reply, a last error); never wait for a peer that does not read
                self.flush_available()
            except NetlabError:
                pass
        self.connection.close()
        self.log.connection(
            self.connection.peer_address, self.connection.local_address, why, commands=self.commands
        )

    def deadline(self) -> float:
        """The monotonic time at which this idle, trickling, unauthenticated or unread connection is closed."""
        if self.write_buffer:
            return self.write_progress + self.config.write_timeout
        if self.request_started is not None:
            deadline = self.request_started + self.config.request_deadline
        else:
            deadline = self.last_activity + self._idle_limit()
        login = self._login_deadline
        if login is not None and login < deadline and not self.session.authenticated:
            return login
        return deadline

    def _idle_limit(self) -> float:
        config = self.config
        if self.requests == 0 and config.first_request_timeout < config.idle_timeout:
            return config.first_request_timeout
        return config.idle_timeout

    def expire(self) -> None:
        """Close the connection because its deadline passed."""
        now = time.monotonic()
        if self.write_buffer:
            self.close(f"failed: the peer did not read our data for {self.config.write_timeout:g} s")
        elif (self._login_deadline is not None and now >= self._login_deadline
              and not self.session.authenticated):
            self.fail(ErrorCode.AUTH_REQUIRED, f"did not authenticate within {self.config.login_grace:g} s")
        elif self.request_started is not None:
            self.fail(ErrorCode.REQUEST_TIMEOUT,
                      f"a request did not arrive whole within {self.config.request_deadline:g} s")
        elif self.requests == 0 and self._idle_limit() < self.config.idle_timeout:
            self.fail(ErrorCode.IDLE_TIMEOUT, f"sent no request within {self._idle_limit():g} s")
        else:
            self.fail(ErrorCode.IDLE_TIMEOUT, f"idle for {self.config.idle_timeout:g} s")

    # -- the client's side channel while a command runs (CommandControl) ----------

    def fileno(self) -> int:
        """The connection's descriptor, watched by the executor while a command runs."""
        return self.connection.fileno()

    def attach(self, command: RunningCommand) -> None:
        """The command started: act on Input or Signal that arrived with the request."""
        self._dispatch_control(command)

    def poll(self, command: RunningCommand) -> None:
        """Read what the client sent while its command runs and act on it."""
        try:
            data = self.connection.receive(self.receive_size, 0)
        except ReadTimeout:
            return
        except TransportError as exc:
            self._hang_up(command, f"the connection broke ({exc})")
            return
        self.last_activity = time.monotonic()
        try:
            self.channel.feed(data, self.config.write_timeout)
        except ProtocolError as exc:
            self._control_error = exc
            self._hang_up(command, f"the client broke the protocol ({exc})")
            return
        except TransportError as exc:
            self._hang_up(command, f"the connection broke ({exc})")
            return
        self._dispatch_control(command)

    def _dispatch_control(self, command: RunningCommand) -> None:
        running = self._running
        try:
            while True:
                event = self.session.next_control_event()
                kind = type(event)
                if kind is Input:
                    if running is None or not running.stdin:
                        raise ProtocolError("input for a request that did not ask to send stdin (flag 0x02)")
                    if event.data:  # type: ignore[union-attr]
                        command.write_stdin(event.data)  # type: ignore[union-attr]
                    else:
                        command.close_stdin()
                elif kind is Signal:
                    self._deliver_signal(command, event.name)  # type: ignore[union-attr]
                elif event is END_OF_STREAM:
                    self._hang_up(command, "the client closed the connection")
                    return
                elif event is NOT_CONTROL:  # the next request is queued: it waits for this one
                    command.stop_watching()
                    return
                else:
                    return
        except ProtocolError as exc:
            self._control_error = exc
            self._hang_up(command, f"the client broke the protocol ({exc})")

    def _hang_up(self, command: RunningCommand, reason: str) -> None:
        """The client is gone: the command's group is killed, and the connection closed once it ended."""
        self._hung_up = reason
        command.hang_up(reason)

    def _deliver_signal(self, command: RunningCommand, name: str) -> None:
        number = signal_number(name)
        line = self._running.line.rstrip("\n") if self._running is not None else ""
        if number is None:  # RFC 4254: a signal the server does not know is ignored
            self.log.warning(f"{self.connection.peer_address}: ignored signal {name!r} for {line!r}: "
                             "not one a client may send")
            return
        self.log.connection(self.connection.peer_address, self.connection.local_address,
                            f"signal {name} from the client delivered to {line!r}")
        command.send_signal(number)

    # -- internals ---------------------------------------------------------------

    def _send_output(self, stream: int, data: bytes) -> None:
        """The executor's output sink for the running request."""
        if len(data) >= self._output_chunk_size and self._gather_output:  # a whole chunk: send it now
            self._release_held()
            self._send_gathered(Output(self._output_id, stream, data))
        elif self._flush_output:
            self.send(Output(self._output_id, stream, data), flush=True)
        elif self._held is None and not self._pending:  # a built-in's first chunk: it goes with the Exit
            self._held = Output(self._output_id, stream, data)
        else:
            self._release_held()
            self.send(Output(self._output_id, stream, data))

    def _release_held(self) -> None:
        """Queue the held output chunk (if any) as :meth:`send` would have, before anything else goes out.

        Raises:
            LocalProtocolError: it may not be sent now; TransportError: the write failed.
        """
        held = self._held
        if held is not None:
            self._held = None
            self.send(held)

    def _send_exit(self, result: Exit) -> bool:
        """Send the Exit, with the held output chunk in one session step when there is one.

        Returns False when the held chunk could not be sent: then, as when a chunk
        fails on its way out while the command runs, the connection failed (INTERNAL).

        Raises:
            NetlabError: the Exit cannot be sent.
        """
        held = self._held
        if held is None:
            self.send(result, flush=True)
            return True
        self._held = None
        try:
            frames = self._send_reply(held, result)
        except ProtocolError:  # the two steps one by one, to say which failed
            try:
                self.send(held)
            except ProtocolError as exc:
                self.fail(ErrorCode.INTERNAL, str(exc))
                return False
            self.send(result, flush=True)
            return True
        self._write(frames)  # nothing was queued while a chunk was held
        return True

    def _send_gathered(self, output: Output) -> None:
        """Send a large Output now, after anything queued, without copying its data into the frame."""
        parts = self.session.send_parts(output)
        if self._pending:
            parts = (bytes(self._pending), *parts)
            self._pending.clear()
        if not parts:  # the ack framing collects output: an empty send would read as end of stream
            return
        if self.write_buffer is not None:
            self._write(b"".join(parts))
            return
        self.connection.send_parts(parts, self.config.write_timeout)

    def _authenticate(self, answer: Authenticate) -> None:
        assert self._challenge is not None and self.config.token is not None
        host = peer_host(self.connection.peer_address)
        throttle = self.throttle
        wait = throttle.wait_needed(host) if throttle is not None else 0.0
        if wait > 0:
            self.fail(ErrorCode.AUTH_FAILED, f"too many failed attempts from {host}: this answer was not checked; "
                                             f"wait {wait:.1f} s before trying again")
        elif verify_answer(self.config.token, self._challenge, answer):
            if throttle is not None:
                throttle.succeeded(host)
            self.send(AuthOk(), flush=True)
        else:
            if throttle is not None:
                throttle.failed(host)
            self.fail(ErrorCode.AUTH_FAILED, "wrong token")

