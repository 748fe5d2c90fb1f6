"""A fake, seeded, lossy network with a fake clock, for the sequencing state machine.

How this works: a :class:`Simulation` owns one client
:class:`~netlab.proto.seq.SequencingConnection`, the server's acceptor and the
server connection it creates. Every datagram goes through a link that drops,
duplicates, reorders (by delaying) and corrupts it as ``random.Random(seed)``
decides (:class:`LinkImpairment`, drawn by :class:`~netlab.fate.FateDrawer`,
the model every impaired link in netlab uses), and, given a ``rate``, queues
it behind the datagrams before it; the clock is ``Simulation.now``, and it
only moves when the next event (an arrival or a deadline) is due, so a
minute of retransmissions takes milliseconds and every run of a seed is the
same run. :func:`exchange` runs one whole two-way transfer over it and
checks it delivered every message exactly once. A :class:`Pair` is the
other way to drive two ends: wired by hand, no network, each datagram moved
by the test. Nothing here opens a socket or sleeps.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass

from netlab.fate import Chances, FateDrawer
from netlab.proto.seq import FAST_FLOOR, ConnectionState, SequencingAcceptor, SequencingConfig, SequencingConnection
from netlab.proto.seq.cookie import CookieIssuer

CLIENT_ADDRESS = ("127.0.0.1", 40000)


@dataclass(frozen=True, kw_only=True)
class LinkImpairment(Chances):
    """What one direction of the fake network does to datagrams: its :class:`~netlab.fate.Chances`
    (a 10 ms delay unless told), and how it reorders and queues them."""

    delay: float = 0.010
    #: A reordered datagram waits up to this much longer than the delay.
    reorder_delay: float = 0.030
    #: Datagrams per second the link carries (0: no limit); more wait in its
    #: queue, so the delay grows with the backlog (a bottleneck, or a
    #: receiver busy with the datagrams before).
    rate: float = 0.0


class Simulation:
    """A client, a server and a fake network between them, driven by one seed."""

    def __init__(
        self,
        seed: int,
        impairment: LinkImpairment,
        client_config: SequencingConfig,
        server_config: SequencingConfig | None = None,
    ) -> None:
        self.fates = FateDrawer(seed)
        self.impairment = impairment
        self.now = 0.0
        self.acceptor = SequencingAcceptor(
            server_config or client_config, CookieIssuer(b"k" * 32)
        )
        self.client = SequencingConnection.connect(client_config, self.now)
        self.server: SequencingConnection | None = None
        self._arrivals: list[tuple[float, int, str, bytes]] = []
        self._link_free = {"client": 0.0, "server": 0.0}  # when each direction's queue is empty
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
        link = self.impairment
        for copy in self.fates.draw(link, len(datagram)).copies:
            delay = copy.wait
            if link.rate > 0:
                leaves = max(self.now, self._link_free[destination]) + 1.0 / link.rate
                self._link_free[destination] = leaves
                delay += leaves - self.now
            if copy.reordered:
                delay += copy.spread * link.reorder_delay
            self._counter += 1
            heapq.heappush(
                self._arrivals, (self.now + delay, self._counter, destination, copy.apply(datagram))
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
                    replies, accepted = self.acceptor.handle_datagram(datagram, CLIENT_ADDRESS, self.now)
                    for header, payload in replies:
                        self.transmit("client", header + bytes(payload))
                    if accepted is not None:
                        self.server = accepted
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

    def run_until(self, condition: Callable[[], bool], max_steps: int = 200_000) -> bool:
        """Step until ``condition()`` holds; False if the simulation ran dry or out of steps."""
        for _ in range(max_steps):
            if condition():
                return True
            if not self.step():
                return condition()
        return condition()


#: The hand-wired :class:`Pair`'s default settings.
PAIR_CONFIG = SequencingConfig(
    max_datagram_size=200, receive_window=16, rto_floor=FAST_FLOOR, initial_rto=0.1
)
#: The client address a :class:`Pair`'s acceptor sees.
PAIR_ADDRESS = ("127.0.0.1", 50000)


def joined(datagrams: list[tuple[bytes, bytes | memoryview]]) -> list[bytes]:
    """``(header, payload)`` pairs as whole datagrams."""
    return [header + bytes(payload) for header, payload in datagrams]


class Pair:
    """A client and server end wired by hand; ``deliver`` moves what one end sent."""

    def __init__(
        self,
        config: SequencingConfig = PAIR_CONFIG,
        server_config: SequencingConfig | None = None,
    ) -> None:
        self.now = 0.0
        self.acceptor = SequencingAcceptor(
            server_config or config, CookieIssuer(b"s" * 32)
        )
        self.client = SequencingConnection.connect(config, self.now)
        [initial] = joined(self.client.datagrams_to_send())
        replies, connection = self.acceptor.handle_datagram(initial, PAIR_ADDRESS, self.now)
        assert connection is None
        for reply in joined(replies):
            self.client.receive_datagram(reply, self.now)
        [echo] = joined(self.client.datagrams_to_send())
        replies, connection = self.acceptor.handle_datagram(echo, PAIR_ADDRESS, self.now)
        assert connection is not None
        self.server = connection
        for reply in joined(replies):
            self.client.receive_datagram(reply, self.now)
        self.deliver(self.client)  # the confirming ACK
        assert self.client.is_established and self.server.is_established

    def peer(self, end: SequencingConnection) -> SequencingConnection:
        """The other end."""
        return self.server if end is self.client else self.client

    def take(self, end: SequencingConnection) -> list[bytes]:
        """Everything ``end`` wants to send now, as whole datagrams."""
        return joined(end.datagrams_to_send())

    def deliver(
        self, end: SequencingConnection, datagrams: list[bytes] | None = None
    ) -> int:
        """Move ``datagrams`` (default: everything ``end`` wants to send) to the peer."""
        batch = self.take(end) if datagrams is None else datagrams
        for datagram in batch:
            self.peer(end).receive_datagram(datagram, self.now)
        return len(batch)

    def settle(self, rounds: int = 50) -> None:
        """Exchange until both ends are quiet (no loss)."""
        for _ in range(rounds):
            if not (self.deliver(self.client) + self.deliver(self.server)):
                return
        raise AssertionError("the ends never went quiet")

    def messages(self, end: SequencingConnection) -> list[bytes]:
        """Every whole message ``end`` has ready."""
        found = []
        while (message := end.next_message()) is not None:
            found.append(message)
        return found


#: Small datagrams and window, fast timers: many datagrams and retransmissions per exchange.
SMALL_CONFIG = SequencingConfig(
    max_datagram_size=200,
    receive_window=32,
    rto_floor=FAST_FLOOR,
    initial_rto=0.1,
    retry_limit=20,
)


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
