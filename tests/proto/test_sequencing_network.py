"""The sequencing state machine over a fake, seeded, lossy network with a fake clock.

A :class:`Simulation` owns one client connection, the server's acceptor and the
server connection it creates. Every datagram goes through a link that drops,
duplicates, reorders (by delaying) and corrupts it as ``random.Random(seed)``
decides; time only moves when the next event (arrival or deadline) is due.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass

import pytest

from netlab.errors import WriteTimeout
from netlab.proto.seq import (
    FAST_FLOOR,
    ConnectionState,
    SequencingAcceptor,
    SequencingConfig,
    SequencingConnection,
)
from netlab.proto.seq.cookie import CookieIssuer

CLIENT_ADDRESS = ("127.0.0.1", 40000)


@dataclass
class LinkImpairment:
    """What one direction of the fake network does to datagrams."""

    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    corrupt: float = 0.0
    delay: float = 0.010
    reorder_delay: float = 0.030


class Simulation:
    """A client, a server and a fake network between them, driven by one seed."""

    def __init__(
        self,
        seed: int,
        impairment: LinkImpairment,
        client_config: SequencingConfig,
        server_config: SequencingConfig | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.impairment = impairment
        self.now = 0.0
        self.acceptor = SequencingAcceptor(
            server_config or client_config, CookieIssuer(b"k" * 32)
        )
        self.client = SequencingConnection.connect(client_config, self.now)
        self.server: SequencingConnection | None = None
        self._arrivals: list[tuple[float, int, str, bytes]] = []
        self._counter = 0
        self.received: dict[str, list[bytes]] = {"client": [], "server": []}
        self.datagrams_delivered = 0
        self.flush()

    def connections(self) -> list[tuple[str, SequencingConnection]]:
        """The live ends with their names."""
        ends = [("client", self.client)]
        if self.server is not None:
            ends.append(("server", self.server))
        return ends

    def transmit(self, destination: str, datagram: bytes) -> None:
        """Put one datagram on the link towards ``destination`` (or lose it)."""
        rng, link = self.rng, self.impairment
        if rng.random() < link.loss:
            return
        if rng.random() < link.corrupt:
            damaged = bytearray(datagram)
            damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
            datagram = bytes(damaged)
        copies = 2 if rng.random() < link.duplicate else 1
        for _ in range(copies):
            delay = link.delay
            if rng.random() < link.reorder:
                delay += rng.uniform(0, link.reorder_delay)
            self._counter += 1
            heapq.heappush(
                self._arrivals, (self.now + delay, self._counter, destination, datagram)
            )

    def flush(self) -> None:
        """Send what every end wants to send, and collect delivered messages."""
        for name, connection in self.connections():
            destination = "server" if name == "client" else "client"
            for header, payload in connection.datagrams_to_send():
                self.transmit(destination, header + bytes(payload))
            if connection.state is not ConnectionState.FAILED:
                while (message := connection.next_message()) is not None:
                    self.received[name].append(message)
            for header, payload in connection.datagrams_to_send():
                self.transmit(destination, header + bytes(payload))

    def step(self) -> bool:
        """Advance to the next event; False when nothing is left to happen."""
        candidates = []
        if self._arrivals:
            candidates.append(self._arrivals[0][0])
        for _, connection in self.connections():
            deadline = connection.next_deadline()
            if deadline is not None:
                candidates.append(deadline)
        if not candidates:
            return False
        self.now = max(self.now, min(candidates))
        while self._arrivals and self._arrivals[0][0] <= self.now:
            _, _, destination, datagram = heapq.heappop(self._arrivals)
            self.datagrams_delivered += 1
            if destination == "server":
                if self.server is None:
                    replies, connection = self.acceptor.handle_datagram(
                        datagram, CLIENT_ADDRESS, self.now
                    )
                    for header, payload in replies:
                        self.transmit("client", header + bytes(payload))
                    if connection is not None:
                        self.server = connection
                else:
                    self.server.receive_datagram(datagram, self.now)
            else:
                self.client.receive_datagram(datagram, self.now)
        for _, connection in self.connections():
            deadline = connection.next_deadline()
            if deadline is not None and deadline <= self.now:
                connection.handle_timeout(self.now)
        self.flush()
        return True

    def run_until(self, condition, max_steps: int = 200_000) -> bool:  # type: ignore[no-untyped-def]
        """Step until ``condition()`` holds; False if the simulation ran dry or out of steps."""
        for _ in range(max_steps):
            if condition():
                return True
            if not self.step():
                return condition()
        return condition()


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
