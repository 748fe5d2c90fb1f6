"""The sequencing state machine over a fake, seeded, lossy network with a fake clock
(:mod:`netlab.testing.network`)."""

from __future__ import annotations

import random

import pytest

from netlab.errors import WriteTimeout
from netlab.proto.seq import FAST_FLOOR, SequencingConfig
from netlab.testing.network import LinkImpairment, Simulation


def make_messages(rng: random.Random, count: int, fragment_size: int) -> list[bytes]:
    """Messages of mixed sizes: empty, small, exactly one fragment, several fragments."""
    sizes = [0, 1, fragment_size, fragment_size + 1, 3 * fragment_size + 7]
    messages = []
    for index in range(count):
        size = (
            sizes[index]
            if index < len(sizes)
            else rng.choice(
                [rng.randrange(1, 200), rng.randrange(1, 5 * fragment_size)]
            )
        )
        messages.append(rng.randbytes(size))
    return messages


def exchange(
    seed: int, impairment: LinkImpairment, config: SequencingConfig, count: int = 40
) -> Simulation:
    """Connect, send ``count`` messages each way, close both ways; return the finished simulation."""
    sim = Simulation(seed, impairment, config)
    rng = random.Random(seed + 1)
    to_server = make_messages(rng, count, config.fragment_size)
    to_client = make_messages(rng, count, config.fragment_size)
    assert sim.run_until(
        lambda: (
            sim.client.is_established
            and sim.server is not None
            or sim.client.error is not None
        )
    )
    # Every seed here stays far from the retry limit: a handshake or a transfer
    # that ends in a timeout, however cleanly, is a failure of the property.
    assert sim.client.error is None, f"the handshake failed: {sim.client.error}"
    assert sim.server is not None
    for message in to_server:
        sim.client.send_message(message, sim.now)
    for message in to_client:
        sim.server.send_message(message, sim.now)
    sim.client.shutdown_write(sim.now)
    sim.server.shutdown_write(sim.now)
    sim.flush()
    server = sim.server

    def finished() -> bool:
        failed = sim.client.error is not None or server.error is not None
        return failed or (
            sim.client.at_end
            and server.at_end
            and sim.client.all_acknowledged
            and server.all_acknowledged
        )

    assert sim.run_until(finished), "the simulation stalled"
    assert sim.client.error is None, f"the client failed: {sim.client.error}"
    assert server.error is None, f"the server failed: {server.error}"
    assert sim.received["server"] == to_server
    assert sim.received["client"] == to_client
    return sim


SMALL = SequencingConfig(
    max_datagram_size=200,
    receive_window=32,
    rto_floor=FAST_FLOOR,
    initial_rto=0.1,
    retry_limit=20,
)


def test_clean_network_delivers_everything_in_order() -> None:
    sim = exchange(1, LinkImpairment(), SMALL)
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
    exchange(seed, impairment, SMALL)


def test_worst_mix_of_impairments() -> None:
    impairment = LinkImpairment(loss=0.30, duplicate=0.10, reorder=0.30, corrupt=0.01)
    for seed in range(100, 110):
        sim = exchange(seed, impairment, SMALL, count=60)
        # These seeds are known to finish: the retry limit of 20 is far away.
        assert sim.client.error is None
        assert sim.server is not None and sim.server.error is None
        stats = sim.server.statistics(sim.now)
        assert stats.retransmits_timeout + stats.retransmits_fast > 0
        assert stats.duplicates > 0 and stats.out_of_order > 0


def test_total_loss_fails_with_a_clear_timeout() -> None:
    sim = Simulation(3, LinkImpairment(), SMALL)
    assert sim.run_until(lambda: sim.server is not None and sim.client.is_established)
    sim.impairment.loss = 1.0
    sim.client.send_message(b"lost forever", sim.now)
    sim.flush()
    assert sim.run_until(lambda: sim.client.error is not None)
    assert isinstance(sim.client.error, WriteTimeout)
    assert "after 21 transmissions" in str(sim.client.error)
    with pytest.raises(WriteTimeout):
        sim.client.send_message(b"more", sim.now)
