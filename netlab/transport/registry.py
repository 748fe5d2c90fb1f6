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
import inspect
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from netlab.errors import AddressError, UsageError
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


#: ``connect_x(address, timeout, **options)``: open a connection to a parsed address.
ConnectFunction = Callable[..., Connection]
#: ``listen_x(address, backlog, **options)``: bind and listen on a parsed address.
ListenFunction = Callable[..., Listener]


@dataclass(frozen=True)
class Transport:
    """What a transport module registers for one scheme.

    Attributes:
        listen_options, connect_options: the keyword options each takes
            (None: any, which the transport checks itself).
    """

    scheme: str
    listen: ListenFunction
    connect: ConnectFunction
    listen_options: frozenset[str] | None = None
    connect_options: frozenset[str] | None = None

    def check_options(self, call: str, options: Mapping[str, Any]) -> None:
        """Refuse options ``call`` (listen or connect) does not take, in one line.

        Raises:
            UsageError: naming the options and what the transport takes.
        """
        known = self.listen_options if call == "listen" else self.connect_options
        unknown = sorted(set(options) - known) if known is not None else []
        if unknown:
            takes = f"it takes {', '.join(sorted(known))}" if known else "it takes none"
            raise UsageError(f"the {self.scheme} transport has no {call} option {', '.join(unknown)}: {takes}")


def _option_names(function: Callable[..., Any]) -> frozenset[str] | None:
    """The keyword options after the first two parameters (None when it takes ``**options``)."""
    parameters = list(inspect.signature(function).parameters.values())[2:]
    if any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters):
        return None
    return frozenset(parameter.name for parameter in parameters)


_transports: dict[str, Transport] = {}
_lock = threading.Lock()


def register_transport(scheme: str, listen: ListenFunction, connect: ConnectFunction) -> None:
    """Make ``scheme`` served by a transport module; call it at module import.

    Args:
        scheme: one of the schemes :func:`parse_address` knows.
        listen: ``listen(address, backlog, **options) -> Listener``.
        connect: ``connect(address, timeout, **options) -> Connection``.
    Raises:
        ValueError: for a scheme the address parser does not know.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"cannot register unknown scheme {scheme!r}: add it to netlab.transport.address first")
    transport = Transport(scheme=scheme, listen=listen, connect=connect, listen_options=_option_names(listen),
                          connect_options=_option_names(connect))
    with _lock:
        _transports[scheme] = transport


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
        options: transport-specific keywords, e.g. ``allowed_uids`` for UNIX,
            ``options``/``rto_floor``/``impairment`` for UDP (as :func:`connect`).
    Returns:
        The listener; ``listener.address`` is the address actually bound.
    Raises:
        AddressError (malformed URL), BindError (in use, permission, path),
        UsageError (an option the transport does not take, or a bad value).
    """
    if backlog < 0:
        raise ValueError(f"backlog must be 0 or more, got {backlog}")
    parsed = _as_address(address)
    transport = transport_for(parsed.scheme)
    transport.check_options("listen", options)
    return transport.listen(parsed, backlog, **options)


def connect(address: Address | str, timeout: float | None = DEFAULT_CONNECT_TIMEOUT, **options: Any) -> Connection:
    """Connect to an address URL.

    Args:
        address: an :class:`Address` or its URL.
        timeout: seconds to wait for the connection on every transport (a full
            UNIX accept queue is waited on too); None waits forever; 0 makes one
            attempt and reports the kernel's immediate answer.
        options: transport-specific keywords, the same ``listen`` takes where
            they apply to a client (UDP's ``options``, ``rto_floor``, ``impairment``, ...).
    Returns:
        The connected :class:`Connection`.
    Raises:
        AddressError, ConnectionRefused (nothing listens; with timeout=0 also a
        full UNIX queue), ConnectTimeout (no connection within the timeout),
        ConnectError (anything else), UsageError (an option the transport does
        not take, or a bad value).
    """
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must be None or 0 or more, got {timeout}")
    parsed = _as_address(address)
    transport = transport_for(parsed.scheme)
    transport.check_options("connect", options)
    return transport.connect(parsed, timeout, **options)
