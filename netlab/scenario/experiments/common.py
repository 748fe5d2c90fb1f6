"""Helpers the experiments share: addresses, availability checks, a service under test, percentiles.

How this works: :func:`listen_url` gives a loopback or temp-dir address for a
transport; :func:`require_transport` turns "IPv6 is off" or "the UDP
transport is not installed yet" into :class:`RunSkipped` with the reason.
:func:`running_service` starts a real netlab command server (any model,
framing and limits) on its own thread for the length of a ``with`` block and
stops it, bounded, afterwards (through the service's one launcher).

Over ``network: namespaces`` (``context.network``): :func:`service_url` is the
server host's address, :func:`placed_service` starts the server inside the
server's namespace and :func:`on_client` creates the client's socket (a Client,
a connection) inside the client's; on loopback they are the plain calls.

Against a remote target (``context.target``, ``netlab run --target``):
:func:`served` yields the target's address and token instead of starting a
server, and :func:`client_for` connects with that token.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from netlab.errors import AddressError
from netlab.lab.placement import LOOPBACK, Placement
from netlab.scenario.experiments.base import RunContext, RunSkipped
from netlab.service.client import Client
from netlab.service.launch import ServerThread, server_in_thread
from netlab.service.policy import Policy
from netlab.transport import transport_for
from netlab.transport.address import STREAM_SCHEMES, ephemeral_url, ipv6_loopback_available
from netlab.transport.base import Listener

STREAM_TRANSPORTS = STREAM_SCHEMES
ALL_TRANSPORTS = STREAM_TRANSPORTS + ("udp",)
IP_TRANSPORTS = ("tcp4", "tcp6", "udp", "udp6")
SERVER_STOP_TIMEOUT = 10.0


def listen_url(transport: str, work_directory: str, name: str = "service") -> str:
    """A fresh address for ``transport``: an ephemeral loopback port or a socket in the run's temp dir."""
    return ephemeral_url(transport, work_directory, name + ".sock")


def service_url(transport: str, context: RunContext, name: str = "service") -> str:
    """Where a run's server listens: the server host's address over namespaces, else :func:`listen_url`.

    UNIX sockets are files: they reach across network namespaces unchanged (and never cross the link).
    """
    if context.network.namespaced and transport in IP_TRANSPORTS:
        return context.network.server_url(transport)
    return listen_url(transport, context.work_directory, name)


@contextmanager
def placed_service(context: RunContext, url: str | Listener, **settings: Any) -> Iterator[ServerThread]:
    """:func:`running_service` with its socket and thread in the server's namespace (if any).

    A listener given instead of a URL must have been made in that namespace already.
    """
    with ExitStack() as stack:
        with context.network.server():
            service = stack.enter_context(running_service(url, **settings))
        yield service


@dataclass(frozen=True)
class Endpoint:
    """Where a run's clients connect, and the token they authenticate with (None: no auth step)."""

    address: str
    token: bytes | None = field(default=None, repr=False)


@contextmanager
def served(context: RunContext, url: str, **settings: Any) -> Iterator[Endpoint]:
    """The server a run measures: the remote target when there is one (nothing is started), else
    :func:`placed_service` on ``url`` with ``settings``."""
    if context.target is not None:
        yield Endpoint(context.target.url, context.target.token)
        return
    with placed_service(context, url, **settings) as service:
        yield Endpoint(service.address)


def client_for(context: RunContext, endpoint: Endpoint, **options: Any) -> Client:
    """A :class:`Client` of ``endpoint`` (with its token), made in the client's namespace (if any)."""
    return on_client(context, lambda: Client(endpoint.address, token=endpoint.token, **options))


Made = TypeVar("Made")


def on_client(context: RunContext, make: Callable[[], Made]) -> Made:
    """Call ``make`` (which creates the client's socket) inside the client's namespace (if any)."""
    with context.network.client():
        return make()


def require_transport(transport: str, network: Placement = LOOPBACK) -> None:
    """Raise RunSkipped when ``transport`` cannot run here (IPv6 off, transport module missing)."""
    if transport in ("tcp6", "udp6") and network.namespaced:
        if network.server_address6 == LOOPBACK.server_address6:
            raise RunSkipped(f"{transport}: this kernel has IPv6 off, so the lab's namespaces have IPv4 addresses only")
    elif transport in ("tcp6", "udp6") and not ipv6_loopback_available():
        raise RunSkipped(f"{transport}: IPv6 loopback (::1) is not available on this machine")
    try:
        transport_for(transport)
    except AddressError as exc:
        raise RunSkipped(f"{transport} not available: {exc}") from None


def percentile(values: list[float], fraction: float) -> float | None:
    """The nearest-rank percentile (fraction 0.5 = median); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def milliseconds(seconds: float | None) -> float | None:
    """Seconds to milliseconds, rounded to microseconds; None stays None."""
    return None if seconds is None else round(seconds * 1000, 3)


def running_service(
    address: str | Listener,
    *,
    command_timeout: float = 30.0,
    backlog: int = 128,
    **settings: Any,
) -> AbstractContextManager[ServerThread]:
    """A netlab command server on its own thread for the length of a ``with`` block.

    Args:
        address: where to listen, or a listener already bound.
        command_timeout: the server's command timeout (commands are killed 0.2 s after SIGTERM).
        backlog: the listen backlog.
        settings: the model, framing, ``idle_timeout``, ``request_deadline`` ...
            (see :func:`~netlab.service.launch.server_in_thread`).
    Returns:
        A context manager yielding the :class:`ServerThread`: ``.address`` is
        where to connect, ``.log_events(kind)`` the server's JSON log events.
    """
    settings.setdefault("max_connections", 256)
    return server_in_thread(address, policy=Policy(command_timeout=command_timeout, kill_grace=0.2), backlog=backlog,
                            log_format="json", shutdown_grace=1.0, stop_timeout=SERVER_STOP_TIMEOUT, **settings)
