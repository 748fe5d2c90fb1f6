"""The default allowlist's argument policies, privilege separation and the token rules, through running servers."""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

import pytest

from netlab.errors import EXIT_USAGE, AuthError, PolicyError
from netlab.service.admission import FREE_FAILURES
from netlab.service.client import Client
from netlab.service.policy import command_directory
from netlab.testing import ChildServer, run_netlab, serve_in_thread
from netlab.testing.robustness import MODELS

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="switching users needs root")
STRONG = b"k3Y-0f_the/lab+Qz9w"

ABUSES = [
    ["date", "-f", "/root/secret"],  # printed the file's lines in its errors
    ["date", "-uf", "/root/secret"],  # combined short options
    ["date", "--file=/root/secret"],
    ["date", "--fi", "/root/secret"],  # abbreviated long option
    ["date", "-s", "2020-01-01"],  # sets the clock
    ["date", "--set=2020-01-01"],
    ["date", "-us", "2020-01-01"],
    ["date", "010100002030"],  # MMDDhhmmYY operand sets the clock too
    ["date", "-r", "/root/secret"],  # reveals any file's mtime
    ["date", "--", "0101"],
    ["hostname", "attacker"],  # renamed the host
    ["hostname", "-F", "/root/secret"],
    ["hostname", "-b", "attacker"],
    ["/usr/bin/date", "-s", "2020-01-01"],  # a path entry gets the same policy (when allowed)
]
HARMLESS = [["date"], ["date", "+%Y"], ["date", "-u", "+%s"], ["date", "-d", "tomorrow"], ["date", "--date", "1 day"],
            ["hostname"], ["uname", "-a"], ["id"]]


@pytest.mark.parametrize("model", MODELS)
def test_the_default_allowlist_refuses_the_abuses_and_runs_the_harmless(model: str) -> None:
    with serve_in_thread("tcp4://127.0.0.1:0", model=model) as running:
        with Client(running.address, read_timeout=10) as client:
            for argv in ABUSES:
                with pytest.raises(PolicyError, match="refused|not allowed"):
                    client.run(argv)
            for argv in HARMLESS:
                reply = client.run(argv)
                assert reply.exit.exit_status == 0, (argv, reply.stderr)
            assert client.run(["hostname"]).stdout.strip() == os.uname().nodename.encode()
        refusals = [line for line in running.log_lines if " refused " in line]
        assert len(refusals) == len(ABUSES)


def _exec(server: ChildServer, *command: str) -> tuple[int, bytes, bytes]:
    result = run_netlab("exec", "--address", server.url, "--", *command)
    return result.returncode, result.stdout, result.stderr


@needs_root
def test_a_root_server_runs_commands_as_nobody_by_default() -> None:
    nobody = pwd.getpwnam("nobody")
    with ChildServer("--address", "tcp4://127.0.0.1:0", "--cwd", "/") as server:
        assert _exec(server, "id", "-u") == (0, f"{nobody.pw_uid}\n".encode(), b"")
        assert _exec(server, "id", "-G") == (0, f"{nobody.pw_gid}\n".encode(), b"")
        assert _exec(server, "whoami") == (0, b"nobody\n", b"")
        # the server itself keeps root
        assert os.stat(f"/proc/{server.process.pid}").st_uid == 0
        assert server.terminate() == 0


@needs_root
def test_commands_run_as_another_user_run_where_that_user_can_list(tmp_path: Path) -> None:
    """A root server started in a directory nobody cannot read (its launcher's own, mode 0700) runs
    commands in one nobody can list, so ``ls`` works."""
    hidden = tmp_path / "root-only"
    hidden.mkdir(mode=0o700)
    nobody = pwd.getpwnam("nobody")
    assert command_directory(None, "nobody", str(hidden)) in ("/", nobody.pw_dir)
    assert command_directory("/srv", "nobody", str(hidden)) == "/srv"  # --cwd wins
    assert command_directory(None, None, str(hidden)) is None  # no switch: the server's own
    assert command_directory(None, "nobody", "/") is None  # nobody can list it: the server's own
    with ChildServer("--address", "tcp4://127.0.0.1:0", "--run-as", "nobody") as server:
        started_in = os.readlink(f"/proc/{server.process.pid}/cwd")
        assert stat.S_IMODE(os.stat(started_in).st_mode) == 0o700  # nobody could not list it
        listed = _exec(server, "ls")
        assert listed[0] == 0, listed
        where = _exec(server, "pwd")
        assert where[0] == 0 and where[1].decode().strip() != started_in, where
        assert server.terminate() == 0


@needs_root
def test_run_as_root_opts_out_loudly() -> None:
    with ChildServer("--address", "tcp4://127.0.0.1:0", "--run-as", "root") as server:
        assert _exec(server, "id", "-u") == (0, b"0\n", b"")
        server.wait_for_line("COMMANDS RUN AS ROOT")
        assert server.terminate() == 0


def test_run_as_an_unknown_user_is_a_usage_error() -> None:
    result = run_netlab("serve", "--address", "tcp4://127.0.0.1:0", "--run-as", "no-such-user-here", timeout=30)
    assert result.returncode == EXIT_USAGE
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and "no user 'no-such-user-here'" in lines[0]


def test_a_token_on_the_command_line_is_refused() -> None:
    result = run_netlab("serve", "--address", "tcp4://127.0.0.1:0", "--token", STRONG.decode(), timeout=30)
    assert result.returncode == EXIT_USAGE
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and "ps" in lines[0] and "--token-file" in lines[0]


@pytest.mark.parametrize("weak", ["a", "s3cret", "aaaaaaaaaaaaaaaaaaaaaaaa"])
def test_a_weak_token_is_refused_by_the_server(weak: str) -> None:
    result = run_netlab("serve", "--address", "tcp4://127.0.0.1:0", environment={"NETLAB_TOKEN": weak}, timeout=30)
    assert result.returncode == EXIT_USAGE
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and "too weak" in lines[0] and "netlab token new" in lines[0]


def test_token_new_makes_an_owner_only_file_never_overwritten_and_the_server_uses_it(tmp_path: Path) -> None:
    path = tmp_path / "token"
    made = run_netlab("token", "new", str(path))
    assert made.returncode == 0 and made.stdout == b""
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = path.read_bytes().strip()
    assert len(token) == 43
    again = run_netlab("token", "new", str(path))
    assert again.returncode == EXIT_USAGE and b"exists" in again.stderr
    assert path.read_bytes().strip() == token
    with ChildServer("--address", "tcp4://127.0.0.1:0", "--token-file", str(path), "--quiet") as server:
        command_line = Path(f"/proc/{server.process.pid}/cmdline").read_bytes()
        assert token not in command_line  # never in ps
        with Client(server.url, token=token, read_timeout=10) as client:
            assert client.run("echo ok").stdout == b"ok\n"
        assert server.terminate() == 0


def test_a_token_file_others_may_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_bytes(STRONG + b"\n")
    path.chmod(0o644)
    result = run_netlab("serve", "--address", "tcp4://127.0.0.1:0", "--token-file", str(path), timeout=30)
    assert result.returncode == EXIT_USAGE
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and "chmod 600" in lines[0]


@pytest.mark.parametrize("model", MODELS)
def test_failed_authentication_is_throttled_per_peer(model: str) -> None:
    with serve_in_thread("tcp4://127.0.0.1:0", model=model, token=STRONG) as running:
        for _ in range(FREE_FAILURES):
            with pytest.raises(AuthError, match="wrong token"):
                Client(running.address, token=b"guess-guess-guess", read_timeout=10)
        # now the answers are not even checked, the right one neither, until the penalty passes
        for token in (b"guess-guess-guess", STRONG):
            with pytest.raises(AuthError, match="too many failed attempts from 127.0.0.1"):
                Client(running.address, token=token, read_timeout=10)
        served = False
        for _ in range(40):  # bounded: the first penalty is 1 s
            try:
                with Client(running.address, token=STRONG, read_timeout=10) as client:
                    served = client.run("echo ok").stdout == b"ok\n"
                break
            except AuthError:
                running.server.stopping.wait(0.1)
        assert served
        # a success clears the record: the next wrong answer is checked again
        with pytest.raises(AuthError, match="wrong token"):
            Client(running.address, token=b"guess-guess-guess", read_timeout=10)
