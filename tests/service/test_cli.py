"""End to end through real processes: ``netlab serve`` + ``netlab exec``.

Every stream transport x every framing, exact output and exit status. The raw
and ack framings carry no exit status: ``exec`` says so on stderr and exits 254
(never a fake 0); on raw a command with no output sends nothing at all, and the
reply ends after the quiet period instead of the read timeout.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

import pytest

from netlab.cli.exec import EXIT_NO_STATUS
from netlab.errors import EXIT_NETLAB, EXIT_USAGE
from netlab.proto.framing import FRAMING_NAMES
from netlab.proto.messages import STDOUT
from netlab.service.builtins import BLOB_BLOCK
from netlab.service.client import Client
from netlab.testing import ChildServer, listen_url, run_netlab
from netlab.transport.address import STREAM_SCHEMES

STATUS_FRAMINGS = ("line", "length")
NO_STATUS_NOTICE = ("netlab: the {framing} framing cannot carry the exit status or stderr (stderr arrives mixed "
                    f"into stdout); exit code {EXIT_NO_STATUS} means the status is unknown: use --framing length "
                    "or line to get it")


def blob_bytes(size: int) -> bytes:
    """The first ``size`` bytes of ``blob`` output."""
    whole, tail = divmod(size, len(BLOB_BLOCK))
    return BLOB_BLOCK * whole + BLOB_BLOCK[:tail]


def exec_on(server: ChildServer, framing: str, *command: str, options: tuple[str, ...] = ()) -> object:
    return run_netlab("exec", "--address", server.url, "--framing", framing, *options, "--", *command)


@pytest.mark.parametrize("framing", FRAMING_NAMES)
@pytest.mark.parametrize("transport", STREAM_SCHEMES)
def test_exec_output_and_status_on_every_transport_and_framing(transport: str, framing: str, short_tmp: Path) -> None:
    with ChildServer("--address", listen_url(transport, short_tmp), "--framing", framing, "--quiet") as server:
        assert server.url.startswith(f"{transport}://")
        result = exec_on(server, framing, "echo", "hello", "world")
        if framing in STATUS_FRAMINGS:
            assert (result.returncode, result.stdout, result.stderr) == (0, b"hello world\n", b"")
        else:
            assert (result.returncode, result.stdout) == (EXIT_NO_STATUS, b"hello world\n")
            assert result.stderr.decode().splitlines() == [NO_STATUS_NOTICE.format(framing=framing)]
        if framing in STATUS_FRAMINGS:
            for code in (0, 1, 2, 44):
                result = exec_on(server, framing, "exit", str(code))
                assert (result.returncode, result.stdout, result.stderr) == (code, b"", b"")
        else:
            # ack delimits the reply (an empty one too) but has no field for the status; on
            # raw no output means nothing on the wire, and the quiet period ends the reply.
            result = exec_on(server, framing, "exit", "44", options=("--timeout", "30"))
            assert (result.returncode, result.stdout) == (EXIT_NO_STATUS, b"")
            assert result.stderr.decode().splitlines() == [NO_STATUS_NOTICE.format(framing=framing)]
        assert server.terminate() == 0


def test_exec_keeps_stderr_separate_and_reports_a_signal(short_tmp: Path) -> None:
    python = sys.executable
    with ChildServer("--address", listen_url("unix", short_tmp), "--allow", python, "--run-as", "root", "--quiet") as server:
        result = exec_on(server, "length", python, "-c",
                         "import sys; sys.stdout.write('out\\n'); sys.stderr.write('err\\n'); sys.exit(3)")
        assert (result.returncode, result.stdout, result.stderr) == (3, b"out\n", b"err\n")
        result = exec_on(server, "length", python, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
        assert result.returncode == 128 + signal.SIGKILL
        assert server.terminate() == 0


@pytest.mark.parametrize("framing", STATUS_FRAMINGS)
def test_exec_verify_passes_for_ten_mebibytes(framing: str) -> None:
    with ChildServer("--address", "tcp4://127.0.0.1:0", "--framing", framing, "--quiet") as server:
        result = exec_on(server, framing, "blob", "10MiB", options=("--verify",))
        assert result.returncode == 0, result.stderr
        assert result.stdout == blob_bytes(10 * 2**20)
        assert result.stderr.startswith(b"netlab: verified 10485760 bytes, sha256 ")
        assert server.terminate() == 0


def test_exec_verify_fails_cleanly_where_the_framing_has_no_digest() -> None:
    with ChildServer("--address", "tcp4://127.0.0.1:0", "--framing", "ack", "--quiet") as server:
        result = exec_on(server, "ack", "echo", "hi", options=("--verify",))
        assert result.returncode == EXIT_NETLAB
        assert result.stderr.decode().splitlines()[-1].startswith("netlab: cannot verify")
        assert server.terminate() == 0


def test_output_cap_flag_truncates_the_stream_and_says_so() -> None:
    with ChildServer("--address", "tcp4://127.0.0.1:0", "--output-cap", "1000", "--quiet") as server:
        result = exec_on(server, "length", "blob", "5000")
        assert result.returncode == 0, result.stderr  # the remote status is kept
        assert result.stdout == blob_bytes(1000)
        assert result.stderr.decode().splitlines() == [
            "netlab: output truncated at 1000 bytes by the server's output cap; raise it with serve --output-cap"]
        # a truncated transfer is not verified, even though what arrived matches the server's digest
        result = exec_on(server, "length", "blob", "5000", options=("--verify",))
        assert result.returncode == EXIT_NETLAB
        assert result.stdout == blob_bytes(1000)
        assert result.stderr.decode().splitlines() == [
            "netlab: output truncated at 1000 bytes by the server's output cap; raise it with serve --output-cap "
            "(so stdout is not verified)"]
        with Client(server.url, read_timeout=10) as client:
            reply = client.run("blob 5000", verify=True)
        assert reply.exit.truncated and reply.exit.stdout_bytes == 1000 and reply.verified
        assert reply.exit.output_cap == 1000
        assert server.terminate() == 0


def test_a_refused_command_exits_255_with_one_line() -> None:
    with ChildServer("--address", "tcp4://127.0.0.1:0", "--quiet") as server:
        result = exec_on(server, "length", "rm", "-rf", "/")
        assert result.returncode == EXIT_NETLAB
        assert result.stdout == b""
        lines = result.stderr.decode().splitlines()
        assert len(lines) == 1 and lines[0].startswith("netlab: server: command-refused: ")
        assert server.terminate() == 0


@pytest.mark.parametrize("framing", ("raw", "ack", "line"))
def test_serve_refuses_a_token_on_framings_without_authentication(framing: str, tmp_path: Path) -> None:
    assert run_netlab("token", "new", str(tmp_path / "token")).returncode == 0
    result = run_netlab("serve", "--address", "tcp4://127.0.0.1:0", "--framing", framing,
                        "--token-file", str(tmp_path / "token"), timeout=30)
    assert result.returncode == EXIT_USAGE
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and "cannot authenticate" in lines[0]


def test_serve_refuses_a_non_loopback_address_without_a_token() -> None:
    # Refused before anything binds, so no traffic leaves loopback.
    result = run_netlab("serve", "--address", "tcp4://0.0.0.0:0", timeout=30)
    assert result.returncode == EXIT_USAGE
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("netlab: refusing to serve tcp4://0.0.0.0:0 without a token")


def test_exec_with_the_right_token_runs_and_without_it_is_refused(tmp_path: Path) -> None:
    right, wrong = tmp_path / "right", tmp_path / "wrong"
    for path in (right, wrong):
        assert run_netlab("token", "new", str(path)).returncode == 0
    with ChildServer("--address", "tcp4://127.0.0.1:0", "--token-file", str(right), "--quiet") as server:
        result = exec_on(server, "length", "echo", "ok", options=("--token-file", str(right)))
        assert (result.returncode, result.stdout) == (0, b"ok\n")
        for options in (("--token-file", str(wrong)), ()):
            result = exec_on(server, "length", "echo", "ok", options=options)
            assert result.returncode == EXIT_NETLAB and result.stdout == b""
            assert len(result.stderr.decode().splitlines()) == 1
        assert server.terminate() == 0


def test_sigterm_lets_a_running_command_finish_then_exits_0(short_tmp: Path) -> None:
    python = sys.executable
    url = listen_url("unix", short_tmp)
    socket_path = short_tmp / "netlab.sock"
    command = [python, "-c", "import sys, time; print('started', flush=True); time.sleep(1); print('done')"]
    with ChildServer("--address", url, "--allow", python, "--run-as", "root", "--shutdown-grace", "10") as server:
        assert socket_path.exists()
        started = threading.Event()
        outcome: dict[str, object] = {}

        def on_output(stream: int, data: bytes) -> None:
            if stream == STDOUT:
                started.set()

        def run_client() -> None:
            try:
                with Client(server.url, read_timeout=20) as client:
                    outcome["reply"] = client.run(command, on_output=on_output)
            except Exception as exc:  # reported by the assertions below
                outcome["error"] = exc
            finally:
                started.set()

        client_thread = threading.Thread(target=run_client, daemon=True)
        client_thread.start()
        assert started.wait(20), "the command never started"
        server.send_sigterm()
        client_thread.join(20)
        assert not client_thread.is_alive()
        assert "error" not in outcome, outcome.get("error")
        reply = outcome["reply"]
        assert reply.stdout == b"started\ndone\n" and reply.exit.exit_status == 0  # type: ignore[attr-defined]
        assert server.terminate() == 0
        assert server.lines[-1] == "netlab: server stopped"
    assert not socket_path.exists()


@pytest.mark.parametrize(("congestion", "loss_timer"), (("reno", "pto"), ("cubic", "rto")))
def test_udp_serve_and_exec_with_congestion_control_move_a_blob_exactly(congestion: str, loss_timer: str) -> None:
    with ChildServer("--address", "udp://127.0.0.1:0", "--congestion", congestion, "--loss-timer", loss_timer,
                     "--quiet") as server:
        result = run_netlab("exec", "--address", server.url, "--congestion", congestion, "--loss-timer", loss_timer,
                            "--", "blob", "3000000", timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout == blob_bytes(3_000_000)
        assert server.terminate() == 0


@pytest.mark.parametrize("option", (("--congestion", "reno"), ("--loss-timer", "rto")))
@pytest.mark.parametrize("command", ("serve", "exec"))
def test_congestion_on_a_stream_transport_is_one_usage_line(command: str, option: tuple[str, str]) -> None:
    arguments = ["--address", "tcp4://127.0.0.1:9", *option] + (["--", "true"] if command == "exec" else [])
    result = run_netlab(command, *arguments, timeout=30)
    # exec's usage errors exit 255 like ssh's, never a status a remote command could return
    assert result.returncode == (EXIT_NETLAB if command == "exec" else EXIT_USAGE)
    lines = result.stderr.decode().splitlines()
    assert lines == ["netlab: --impair, --rto-floor, --congestion and --loss-timer apply to udp and udp6, not tcp4"]


def test_an_unknown_congestion_controller_is_refused_by_the_parser() -> None:
    result = run_netlab("exec", "--address", "udp://127.0.0.1:9", "--congestion", "vegas", "--", "true", timeout=30)
    assert result.returncode == EXIT_NETLAB
    assert b"invalid choice: 'vegas'" in result.stderr and b"Traceback" not in result.stderr
