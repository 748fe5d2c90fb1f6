"""Memory transport specifics: names, backpressure, what closing a listener does to queued clients."""

from __future__ import annotations

import pytest

from netlab.errors import BindError, BrokenError, ConnectionRefused, WriteTimeout
from netlab.transport import connect, listen, memory_pair


def test_pair_moves_bytes_both_ways() -> None:
    first, second = memory_pair()
    first.send(b"hello")
    assert second.receive(timeout=1.0) == b"hello"
    second.send(b"back")
    assert first.receive(timeout=1.0) == b"back"
    assert first.peer_address == second.local_address
    assert first.fileno() == -1


def test_receive_takes_at_most_max_bytes() -> None:
    first, second = memory_pair()
    first.send(b"abcdef")
    assert second.receive(4, timeout=1.0) == b"abcd"
    assert second.receive(4, timeout=1.0) == b"ef"


def test_a_full_buffer_makes_send_wait_then_time_out() -> None:
    first, second = memory_pair(capacity=8)
    first.send(b"12345678", timeout=0)
    with pytest.raises(WriteTimeout):
        first.send(b"9", timeout=0.05)
    assert second.receive(timeout=1.0) == b"12345678"
    first.send(b"9", timeout=0)
    assert second.receive(timeout=1.0) == b"9"


def test_names_are_unique_and_empty_picks_a_fresh_one() -> None:
    with listen("memory://unique-name") as named:
        with pytest.raises(BindError, match="memory://unique-name is in use"):
            listen("memory://unique-name")
        assert str(named.address) == "memory://unique-name"
    with listen("memory://") as one, listen("memory://") as two:
        assert one.address != two.address
    with listen("memory://unique-name"):
        pass  # the name was freed by close()


def test_unknown_name_is_refused() -> None:
    with pytest.raises(ConnectionRefused, match="nothing listens on memory://nobody-here"):
        connect("memory://nobody-here", timeout=1.0)


def test_closing_the_listener_resets_clients_never_accepted() -> None:
    with listen("memory://") as bound:
        waiting = connect(bound.address, timeout=1.0)
    with pytest.raises(BrokenError):
        waiting.receive(timeout=1.0)


def test_timeout_zero_on_a_full_queue_is_refused_at_once() -> None:
    with listen("memory://", backlog=0) as full:
        connect(full.address, timeout=0)
        with pytest.raises(ConnectionRefused, match="is full"):
            connect(full.address, timeout=0)


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        memory_pair(capacity=0)
