"""Transports: one Connection/Listener interface over TCP, UNIX, memory (and UDP).

``listen(url)`` and ``connect(url)`` pick the transport from the URL scheme
through :mod:`netlab.transport.registry`; transport modules are imported the
first time their scheme is used.
"""

from netlab.transport.address import (
    SCHEMES,
    Address,
    default_address,
    parse_address,
    runtime_directory,
)
from netlab.transport.base import DEFAULT_RECEIVE_SIZE, Connection, Listener
from netlab.transport.memory import MemoryConnection, MemoryListener, memory_pair
from netlab.transport.registry import connect, listen, register_transport, transport_for
from netlab.transport.slicer import SlicingConnection
from netlab.transport.tap import TapEvent, TappedConnection, TapRecorder

__all__ = [
    "DEFAULT_RECEIVE_SIZE",
    "SCHEMES",
    "Address",
    "Connection",
    "Listener",
    "MemoryConnection",
    "MemoryListener",
    "SlicingConnection",
    "TapEvent",
    "TapRecorder",
    "TappedConnection",
    "connect",
    "default_address",
    "listen",
    "memory_pair",
    "parse_address",
    "register_transport",
    "runtime_directory",
    "transport_for",
]
