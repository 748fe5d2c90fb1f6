"""Sequenced UDP, sans-IO: reliable, ordered, exactly-once messages over datagrams.

The parts, each in one module (see docs/udp-sequencing.md for the protocol):

- :mod:`.wire`: the datagram format, the one encoder and parser;
- :mod:`.ranges`: sorted disjoint ranges (SACK bookkeeping);
- :mod:`.rto`: the RFC 6298 retransmission timer;
- :mod:`.cookie`: stateless address-validation cookies;
- :mod:`.config`: settings, counters and states;
- :mod:`.recovery`: loss recovery (what is in flight, what was lost);
- :mod:`.congestion`: congestion control (how much may be in flight);
- :mod:`.receiver`: ordering, reassembly and acknowledgement decisions;
- :mod:`.handshake`: one end's handshake: what to send, when to resend, when to give up;
- :mod:`.connection`: one connection end: sending, acknowledging, every timer;
- :mod:`.acceptor`: a server's stateless handshake half.

Nothing here imports socket, select, threading or time: callers pass ``now``.
"""

from netlab.proto.seq.acceptor import SequencingAcceptor
from netlab.proto.seq.config import (
    AMPLIFICATION_FACTOR,
    INITIAL_SIZE,
    ConnectionState,
    HandshakeStatistics,
    SequencingConfig,
    SequencingStatistics,
)
from netlab.proto.seq.connection import SequencingConnection
from netlab.proto.seq.rto import FAST_FLOOR, RFC_FLOOR

__all__ = [
    "AMPLIFICATION_FACTOR",
    "FAST_FLOOR",
    "INITIAL_SIZE",
    "RFC_FLOOR",
    "ConnectionState",
    "HandshakeStatistics",
    "SequencingAcceptor",
    "SequencingConfig",
    "SequencingConnection",
    "SequencingStatistics",
]
