"""What tests reuse, ours and a user's: transports, servers, waits, the conformance suite.

Import helpers from here rather than from a ``conftest.py``:

- :mod:`netlab.testing.transports`: every transport, fresh addresses, IPv6 probing.
- :mod:`netlab.testing.servers`: a server in a thread or a child process.
- :mod:`netlab.testing.waits`: bounded polling.
- :mod:`netlab.testing.conformance`: the suite every transport and wrapper
  passes (``CHECKS`` over a ``ConformanceKit``); it runs under pytest.
- :mod:`netlab.testing.network`: a fake, seeded, lossy network and clock for
  the sequencing state machine, a whole exchange over it, and a pair of ends
  wired by hand.
- :mod:`netlab.testing.protocol`: feed and drain a sans-IO decoder, cut bytes,
  and a duplex pipe joining two sessions or framers in memory.
- :mod:`netlab.testing.capture`: the pytest mark for tests that capture packets.
- :mod:`netlab.testing.lab`: the pytest mark for tests that build network namespaces.
- :mod:`netlab.testing.targets`: token files and a scenario run as JSON through
  ``netlab run``, for the remote-target tests.

Those last ones are imported by name (some need pytest or scapy).
"""

from netlab.testing.servers import (
    ChildProcess,
    ChildServer,
    ServerThread,
    read_connection_error,
    run_netlab,
    serve_in_thread,
    start_child,
)
from netlab.testing.transports import (
    TRANSPORT_CASES,
    TransportCase,
    listen_url,
    skip_unless_available,
    unavailable_reason,
)
from netlab.testing.waits import wait_until

__all__ = [
    "TRANSPORT_CASES",
    "ChildProcess",
    "ChildServer",
    "ServerThread",
    "TransportCase",
    "listen_url",
    "read_connection_error",
    "run_netlab",
    "serve_in_thread",
    "skip_unless_available",
    "start_child",
    "unavailable_reason",
    "wait_until",
]
