"""Built-in commands, called directly with a recording output."""

from __future__ import annotations

import threading
import time

import pytest

from netlab.proto.messages import Exit
from netlab.service.builtins import (
    BLOB_BLOCK,
    BLOB_CHUNK_SIZE,
    BUILTINS,
    EXIT_OK,
    STOPPED_BY_REQUEST,
    STOPPED_BY_TIMEOUT,
    Interruption,
    ending,
)
from netlab.service.policy import BUILTIN_COMMANDS
from netlab.units import parse_size


class RecordingOutput:
    """Collects what a built-in writes; an optional stdout cap like the meter's."""

    def __init__(self, stdout_cap: int | None = None, chunk_size: int = 65536) -> None:
        self.chunk_size = chunk_size
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.stdout_chunks: list[int] = []
        self.stdout_cap = stdout_cap

    def write_stdout(self, data: bytes) -> bool:
        if self.stdout_cap is not None:
            data = data[: self.stdout_cap - len(self.stdout)]
        self.stdout += data
        self.stdout_chunks.append(len(data))
        return self.stdout_cap is None or len(self.stdout) < self.stdout_cap

    def write_stderr(self, data: bytes) -> None:
        self.stderr += data


def run(argv: list[str], interruption: Interruption | None = None, output: RecordingOutput | None = None) -> tuple[Exit, RecordingOutput]:
    output = output if output is not None else RecordingOutput()
    if interruption is None:
        interruption = Interruption(time.monotonic() + 60, threading.Event())
    return BUILTINS[argv[0]].run(argv, output, interruption), output


def blob_pattern(size: int) -> bytes:
    return bytes((index % 65536) % 251 for index in range(size))


def test_the_table_matches_the_policy_names() -> None:
    assert tuple(BUILTINS) == BUILTIN_COMMANDS


@pytest.mark.parametrize(
    ("argv", "stdout"),
    [
        (["echo"], b"\n"),
        (["echo", "hi"], b"hi\n"),
        (["echo", "a", "b  c", ""], b"a b  c \n"),
        (["echo", "$(id)", ";", "`id`"], b"$(id) ; `id`\n"),
        (["echo", "héllo"], "héllo\n".encode()),
        (["upper", "hello", "world"], b"HELLO WORLD\n"),
        (["upper"], b"\n"),
    ],
)
def test_echo_and_upper(argv: list[str], stdout: bytes) -> None:
    outcome, output = run(argv)
    assert outcome == EXIT_OK
    assert bytes(output.stdout) == stdout and not output.stderr


SIZE_TABLE = [
    ("0", 0),
    ("10", 10),
    ("10B", 10),
    ("10b", 10),
    ("4k", 4000),
    ("4K", 4000),
    ("4KB", 4000),
    ("4kb", 4000),
    ("4KiB", 4096),
    ("4kib", 4096),
    ("3M", 3_000_000),
    ("3MB", 3_000_000),
    ("10MiB", 10 * 1024 * 1024),
    ("2G", 2_000_000_000),
    ("2GB", 2_000_000_000),
    ("1GiB", 1024**3),
]


@pytest.mark.parametrize(("text", "size"), SIZE_TABLE)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "k", "-1", "1.5B", "4KiBB", "4TiB", "4x", "0x10", "1_000", "١٢"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="not a (size|whole number of bytes): write bytes, or 1000"):
        parse_size(text)


@pytest.mark.parametrize("size", [0, 1, 250, 251, 65535, 65536, 65537, 3 * 65536 + 7])
def test_blob_writes_exactly_size_pattern_bytes(size: int) -> None:
    outcome, output = run(["blob", str(size)])
    assert outcome == EXIT_OK
    assert bytes(output.stdout) == blob_pattern(size)
    assert all(chunk <= 65536 for chunk in output.stdout_chunks)


@pytest.mark.parametrize("chunk_size", [59_955, 65_175, 1_000, 65_536, 150_000, BLOB_CHUNK_SIZE])
def test_blob_bytes_do_not_depend_on_the_chunk_size(chunk_size: int) -> None:
    size = 7 * 65536 + 123
    outcome, output = run(["blob", str(size)], output=RecordingOutput(chunk_size=chunk_size))
    assert outcome == EXIT_OK and bytes(output.stdout) == blob_pattern(size)
    assert output.stdout_chunks[:-1] == [chunk_size] * (len(output.stdout_chunks) - 1)


def test_blob_is_deterministic_and_not_all_zero() -> None:
    _, first = run(["blob", "200KiB"])
    _, second = run(["blob", "200KiB"])
    assert first.stdout == second.stdout
    assert len(set(first.stdout)) == 251


def test_blob_reuses_one_block_for_full_chunks() -> None:
    seen: list[bytes] = []

    class Capture(RecordingOutput):
        def write_stdout(self, data: bytes) -> bool:
            seen.append(data)
            return True

    run(["blob", "256KiB"], output=Capture())
    assert len(seen) == 4 and all(chunk is BLOB_BLOCK for chunk in seen)
    seen.clear()
    run(["blob", "768KiB"], output=Capture(chunk_size=BLOB_CHUNK_SIZE))
    assert len(seen) == 4 and all(chunk is seen[0] and len(chunk) == BLOB_CHUNK_SIZE for chunk in seen)


def test_blob_chunks_never_exceed_the_largest_chunk() -> None:
    _, output = run(["blob", "1MiB"], output=RecordingOutput(chunk_size=1 << 20))
    assert bytes(output.stdout) == blob_pattern(1 << 20)
    assert max(output.stdout_chunks) == BLOB_CHUNK_SIZE


def test_blob_stops_at_the_output_cap() -> None:
    output = RecordingOutput(stdout_cap=100_000)
    outcome, _ = run(["blob", "1GiB"], output=output)
    assert outcome == EXIT_OK
    assert bytes(output.stdout) == blob_pattern(100_000)
    assert len(output.stdout_chunks) == 2  # stopped at the cap, not after 16384 chunks


def test_blob_stops_when_cancelled_or_past_the_deadline() -> None:
    cancelled = threading.Event()
    cancelled.set()
    assert run(["blob", "1MiB"], Interruption(time.monotonic() + 60, cancelled))[0] == STOPPED_BY_REQUEST
    assert run(["blob", "1MiB"], Interruption(time.monotonic(), threading.Event()))[0] == STOPPED_BY_TIMEOUT


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["blob"], "expected exactly one SIZE"),
        (["blob", "1", "2"], "expected exactly one SIZE"),
        (["blob", "ten"], "'ten' is not a size: write bytes, or 1000, 10B, 4kB = 4000, 4KiB = 4096, 10MiB, 1GiB"),
        (["sleep"], "expected exactly one SECONDS"),
        (["sleep", "x"], "invalid time interval 'x'"),
        (["sleep", "-1"], "invalid time interval '-1'"),
        (["sleep", "nan"], "invalid time interval 'nan'"),
        (["sleep", "inf"], "invalid time interval 'inf'"),
        (["exit", "256"], "invalid exit code '256'"),
        (["exit", "-1"], "invalid exit code '-1'"),
        (["exit", "+1"], "invalid exit code '+1'"),
        (["exit", "1", "2"], "expected at most one CODE"),
    ],
)
def test_bad_arguments_exit_2_with_usage_on_stderr(argv: list[str], problem: str) -> None:
    outcome, output = run(argv)
    assert outcome == ending(2)
    lines = output.stderr.decode().splitlines()
    assert lines == [f"{argv[0]}: {problem}", f"usage: {BUILTINS[argv[0]].usage}"]
    assert not output.stdout


@pytest.mark.parametrize(("argv", "status"), [(["exit"], 0), (["exit", "0"], 0), (["exit", "1"], 1), (["exit", "2"], 2), (["exit", "44"], 44), (["exit", "255"], 255)])
def test_exit_codes(argv: list[str], status: int) -> None:
    outcome, output = run(argv)
    assert outcome == ending(status)
    assert not output.stdout and not output.stderr


def test_sleep_zero_finishes() -> None:
    assert run(["sleep", "0"])[0] == EXIT_OK


def test_sleep_stops_on_cancel() -> None:
    cancelled = threading.Event()
    cancelled.set()
    assert run(["sleep", "30"], Interruption(time.monotonic() + 60, cancelled))[0] == STOPPED_BY_REQUEST


def test_sleep_cancelled_from_another_thread() -> None:
    cancelled = threading.Event()
    outcomes: list[Exit] = []
    sleeper = threading.Thread(target=lambda: outcomes.append(run(["sleep", "30"], Interruption(time.monotonic() + 60, cancelled))[0]))
    sleeper.start()
    cancelled.set()
    sleeper.join(timeout=10)
    assert outcomes == [STOPPED_BY_REQUEST]


def test_sleep_longer_than_the_deadline_times_out() -> None:
    outcome, _ = run(["sleep", "30"], Interruption(time.monotonic() + 0.05, threading.Event()))
    assert outcome == STOPPED_BY_TIMEOUT
    assert outcome.exit_status is None and outcome.signal == 15 and outcome.timed_out
