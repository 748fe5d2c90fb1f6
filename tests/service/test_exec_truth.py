"""``netlab exec``, ``shell`` and ``serve`` tell the truth: through real processes.

Each test drives the command line (``python -m netlab``) against a ``netlab
serve`` child process and checks the exit code and the one line of stderr a
user sees. Waits are bounded by the child's timeout; none asserts a speed.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from netlab.cli.exec import EXIT_NO_STATUS
from netlab.errors import EXIT_NETLAB
from netlab.proto.framing import FRAMING_NAMES
from netlab.service.client import Client
from netlab.service.launch import child_environment, netlab_argv
from netlab.service.policy import DEFAULT_OUTPUT_CAP
from netlab.testing import ChildProcess, ChildServer, listen_url, run_netlab, start_child, wait_until

PYTHON = sys.executable
README = Path(__file__).resolve().parents[2] / "README.md"


def exec_on(server: ChildServer, *command: str, framing: str = "length", options: tuple[str, ...] = (),
            timeout: float = 60.0) -> subprocess.CompletedProcess[bytes]:
    return run_netlab("exec", "--address", server.url, "--framing", framing, *options, "--", *command,
                      timeout=timeout)


def exec_with_stdin(server: ChildServer, data: bytes, *command: str,
                    options: tuple[str, ...] = ()) -> subprocess.CompletedProcess[bytes]:
    return run_netlab("exec", "--address", server.url, *options, "--", *command, stdin=data, timeout=60)


def start_exec(server: ChildServer, *command: str) -> ChildProcess:
    return start_child(("exec", "--address", server.url, "--", *command), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)


def python_server(*extra: str, directory: Path) -> ChildServer:
    return ChildServer("--address", listen_url("unix", directory), "--allow", PYTHON, "--run-as", "root", *extra)


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# -- the ack framing over boundary-preserving transports --------------------------


@pytest.mark.parametrize("transport", ("unix-seqpacket", "udp"))
def test_ack_framing_sends_no_empty_message_on_boundary_preserving_transports(transport: str,
                                                                             short_tmp: Path) -> None:
    # 65,536 bytes is one whole output chunk: it used to go out as an empty
    # message, which seqpacket and udp read as end of stream.
    url = "udp://127.0.0.1:0" if transport == "udp" else listen_url(transport, short_tmp)
    with ChildServer("--address", url, "--framing", "ack", "--quiet") as server:
        for size in (65536, 300000):
            result = exec_on(server, "blob", str(size), framing="ack")
            assert result.returncode == EXIT_NO_STATUS, result.stderr
            assert len(result.stdout) == size
            assert b"closed the connection" not in result.stderr
        assert server.terminate() == 0


# -- limits are visible ---------------------------------------------------------------


def test_a_command_killed_by_the_server_timeout_says_so_with_the_limit() -> None:
    with ChildServer("--address", "tcp4://127.0.0.1:0", "--command-timeout", "1", "--quiet") as server:
        result = exec_on(server, "sleep", "30")
        assert result.returncode == 128 + signal.SIGTERM
        assert result.stderr.decode().splitlines() == [
            "netlab: killed after the server's 1 s command timeout; raise it with serve --command-timeout"]
        result = exec_on(server, "sleep", "30", options=("--command-timeout", "0.5"))
        assert result.returncode == 128 + signal.SIGTERM
        assert result.stderr.decode().splitlines() == [
            "netlab: killed after the 0.5 s command timeout asked for with --command-timeout"]
        with Client(server.url, read_timeout=30) as client:
            reply = client.run("sleep 30")
        assert reply.exit.timed_out and reply.exit.command_timeout == 1.0
        assert server.terminate() == 0


def test_the_output_cap_notice_names_the_default_in_mebibytes() -> None:
    from netlab.cli.exec import describe_size, limit_notices
    from netlab.proto.messages import Exit

    assert describe_size(DEFAULT_OUTPUT_CAP) == "64 MiB"
    assert limit_notices(Exit(1, 0, truncated=True, output_cap=DEFAULT_OUTPUT_CAP)) == [
        "output truncated at 64 MiB by the server's output cap; raise it with serve --output-cap"]


def test_serve_help_and_the_readme_state_every_default_limit() -> None:
    result = run_netlab("serve", "--help", timeout=30)
    assert result.returncode == 0
    text = " ".join(result.stdout.decode().split())
    options_part = text[text.index("options:"):]
    readme_rows = {line.split("|")[2].strip(" `"): line for line in README.read_text(encoding="utf-8").splitlines()
                   if line.startswith("| ") and line.count("|") >= 5}
    for option, in_help, in_readme in (("--command-timeout", "default 30", "30 s"),
                                       ("--output-cap", "64 MiB", "64 MiB"),
                                       ("--idle-timeout", "default 300", "300 s"),
                                       ("--request-deadline", "default 10", "10 s"),
                                       ("--max-connections", "default 64", "64")):
        described = options_part[options_part.index(f"{option} ") + len(option):]
        described = described[: described.index(" --")]
        assert in_help in described, f"serve --help: {option} says {described!r}"
        assert option in readme_rows, f"the README's table of limits lacks {option}"
        assert f" {in_readme} " in readme_rows[option].split("|")[3] + " ", readme_rows[option]


# -- hang-up and signals ----------------------------------------------------------------


def test_a_client_that_goes_away_gets_its_command_killed_and_the_server_says_why(short_tmp: Path) -> None:
    pid_file = short_tmp / "pid"
    script = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(100)"
    with python_server(directory=short_tmp) as server:
        result = exec_on(server, PYTHON, "-c", script, options=("--timeout", "2"))
        assert result.returncode == EXIT_NETLAB and b"nothing arrived" in result.stderr
        line = server.wait_for_line("its process group was killed", timeout=20)
        assert "the client closed the connection while" in line and "SIGTERM, then SIGKILL" in line
        pid = int(pid_file.read_text())
        wait_until(lambda: not process_exists(pid), timeout=20, what="the abandoned command to die")
        # the built-in sleep too: stopped long before its 30 s command timeout
        result = exec_on(server, "sleep", "100", options=("--timeout", "1"))
        assert result.returncode == EXIT_NETLAB
        server.wait_for_line("while sleep 100 ran: its process group was killed", timeout=20)
        assert server.terminate() == 0


@pytest.mark.parametrize("command", (("sleep", "100"), (PYTHON, "-c", "import time; time.sleep(100)")),
                         ids=("builtin", "process"))
def test_ctrl_c_in_exec_interrupts_the_remote_command_and_reports_130(command: tuple[str, ...],
                                                                      short_tmp: Path) -> None:
    with python_server(directory=short_tmp) as server:
        with start_exec(server, *command) as child:
            server.wait_for_line("connected", timeout=20)
            time.sleep(1.0)  # let the request reach the server: a Signal names the running request
            child.send_signal(signal.SIGINT)
            _, stderr = child.communicate(timeout=30)
        assert child.process.returncode == 128 + signal.SIGINT, stderr
        server.wait_for_line("signal INT from the client delivered", timeout=20)
        assert b"nothing arrived" not in stderr and b"netlab: interrupted" not in stderr
        assert server.terminate() == 0


def test_a_signal_request_reaches_the_command_through_the_client(short_tmp: Path) -> None:
    script = "import signal, sys, time; signal.signal(signal.SIGUSR1, lambda *_: sys.exit(42)); time.sleep(100)"
    with python_server(directory=short_tmp) as server, Client(server.url, read_timeout=30) as client:
        import threading

        timer = threading.Timer(1.0, client.send_signal, args=("USR1",))
        timer.start()
        try:
            reply = client.run([PYTHON, "-c", script])
        finally:
            timer.cancel()
        assert reply.exit.exit_status == 42  # the handler ran: the signal reached the process
        assert client.run("echo still usable").stdout == b"still usable\n"


# -- stdin -------------------------------------------------------------------------------


def test_exec_forwards_stdin_with_its_end(short_tmp: Path) -> None:
    with ChildServer("--address", listen_url("unix", short_tmp), "--allow", "cat", "--allow", "tar",
                     "--allow", "wc", "--run-as", "root", "--quiet") as server:
        result = exec_with_stdin(server, b"data\n", "cat")
        assert (result.returncode, result.stdout, result.stderr) == (0, b"data\n", b"")
        big = os.urandom(3 * 1024 * 1024)  # more than the server queues for a pipe: back-pressure
        result = exec_with_stdin(server, big, "wc", "-c")
        assert (result.returncode, result.stdout.split()) == (0, [str(len(big)).encode()])
        archive = subprocess.run(["tar", "c", "-C", str(Path(__file__).parent), "conftest.py"],
                                 capture_output=True, check=True, timeout=30).stdout
        result = exec_with_stdin(server, archive, "tar", "t")
        assert (result.returncode, result.stdout) == (0, b"conftest.py\n"), result.stderr
        result = exec_with_stdin(server, b"not sent\n", "cat", options=("-n",))
        assert (result.returncode, result.stdout) == (0, b"")
        assert server.terminate() == 0


# -- exit codes ----------------------------------------------------------------------------


def test_exec_errors_of_its_own_exit_255_and_remote_statuses_pass_through(short_tmp: Path) -> None:
    for arguments in (("--address", "tcp4://127.0.0.1:99999", "--", "ls"),  # bad address
                      ("--address", "tcp4://127.0.0.1:9"),  # no command
                      ("--no-such-option", "--", "ls"),  # usage
                      ("--address", f"unix://{short_tmp}/nobody.sock", "--", "ls")):  # connection
        result = run_netlab("exec", *arguments, timeout=30)
        assert result.returncode == EXIT_NETLAB, (arguments, result.stderr)
        assert b"Traceback" not in result.stderr
    with python_server(directory=short_tmp) as server:
        result = exec_on(server, "ls", "/no/such/file")
        assert result.returncode == 2  # ls's own status, no longer confused with a usage error
        result = exec_on(server, PYTHON, "-c", "import os; os.kill(os.getpid(), 9)")
        assert result.returncode == 128 + 9
        result = exec_on(server, "sleep", "5", options=("--timeout", "0.5"))  # our own read timeout
        assert result.returncode == EXIT_NETLAB and b"nothing arrived" in result.stderr
        assert server.terminate() == 0


def test_raw_with_no_output_ends_after_the_quiet_period_not_the_read_timeout() -> None:
    with ChildServer("--address", "tcp4://127.0.0.1:0", "--framing", "raw", "--quiet") as server:
        # were the read timeout (60 s) waited for, the 30 s bound of the child would fail the test
        result = exec_on(server, "exit", "7", framing="raw", timeout=30)
        assert (result.returncode, result.stdout) == (EXIT_NO_STATUS, b"")
        assert b"cannot carry the exit status" in result.stderr
        assert server.terminate() == 0


# -- framing mismatch ------------------------------------------------------------------------


@pytest.mark.parametrize("server_framing", FRAMING_NAMES)
def test_every_mismatched_framing_pair_is_named(server_framing: str) -> None:
    with ChildServer("--address", "tcp4://127.0.0.1:0", "--framing", server_framing, "--quiet") as server:
        for client_framing in FRAMING_NAMES:
            if client_framing == server_framing:
                continue
            # the read timeout is 30 s: the child's 20 s bound fails the test if it were waited for
            result = exec_on(server, "echo", "hi", framing=client_framing, options=("--timeout", "30"), timeout=20)
            assert result.returncode == EXIT_NETLAB, (client_framing, result.stderr)
            lines = result.stderr.decode().splitlines()
            assert len(lines) == 1, lines
            assert f"seems to speak the {server_framing} framing" in lines[0] or (
                f"seems to speak {server_framing}" in lines[0]), (client_framing, lines)
            assert result.stdout == b""
        assert server.terminate() == 0


# -- --timing ---------------------------------------------------------------------------------


def test_timing_total_includes_connect_and_udp_counts_its_handshake() -> None:
    with ChildServer("--address", "udp://127.0.0.1:0", "--quiet") as server:
        result = exec_on(server, "echo", "hi", options=("--timing", "--impair", "delay=100ms,seed=1"))
        assert result.returncode == 0, result.stderr
        match = re.search(rb"connect ([0-9.]+) ms, first byte ([0-9.]+) ms after the request, total ([0-9.]+) ms",
                          result.stderr)
        assert match, result.stderr
        connect, first_byte, total = (float(value) for value in match.groups())
        assert connect >= 100  # the handshake crossed the delayed link at least once
        assert total >= connect + first_byte
        assert server.terminate() == 0


# -- the shell, driven through a terminal -----------------------------------------------------


class Terminal:
    """``netlab shell`` on a pseudo-terminal: type lines and keys, read what it shows (bounded waits)."""

    def __init__(self, *arguments: str) -> None:
        import pty

        # Everything is prepared before the fork: the child only calls execve (another thread may
        # hold a lock at the moment of the fork, and the child would wait for it forever).
        environment = child_environment()
        environment["HOME"] = environment.get("TMPDIR", "/tmp")  # history file out of the user's home
        argv = netlab_argv("shell", *arguments)
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: become netlab shell
            os.execve(argv[0], argv, environment)
        self.seen = b""

    def expect(self, needle: bytes, timeout: float = 20.0) -> bytes:
        import select

        deadline = time.monotonic() + timeout
        while needle not in self.seen:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{needle!r} never appeared; the terminal shows {self.seen[-400:]!r}"
            readable, _, _ = select.select([self.fd], [], [], remaining)
            if readable:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:  # the child is gone
                    chunk = b""
                assert chunk, f"the shell ended before {needle!r}; it showed {self.seen[-400:]!r}"
                self.seen += chunk
        shown, _, self.seen = self.seen.partition(needle)
        return shown + needle

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def wait(self, timeout: float = 20.0) -> int:
        deadline = time.monotonic() + timeout
        while True:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
            assert time.monotonic() < deadline, "the shell did not leave"
            try:
                self.seen += os.read(self.fd, 4096)
            except OSError:
                time.sleep(0.05)

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


PROMPT = b"netlab$ "


@pytest.mark.parametrize("leave", (b"exit\r", b"quit\r", b"\x04"), ids=("exit", "quit", "ctrl-d"))
def test_shell_leaves_on_exit_quit_and_ctrl_d(leave: bytes) -> None:
    with ChildServer("--address", "tcp4://127.0.0.1:0", "--quiet") as server:
        terminal = Terminal("--address", server.url)
        try:
            terminal.expect(PROMPT)
            terminal.send(b"echo hello\r")
            assert b"hello" in terminal.expect(PROMPT)
            terminal.send(leave)
            assert terminal.wait() == 0
        finally:
            terminal.kill()
        assert server.terminate() == 0


def test_shell_help_ctrl_c_at_the_prompt_and_ctrl_c_cancelling_a_command() -> None:
    with ChildServer("--address", "tcp4://127.0.0.1:0", "--quiet") as server:
        terminal = Terminal("--address", server.url)
        try:
            assert b">>>" not in terminal.expect(PROMPT)  # not Python's prompt
            terminal.send(b"help\r")
            shown = terminal.expect(PROMPT)
            assert b"exit [N]" in shown and b"quit" in shown and b"Ctrl-C" in shown
            terminal.send(b"echo half-typed")  # Ctrl-C at the prompt drops the line
            terminal.expect(b"half-typed")
            # CPython's readline checks for a signal only when its wait for input is interrupted: a Ctrl-C
            # that lands while it is still handling the typed characters waits for the next key. A person
            # never types that fast; give readline a moment to be back in its wait, as after a keystroke.
            time.sleep(0.3)
            terminal.send(b"\x03")
            terminal.expect(PROMPT)
            terminal.send(b"echo fresh\r")
            shown = terminal.expect(PROMPT)
            assert b"fresh" in shown and b"half-typed\r\n" not in shown
            terminal.send(b"sleep 100\r")
            time.sleep(1.0)  # the request is on its way: Ctrl-C now interrupts the remote command
            terminal.send(b"\x03")
            shown = terminal.expect(PROMPT, timeout=30)
            assert b"[killed by signal 2 (SIGINT)]" in shown
            terminal.send(b"echo still connected\r")
            assert b"still connected" in terminal.expect(PROMPT)
            terminal.send(b"exit 3\r")
            assert terminal.wait() == 3
        finally:
            terminal.kill()
        assert server.terminate() == 0


# -- docs/protocol.md: the Input and Signal examples are what a live server answers ---------------


@pytest.mark.parametrize("name", ("length-stdin-exchange", "length-signal-exchange"))
def test_the_protocol_doc_examples_are_what_a_live_server_sends(
        name: str, short_tmp: Path, protocol_doc_examples: dict[str, list[tuple[str, Any]]]) -> None:
    from netlab.transport import connect

    transcript = protocol_doc_examples[name]
    sent = b"".join(data for direction, data in transcript if direction == "C")
    expected = b"".join(data for direction, data in transcript if direction == "S")
    with ChildServer("--address", listen_url("unix", short_tmp), "--allow", "cat", "--quiet") as server:
        with connect(server.url, 10) as connection:
            connection.send(sent, 10)
            answered = b""
            while len(answered) < len(expected):
                data = connection.receive(65536, 30)
                assert data, f"the server closed after {answered!r}"
                answered += data
        assert server.terminate() == 0
    # the reply ends with a 67-byte Exit frame whose duration (8 bytes after the length, type, id,
    # flags and code) is measured, so it differs
    assert expected[-67:-63] == (63).to_bytes(4, "big")
    duration = len(expected) - 67 + 11
    mask = slice(duration, duration + 8)
    assert len(answered) == len(expected)
    assert answered[: mask.start] + answered[mask.stop :] == expected[: mask.start] + expected[mask.stop :]
