"""The wire's impairment decisions: seeded, deterministic, and doing what each setting says."""

from __future__ import annotations

from netlab.lab.spec import LinkSpec
from netlab.lab.wire import ETHERNET_HEADER, Impairment

FRAME = bytes(range(100))


def decisions(impairment: Impairment, frames: int = 2000) -> list[list[tuple[float, bytes]]]:
    return [impairment.decide(FRAME) for _ in range(frames)]


def test_the_same_seed_makes_the_same_choices() -> None:
    settings = {"delay": 0.02, "jitter": 0.005, "loss": 0.1, "duplicate": 0.05, "reorder": 0.05, "corrupt": 0.05}
    assert decisions(Impairment(LinkSpec(**settings), 3)) == decisions(Impairment(LinkSpec(**settings), 3))
    assert decisions(Impairment(LinkSpec(**settings), 3)) != decisions(Impairment(LinkSpec(**settings), 4))


def test_every_frame_draws_alike_so_turning_one_setting_on_leaves_the_others_choices_unchanged() -> None:
    lossy = decisions(Impairment(LinkSpec(loss=0.2), 9))
    lossy_and_late = decisions(Impairment(LinkSpec(loss=0.2, delay=0.01), 9))
    assert [bool(choice) for choice in lossy] == [bool(choice) for choice in lossy_and_late]


def test_loss_drops_about_the_share_asked_and_counts_it() -> None:
    impairment = Impairment(LinkSpec(loss=0.1), 1)
    dropped = sum(not choice for choice in decisions(impairment, 10_000))
    assert 800 < dropped < 1200
    assert impairment.counters.dropped == dropped and impairment.counters.received == 10_000


def test_no_setting_passes_every_frame_at_once_unchanged() -> None:
    assert all(choice == [(0.0, FRAME)] for choice in decisions(Impairment(LinkSpec(), 2)))


def test_delay_and_jitter_stay_within_bounds() -> None:
    waits = [choice[0][0] for choice in decisions(Impairment(LinkSpec(delay=0.02, jitter=0.005), 5))]
    assert min(waits) >= 0.015 and max(waits) <= 0.025
    assert max(waits) - min(waits) > 0.009  # it does vary


def test_duplicate_sends_two_copies() -> None:
    impairment = Impairment(LinkSpec(duplicate=0.5), 6)
    counts = [len(choice) for choice in decisions(impairment)]
    assert set(counts) == {1, 2} and counts.count(2) == impairment.counters.duplicated


def test_corrupt_flips_exactly_one_bit_past_the_ethernet_header() -> None:
    impairment = Impairment(LinkSpec(corrupt=1.0), 7)
    for choice in decisions(impairment, 200):
        data = choice[0][1]
        flipped = [index for index, (a, b) in enumerate(zip(FRAME, data)) if a != b]
        assert len(flipped) == 1 and flipped[0] >= ETHERNET_HEADER
        assert bin(FRAME[flipped[0]] ^ data[flipped[0]]).count("1") == 1


def test_reorder_sends_some_frames_without_the_delay() -> None:
    waits = [choice[0][0] for choice in decisions(Impairment(LinkSpec(delay=0.05, reorder=0.25), 8))]
    skipped = waits.count(0.0)
    assert 350 < skipped < 650 and set(waits) == {0.0, 0.05}
