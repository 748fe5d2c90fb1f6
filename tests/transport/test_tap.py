"""The syscall tap: what it records, in order, from several threads, on any transport."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from netlab.errors import ReadTimeout
from netlab.transport import TappedConnection, TapRecorder, connect, listen, memory_pair


def test_sends_and_receives_are_recorded_with_previews() -> None:
    recorder = TapRecorder(preview_size=4)
    first, second = memory_pair()
    tapped = TappedConnection(first, recorder, label="client")
    tapped.send(b"hello world")
    second.send(b"ok")
    assert tapped.receive(timeout=1.0) == b"ok"
    second.close()
    assert tapped.receive(timeout=1.0) == b""
    events = recorder.events()
    assert [(e.direction, e.size, e.preview, e.connection) for e in events] == [
        ("send", 11, b"hell", "client"),
        ("recv", 2, b"ok", "client"),
        ("recv", 0, b"", "client"),
    ]
    assert [e.time for e in events] == sorted(e.time for e in events)


def test_failed_calls_record_nothing() -> None:
    recorder = TapRecorder()
    tapped = TappedConnection(memory_pair()[0], recorder)
    with pytest.raises(ReadTimeout):
        tapped.receive(timeout=0)
    assert recorder.events() == []


def test_default_label_and_pass_through_attributes() -> None:
    first, _second = memory_pair()
    tapped = TappedConnection(first, TapRecorder())
    assert tapped.label == f"{first.local_address} -> {first.peer_address}"
    assert tapped.fileno() == -1
    assert tapped.preserves_boundaries is False


def test_one_recorder_is_safe_across_threads() -> None:
    recorder = TapRecorder()
    pairs = [memory_pair() for _ in range(4)]

    def chatter(index: int) -> None:
        tapped = TappedConnection(pairs[index][0], recorder, label=f"c{index}")
        for _ in range(200):
            tapped.send(b"m")

    with ThreadPoolExecutor(max_workers=4) as pool:
        for result in [pool.submit(chatter, index) for index in range(4)]:
            result.result(timeout=30.0)
    events = recorder.events()
    assert len(events) == 800
    assert {e.connection for e in events} == {"c0", "c1", "c2", "c3"}
    recorder.clear()
    assert recorder.events() == []


def test_the_tap_works_over_a_socket_transport() -> None:
    recorder = TapRecorder()
    with listen("tcp4://127.0.0.1:0") as bound, connect(bound.address) as client, bound.accept(timeout=5.0) as server:
        tapped = TappedConnection(server, recorder)
        client.send(b"over tcp")
        assert tapped.receive(timeout=5.0) == b"over tcp"
        tapped.send(b"answer")
        assert client.receive(timeout=5.0) == b"answer"
    assert [(e.direction, e.size) for e in recorder.events()] == [("recv", 8), ("send", 6)]
