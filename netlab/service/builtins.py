"""Commands the service runs in-process, so experiments do not depend on the OS.

How this works: each built-in is a plain function that receives the argv, an
output object (the executor's meter, which counts, hashes and caps) and an
:class:`Interruption` (the command deadline and a cancel event). It writes its
output and returns how it ended as an :class:`~netlab.proto.messages.Exit`
holding only the ending (status, signal, timed out): the outcome has one shape
from here to the wire and the client's reply, and the executor completes it
for the request (its id, the counts, the duration). Nothing here starts a thread or a
process, so ``echo hi`` costs microseconds. Bad arguments behave like a real
program's: a message and a usage line on stderr, exit status 2.

The built-ins:

- ``echo ARGS...``: the arguments joined by one space, then a newline (no
  options: ``-n`` is printed like any other word).
- ``upper TEXT...``: the same, uppercased (the tutorial's echo server).
- ``blob SIZE``: exactly SIZE deterministic bytes (see :data:`BLOB_BLOCK`).
  SIZE is digits with an optional unit, case-insensitive: none or ``B`` is
  bytes; ``k``/``KB``, ``M``/``MB``, ``G``/``GB`` are decimal (1000-based);
  ``KiB``, ``MiB``, ``GiB`` are binary (1024-based). It stops at the output
  cap (the result says truncated), the deadline or a cancel request, checked
  between chunks (the connection's chunk size, at most :data:`BLOB_CHUNK_SIZE`).
- ``sleep SECONDS``: waits (a float); stops early on the command timeout or
  when the executor terminates everything.
- ``exit [CODE]``: exits with CODE (0..255, default 0) and no output.

A built-in stopped early reports what a process killed by SIGTERM would:
exit status None, signal 15, ``timed_out`` True when the deadline stopped it.
"""

from __future__ import annotations

import math
import re
import select
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from netlab.errors import PolicyError
from netlab.proto.messages import Exit
from netlab.service.control import CommandControl
from netlab.units import SIZE_FORMS, parse_size

EXIT_USAGE = 2
BLOB_BLOCK_SIZE = 64 * 1024
#: The repeating unit of ``blob`` output: byte i is ``i % 251`` (a prime, so
#: the pattern never lines up with power-of-two offsets). Stream byte j is
#: therefore ``(j % 65536) % 251``. Built once; every full 64 KiB chunk is this object.
BLOB_BLOCK: bytes = bytes(index % 251 for index in range(BLOB_BLOCK_SIZE))
#: The largest ``blob`` chunk: three blocks, whose Output frame fits the length
#: framing's 256 KiB maximum (fewer frames per byte: a bulk reply's per-frame
#: work on both ends is a third of 64 KiB chunks'). Every full one is one object.
BLOB_CHUNK_SIZE = 3 * BLOB_BLOCK_SIZE
_BLOB_CHUNK = BLOB_BLOCK * 3
_BLOB_RUN = BLOB_BLOCK * 4  # any BLOB_CHUNK_SIZE bytes of the stream are one slice of this

_EXIT_CODE_PATTERN = re.compile(r"[0-9]{1,3}")
NOT_TEXT = "an argument is not valid text; send UTF-8"


class BuiltinOutput(Protocol):
    """Where a built-in writes; the executor's meter counts, hashes and caps."""

    #: The largest chunk the sink takes at once (64 KiB, or up to 192 KiB over a
    #: byte stream); a longer write is cut. Chosen per connection, e.g. so that each chunk fills whole datagrams.
    chunk_size: int

    def write_stdout(self, data: bytes) -> bool:
        """Deliver ``data`` on stdout; return False once the output cap is reached."""

    def write_stderr(self, data: bytes) -> None:
        """Deliver ``data`` on stderr (capped like stdout)."""


def ending(exit_status: int | None, signal_number: int | None = None, timed_out: bool = False) -> Exit:
    """How a command ended, before the executor completes it for its request (id 0, no counts)."""
    return Exit(0, exit_status, signal_number, timed_out=timed_out)


# Endings are values (never changed once built): the common ones are built once.
EXIT_OK = ending(0)
STOPPED_BY_REQUEST = ending(None, int(signal.SIGTERM))
STOPPED_BY_TIMEOUT = ending(None, int(signal.SIGTERM), True)
_USAGE_ERROR = ending(EXIT_USAGE)


#: How often a running built-in looks at its client's side channel (signals, hang-up).
CONTROL_POLL_INTERVAL = 0.05


class BuiltinCommand:
    """A running built-in as its client's side channel sees it: a signal or a hang-up stops it.

    A built-in has no stdin (input is dropped) and no process group: any
    signal the client sends stops it and is reported as the signal that ended
    it, as a process killed by it would be; a hang-up stops it like SIGTERM.
    """

    __slots__ = ("cancelled", "stop_signal", "watching")

    def __init__(self, cancelled: threading.Event) -> None:
        self.cancelled = cancelled
        self.stop_signal = int(signal.SIGTERM)
        self.watching = True

    def write_stdin(self, data: bytes) -> None:
        """Built-ins read no stdin: dropped."""

    def close_stdin(self) -> None:
        """Built-ins read no stdin: nothing to close."""

    def send_signal(self, signal_number: int) -> None:
        """Stop, reporting ``signal_number`` as what ended the command."""
        self.stop_signal = signal_number
        self.cancelled.set()

    def hang_up(self, reason: str) -> None:
        """The client is gone: stop (as SIGTERM) and stop watching (the handler logs ``reason``)."""
        self.watching = False
        self.cancelled.set()

    def stop_watching(self) -> None:
        """Stop polling the client's side channel."""
        self.watching = False


class Interruption:
    """Tells a long-running built-in when to stop: a deadline, a cancel request, or its client.

    With a ``control`` (the client's side channel), :meth:`wait` and
    :meth:`stop_reason` also look at what the client sent: a Signal or a
    hang-up stops the built-in (at most every :data:`CONTROL_POLL_INTERVAL` s
    between ``blob`` chunks, so bulk output pays no system call per chunk).
    """

    __slots__ = ("_next_poll", "cancelled", "command", "control", "deadline")

    def __init__(self, deadline: float, cancelled: threading.Event, control: CommandControl | None = None,
                 command: BuiltinCommand | None = None) -> None:
        self.deadline = deadline  # time.monotonic() value
        self.cancelled = cancelled
        self.control = control if control is not None and control.fileno() >= 0 else None
        self.command = command
        self._next_poll = 0.0

    def stop_reason(self) -> Exit | None:
        """Return how to report an early stop if one is due now, else None."""
        now = time.monotonic()
        if self.control is not None and now >= self._next_poll:
            self._next_poll = now + CONTROL_POLL_INTERVAL
            self._poll()
        if self.cancelled.is_set():
            if self.command is not None:
                return ending(None, self.command.stop_signal)
            return STOPPED_BY_REQUEST
        if now >= self.deadline:
            return STOPPED_BY_TIMEOUT
        return None

    def wait(self, seconds: float) -> bool:
        """Wait up to ``seconds``, looking at the client's side channel every
        :data:`CONTROL_POLL_INTERVAL`; True when cancelled.

        The look is periodic rather than on readability, so requests a client
        pipelines behind this one still pile up in the socket as they would
        behind a busy server (the sticky-packets walkthrough shows them merge).
        """
        if self.control is None:
            return self.cancelled.wait(seconds)
        end = time.monotonic() + seconds
        while not self.cancelled.is_set():
            remaining = end - time.monotonic()
            if remaining <= 0:
                return False
            if self.cancelled.wait(min(remaining, CONTROL_POLL_INTERVAL)):
                return True
            self._poll()
        return True

    def _poll(self) -> None:
        """Act on what the client sent, if anything arrived (never waits)."""
        command = self.command
        if command is None or not command.watching or self.control is None:
            return
        readable, _, _ = select.select([self.control.fileno()], [], [], 0)
        if readable:
            self.control.poll(command)


BuiltinFunction = Callable[[Sequence[str], BuiltinOutput, Interruption], Exit]


@dataclass(frozen=True)
class Builtin:
    """One built-in command: its name, usage line and implementation."""

    name: str
    usage: str
    run: BuiltinFunction
    #: True when it may run long and must honour the deadline and cancellation;
    #: the others answer at once (a server may run them where it reads).
    interruptible: bool = False


def _usage_error(output: BuiltinOutput, builtin_name: str, problem: str) -> Exit:
    usage = BUILTINS[builtin_name].usage
    output.write_stderr(f"{builtin_name}: {problem}\nusage: {usage}\n".encode())
    return _USAGE_ERROR


def _encode(text: str) -> bytes:
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise PolicyError(NOT_TEXT) from None


def run_echo(argv: Sequence[str], output: BuiltinOutput, interruption: Interruption) -> Exit:
    """``echo ARGS...``: write the arguments joined by one space, then a newline."""
    try:
        output.write_stdout((" ".join(argv[1:]) + "\n").encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:
        raise PolicyError(NOT_TEXT) from None
    return EXIT_OK


def run_upper(argv: Sequence[str], output: BuiltinOutput, interruption: Interruption) -> Exit:
    """``upper TEXT...``: like echo, uppercased."""
    output.write_stdout(_encode(" ".join(argv[1:]).upper() + "\n"))
    return EXIT_OK


def run_blob(argv: Sequence[str], output: BuiltinOutput, interruption: Interruption) -> Exit:
    """``blob SIZE``: write exactly SIZE bytes of the :data:`BLOB_BLOCK` pattern."""
    if len(argv) != 2:
        return _usage_error(output, "blob", "expected exactly one SIZE")
    try:
        size = parse_size(argv[1])
    except ValueError as exc:
        return _usage_error(output, "blob", str(exc))
    chunk = min(output.chunk_size, BLOB_CHUNK_SIZE)
    for position in range(0, size, chunk):
        stop = interruption.stop_reason()
        if stop is not None:
            return stop
        if not output.write_stdout(_blob_piece(position, min(chunk, size - position))):
            return EXIT_OK  # the cap is reached: the meter flags truncation
    return EXIT_OK


def _blob_piece(position: int, length: int) -> bytes:
    """Blob bytes ``position`` to ``position + length`` (length <= BLOB_CHUNK_SIZE).

    A chunk of one or three whole blocks needs no copy.
    """
    start = position % BLOB_BLOCK_SIZE
    if start == 0:
        if length == BLOB_BLOCK_SIZE:
            return BLOB_BLOCK
        if length == BLOB_CHUNK_SIZE:
            return _BLOB_CHUNK
    return _BLOB_RUN[start : start + length]


def run_sleep(argv: Sequence[str], output: BuiltinOutput, interruption: Interruption) -> Exit:
    """``sleep SECONDS``: wait on the cancel event, bounded by the deadline."""
    if len(argv) != 2:
        return _usage_error(output, "sleep", "expected exactly one SECONDS")
    try:
        seconds = float(argv[1])
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds >= 0):
        return _usage_error(output, "sleep", f"invalid time interval {argv[1]!r}")
    remaining = max(0.0, interruption.deadline - time.monotonic())
    if interruption.wait(min(seconds, remaining)):
        return interruption.stop_reason() or STOPPED_BY_REQUEST
    if seconds > remaining:
        return STOPPED_BY_TIMEOUT
    return EXIT_OK


def run_exit(argv: Sequence[str], output: BuiltinOutput, interruption: Interruption) -> Exit:
    """``exit [CODE]``: end with status CODE (0..255), writing nothing."""
    if len(argv) == 1:
        return EXIT_OK
    if len(argv) != 2:
        return _usage_error(output, "exit", "expected at most one CODE")
    if not _EXIT_CODE_PATTERN.fullmatch(argv[1]) or int(argv[1]) > 255:
        return _usage_error(output, "exit", f"invalid exit code {argv[1]!r}")
    return ending(int(argv[1]))


BUILTINS: dict[str, Builtin] = {
    builtin.name: builtin
    for builtin in (
        Builtin("echo", "echo [ARG]...", run_echo),
        Builtin("upper", "upper [TEXT]...", run_upper),
        Builtin(
            "blob",
            f"blob SIZE   (SIZE: {SIZE_FORMS})",
            run_blob,
            interruptible=True,
        ),
        Builtin("sleep", "sleep SECONDS   (a number, e.g. 0.5)", run_sleep, interruptible=True),
        Builtin("exit", "exit [CODE]   (0..255)", run_exit),
    )
}
