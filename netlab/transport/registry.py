"""Scheme -> transport dispatch behind the public ``listen`` and ``connect``.

How this works: each transport module calls :func:`register_transport` at import
time with its scheme and its listen/connect functions. The registry imports a
transport module lazily, the first time its scheme is used, from
:data:`TRANSPORT_MODULES`; so ``connect("udp://...")`` works without anyone
importing the UDP module first, and a module that is not installed yields a
one-line AddressError instead of an ImportError.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from netlab.errors import AddressError
from netlab.transport.address import SCHEMES, Address, parse_address
from netlab.transport.base import Connection, Listener

#: The module that serves each scheme; imported on first use, it registers itself.
TRANSPORT_MODULES: dict[str, str] = {
    "tcp4": "netlab.transport.tcp",
    "tcp6": "netlab.transport.tcp",
    "unix": "netlab.transport.unix",
    "unix-seqpacket": "netlab.transport.unix",
    "udp": "netlab.transport.udp",
    "udp6": "netlab.transport.udp",
    "memory": "netlab.transport.memory",
}

DEFAULT_BACKLOG = 128
DEFAULT_CONNECT_TIMEOUT = 5.0


class ConnectFunction(Protocol):
    """``connect_x(address, timeout)``: open a connection to a parsed address."""

    def __call__(self, address: Address, timeout: float | None) -> Connection: ...


#: ``listen_x(address, backlog, **options)``: bind and listen on a parsed address.
ListenFunction = Callable[..., Listener]


@dataclass(frozen=True)
class Transport:
    """What a transport module registers for one scheme."""

    scheme: str
    listen: ListenFunction
    connect: ConnectFunction


_transports: dict[str, Transport] = {}
_lock = threading.Lock()


def register_transport(scheme: str, listen: ListenFunction, connect: ConnectFunction) -> None:
    """Make ``scheme`` served by a transport module; call it at module import.

    Args:
        scheme: one of the schemes :func:`parse_address` knows.
        listen: ``listen(address, backlog, **options) -> Listener``.
        connect: ``connect(address, timeout) -> Connection``.
    Raises:
        ValueError: for a scheme the address parser does not know.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"cannot register unknown scheme {scheme!r}: add it to netlab.transport.address first")
    with _lock:
        _transports[scheme] = Transport(scheme=scheme, listen=listen, connect=connect)


def transport_for(scheme: str) -> Transport:
    """The transport registered for ``scheme``, importing its module if needed.

    Raises:
        AddressError: when no module serves the scheme in this installation.
    """
    transport = _transports.get(scheme)
    if transport is not None:
        return transport
    module_name = TRANSPORT_MODULES.get(scheme)
    if module_name is not None:
        try:
            importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            raise AddressError(
                f"the {scheme} transport is not available in this installation ({module_name} is missing)"
            ) from exc
    transport = _transports.get(scheme)
    if transport is None:
        raise AddressError(f"no transport serves {scheme}:// addresses: use one of {', '.join(sorted(_transports))}")
    return transport


def _as_address(address: Address | str) -> Address:
    return parse_address(address) if isinstance(address, str) else address


def listen(address: Address | str, backlog: int = DEFAULT_BACKLOG, **options: Any) -> Listener:
    """Bind and listen on an address URL.

    Args:
        address: an :class:`Address` or its URL; port 0 picks an ephemeral port.
        backlog: the accept queue size asked of the kernel (Linux admits backlog+1,
            capped by net.core.somaxconn).
        options: transport-specific keywords, e.g. ``allowed_uids`` for UNIX.
    Returns:
        The listener; ``listener.address`` is the address actually bound.
    Raises:
        AddressError (malformed URL), BindError (in use, permission, path).
    """
    if backlog < 0:
        raise ValueError(f"backlog must be 0 or more, got {backlog}")
    parsed = _as_address(address)
    return transport_for(parsed.scheme).listen(parsed, backlog, **options)


def connect(address: Address | str, timeout: float | None = DEFAULT_CONNECT_TIMEOUT) -> Connection:
    """Connect to an address URL.

    Args:
        address: an :class:`Address` or its URL.
        timeout: seconds to wait for the connection on every transport (a full
            UNIX accept queue is waited on too); None waits forever; 0 makes one
            attempt and reports the kernel's immediate answer.
    Returns:
        The connected :class:`Connection`.
    Raises:
        AddressError, ConnectionRefused (nothing listens; with timeout=0 also a
        full UNIX queue), ConnectTimeout (no connection within the timeout),
        ConnectError (anything else).
    """
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must be None or 0 or more, got {timeout}")
    parsed = _as_address(address)
    return transport_for(parsed.scheme).connect(parsed, timeout)
