"""The README's "Serve and use" session runs in the order shown and prints what it says.

The session is the indented block after the heading: ``$ CMD`` lines are
commands (run by bash, with ``netlab`` being this netlab), ``CMD &`` starts a
server in the background (the test waits for its ``serving on`` line), ``kill
%N...`` stops those servers; the lines under a command are what it prints:
lines starting ``netlab:`` on stderr, the others on stdout, exactly. ``…``
stands for text that differs between machines. The servers' example ports are
replaced by 0 (the kernel picks a free one as the server binds, so no other
program can take it first) and, once a server has said where it serves, by the
port it got; UNIX sockets go to a private directory.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from netlab.service.launch import child_environment

README = Path(__file__).resolve().parents[2] / "README.md"
HEADING = "## Serve and use"
DEFAULT_PORT = "6969"
UDP_EXAMPLE_PORT = "7001"
STARTUP_TIMEOUT = 30.0
COMMAND_TIMEOUT = 60.0


@dataclass
class Step:
    """One command of the session and what it prints."""

    command: str
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)


def session_steps(text: str) -> list[Step]:
    """The steps of the first indented block after :data:`HEADING`."""
    lines = text.split(HEADING, 1)[1].splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith("    $ "))
    steps: list[Step] = []
    for line in lines[start:]:
        if not line.startswith("    "):
            break
        content = line[4:]
        if content.startswith("$ "):
            command = re.sub(r"\s+#.*$", "", content[2:]).strip()
            steps.append(Step(command))
        elif content.startswith("netlab: "):
            steps[-1].stderr.append(content)
        else:
            steps[-1].stdout.append(content)
    return steps


def _matches(pattern: str, line: str) -> bool:
    return re.fullmatch(".*".join(map(re.escape, pattern.split("…"))), line) is not None


SERVING_ON = re.compile(r"netlab: serving on (tcp4|udp)://127\.0\.0\.1:(\d+) ")
EXAMPLE_PORTS = {"tcp4": DEFAULT_PORT, "udp": UDP_EXAMPLE_PORT}


def _write_config(path: Path, port: str) -> None:
    path.write_text(f'address = "tcp4://127.0.0.1:{port}"\n')


class Background:
    """A server the session started with ``&``: its stderr lines arrive on a queue."""

    def __init__(self, command: str, environment: dict[str, str], directory: str) -> None:
        self.process = subprocess.Popen(["bash", "-c", f"exec {command}"], stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                        env=environment, cwd=directory)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line.rstrip("\n"))

    def first_line(self) -> str:
        try:
            return self.lines.get(timeout=STARTUP_TIMEOUT)
        except queue.Empty:
            return f"(nothing on stderr within {STARTUP_TIMEOUT:g} s)"

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=STARTUP_TIMEOUT)


@pytest.fixture
def session() -> Iterator[tuple[dict[str, str], str, dict[str, str]]]:
    """The environment the session runs in, its directory, and the port replacements."""
    with tempfile.TemporaryDirectory(prefix="nl-") as directory:
        bin_directory = Path(directory, "bin")
        bin_directory.mkdir()
        wrapper = bin_directory / "netlab"
        wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m netlab "$@"\n')
        wrapper.chmod(0o755)
        ports = {DEFAULT_PORT: "0", UDP_EXAMPLE_PORT: "0"}
        config = Path(directory, "config.toml")
        _write_config(config, "0")
        runtime = Path(directory, "run")
        runtime.mkdir(mode=0o700)
        environment = child_environment({"PATH": f"{bin_directory}{os.pathsep}{os.environ.get('PATH', '')}",
                                         "NETLAB_CONFIG": str(config), "XDG_RUNTIME_DIR": str(runtime)})
        yield environment, directory, ports


def _localize(text: str, ports: dict[str, str]) -> str:
    for example, port in ports.items():
        text = text.replace(example, port)
    return text


def test_the_readme_session_runs_in_order_and_prints_what_it_says(session) -> None:  # type: ignore[no-untyped-def]
    environment, directory, ports = session
    steps = session_steps(README.read_text(encoding="utf-8"))
    assert len(steps) >= 5 and any(step.command.endswith("&") for step in steps)
    servers: list[Background] = []
    try:
        for step in steps:
            command = _localize(step.command, ports)
            if command.endswith("&"):
                server = Background(command[:-1].strip(), environment, directory)
                servers.append(server)
                line = server.first_line()
                serving = SERVING_ON.match(line)
                if serving:  # from now on the example's port is the one this server got
                    ports[EXAMPLE_PORTS[serving.group(1)]] = serving.group(2)
                    if serving.group(1) == "tcp4":
                        _write_config(Path(environment["NETLAB_CONFIG"]), serving.group(2))
                for pattern in step.stderr:
                    assert _matches(_localize(pattern, ports), line), f"{step.command}: {line!r}"
                continue
            stopped = re.fullmatch(r"kill((?: %\d+)+)", command)
            if stopped:
                for number in stopped.group(1).split():
                    assert servers[int(number[1:]) - 1].stop() == 0, f"{step.command}: the server did not exit 0"
                continue
            done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=environment,
                                  cwd=directory, timeout=COMMAND_TIMEOUT)
            assert done.stdout.splitlines() == [_localize(line, ports) for line in step.stdout], \
                f"{step.command}: stdout {done.stdout!r}, stderr {done.stderr!r}"
            errors = done.stderr.splitlines()
            assert len(errors) == len(step.stderr), f"{step.command}: stderr {done.stderr!r}"
            for pattern, line in zip(step.stderr, errors):
                assert _matches(_localize(pattern, ports), line), f"{step.command}: stderr {line!r}"
    finally:
        for server in servers:
            server.stop()
