"""``netlab exec`` and ``netlab serve`` tell the truth: through real processes.

Each test drives the installed command line (``python -m netlab``) against a
``netlab serve`` child process and checks the exit code and the one line of
stderr a user sees.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from netlab.testing import ChildServer, listen_url, run_netlab


def exec_on(server: ChildServer, *command: str, framing: str = "length", options: tuple[str, ...] = (),
            timeout: float = 60.0) -> object:
    return run_netlab("exec", "--address", server.url, "--framing", framing, *options, "--", *command,
                      timeout=timeout)


@pytest.mark.parametrize("transport", ("unix-seqpacket", "udp"))
def test_ack_framing_sends_no_empty_message_on_boundary_preserving_transports(transport: str,
                                                                             short_tmp: Path) -> None:
    # 65,536 bytes is one whole output chunk: it used to go out as an empty
    # message, which seqpacket and udp read as end of stream.
    url = "udp://127.0.0.1:0" if transport == "udp" else listen_url(transport, short_tmp)
    with ChildServer("--address", url, "--framing", "ack", "--quiet") as server:
        for size in (65536, 300000):
            result = exec_on(server, "blob", str(size), framing="ack")
            assert len(result.stdout) == size, result.stderr
            assert b"closed the connection" not in result.stderr
        assert server.terminate() == 0
