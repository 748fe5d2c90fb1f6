"""A fake, seeded, lossy network with a fake clock, for the sequencing state machine.

How this works: a :class:`Simulation` owns one client
:class:`~netlab.proto.seq.SequencingConnection`, the server's acceptor and the
server connection it creates. Every datagram goes through a link that drops,
duplicates, reorders (by delaying) and corrupts it as ``random.Random(seed)``
decides (:class:`LinkImpairment`); the clock is ``Simulation.now``, and it
only moves when the next event (an arrival or a deadline) is due, so a
minute of retransmissions takes milliseconds and every run of a seed is the
same run. Nothing here opens a socket or sleeps.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass

from netlab.proto.seq import ConnectionState, SequencingAcceptor, SequencingConfig, SequencingConnection
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
