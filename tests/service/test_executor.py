"""Executor: exit statuses, signals, streaming, caps, timeouts and process-group kills.

Processes started here are ``sh`` (allowed explicitly) and the default
allowlist's programs. Waits on other processes use pidfds (an event), never
sleeps. A killed command's orphans are reparented to init, which may leave
them as zombies for a while: a zombie is dead, so "nothing left" means no
*live* process remains in the group.
"""

from __future__ import annotations

import hashlib
import os
import select
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from netlab.errors import PolicyError, UsageError
from netlab.proto.messages import Exit
from netlab.service.commandline import split_command_line
from netlab.service.executor import STDERR, STDOUT, Executor
from netlab.service.policy import Policy, check_command

pytestmark = pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="needs Linux pidfds to watch processes")

WAIT_LIMIT = 10.0  # seconds any single wait in these tests may take before failing


class Recorder:
    """An OutputSink that keeps each stream and every chunk size."""

    def __init__(self) -> None:
        self.streams: dict[int, bytearray] = {STDOUT: bytearray(), STDERR: bytearray()}
        self.chunk_sizes: list[int] = []

    def __call__(self, stream: int, chunk: bytes) -> None:
        assert isinstance(chunk, bytes) and chunk
        self.streams[stream] += chunk
        self.chunk_sizes.append(len(chunk))

    @property
    def stdout(self) -> bytes:
        return bytes(self.streams[STDOUT])

    @property
    def stderr(self) -> bytes:
        return bytes(self.streams[STDERR])


def shell_policy(**settings: object) -> Policy:
    return Policy(**settings).with_allowed("sh")  # type: ignore[arg-type]


def run(executor: Executor, argv: list[str], **options: object) -> tuple[Exit, Recorder]:
    recorder = Recorder()
    return executor.run(argv, recorder, **options), recorder  # type: ignore[arg-type]


def live_members(group_id: int) -> list[int]:
    """Pids of processes in ``group_id`` that are not zombies (read from /proc)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # it exited while we looked
        state, _parent, group = stat[stat.rindex(")") + 2 :].split()[:3]
        if int(group) == group_id and state not in "ZX":
            members.append(int(entry))
    return members


def wait_for_exit(pid: int) -> None:
    """Block until ``pid`` exits (becomes a zombie or disappears), via a pidfd."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        readable, _, _ = select.select([pidfd], [], [], WAIT_LIMIT)
        assert readable, f"process {pid} still runs"
    finally:
        os.close(pidfd)


def assert_group_is_gone(group_id: int) -> None:
    for pid in live_members(group_id):
        wait_for_exit(pid)  # a SIGKILLed process may still be on its way out
    assert live_members(group_id) == []
    try:
        os.killpg(group_id, 0)
    except ProcessLookupError:
        pass  # even the zombies are reaped


class PidWatcher(Recorder):
    """Records output and opens a pidfd for every pid printed on stdout, on arrival."""

    def __init__(self) -> None:
        super().__init__()
        self.pids: list[int] = []

    def __call__(self, stream: int, chunk: bytes) -> None:
        super().__call__(stream, chunk)
        if stream == STDOUT:
            self.pids.extend(int(token) for token in chunk.split() if token.isdigit())


@pytest.mark.parametrize("status", [0, 1, 2, 44])
def test_exit_status_is_exact(status: int) -> None:
    result, recorder = run(Executor(shell_policy()), ["sh", "-c", f"exit {status}"], digest=True)
    assert (result.exit_status, result.signal, result.timed_out) == (status, None, False)
    assert recorder.stdout == b"" and result.stdout_sha256 == hashlib.sha256(b"").digest()


@pytest.mark.parametrize("status", [0, 1, 2, 44])
def test_exit_builtin_status_is_exact(status: int) -> None:
    result, _ = run(Executor(Policy()), ["exit", str(status)])
    assert (result.exit_status, result.signal) == (status, None)


def test_stderr_is_kept_separate() -> None:
    result, recorder = run(Executor(shell_policy()), ["sh", "-c", "echo out; echo err >&2; echo out2"], digest=True)
    assert recorder.stdout == b"out\nout2\n"
    assert recorder.stderr == b"err\n"
    assert (result.stdout_bytes, result.stderr_bytes) == (9, 4)
    assert result.stdout_sha256 == hashlib.sha256(b"out\nout2\n").digest()


def test_death_by_signal_is_reported_as_a_signal() -> None:
    result, _ = run(Executor(shell_policy()), ["sh", "-c", "kill -9 $$"])
    assert (result.exit_status, result.signal, result.timed_out) == (None, 9, False)


def test_an_allowed_program_runs_with_literal_arguments(tmp_path: Path) -> None:
    (tmp_path / "a b").write_text("")
    result, recorder = run(Executor(Policy(working_directory=str(tmp_path))), ["ls", "a b"])
    assert result.exit_status == 0 and recorder.stdout == b"a b\n"


@pytest.fixture
def spawned(monkeypatch: pytest.MonkeyPatch) -> list[subprocess.Popen[bytes]]:
    """Every process the executor starts in this test (its pid is the group id)."""
    processes: list[subprocess.Popen[bytes]] = []

    class RecordingPopen(subprocess.Popen):  # type: ignore[type-arg]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            processes.append(self)

    monkeypatch.setattr(subprocess, "Popen", RecordingPopen)
    return processes


def test_timeout_kills_the_whole_process_group(spawned: list[subprocess.Popen[bytes]]) -> None:
    """``sleep 30 & sleep 30``: the shell, the foreground and the background sleep all die."""
    executor = Executor(shell_policy(kill_grace=0.2))
    result, _ = run(executor, ["sh", "-c", "sleep 30 & sleep 30"], timeout=0.3)
    assert (result.exit_status, result.signal, result.timed_out) == (None, signal.SIGTERM, True)
    [process] = spawned
    assert_group_is_gone(process.pid)


def test_a_command_that_ignores_sigterm_gets_sigkill() -> None:
    executor = Executor(shell_policy(kill_grace=0.1))

    def terminate_when_ready(stream: int, chunk: bytes) -> None:
        executor.terminate_all()  # the trap is set before "ready" is written

    result = executor.run(["sh", "-c", "trap '' TERM; echo ready; sleep 30"], terminate_when_ready)
    assert (result.exit_status, result.signal, result.timed_out) == (None, signal.SIGKILL, False)


def test_a_background_child_holding_the_pipes_does_not_hold_the_command() -> None:
    """The shell exits 0 at once; its background sleep keeps stdout open and is killed."""
    watcher = PidWatcher()
    result = Executor(shell_policy(kill_grace=0.1)).run(["sh", "-c", "echo $$; sleep 30 & echo $!"], watcher)
    assert (result.exit_status, result.signal, result.timed_out) == (0, None, False)
    group_id, background_pid = watcher.pids
    wait_for_exit(background_pid)
    assert_group_is_gone(group_id)


def test_leftovers_that_closed_the_pipes_are_killed_too() -> None:
    watcher = PidWatcher()
    command = "echo $$; sleep 30 >/dev/null 2>&1 & echo $!"
    result = Executor(shell_policy()).run(["sh", "-c", command], watcher)
    assert result.exit_status == 0
    group_id, background_pid = watcher.pids
    wait_for_exit(background_pid)
    assert_group_is_gone(group_id)


def test_a_request_timeout_only_lowers_the_policy_timeout() -> None:
    executor = Executor(Policy(command_timeout=0.1))
    result, _ = run(executor, ["sleep", "30"], timeout=1000.0)
    assert (result.exit_status, result.signal, result.timed_out) == (None, signal.SIGTERM, True)


@pytest.mark.parametrize("timeout", [0.0, -1.0, float("nan"), float("inf")])
def test_a_nonsense_timeout_is_refused(timeout: float) -> None:
    with pytest.raises(PolicyError, match="timeout"):
        run(Executor(Policy()), ["echo", "hi"], timeout=timeout)


def test_builtin_sleep_times_out_like_a_sigtermed_process() -> None:
    result, _ = run(Executor(Policy()), ["sleep", "30"], timeout=0.05)
    assert (result.exit_status, result.signal, result.timed_out) == (None, signal.SIGTERM, True)


def test_the_output_cap_truncates_and_stops_the_producer() -> None:
    """The program writes far past the cap: it is ended then, not left running to the timeout."""
    executor = Executor(shell_policy(output_cap=1000))
    command = "head -c 300000 /dev/zero; sleep 30; echo never >&2"
    result, recorder = run(executor, ["sh", "-c", command], digest=True)
    assert (result.exit_status, result.signal, result.truncated, result.timed_out) == (None, signal.SIGTERM, True, False)
    assert result.duration < 20  # far below the sleep: the cap ended it
    assert recorder.stdout == bytes(1000) and result.stdout_bytes == 1000
    assert recorder.stderr == b""
    assert result.stdout_sha256 == hashlib.sha256(bytes(1000)).digest()


def test_output_arrives_in_chunks_of_at_most_64_kib() -> None:
    result, recorder = run(Executor(shell_policy()), ["sh", "-c", "head -c 1000000 /dev/zero"])
    assert result.stdout_bytes == 1_000_000 == len(recorder.stdout)
    assert max(recorder.chunk_sizes) <= 65536


def test_blob_is_exact_deterministic_and_hashed() -> None:
    executor = Executor(Policy())
    first, first_output = run(executor, ["blob", "1MiB"], digest=True)
    second, second_output = run(executor, ["blob", "1MiB"], digest=True)
    assert first.stdout_bytes == 1024 * 1024 == len(first_output.stdout)
    assert first_output.stdout == second_output.stdout
    assert first.stdout_sha256 == second.stdout_sha256 == hashlib.sha256(first_output.stdout).digest()
    assert max(first_output.chunk_sizes) <= 65536
    assert not first.truncated


@pytest.mark.parametrize(("size", "truncated"), [("1000", False), ("1001", True), ("1GiB", True)])
def test_blob_is_capped_by_the_output_cap(size: str, truncated: bool) -> None:
    result, recorder = run(Executor(Policy(output_cap=1000)), ["blob", size], digest=True)
    assert (result.stdout_bytes, result.truncated, result.exit_status) == (1000, truncated, 0)
    assert result.stdout_sha256 == hashlib.sha256(recorder.stdout).digest()


@pytest.mark.parametrize("argv", [["blob", "1000"], ["sh", "-c", "echo out"]], ids=["builtin", "process"])
def test_no_digest_unless_asked(argv: list[str]) -> None:
    result, recorder = run(Executor(shell_policy()), argv)
    assert recorder.stdout and result.stdout_bytes == len(recorder.stdout)
    assert result.stdout_sha256 == b""


def test_output_chunks_follow_the_callers_chunk_size() -> None:
    result, recorder = run(Executor(shell_policy()), ["sh", "-c", "head -c 300000 /dev/zero"], chunk_size=1164)
    assert result.stdout_bytes == 300_000 == len(recorder.stdout)
    assert max(recorder.chunk_sizes) <= 1164
    _, blob = run(Executor(Policy()), ["blob", "300000"], chunk_size=59_955)
    assert blob.chunk_sizes == [59_955] * 5 + [300_000 - 5 * 59_955]
    _, large = run(Executor(Policy()), ["blob", "500000"], chunk_size=196_608)  # a byte stream's chunk
    assert large.chunk_sizes == [196_608] * 2 + [500_000 - 2 * 196_608]


def test_long_echo_output_is_split_into_64_kib_chunks() -> None:
    result, recorder = run(Executor(Policy()), ["echo", "x" * 200_000])
    assert result.stdout_bytes == 200_001 and max(recorder.chunk_sizes) <= 65536


def test_terminate_all_stops_processes_and_builtins() -> None:
    executor = Executor(shell_policy(kill_grace=0.2))
    started = threading.Event()
    results: list[Exit] = []

    def announce(stream: int, chunk: bytes) -> None:
        started.set()

    commands: list[tuple[list[str], Callable[[int, bytes], None]]] = [
        (["sh", "-c", "echo started; sleep 30"], announce),
        (["sleep", "30"], Recorder()),
    ]
    def run_in_thread(argv: list[str], sink: Callable[[int, bytes], None]) -> None:
        results.append(executor.run(argv, sink))

    threads = [threading.Thread(target=run_in_thread, args=command) for command in commands]
    for thread in threads:
        thread.start()
    assert started.wait(WAIT_LIMIT)
    assert executor.wait_running(lambda count: count == 2, WAIT_LIMIT)
    assert executor.running() == 2
    executor.terminate_all()
    for thread in threads:
        thread.join(WAIT_LIMIT)
    assert executor.wait_running(lambda count: count == 0, WAIT_LIMIT)
    assert [(r.exit_status, r.signal, r.timed_out) for r in results] == [(None, signal.SIGTERM, False)] * 2


def test_terminate_all_with_nothing_running_is_harmless() -> None:
    executor = Executor(Policy())
    executor.terminate_all()
    assert run(executor, ["echo", "hi"])[1].stdout == b"hi\n"
    assert executor.running() == 0


class ClientGone(Exception):
    pass


def test_a_failing_sink_kills_the_group_and_reraises() -> None:
    pids: list[int] = []

    def sink(stream: int, chunk: bytes) -> None:
        pids.extend(int(token) for token in chunk.split())
        raise ClientGone("the client went away")

    executor = Executor(shell_policy(kill_grace=0.2))
    with pytest.raises(ClientGone):
        executor.run(["sh", "-c", "echo $$; sleep 30"], sink)
    assert_group_is_gone(pids[0])
    assert executor.running() == 0


def test_a_failing_sink_in_a_builtin_reraises() -> None:
    def sink(stream: int, chunk: bytes) -> None:
        raise ClientGone("the client went away")

    executor = Executor(Policy())
    with pytest.raises(ClientGone):
        executor.run(["blob", "1MiB"], sink)
    assert executor.running() == 0


def test_the_environment_holds_only_allowed_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NETLAB_TEST_SECRET", "hunter2")
    monkeypatch.setenv("LANG", "C.UTF-8")
    executor = Executor(shell_policy())
    command = 'echo "${NETLAB_TEST_SECRET-unset} $LANG $PATH"'
    _, recorder = run(executor, ["sh", "-c", command])
    assert recorder.stdout == f"unset C.UTF-8 {os.environ['PATH']}\n".encode()


def test_stdin_is_dev_null() -> None:
    _, recorder = run(Executor(shell_policy()), ["sh", "-c", "readlink /proc/$$/fd/0"])
    assert recorder.stdout == b"/dev/null\n"


def test_the_working_directory_is_configurable(tmp_path: Path) -> None:
    _, recorder = run(Executor(Policy(working_directory=str(tmp_path))), ["pwd"])
    assert recorder.stdout == f"{tmp_path}\n".encode()


def test_a_missing_working_directory_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a directory"):
        Executor(Policy(working_directory=str(tmp_path / "missing")))


def test_an_allowed_but_missing_program_exits_127() -> None:
    executor = Executor(Policy(allowed_programs=("netlab-no-such-program", "/nonexistent/program")))
    result, recorder = run(executor, ["netlab-no-such-program"])
    assert result.exit_status == 127 and recorder.stderr == b"netlab-no-such-program: command not found\n"
    result, recorder = run(executor, ["/nonexistent/program"])
    assert result.exit_status == 127 and b"No such file" in recorder.stderr


def test_an_allowed_but_unexecutable_program_exits_126(tmp_path: Path) -> None:
    program = tmp_path / "not-executable"
    program.write_text("#!/bin/sh\necho ran\n")
    program.chmod(0o644)
    result, recorder = run(Executor(Policy(allowed_programs=(str(program),))), [str(program)])
    assert result.exit_status == 126 and b"Permission denied" in recorder.stderr and not recorder.stdout


def test_refused_commands_raise_before_anything_runs() -> None:
    executor = Executor(Policy())
    for argv in (["rm", "x"], ["/bin/ls"], ["sh", "-c", "id"], []):
        with pytest.raises(PolicyError):
            run(executor, argv)
    assert executor.running() == 0


def test_the_exit_watch_works_without_pidfds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where pidfd_open is unavailable the loop polls waitid and behaves the same."""

    def unavailable(pid: int, flags: int = 0) -> int:
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(os, "pidfd_open", unavailable)
    executor = Executor(shell_policy(kill_grace=0.1))
    result, recorder = run(executor, ["sh", "-c", "echo hi; exit 44"])
    assert (result.exit_status, recorder.stdout) == (44, b"hi\n")
    result, _ = run(executor, ["sh", "-c", "sleep 30"], timeout=0.1)
    assert (result.exit_status, result.signal, result.timed_out) == (None, signal.SIGTERM, True)


def test_unsafe_shell_sends_the_whole_line_to_sh() -> None:
    executor = Executor(Policy(unsafe_shell=True))
    line = "echo one; echo two | tr a-z A-Z"
    result, recorder = run(executor, split_command_line(line), line=line)
    assert (result.exit_status, recorder.stdout) == (0, b"one\nTWO\n")
    # Built-ins do not exist for the shell.
    result, _ = run(executor, ["upper", "hi"], line="upper hi")
    assert result.exit_status == 127


def test_unsafe_shell_without_a_line_quotes_the_argv() -> None:
    _, recorder = run(Executor(Policy(unsafe_shell=True)), ["echo", "a;b", "$(id)"])
    assert recorder.stdout == b"a;b $(id)\n"


INJECTION_CORPUS = [
    "echo hi; touch CANARY",
    "echo hi && touch CANARY",
    "echo hi || touch CANARY",
    "echo hi > CANARY",
    "echo $(touch CANARY)",
    "echo `touch CANARY`",
    "echo ${IFS}touch${IFS}CANARY",
    "ls $(touch CANARY)",
    "ls `touch CANARY`",
    "ls | touch CANARY",
    "ls\ntouch CANARY",
    "ls;touch CANARY",
    "ls -oProxyCommand=touch CANARY",
    "ls '-oProxyCommand=touch CANARY'",
    "ls > CANARY",
    "touch CANARY",
    "/usr/bin/touch CANARY",
    "sh -c 'touch CANARY'",
    "echo hi\0; touch CANARY",
    "echo 'unclosed; touch CANARY",
    'ls "$(touch CANARY)',
]


@pytest.mark.parametrize("line", INJECTION_CORPUS)
def test_injection_corpus_runs_only_the_literal_argv(line: str, tmp_path: Path) -> None:
    executor = Executor(Policy(working_directory=str(tmp_path)))
    try:
        argv = split_command_line(line)
        check_command(argv, executor.policy)
    except PolicyError:
        assert executor.running() == 0
    else:
        result, recorder = run(executor, argv, line=line)
        if argv[0] == "echo":
            assert recorder.stdout == (" ".join(argv[1:]) + "\n").encode()
        else:
            assert argv[0] == "ls" and result.exit_status != 0  # ls was given odd file names
    assert not (tmp_path / "CANARY").exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv", [["echo", "\ud800"], ["upper", "\ud800"], ["ls", "\ud800"]])
def test_arguments_that_are_not_text_are_refused(argv: list[str]) -> None:
    executor = Executor(Policy())
    with pytest.raises(PolicyError, match="not valid text"):
        run(executor, argv)
    assert executor.running() == 0
