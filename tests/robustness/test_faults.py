"""Faults inside commands: the output cap, the ack framing's whole-reply buffer, setsid escapes, the audit log."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netlab.proto.framing.ack import MAX_SERVER_REPLY
from netlab.service.cgroup import cgroup_base, cgroup_unavailable_reason
from netlab.service.client import Client
from netlab.service.policy import Policy
from netlab.testing import serve_in_thread, wait_until
from netlab.testing.robustness import MODELS

YES = shutil.which("yes")
SH = shutil.which("sh")


@pytest.mark.skipif(YES is None, reason="no yes(1) on this machine")
@pytest.mark.parametrize("model", MODELS)
def test_reaching_the_output_cap_ends_the_command_at_once(model: str) -> None:
    assert YES is not None
    policy = Policy(allowed_programs=(YES,), output_cap=1000, command_timeout=60.0)
    with serve_in_thread("tcp4://127.0.0.1:0", model=model, policy=policy) as running:
        with Client(running.address, read_timeout=20) as client:  # the old server ran yes for the full 60 s
            reply = client.run([YES])
        assert reply.stdout == b"y\n" * 500
        assert reply.exit.truncated and not reply.exit.timed_out
        assert reply.exit.signal in (15, 9)


@pytest.mark.parametrize("model", MODELS)
def test_the_ack_framing_holds_at_most_its_reply_limit_per_connection(model: str) -> None:
    with serve_in_thread("tcp4://127.0.0.1:0", model=model, framing="ack") as running:
        with Client(running.address, framing="ack", read_timeout=30) as client:
            reply = client.run("blob 20MiB")
            assert reply.stdout_bytes < MAX_SERVER_REPLY + 300
            assert reply.stdout.endswith(b"use the length framing for large output\n")
            assert b"reply cut at %d bytes" % MAX_SERVER_REPLY in reply.stdout
            assert client.run("echo small").stdout == b"small\n"  # the next reply is whole again


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if marker.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
            except OSError:
                continue
    return found


@pytest.mark.skipif(SH is None, reason="no sh on this machine")
@pytest.mark.skipif(cgroup_base() is None, reason=f"no per-command cgroup here: {cgroup_unavailable_reason()}")
@pytest.mark.parametrize("model", MODELS)
def test_a_command_that_calls_setsid_is_still_killed_with_its_cgroup(model: str) -> None:
    assert SH is not None
    marker = f"{300 + os.getpid() % 1000}.{len(model)}17"  # a unique sleep length to find the process by
    policy = Policy(allowed_programs=(SH,), kill_grace=0.2)
    with serve_in_thread("tcp4://127.0.0.1:0", model=model, policy=policy) as running:
        with Client(running.address, read_timeout=20) as client:
            reply = client.run([SH, "-c", f"setsid sleep {marker} </dev/null >/dev/null 2>&1 & echo started"])
        assert reply.stdout == b"started\n"
        wait_until(lambda: not _processes_with(f"sleep\0{marker}"), 10, "the setsid sleep to be killed")


@pytest.mark.parametrize("model", MODELS)
def test_the_audit_log_records_the_argv_that_ran_escaped_with_timestamps(model: str) -> None:
    with serve_in_thread("tcp4://127.0.0.1:0", model=model, log_format="json") as running:
        with Client(running.address, read_timeout=10) as client:
            client.run(["echo", "a\nforged 127.0.0.1 -> x ran rm -rf /: exit 0"])
            client.run(["id"])
        wait_until(lambda: len(running.log_events("command")) == 2, what="two command lines")  # logged after the Exit
        events = running.log_events("command")
        assert [event["argv"] for event in events] == [["echo", "a\nforged 127.0.0.1 -> x ran rm -rf /: exit 0"], ["id"]]
        for event in events:
            assert time.strptime(event["time"], "%Y-%m-%dT%H:%M:%S.%fZ")
        assert all(line.startswith("{") for line in running.log_lines)  # the newline stayed inside one JSON line
    with serve_in_thread("tcp4://127.0.0.1:0", model=model) as running:
        with Client(running.address, read_timeout=10) as client:
            client.run(["echo", "a\nforged"])
            client.run(["id"])
        wait_until(lambda: sum(" ran " in line for line in running.log_lines) == 2, what="two command lines")
        ran = [line for line in running.log_lines if " ran " in line]
        assert len(ran) == 2
        assert " ran echo $'a\\nforged': exit 0" in ran[0]
        assert " ran id: exit 0" in ran[1]  # what ran, not the client's text
        for line in running.log_lines:
            stamp = line.split(" ", 1)[0]
            assert time.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ"), line
        assert not any(line.startswith("forged") for line in running.log_lines)


def test_json_events_are_one_line_each_and_parse() -> None:
    with serve_in_thread("tcp4://127.0.0.1:0", log_format="json") as running:
        with Client(running.address, read_timeout=10) as client:
            client.run(["echo", "x\ny"])
        wait_until(lambda: len(running.log_events("command")) == 1, what="the command line")
        for line in running.log_lines:
            assert json.loads(line)["time"].endswith("Z")


@pytest.mark.skipif(cgroup_base() is None, reason=f"no per-command cgroup here: {cgroup_unavailable_reason()}")
def test_a_server_process_removes_its_cgroups_when_it_exits() -> None:
    base = cgroup_base()
    assert base is not None
    script = ("import os; from netlab.service.cgroup import cgroup_base; "
              "from netlab.service.executor import Executor; from netlab.service.policy import Policy; "
              "Executor(Policy()).run(['id'], lambda stream, data: None); print(cgroup_base())")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60, check=True)
    child_base = done.stdout.decode().strip()
    assert os.path.dirname(child_base) == os.path.dirname(base) and child_base != base
    assert not os.path.exists(child_base)
