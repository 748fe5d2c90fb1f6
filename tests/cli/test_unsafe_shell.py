"""exec against a --unsafe-shell server sends a quoted command line as ssh does: the shell sees the pipe."""

from __future__ import annotations

import tempfile

import pytest

from netlab.testing import ChildServer, listen_url, run_netlab


@pytest.mark.parametrize("framing", ["length", "line"])
def test_a_quoted_pipeline_runs_in_the_servers_shell(framing: str) -> None:
    with tempfile.TemporaryDirectory(prefix="nl-") as directory:
        with ChildServer("--address", listen_url("unix", directory), "--framing", framing, "--unsafe-shell",
                         "--quiet") as server:
            result = run_netlab("exec", "--address", server.url, "--framing", framing, "--",
                                "echo hi | tr a-z A-Z")
            assert (result.returncode, result.stdout) == (0, b"HI\n"), result.stderr
            # several arguments stay word for word: the shell gets each one quoted
            result = run_netlab("exec", "--address", server.url, "--framing", framing, "--", "echo", "a  b", "|")
            assert (result.returncode, result.stdout) == (0, b"a  b |\n"), result.stderr


def test_without_a_shell_the_line_is_split_and_the_pipe_is_a_plain_word() -> None:
    with tempfile.TemporaryDirectory(prefix="nl-") as directory:
        with ChildServer("--address", listen_url("unix", directory), "--quiet") as server:
            result = run_netlab("exec", "--address", server.url, "--", "echo hi | tr a-z A-Z")
    assert (result.returncode, result.stdout) == (0, b"hi | tr a-z A-Z\n"), result.stderr
