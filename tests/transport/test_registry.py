"""Scheme dispatch: lazy module import, self-registration, clear errors."""

from __future__ import annotations

import pytest

from netlab.errors import AddressError, UsageError
from netlab.transport import Address, Connection, Listener, connect, listen, memory_pair, register_transport, registry


def test_every_stream_scheme_has_a_transport() -> None:
    for scheme in ("tcp4", "tcp6", "unix", "unix-seqpacket", "memory"):
        transport = registry.transport_for(scheme)
        assert transport.scheme == scheme


def test_a_missing_transport_module_is_an_address_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(registry._transports, "udp", raising=False)
    monkeypatch.setitem(registry.TRANSPORT_MODULES, "udp", "netlab.transport.no_such_module")
    with pytest.raises(AddressError, match="the udp transport is not available"):
        connect("udp://127.0.0.1:6969")


def test_a_registered_module_serves_its_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, object]] = []
    ends = memory_pair()

    def fake_listen(address: Address, backlog: int) -> Listener:
        raise NotImplementedError("only connect is exercised here")

    def fake_connect(address: Address, timeout: float | None) -> Connection:
        calls.append((str(address), timeout))
        return ends[0]

    monkeypatch.setattr(registry, "_transports", dict(registry._transports))
    register_transport("udp6", fake_listen, fake_connect)
    assert connect("udp6://[::1]:7", timeout=1.5) is ends[0]
    assert calls == [("udp6://[::1]:7", 1.5)]


def test_unknown_schemes_cannot_be_registered() -> None:
    with pytest.raises(ValueError, match="unknown scheme"):
        register_transport("sctp", listen, connect)


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="backlog"):
        listen("memory://", backlog=-1)
    with pytest.raises(ValueError, match="timeout"):
        connect("memory://x", timeout=-1)
    with pytest.raises(AddressError):
        listen("bogus")


def test_connect_takes_the_options_listen_takes() -> None:
    with listen("udp://127.0.0.1:0", rto_floor=0.02) as listener:
        with connect(listener.address, 5.0, rto_floor=0.02, window=64) as connection:
            assert connection.preserves_boundaries


@pytest.mark.parametrize("call", ["listen", "connect"])
def test_an_option_the_transport_does_not_take_is_one_clear_usage_error(call: str) -> None:
    takes = "none" if call == "listen" else "source_host"  # a client may pick its source address
    with pytest.raises(UsageError, match=f"the tcp4 transport has no {call} option rto_floor: it takes {takes}"):
        if call == "listen":
            listen("tcp4://127.0.0.1:0", rto_floor=0.02)
        else:
            connect("tcp4://127.0.0.1:1", 1.0, rto_floor=0.02)
    with pytest.raises(UsageError, match="has no listen option nonsense: it takes allowed_uids"):
        listen("unix:///tmp/netlab-never-bound.sock", nonsense=1)
