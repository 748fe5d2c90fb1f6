"""The one server launcher: in a thread, in a child process, whatever the working directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from netlab.errors import UsageError
from netlab.service.client import Client
from netlab.service.launch import child_environment, server_in_thread
from netlab.testing import ChildServer, run_netlab
from netlab.transport.base import Connection
from netlab.transport.tap import TappedConnection, TapRecorder


def _fake_package(directory: Path) -> None:
    """A ``netlab/`` folder that would shadow the real package if it were imported."""
    fake = directory / "netlab"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise SystemExit('the fake netlab package was imported')\n")
    (fake / "__main__.py").write_text("raise SystemExit('the fake netlab package was run')\n")


def test_the_fake_package_shadows_netlab_when_run_from_its_directory(tmp_path: Path) -> None:
    """The danger is real: ``python -m netlab`` from that directory runs the fake."""
    _fake_package(tmp_path)
    result = subprocess.run([sys.executable, "-m", "netlab", "--help"], cwd=tmp_path, capture_output=True,
                            timeout=60, env=child_environment())
    assert result.returncode != 0
    assert b"fake netlab package" in result.stderr


def test_a_child_server_started_beside_a_fake_package_is_the_real_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_package(tmp_path)
    monkeypatch.chdir(tmp_path)
    with ChildServer("--address", "tcp4://127.0.0.1:0", "--quiet") as server:
        with Client(server.url, read_timeout=10) as client:
            assert client.run("echo launched").stdout == b"launched\n"
        result = run_netlab("exec", "--address", server.url, "--", "echo", "from", "a", "child")
        assert result.returncode == 0, result.stderr
        assert result.stdout == b"from a child\n"
        assert server.terminate() == 0


def test_a_relative_pythonpath_keeps_naming_the_same_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(["relative/dir", "", "/absolute"]))
    monkeypatch.setenv("NETLAB_TOKEN", "secret")
    environment = child_environment()
    assert environment["PYTHONPATH"] == os.pathsep.join([str(tmp_path / "relative" / "dir"), "/absolute"])
    assert "NETLAB_TOKEN" not in environment


def test_children_never_read_the_users_own_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's ~/.config/netlab/config.toml (or $NETLAB_CONFIG) must not change a test's or a bench's child."""
    user_config = tmp_path / "netlab" / "config.toml"
    user_config.parent.mkdir()
    user_config.write_text('framing = "line"\naddress = "tcp4://127.0.0.1:1"\n')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    shown = run_netlab("config", "show")
    assert shown.returncode == 0, shown.stderr
    assert str(user_config).encode() not in shown.stdout and b"tcp4://127.0.0.1:1" not in shown.stdout
    with ChildServer("--address", "tcp4://127.0.0.1:0", "--quiet") as server:  # not tcp4://127.0.0.1:1
        result = run_netlab("exec", "--address", server.url, "--", "echo", "default framing")
        assert (result.returncode, result.stdout) == (0, b"default framing\n"), result.stderr
    monkeypatch.setenv("NETLAB_CONFIG", str(user_config))
    assert "NETLAB_CONFIG" not in child_environment()
    unnamed = run_netlab("config", "show")
    assert unnamed.returncode == 0 and b"tcp4://127.0.0.1:1" not in unnamed.stdout, unnamed.stderr
    # A test of the config file still names its own.
    named = run_netlab("config", "show", environment={"NETLAB_CONFIG": str(user_config)})
    assert b"tcp4://127.0.0.1:1" in named.stdout, named.stderr


def test_a_server_that_does_not_start_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="netlab serve did not start") as caught:
        ChildServer("--address", "tcp4://127.0.0.1:0", "--model", "no-such-model")
    assert "invalid choice" in str(caught.value)


def test_a_thread_server_taps_what_it_accepts_and_keeps_its_json_log() -> None:
    recorder = TapRecorder()

    def tap(connection: Connection) -> Connection:
        return TappedConnection(connection, recorder, "server")

    with server_in_thread("tcp4://127.0.0.1:0", wrap_accepted=tap, log_format="json") as running:
        with Client(running.address, read_timeout=10) as client:
            client.run("echo tapped")
    assert running.stop() is True
    assert [event["line"] for event in running.log_events("command")] == ["echo tapped"]
    assert any(event.connection == "server" and event.direction == "recv" for event in recorder.events())


def test_a_server_that_cannot_be_built_removes_its_socket_file(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    with pytest.raises(UsageError, match="unknown server model"):
        with server_in_thread(f"unix://{path}", model="no-such-model"):
            pass
    assert not path.exists()
