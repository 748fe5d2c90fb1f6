"""Address URL parsing: one table of valid inputs, one of invalid inputs and their hints."""

from __future__ import annotations

import os
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netlab.errors import AddressError
from netlab.transport.address import Address, default_address, parse_address, runtime_directory

VALID = [
    # (text, expected address, canonical URL)
    ("tcp4://127.0.0.1:6969", Address("tcp4", "127.0.0.1", 6969), "tcp4://127.0.0.1:6969"),
    ("TCP4://127.0.0.1:0", Address("tcp4", "127.0.0.1", 0), "tcp4://127.0.0.1:0"),
    ("tcp4://0.0.0.0:65535", Address("tcp4", "0.0.0.0", 65535), "tcp4://0.0.0.0:65535"),
    ("tcp4://localhost:80/", Address("tcp4", "localhost", 80), "tcp4://localhost:80"),
    ("tcp6://[::1]:6969", Address("tcp6", "::1", 6969), "tcp6://[::1]:6969"),
    ("tcp6://[0:0:0:0:0:0:0:1]:1", Address("tcp6", "::1", 1), "tcp6://[::1]:1"),
    ("tcp6://[FE80::1]:7", Address("tcp6", "fe80::1", 7), "tcp6://[fe80::1]:7"),
    ("udp://127.0.0.1:6969", Address("udp", "127.0.0.1", 6969), "udp://127.0.0.1:6969"),
    ("udp6://[::1]:6969", Address("udp6", "::1", 6969), "udp6://[::1]:6969"),
    ("unix:///tmp/netlab.sock", Address("unix", path="/tmp/netlab.sock"), "unix:///tmp/netlab.sock"),
    ("unix:///tmp/with%20space.sock", Address("unix", path="/tmp/with space.sock"), "unix:///tmp/with%20space.sock"),
    (
        "unix-seqpacket:///run/x.sock",
        Address("unix-seqpacket", path="/run/x.sock"),
        "unix-seqpacket:///run/x.sock",
    ),
    ("memory://service", Address("memory", "service"), "memory://service"),
    ("memory://", Address("memory", ""), "memory://"),
    ("  tcp4://127.0.0.1:1  ", Address("tcp4", "127.0.0.1", 1), "tcp4://127.0.0.1:1"),
]

INVALID = [
    # (text, a fragment the message must contain)
    ("127.0.0.1:6969", "not an address URL"),
    ("tcp://127.0.0.1:6969", "unknown scheme 'tcp'"),
    ("http://127.0.0.1:80", "use one of tcp4, tcp6, unix, unix-seqpacket, udp, udp6, memory"),
    ("tcp4://127.0.0.1", "missing port"),
    ("tcp4://127.0.0.1:", "missing port"),
    ("tcp6://[::1]", "missing port"),
    ("tcp4://:6969", "missing host"),
    ("tcp4://127.0.0.1:70000", "out of range"),
    ("tcp4://127.0.0.1:-1", "not a number"),
    ("tcp4://127.0.0.1:http", "not a number"),
    ("tcp4://127.0.0.1:6969/path", "unexpected path"),
    ("tcp4://127.0.0.256:1", "not a valid IPv4 address"),
    ("tcp4://bad_host:1", "neither an IP address nor a host name"),
    ("tcp6://127.0.0.1:6969", "tcp6 needs an IPv6 host"),
    ("tcp4://[::1]:6969", "tcp4 needs an IPv4 host"),
    ("tcp6://::1:6969", "IPv6 hosts go in brackets"),
    ("tcp6://[::1:6969", "missing ']'"),
    ("tcp6://[::ffff:127.0.0.1]:1", "IPv4-mapped"),
    ("tcp6://[localhost]:1", "not an IPv6 address"),
    ("tcp4://[127.0.0.1]:1", "brackets are for IPv6"),
    ("udp6://10.0.0.1:1", "udp6 needs an IPv6 host"),
    ("unix://relative.sock", "must be absolute"),
    ("unix://tmp/x.sock", "three slashes"),
    ("unix:///tmp/", "names a directory"),
    ("unix:///tmp/a%00b", "NUL byte"),
    ("unix:///" + "a" * 107, "kernel allows at most 107"),
    ("memory://no spaces", "bad memory name"),
]


@pytest.mark.parametrize(("text", "expected", "canonical"), VALID)
def test_valid_addresses_parse_and_print_canonically(text: str, expected: Address, canonical: str) -> None:
    address = parse_address(text)
    assert address == expected
    assert str(address) == canonical
    assert parse_address(str(address)) == address


@pytest.mark.parametrize(("text", "fragment"), INVALID)
def test_invalid_addresses_say_what_is_wrong(text: str, fragment: str) -> None:
    with pytest.raises(AddressError) as caught:
        parse_address(text)
    message = str(caught.value)
    assert fragment in message
    assert "\n" not in message
    assert caught.value.exit_code == 2


def test_unix_path_of_exactly_107_bytes_is_accepted() -> None:
    path = "/" + "a" * 106
    assert parse_address("unix://" + path).path == path


@pytest.mark.parametrize(
    ("text", "loopback"),
    [
        ("tcp4://127.0.0.1:1", True),
        ("tcp4://127.255.0.9:1", True),
        ("tcp4://10.0.0.1:1", False),
        ("tcp4://0.0.0.0:1", False),
        ("tcp6://[::1]:1", True),
        ("tcp6://[2001:db8::1]:1", False),
        ("tcp4://localhost:1", True),
        ("tcp4://example.org:1", False),
        ("unix:///tmp/x.sock", True),
        ("unix-seqpacket:///tmp/x.sock", True),
        ("memory://m", True),
    ],
)
def test_is_loopback(text: str, loopback: bool) -> None:
    assert parse_address(text).is_loopback is loopback


@pytest.mark.parametrize(
    ("text", "family"),
    [
        ("tcp4://127.0.0.1:1", socket.AF_INET),
        ("udp://127.0.0.1:1", socket.AF_INET),
        ("tcp6://[::1]:1", socket.AF_INET6),
        ("udp6://[::1]:1", socket.AF_INET6),
        ("unix:///tmp/x.sock", socket.AF_UNIX),
        ("unix-seqpacket:///tmp/x.sock", socket.AF_UNIX),
        ("memory://m", socket.AF_UNSPEC),
    ],
)
def test_family(text: str, family: socket.AddressFamily) -> None:
    assert parse_address(text).family == family


@given(port=st.integers(min_value=0, max_value=65535), octets=st.tuples(*[st.integers(0, 255)] * 4))
def test_ipv4_addresses_round_trip(port: int, octets: tuple[int, int, int, int]) -> None:
    host = ".".join(map(str, octets))
    address = parse_address(f"tcp4://{host}:{port}")
    assert (address.host, address.port) == (host, port)
    assert parse_address(str(address)) == address


@given(path=st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\0"), max_size=20))
def test_unix_paths_round_trip(path: str) -> None:
    address = Address("unix", path="/" + path + "x")
    assert parse_address(str(address)) == address


def test_default_ip_addresses() -> None:
    assert str(default_address("tcp4")) == "tcp4://127.0.0.1:6969"
    assert str(default_address("tcp6")) == "tcp6://[::1]:6969"
    assert str(default_address("udp")) == "udp://127.0.0.1:6969"
    assert str(default_address("udp6")) == "udp6://[::1]:6969"


def test_default_unix_addresses_use_the_runtime_directory(monkeypatch: pytest.MonkeyPatch, short_tmp: str) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", short_tmp)
    assert runtime_directory() == os.path.join(short_tmp, "netlab")
    assert default_address("unix").path == os.path.join(short_tmp, "netlab", "netlab.sock")
    assert default_address("unix-seqpacket").path == os.path.join(short_tmp, "netlab", "netlab-seqpacket.sock")


def test_runtime_directory_falls_back_to_tmp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    assert runtime_directory() == f"/tmp/netlab-{os.getuid()}"
    monkeypatch.setenv("XDG_RUNTIME_DIR", "relative/dir")
    assert runtime_directory() == f"/tmp/netlab-{os.getuid()}"


def test_default_address_rejects_unknown_transports() -> None:
    with pytest.raises(AddressError, match="use one of tcp4, tcp6"):
        default_address("sctp")
