"""The slicer: every send becomes small writes, the bytes arrive intact, sizes follow the seed."""

from __future__ import annotations

import random

import pytest

from netlab.errors import WriteTimeout
from netlab.transport import SlicingConnection, TappedConnection, TapRecorder, connect, listen, memory_pair


def sliced_write_sizes(payload: bytes, seed: int, min_size: int = 1, max_size: int = 16) -> tuple[list[int], bytes]:
    """Send ``payload`` through a slicer over a tapped memory pair; return write sizes and what arrived."""
    recorder = TapRecorder()
    sender, receiver = memory_pair()
    slicer = SlicingConnection(
        TappedConnection(sender, recorder), random.Random(seed), min_size=min_size, max_size=max_size, delay=0
    )
    slicer.send(payload, timeout=5.0)
    slicer.close()
    arrived = b"".join(iter(lambda: receiver.receive(timeout=1.0), b""))
    return [event.size for event in recorder.events() if event.direction == "send"], arrived


def test_each_send_is_cut_into_1_to_16_byte_writes() -> None:
    payload = bytes(range(256)) * 4
    sizes, arrived = sliced_write_sizes(payload, seed=1)
    assert arrived == payload
    assert sum(sizes) == len(payload)
    assert all(1 <= size <= 16 for size in sizes)
    assert len(set(sizes)) > 1


def test_the_same_seed_cuts_the_same_way() -> None:
    payload = b"x" * 500
    assert sliced_write_sizes(payload, seed=7)[0] == sliced_write_sizes(payload, seed=7)[0]
    assert sliced_write_sizes(payload, seed=7)[0] != sliced_write_sizes(payload, seed=8)[0]


def test_fixed_size_pieces_leave_a_short_tail() -> None:
    sizes, _ = sliced_write_sizes(b"y" * 10, seed=0, min_size=4, max_size=4)
    assert sizes == [4, 4, 2]


def test_slicing_over_tcp_arrives_intact() -> None:
    with listen("tcp4://127.0.0.1:0") as bound, connect(bound.address) as client, bound.accept(timeout=5.0) as server:
        slicer = SlicingConnection(client, random.Random(3), delay=0.0001)
        payload = bytes(range(200))
        slicer.send(payload, timeout=5.0)
        slicer.shutdown_write()
        arrived = b"".join(iter(lambda: server.receive(timeout=5.0), b""))
        assert arrived == payload


def test_the_timeout_covers_the_whole_sliced_send() -> None:
    sender, _receiver = memory_pair()
    slicer = SlicingConnection(sender, random.Random(0), min_size=1, max_size=1, delay=0.01)
    with pytest.raises(WriteTimeout, match="took longer than"):
        slicer.send(b"z" * 1000, timeout=0.05)


@pytest.mark.parametrize(("min_size", "max_size", "delay"), [(0, 4, 0.0), (5, 4, 0.0), (1, 4, -1.0)])
def test_bad_settings_are_rejected(min_size: int, max_size: int, delay: float) -> None:
    with pytest.raises(ValueError):
        SlicingConnection(memory_pair()[0], random.Random(0), min_size=min_size, max_size=max_size, delay=delay)
