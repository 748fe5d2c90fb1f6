"""What robustness tests use against a running server: hostile raw sockets, bare sessions, "it still serves".

How this works: :func:`raw_socket` opens a plain socket to a server's TCP
address for sending hostile bytes; :func:`client_session` and
:func:`read_messages` read the replies without the client's checks;
:func:`assert_serves` runs ``echo`` through a fresh client. Every wait has a
deadline.
"""

from __future__ import annotations

import socket
import time

from netlab.proto.framing import Role, make_framer
from netlab.proto.messages import END_OF_STREAM, NEED_DATA, Message
from netlab.proto.session import Session
from netlab.service.client import Client

#: The server models a robustness test runs over.
MODELS = ("iterative", "threaded", "selector")


def tcp_endpoint(url: str) -> tuple[str, int]:
    """The (host, port) of a ``tcp4://HOST:PORT`` URL."""
    host, _, port = url.partition("://")[2].rpartition(":")
    return host.strip("[]"), int(port)


def raw_socket(url: str, source: str = "127.0.0.1", timeout: float = 10.0) -> socket.socket:
    """A plain TCP socket connected to a server's tcp4 URL from the loopback address ``source``."""
    sock = socket.create_connection(tcp_endpoint(url), timeout=timeout, source_address=(source, 0))
    return sock


def client_session(framing: str) -> Session:
    """A client session to build requests with and read the replies through."""
    return Session(Role.CLIENT, make_framer(framing, Role.CLIENT))


def read_messages(sock: socket.socket, session: Session, count: int, timeout: float = 10.0) -> list[Message]:
    """Read up to ``count`` messages through ``session`` (fewer if the server closes first), bounded by ``timeout``."""
    messages: list[Message] = []
    deadline = time.monotonic() + timeout
    while len(messages) < count:
        event = session.next_event()
        if event is NEED_DATA:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"only {messages} arrived in time"
            sock.settimeout(remaining)
            data = sock.recv(65536)
            session.receive_data(data)
            if not data:
                break
            continue
        if event is END_OF_STREAM:
            break
        messages.append(event)  # type: ignore[arg-type]
    return messages


def assert_serves(url: str, *, framing: str = "length", token: bytes | None = None, times: int = 3) -> None:
    """Run ``echo ok`` on ``times`` fresh connections; each must answer."""
    for _ in range(times):
        with Client(url, framing=framing, token=token, read_timeout=10) as client:
            reply = client.run("echo ok")
        assert reply.stdout == b"ok\n"
        assert reply.exit.exit_status in (0, None)  # raw and ack carry no exit status
