"""Where an experiment puts its server and its client: loopback, or two network namespaces.

How this works: a :class:`Placement` is handed to every run (``context.network``).
Code that creates the server's sockets or threads does so inside
``with placement.server():``, the client's inside ``with placement.client():``;
on loopback both are no-ops, over namespaces they switch the calling thread
into the host's namespace for the block (see :func:`netlab.lab.namespace.entered`).
Sockets and threads keep the namespace they were created in.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from netlab.lab.namespace import entered


@dataclass(frozen=True)
class Placement:
    """The hosts of one run.

    Attributes:
        server_namespace: the server's namespace, or None for this one (loopback).
        client_namespace: the client's namespace, or None.
        server_address: the IPv4 address clients connect to.
        client_address: the client's IPv4 address.
        server_address6: the server's IPv6 address (``::1`` on loopback).
        client_address6: the client's IPv6 address.
        link: the link settings per direction (``to_server``, ``to_client``) as LinkSpec
            dicts; empty on loopback.
        router_namespace: the namespace between the hosts that holds the shapers, or None.
        shaper_interfaces: direction (``to_server``, ``to_client``) -> the router interface whose
            queue discipline shapes that direction; empty on loopback.
    """

    server_namespace: str | None = None
    client_namespace: str | None = None
    server_address: str = "127.0.0.1"
    client_address: str = "127.0.0.1"
    server_address6: str = "::1"
    client_address6: str = "::1"
    link: dict[str, Any] = field(default_factory=dict)
    router_namespace: str | None = None
    shaper_interfaces: dict[str, str] = field(default_factory=dict)

    @property
    def namespaced(self) -> bool:
        """True when the hosts are in namespaces of their own."""
        return self.server_namespace is not None

    def server(self) -> AbstractContextManager[None]:
        """Enter the server's namespace for a ``with`` block (a no-op on loopback)."""
        return entered(self.server_namespace) if self.server_namespace else nullcontext()

    def client(self) -> AbstractContextManager[None]:
        """Enter the client's namespace for a ``with`` block (a no-op on loopback)."""
        return entered(self.client_namespace) if self.client_namespace else nullcontext()

    def server_host(self, transport: str) -> str:
        """The server's address for ``transport``: IPv6 for tcp6 and udp6, IPv4 otherwise."""
        return self.server_address6 if transport in ("tcp6", "udp6") else self.server_address

    def server_url(self, transport: str) -> str:
        """An ephemeral-port URL on the server host, e.g. ``tcp6://[fd00:6e6c::1]:0`` (IP transports only)."""
        host = self.server_host(transport)
        return f"{transport}://[{host}]:0" if ":" in host else f"{transport}://{host}:0"

    def router(self) -> AbstractContextManager[None]:
        """Enter the router's namespace for a ``with`` block (a no-op when there is none)."""
        return entered(self.router_namespace) if self.router_namespace else nullcontext()

    def describe(self) -> str:
        """``loopback`` or ``namespaces (server 10.77.0.1 fd00:6e6c::1, client 10.77.0.2 fd00:6e6c::2)``."""
        if not self.namespaced:
            return "loopback"
        return (f"namespaces (server {self.server_address} {self.server_address6}, "
                f"client {self.client_address} {self.client_address6})")


LOOPBACK = Placement()
