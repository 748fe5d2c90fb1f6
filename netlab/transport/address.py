"""Address URLs: parse, validate and print the places netlab listens and connects.

How this works: every endpoint is written as a URL whose scheme names the
transport (``tcp4://127.0.0.1:6969``, ``tcp6://[::1]:6969``,
``unix:///run/user/1000/netlab/netlab.sock``, ``unix-seqpacket:///...``,
``udp://127.0.0.1:6969``, ``udp6://[::1]:6969``, ``memory://name``).
:func:`parse_address` turns text into a frozen :class:`Address` or raises an
:class:`~netlab.errors.AddressError` whose one-line message says what to write
instead; ``str(address)`` gives the canonical URL back, so parsing the printed
form returns an equal address. Nothing here opens a socket or resolves a name.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from netlab.errors import AddressError

#: Port used by :func:`default_address` for the IP transports.
DEFAULT_PORT = 6969
#: The kernel's sun_path holds 108 bytes including the terminating NUL.
MAX_UNIX_PATH_BYTES = 107

TCP_SCHEMES = ("tcp4", "tcp6")
UDP_SCHEMES = ("udp", "udp6")
UNIX_SCHEMES = ("unix", "unix-seqpacket")
MEMORY_SCHEME = "memory"
#: Every scheme the parser understands, in the order error messages list them.
SCHEMES = TCP_SCHEMES + UNIX_SCHEMES + UDP_SCHEMES + (MEMORY_SCHEME,)
#: The transports that open a socket: what the command line offers.
SOCKET_SCHEMES = TCP_SCHEMES + UNIX_SCHEMES + UDP_SCHEMES
#: The socket transports the kernel makes reliable (TCP and UNIX, seqpacket
#: included), as opposed to UDP, which netlab's own sequencing layer makes reliable.
STREAM_SCHEMES = TCP_SCHEMES + UNIX_SCHEMES
#: The transports that need IPv6 on the loopback.
IPV6_SCHEMES = ("tcp6", "udp6")

#: The same transport over the other IP version, for "use this instead" hints.
_OTHER_IP_VERSION = {"tcp4": "tcp6", "tcp6": "tcp4", "udp": "udp6", "udp6": "udp"}
_HOSTNAME_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_MEMORY_NAME = re.compile(r"^[A-Za-z0-9._-]*$")
_UNIX_SOCKET_NAMES = {"unix": "netlab.sock", "unix-seqpacket": "netlab-seqpacket.sock"}


@dataclass(frozen=True)
class Address:
    """One endpoint: an IP host and port, a UNIX socket path, or a memory name.

    Attributes:
        scheme: the transport (one of :data:`SCHEMES`).
        host: IP literal or host name (IPv6 without brackets); the name for
            ``memory``; empty for UNIX.
        port: 0-65535 for IP transports (0 = pick an ephemeral port); None otherwise.
        path: the absolute socket path for UNIX transports; empty otherwise.
    """

    scheme: str
    host: str = ""
    port: int | None = None
    path: str = ""

    def __str__(self) -> str:
        if self.scheme in UNIX_SCHEMES:
            return f"{self.scheme}://{quote(self.path)}"
        if self.scheme == MEMORY_SCHEME:
            return f"{self.scheme}://{self.host}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def is_unix(self) -> bool:
        """True for ``unix`` and ``unix-seqpacket`` addresses."""
        return self.scheme in UNIX_SCHEMES

    @property
    def is_loopback(self) -> bool:
        """True when traffic stays on this machine: 127/8, ::1, localhost, UNIX, memory."""
        if self.scheme in UNIX_SCHEMES or self.scheme == MEMORY_SCHEME:
            return True
        if self.host == "localhost" or self.host.endswith(".localhost"):
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def family(self) -> socket.AddressFamily:
        """The socket family: AF_INET, AF_INET6, AF_UNIX (AF_UNSPEC for memory)."""
        if self.scheme in IPV6_SCHEMES:
            return socket.AF_INET6
        if self.scheme in UNIX_SCHEMES:
            return socket.AF_UNIX
        if self.scheme == MEMORY_SCHEME:
            return socket.AF_UNSPEC
        return socket.AF_INET


def parse_address(text: str) -> Address:
    """Parse an address URL.

    Args:
        text: e.g. ``tcp4://127.0.0.1:6969``, ``tcp6://[::1]:0``,
            ``unix:///tmp/netlab.sock``, ``memory://service``.
    Returns:
        The validated :class:`Address`.
    Raises:
        AddressError: with a one-line message naming the problem and the fix.
    """
    stripped = text.strip()
    scheme, separator, rest = stripped.partition("://")
    scheme = scheme.lower()
    if not separator:
        raise AddressError(
            f"{text!r} is not an address URL: write scheme://..., "
            f"e.g. tcp4://127.0.0.1:{DEFAULT_PORT} (schemes: {', '.join(SCHEMES)})"
        )
    if scheme not in SCHEMES:
        raise AddressError(f"unknown scheme {scheme!r} in {text!r}: use one of {', '.join(SCHEMES)}")
    if scheme in UNIX_SCHEMES:
        return Address(scheme=scheme, path=_parse_unix_path(text, scheme, rest))
    if scheme == MEMORY_SCHEME:
        if not _MEMORY_NAME.match(rest):
            raise AddressError(f"bad memory name in {text!r}: use letters, digits, '.', '_' and '-'")
        return Address(scheme=scheme, host=rest)
    host, port = _parse_host_and_port(text, scheme, rest)
    return Address(scheme=scheme, host=host, port=port)


def _parse_unix_path(text: str, scheme: str, rest: str) -> str:
    if not rest.startswith("/"):
        raise AddressError(
            f"the UNIX socket path in {text!r} must be absolute: write {scheme}:///absolute/path.sock (three slashes)"
        )
    path = unquote(rest)
    if path.endswith("/"):
        raise AddressError(f"{text!r} names a directory: add a socket file name, e.g. {scheme}://{path}netlab.sock")
    if "\0" in path:
        raise AddressError(f"the UNIX socket path in {text!r} contains a NUL byte: remove it")
    size = len(os.fsencode(path))
    if size > MAX_UNIX_PATH_BYTES:
        raise AddressError(
            f"the UNIX socket path in {text!r} is {size} bytes; the kernel allows at most "
            f"{MAX_UNIX_PATH_BYTES}: pick a shorter path"
        )
    return path


def _parse_host_and_port(text: str, scheme: str, rest: str) -> tuple[str, int]:
    example = f"{scheme}://[::1]:{DEFAULT_PORT}" if scheme in IPV6_SCHEMES else f"{scheme}://127.0.0.1:{DEFAULT_PORT}"
    rest = rest.removesuffix("/")
    if "/" in rest or "?" in rest or "#" in rest:
        raise AddressError(f"unexpected path or query in {text!r}: write {example}")
    if rest.startswith("["):
        host, bracket, after = rest[1:].partition("]")
        if not bracket:
            raise AddressError(f"missing ']' after the IPv6 host in {text!r}: write {example}")
        if not after:
            raise AddressError(f"missing port in {text!r}: write {example} (port 0 picks a free one)")
        if not after.startswith(":"):
            raise AddressError(f"expected ':port' after ']' in {text!r}: write {example}")
        port_text = after[1:]
        bracketed = True
    else:
        if rest.count(":") > 1:
            raise AddressError(f"IPv6 hosts go in brackets: write {scheme}://[{rest.rpartition(':')[0]}]:port")
        host, colon, port_text = rest.partition(":")
        if not colon:
            raise AddressError(f"missing port in {text!r}: write {example} (port 0 picks a free one)")
        bracketed = False
    if not host:
        raise AddressError(f"missing host in {text!r}: write {example}")
    return _validate_host(text, scheme, host, bracketed, example), _parse_port(text, port_text, example)


def _parse_port(text: str, port_text: str, example: str) -> int:
    if not port_text:
        raise AddressError(f"missing port in {text!r}: write {example} (port 0 picks a free one)")
    if not port_text.isascii() or not port_text.isdigit():
        raise AddressError(f"port {port_text!r} in {text!r} is not a number: write {example}")
    port = int(port_text)
    if port > 65535:
        raise AddressError(f"port {port} in {text!r} is out of range: use 0-65535 (0 picks a free one)")
    return port


def _validate_host(text: str, scheme: str, host: str, bracketed: bool, example: str) -> str:
    wants_ipv6 = scheme in IPV6_SCHEMES
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is None:
        if bracketed:
            raise AddressError(f"{host!r} in {text!r} is not an IPv6 address: write {example}")
        return _validate_hostname(text, host, example)
    if isinstance(ip, ipaddress.IPv6Address):
        if not bracketed:
            raise AddressError(f"IPv6 hosts go in brackets: write {scheme}://[{host}]:port")
        if not wants_ipv6:
            other = _OTHER_IP_VERSION[scheme]
            raise AddressError(f"{scheme} needs an IPv4 host, got IPv6 {host}: use {other}://[{ip}]:port")
        if ip.ipv4_mapped is not None:
            other = _OTHER_IP_VERSION[scheme]
            raise AddressError(
                f"{scheme} sockets are IPv6-only, so the IPv4-mapped {host} is unreachable: "
                f"use {other}://{ip.ipv4_mapped}:port"
            )
        return str(ip)
    if bracketed:
        raise AddressError(f"brackets are for IPv6 hosts only: write {scheme}://{host}:port")
    if wants_ipv6:
        other = _OTHER_IP_VERSION[scheme]
        raise AddressError(f"{scheme} needs an IPv6 host, got IPv4 {host}: use {other}://{host}:port or {example}")
    return str(ip)


def _validate_hostname(text: str, host: str, example: str) -> str:
    name = host.lower()
    labels = name.split(".")
    if len(name) > 253 or not all(_HOSTNAME_LABEL.match(label) for label in labels):
        raise AddressError(f"{host!r} in {text!r} is neither an IP address nor a host name: write {example}")
    if labels[-1].isdigit():
        raise AddressError(f"{host!r} in {text!r} is not a valid IPv4 address: write {example}")
    return name


def runtime_directory() -> str:
    """The private per-user directory for default UNIX sockets.

    Returns:
        ``$XDG_RUNTIME_DIR/netlab`` when that variable names an existing
        absolute directory, else ``/tmp/netlab-<uid>``. The listener creates it
        with mode 0700.
    """
    base = os.environ.get("XDG_RUNTIME_DIR", "")
    if base and os.path.isabs(base) and os.path.isdir(base):
        candidate = os.path.join(base, "netlab")
        longest = os.path.join(candidate, max(_UNIX_SOCKET_NAMES.values(), key=len))
        if len(os.fsencode(longest)) <= MAX_UNIX_PATH_BYTES:
            return candidate
    return f"/tmp/netlab-{os.getuid()}"


def default_address(transport: str) -> Address:
    """The address netlab uses when none is given.

    Args:
        transport: a scheme: tcp4, tcp6, unix, unix-seqpacket, udp, udp6.
    Returns:
        ``tcp4://127.0.0.1:6969``, ``tcp6://[::1]:6969``, ``udp://127.0.0.1:6969``,
        ``udp6://[::1]:6969``, or a socket file in :func:`runtime_directory`
        (``netlab.sock`` / ``netlab-seqpacket.sock``) for the UNIX transports.
    Raises:
        AddressError: for an unknown transport name.
    """
    scheme = transport.lower()
    if scheme in UNIX_SCHEMES:
        return Address(scheme=scheme, path=os.path.join(runtime_directory(), _UNIX_SOCKET_NAMES[scheme]))
    if scheme in IPV6_SCHEMES:
        return Address(scheme=scheme, host="::1", port=DEFAULT_PORT)
    if scheme in TCP_SCHEMES or scheme in UDP_SCHEMES:
        return Address(scheme=scheme, host="127.0.0.1", port=DEFAULT_PORT)
    known = ", ".join(s for s in SCHEMES if s != MEMORY_SCHEME)
    raise AddressError(f"no default address for transport {transport!r}: use one of {known}")


def ephemeral_url(scheme: str, directory: str, name: str = "netlab.sock") -> str:
    """A fresh address on this machine to listen on, for tests, scenarios and benchmarks.

    Args:
        scheme: one of :data:`SCHEMES`.
        directory: a private directory for a UNIX socket file (its path must be short).
        name: the socket file's name in ``directory``.
    Returns:
        Port 0 on the loopback (``tcp4://127.0.0.1:0``, ``udp6://[::1]:0``), a
        socket file in ``directory``, or ``memory://`` (an ephemeral name).
    Raises:
        AddressError: for an unknown scheme.
    """
    if scheme in UNIX_SCHEMES:
        return f"{scheme}://{os.path.join(directory, name)}"
    if scheme in IPV6_SCHEMES:
        return f"{scheme}://[::1]:0"
    if scheme in TCP_SCHEMES or scheme in UDP_SCHEMES:
        return f"{scheme}://127.0.0.1:0"
    if scheme == MEMORY_SCHEME:
        return f"{scheme}://"
    raise AddressError(f"unknown transport {scheme!r}: use one of {', '.join(SCHEMES)}")


def resolve(address: Address, socket_type: int, passive: bool) -> tuple[Any, ...]:
    """The socket address for an IP ``address`` (numeric hosts; AddressError otherwise).

    Args:
        address: a tcp4/tcp6/udp/udp6 address.
        socket_type: ``socket.SOCK_STREAM`` or ``socket.SOCK_DGRAM``.
        passive: True for an address to bind (a listener).
    """
    flags = socket.AI_NUMERICSERV | (socket.AI_PASSIVE if passive else 0)
    try:
        infos = socket.getaddrinfo(address.host, address.port, address.family, socket_type, 0, flags)
    except socket.gaierror as exc:
        raise AddressError(
            f"cannot resolve {address.host!r} for {address.scheme} ({exc.strerror}): use an IP address "
            "such as 127.0.0.1 or ::1"
        ) from exc
    return tuple(infos[0][4])


def ipv6_loopback_available() -> bool:
    """True when a socket can bind ::1 (IPv6 may be disabled on the machine)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True
