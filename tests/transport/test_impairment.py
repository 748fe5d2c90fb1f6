"""The seeded impairment layer: parsing, determinism, and what each knob does."""

from __future__ import annotations

import pytest

from netlab.errors import UsageError
from netlab.transport.impairment import (
    REORDER_HOLD_LIMIT,
    ImpairedLink,
    Impairment,
    parse_impairment,
)


def run(
    link: ImpairedLink, count: int, spacing: float = 0.001
) -> list[tuple[float, bytes]]:
    """Submit ``count`` numbered datagrams, then drain; return (release time, datagram)."""
    released: list[tuple[float, bytes]] = []
    now = 0.0
    for index in range(count):
        now = index * spacing
        released += [(now, data) for data, _ in link.release(now)]
        link.submit(index.to_bytes(4, "big"), now, "peer")
    for _ in range(10_000):
        release = link.next_release()
        if release is None:
            break
        now = max(now, release)
        released += [(now, data) for data, _ in link.release(now)]
    return released


def test_parse_the_full_cli_syntax() -> None:
    impairment = parse_impairment(
        "loss=5%,dup=1%,reorder=5%,delay=10ms,jitter=2ms,corrupt=0.1%,seed=7"
    )
    assert impairment == Impairment(
        loss=0.05,
        duplicate=0.01,
        reorder=0.05,
        delay=0.010,
        jitter=0.002,
        corrupt=0.001,
        seed=7,
    )
    assert parse_impairment("depth=5, path=both, delay=1s, reorder=2").depth == 5
    assert parse_impairment("").impaired is False
    assert parse_impairment("delay=250us").delay == pytest.approx(0.00025)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("lost=5%", "unknown impairment key 'lost'"),
        ("loss", "needs a value"),
        ("loss=five", "not a percentage"),
        ("loss=150%", "out of range"),
        ("delay=10", "needs a unit"),
        ("delay=xms", "not a duration"),
        ("seed=1.5", "not a whole number"),
        ("loss=1%,loss=2%", "given twice"),
        ("jitter=5ms,delay=1ms", "exceeds delay"),
        ("path=sideways", "path"),
        ("depth=0", "depth"),
    ],
)
def test_bad_input_says_what_is_wrong(text: str, fragment: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_impairment(text)
    assert fragment in str(caught.value)


def test_no_impairment_passes_everything_in_order_at_once() -> None:
    released = run(ImpairedLink(Impairment()), 50)
    assert [data for _, data in released] == [
        index.to_bytes(4, "big") for index in range(50)
    ]


def test_same_seed_same_fate() -> None:
    impairment = Impairment(
        loss=0.2,
        duplicate=0.1,
        reorder=0.2,
        delay=0.005,
        jitter=0.002,
        corrupt=0.05,
        seed=3,
    )
    assert run(ImpairedLink(impairment), 300) == run(ImpairedLink(impairment), 300)
    other = Impairment(**{**impairment.__dict__, "seed": 4})
    assert run(ImpairedLink(impairment), 300) != run(ImpairedLink(other), 300)


def test_loss_and_duplication_rates_are_near_the_setting() -> None:
    link = ImpairedLink(Impairment(loss=0.3, seed=1))
    released = run(link, 2000)
    assert 0.25 < 1 - len(released) / 2000 < 0.35
    assert link.stats.dropped == 2000 - len(released)
    link = ImpairedLink(Impairment(duplicate=0.1, seed=1))
    released = run(link, 2000)
    assert 2150 < len(released) < 2250
    assert len(released) == 2000 + link.stats.duplicated


def test_delay_holds_each_datagram_for_the_delay() -> None:
    released = run(ImpairedLink(Impairment(delay=0.050)), 3, spacing=0.010)
    assert [time for time, _ in released] == pytest.approx([0.050, 0.060, 0.070])


def test_jitter_stays_within_bounds() -> None:
    released = run(
        ImpairedLink(Impairment(delay=0.010, jitter=0.004, seed=2)), 200, spacing=0.0
    )
    assert all(0.006 - 1e-9 <= time <= 0.014 + 1e-9 for time, _ in released)


def test_a_reordered_datagram_arrives_after_depth_others() -> None:
    link = ImpairedLink(Impairment(reorder=1.0, depth=2, seed=1))
    link.submit(b"held", 0.0)
    assert link.release(0.0) == []
    link.impairment = Impairment(reorder=0.0, depth=2, seed=1)  # nothing else is reordered
    link.submit(b"a", 0.0)
    link.submit(b"b", 0.0)
    link.submit(b"c", 0.0)
    assert [data for data, _ in link.release(0.001)] == [b"a", b"b", b"held", b"c"]


def test_a_held_datagram_is_released_after_the_hold_limit() -> None:
    link = ImpairedLink(Impairment(reorder=1.0, depth=5, seed=1))
    link.submit(b"alone", 0.0)
    assert link.next_release() == pytest.approx(REORDER_HOLD_LIMIT)
    assert link.release(REORDER_HOLD_LIMIT) == [(b"alone", None)]


def test_corruption_flips_exactly_one_bit() -> None:
    link = ImpairedLink(Impairment(corrupt=1.0, seed=5))
    original = bytes(64)
    link.submit(original, 0.0, ("127.0.0.1", 1))
    [(damaged, destination)] = link.release(0.0)
    assert destination == ("127.0.0.1", 1)
    assert sum(byte.bit_count() for byte in damaged) == 1
