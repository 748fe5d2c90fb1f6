"""Packet rows for tests of what reads them (ladders, time-sequence graphs, quizzes), without a capture."""

from __future__ import annotations

from netlab.inspect.analyze import PacketRow

#: The two ends of :data:`EXCHANGE`.
CLIENT, SERVER = "127.0.0.2:40000", "127.0.0.1:6969"


def tcp_row(number: int, time: float, source: str, destination: str, flags: str, seq: int, ack: int, length: int = 0,
            content: list[str] | None = None, notes: list[str] | None = None) -> PacketRow:
    """A TCP packet row as the analyzer makes them."""
    return PacketRow(number, time, source, destination, "TCP", flags, seq, ack, length, content or [], notes or [])


#: A handshake, one command, its reply and a retransmission of the reply.
EXCHANGE = [
    tcp_row(1, 0.0, CLIENT, SERVER, "SYN", 0, 0),
    tcp_row(2, 0.00001, SERVER, CLIENT, "SYN,ACK", 0, 1),
    tcp_row(3, 0.00002, CLIENT, SERVER, "ACK", 1, 1),
    tcp_row(4, 0.0002, CLIENT, SERVER, "PSH,ACK", 1, 1, 60, ['EXEC id=1 "echo hello"']),
    tcp_row(5, 0.0018, SERVER, CLIENT, "PSH,ACK", 1, 61, 89, ["STDOUT 6 B", "EXIT 0"]),
    tcp_row(6, 0.0019, SERVER, CLIENT, "PSH,ACK", 1, 61, 89, ["STDOUT 6 B", "EXIT 0"], ["RETRANSMIT"]),
]
