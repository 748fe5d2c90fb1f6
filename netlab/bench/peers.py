"""Request/response stacks people already use, measured like netlab's echo: pyzmq, grpcio, rpyc.

How this works: each peer's server runs in a child process
(``python -m netlab.bench peer-server NAME``) on 127.0.0.1, pinned like netlab's
servers, and prints its port; the client here times ``count`` round trips of the
same 16-byte payload through :func:`~netlab.bench.figures.time_round_trips`:

- ``pyzmq``: REQ/REP over ``tcp://``;
- ``grpcio``: one unary-unary method served by a generic handler whose
  (de)serializers pass bytes through (no generated code);
- ``rpyc``: a service's exposed ``echo`` called through a classic connection.

The packages are the optional extra ``netlab[peers]``; a missing one makes
:func:`peer_round_trips` raise :class:`PeerMissing`, which the bench shows as a
skipped row, never a failure.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from netlab.bench.figures import (
    IO_TIMEOUT,
    PING_SIZE,
    STARTUP_TIMEOUT,
    STOP_TIMEOUT,
    RoundTripFigures,
    time_round_trips,
)
from netlab.bench.pinning import pin_server
from netlab.errors import NetlabError, TransportError
from netlab.service.launch import start_child

#: The peers, and the package each needs.
PEERS = {"pyzmq": "zmq", "grpcio": "grpc", "rpyc": "rpyc"}
HOST = "127.0.0.1"
_GRPC_METHOD = "/netlab.bench.Echo/Echo"


class PeerMissing(NetlabError):
    """The peer's package is not installed: its row is skipped."""


def peer_available(name: str) -> str | None:
    """None when the peer can run here, else why not (one line)."""
    module = PEERS[name]
    if importlib.util.find_spec(module) is None:
        return f"{name} is not installed (pip install 'netlab[peers]')"
    return None


def peer_round_trips(name: str, *, count: int = 10_000, duration: float | None = None,
                     payload_size: int = PING_SIZE) -> RoundTripFigures:
    """Time ``count`` round trips of ``payload_size`` bytes through peer ``name``'s server in a child process.

    Raises:
        PeerMissing: its package is not installed.
        TransportError: its server did not start, or a reply was wrong.
    """
    missing = peer_available(name)
    if missing:
        raise PeerMissing(missing)
    payload = b"p" * payload_size
    with _peer_server(name) as port, _CLIENTS[name](port) as call:

        def one_round_trip() -> None:
            if call(payload) != payload:
                raise TransportError(f"the {name} peer returned the wrong bytes")

        return time_round_trips(one_round_trip, count, duration)


@contextmanager
def _peer_server(name: str) -> Iterator[int]:
    child = start_child(("peer-server", name), module="netlab.bench", stdout=subprocess.PIPE)
    try:
        pin_server(child.process.pid)
        line = (child.read_line(child.process.stdout, STARTUP_TIMEOUT) or "").strip()
        if not line.isdigit():
            raise TransportError(f"the {name} peer server did not start within {STARTUP_TIMEOUT:g} s")
        pin_server(child.process.pid)  # the threads it started meanwhile
        yield int(line)
    finally:
        child.stop(STOP_TIMEOUT)


# -- clients ------------------------------------------------------------------------------

@contextmanager
def _zmq_client(port: int) -> Iterator[Callable[[bytes], bytes]]:
    import zmq

    context = zmq.Context()
    sock = context.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, int(IO_TIMEOUT * 1000))
    sock.connect(f"tcp://{HOST}:{port}")
    send, recv = sock.send, sock.recv

    def call(payload: bytes) -> bytes:
        send(payload)
        return recv()  # type: ignore[no-any-return]

    try:
        yield call
    finally:
        sock.close()
        context.term()


@contextmanager
def _grpc_client(port: int) -> Iterator[Callable[[bytes], bytes]]:
    import grpc

    channel = grpc.insecure_channel(f"{HOST}:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=STARTUP_TIMEOUT)
        method = channel.unary_unary(_GRPC_METHOD)

        def call(payload: bytes) -> bytes:
            return method(payload, timeout=IO_TIMEOUT)  # type: ignore[no-any-return]

        yield call
    finally:
        channel.close()


@contextmanager
def _rpyc_client(port: int) -> Iterator[Callable[[bytes], bytes]]:
    import rpyc

    connection = rpyc.connect(HOST, port, config={"sync_request_timeout": IO_TIMEOUT})
    try:
        yield connection.root.echo  # type: ignore[no-any-return]
    finally:
        connection.close()


_CLIENTS = {"pyzmq": _zmq_client, "grpcio": _grpc_client, "rpyc": _rpyc_client}


# -- servers (in the child process) ----------------------------------------------------------

def _serve_zmq(report: Callable[[int], None]) -> None:
    import zmq

    context = zmq.Context()
    sock = context.socket(zmq.REP)
    port = sock.bind_to_random_port(f"tcp://{HOST}")
    report(port)
    while True:
        sock.send(sock.recv())


def _serve_grpc(report: Callable[[int], None]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import grpc

    server = grpc.server(ThreadPoolExecutor(max_workers=1))
    handler = grpc.unary_unary_rpc_method_handler(lambda request, _context: request)
    service, method = _GRPC_METHOD.strip("/").split("/")
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, {method: handler}),))
    port = server.add_insecure_port(f"{HOST}:0")
    server.start()
    report(port)
    server.wait_for_termination()


def _serve_rpyc(report: Callable[[int], None]) -> None:
    import rpyc
    from rpyc.utils.server import OneShotServer

    class EchoService(rpyc.Service):  # type: ignore[misc]
        def exposed_echo(self, payload: bytes) -> bytes:
            return payload

    server = OneShotServer(EchoService, hostname=HOST, port=0)
    threading.Timer(0, lambda: report(server.port)).start()
    server.start()


_SERVERS = {"pyzmq": _serve_zmq, "grpcio": _serve_grpc, "rpyc": _serve_rpyc}


def main(arguments: Sequence[str] | None = None) -> None:
    """A child process of this module: ``peer-server NAME`` (its port on stdout, then serve until killed)."""
    (name,) = (sys.argv[1:] if arguments is None else arguments)[1:]
    _SERVERS[name](lambda port: print(port, flush=True))
