"""The sequencing state machine over a fake, seeded, lossy network with a fake clock
(:mod:`netlab.testing.network`)."""

from __future__ import annotations

import random

import pytest

from netlab.errors import WriteTimeout
from netlab.testing.network import SMALL_CONFIG, LinkImpairment, Simulation, exchange


def test_clean_network_delivers_everything_in_order() -> None:
    sim = exchange(1, LinkImpairment(), SMALL_CONFIG)
    assert sim.client.error is None
    stats = sim.client.statistics(sim.now)
    assert stats.retransmits == 0
    assert stats.duplicates == 0
    assert stats.checksum_failures == 0


@pytest.mark.parametrize("seed", range(150))
def test_impaired_network_delivers_exactly_once_in_order(seed: int) -> None:
    rng = random.Random(seed)
    impairment = LinkImpairment(
        loss=rng.uniform(0, 0.30),
        duplicate=rng.uniform(0, 0.10),
        reorder=rng.uniform(0, 0.30),
        corrupt=rng.uniform(0, 0.01),
    )
    exchange(seed, impairment, SMALL_CONFIG)


def test_worst_mix_of_impairments() -> None:
    impairment = LinkImpairment(loss=0.30, duplicate=0.10, reorder=0.30, corrupt=0.01)
    for seed in range(100, 110):
        sim = exchange(seed, impairment, SMALL_CONFIG, count=60)
        # These seeds are known to finish: the retry limit of 20 is far away.
        assert sim.client.error is None
        assert sim.server is not None and sim.server.error is None
        stats = sim.server.statistics(sim.now)
        assert stats.retransmits_timeout + stats.retransmits_fast > 0
        assert stats.duplicates > 0 and stats.out_of_order > 0


def test_total_loss_fails_with_a_clear_timeout() -> None:
    sim = Simulation(3, LinkImpairment(), SMALL_CONFIG)
    assert sim.run_until(lambda: sim.server is not None and sim.client.is_established)
    sim.impairment.loss = 1.0
    sim.client.send_message(b"lost forever", sim.now)
    sim.flush()
    assert sim.run_until(lambda: sim.client.error is not None)
    assert isinstance(sim.client.error, WriteTimeout)
    assert "after 21 transmissions" in str(sim.client.error)
    with pytest.raises(WriteTimeout):
        sim.client.send_message(b"more", sim.now)
