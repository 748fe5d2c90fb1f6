"""The selector model holding idle connections: an active client's echo latency with and without them.

How this works: :func:`idle_round_trips` starts a selector server over tcp4
(a child process like every other server of the bench), opens ``idle``
connections to it that each run one ``echo`` and then stay open doing nothing
(a session that went quiet, not a half-open socket: the server counts a
connection that never sent a request as a start-up and drops it), then times
``count`` echo round trips of one active client, then closes every idle
connection (with a reset, so no TIME_WAIT is left behind). ``idle=0`` is the
same measurement without them: the bench compares the two p99s in alternating
rounds.

Every idle connection is a descriptor in this process and one in the server:
:func:`room_for_idle` raises this process's soft RLIMIT_NOFILE toward its hard
limit before the server starts (a child inherits it) and says how many fit.
"""

from __future__ import annotations

import resource
import socket
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager

from netlab.bench.figures import IO_TIMEOUT, PING_SIZE, RoundTripFigures, check_common, time_round_trips
from netlab.bench.measure import netlab_server
from netlab.errors import TransportError, UsageError
from netlab.proto.framing import Role, make_framer
from netlab.proto.messages import Request
from netlab.proto.session import Session
from netlab.service.client import Client
from netlab.transport import parse_address

#: The transport and model the measurement is about.
IDLE_TRANSPORT, IDLE_MODEL = "tcp4", "selector"
#: Descriptors each process keeps for itself beside the idle connections.
DESCRIPTOR_MARGIN = 64
#: The listen backlog while the idle connections arrive (the kernel caps it at somaxconn).
IDLE_BACKLOG = 1024
#: What each idle connection says once before going quiet, and the reply bytes it waits for.
_IDLE_WORD = "idle"
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)


def room_for_idle(wanted: int) -> tuple[int, str]:
    """Raise the soft open-files limit toward the hard one for ``wanted`` idle connections.

    Returns:
        How many idle connections fit (at most ``wanted``), and a one-line note
        when that is fewer than wanted ("" otherwise).
    Raises:
        UsageError: the hard limit leaves no room for any.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + DESCRIPTOR_MARGIN
    if soft < needed and (hard == resource.RLIM_INFINITY or soft < hard):
        soft = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    fits = min(wanted, soft - DESCRIPTOR_MARGIN)
    if fits < 1:
        raise UsageError(f"--idle {wanted}: the open-files limit ({soft} soft, {_limit(hard)} hard) leaves no room "
                         f"for idle connections beside the {DESCRIPTOR_MARGIN} each process keeps: raise it "
                         "(ulimit -n) and run again")
    if fits < wanted:
        return fits, (f"idle connections: the open-files hard limit {_limit(hard)} leaves room for {fits:,} of the "
                      f"{wanted:,} asked for, measured with {fits:,} (raise it with ulimit -Hn as root)")
    return fits, ""


def _limit(value: int) -> str:
    return "unlimited" if value == resource.RLIM_INFINITY else str(value)


def idle_round_trips(idle: int, *, count: int = 10_000, payload_size: int = PING_SIZE,
                     placement: str = "process") -> RoundTripFigures:
    """Time ``count`` echo round trips of one client while ``idle`` other connections stay open and quiet.

    Raises:
        UsageError (bad parameters), TransportError (the server did not start, or
        refused or dropped an idle connection: how many were open is said).
    """
    check_common(IDLE_TRANSPORT, placement, count, payload_size)
    if idle < 0:
        raise UsageError(f"idle connections must be 0 or more, got {idle}")
    argv = ("echo", "x" * (payload_size - 1))
    expected = argv[1].encode() + b"\n"
    with netlab_server(IDLE_TRANSPORT, "length", IDLE_MODEL, placement, backlog=IDLE_BACKLOG,
                       max_connections=idle + 8) as address:
        with _idle_connections(address, idle):
            with Client(address, framing="length", read_timeout=IO_TIMEOUT) as client:

                def one_round_trip() -> None:
                    if client.run(argv).stdout != expected:
                        raise TransportError("echo beside the idle connections returned the wrong bytes")

                return time_round_trips(one_round_trip, count, None)


@contextmanager
def _idle_connections(address: str, count: int) -> Iterator[list[socket.socket]]:
    """Open ``count`` connections that each ran one echo; close them all (reset) when the block ends."""
    parsed = parse_address(address)
    request = Session(Role.CLIENT, make_framer("length", Role.CLIENT)).send(
        Request(1, ("echo", _IDLE_WORD), f"echo {_IDLE_WORD}\n", 0.0, False, False))
    opened: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            opened.append(sock)
            try:
                sock.settimeout(IO_TIMEOUT)
                sock.connect((parsed.host, parsed.port))
                sock.sendall(request)
                _await_echo(sock)
            except OSError as exc:
                raise TransportError(f"opened {len(opened) - 1:,} of {count:,} idle connections, then: "
                                     f"{exc.strerror or exc}") from exc
        yield opened
    finally:
        for sock in opened:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
            except OSError:
                pass  # never connected: closing is enough
            sock.close()


def _await_echo(sock: socket.socket) -> None:
    """Read until the echoed word arrived (the server then counts the connection as a served session)."""
    wanted = f"{_IDLE_WORD}\n".encode()
    received = b""
    deadline = time.monotonic() + IO_TIMEOUT
    while wanted not in received:
        if time.monotonic() > deadline:
            raise TimeoutError("no echo within the timeout")
        data = sock.recv(4096)
        if not data:
            raise ConnectionResetError("the server closed the connection")
        received += data
