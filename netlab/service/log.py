"""The server's log: one line per connection and per command, on stderr.

Text lines read like the tutorial server's prints, but complete, each after
a UTC timestamp::

    2026-11-30T19:04:08.123Z 127.0.0.1:56380 -> 127.0.0.1:6969 connected
    2026-11-30T19:04:08.127Z 127.0.0.1:56380 -> 127.0.0.1:6969 ran ls -l: exit 0, 312 B, 4.1 ms
    2026-11-30T19:04:09.002Z 127.0.0.1:56380 -> 127.0.0.1:6969 closed after 3 commands

``json`` writes one JSON object per line for machines (with a ``time``
field); ``quiet`` writes only warnings. Writes are serialized by a lock so
threads never interleave lines.

The audit trail: a command line records the argv that ran (for the unsafe
shell, ``/bin/sh -c LINE``), never only the client's text, and every argument
is escaped (:func:`render_argv`): a newline or another control character in
an argument is written as ``$'a\\nb'``, so it cannot start a forged line.
:meth:`ServerLog.throttled_warning` keeps a flood of one kind of event
(connections dropped, accept failing) to one line per interval.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import sys
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Protocol

from netlab.proto.messages import Exit

LOG_FORMATS = ("text", "json")
THROTTLE_INTERVAL = 10.0
# Arguments made only of these need no quoting at all (shlex.quote's own test).
_PLAIN_ARGUMENT = re.compile(r"[\w@%+=:,./-]+", re.ASCII).fullmatch
_PRINTABLE = re.compile(r"[ -~]*").fullmatch


class LogStream(Protocol):
    """Where log lines go: a text stream (stderr, a file, or lines kept in memory)."""

    def write(self, text: str, /) -> int:
        """Write ``text``."""

    def flush(self) -> None:
        """Push what was written."""


class ServerLog:
    """Writes connection and command events in text or JSON."""

    def __init__(self, stream: LogStream | None = None, *, log_format: str = "text", quiet: bool = False) -> None:
        self.stream: LogStream = stream if stream is not None else sys.stderr
        self.log_format = log_format
        self.quiet = quiet
        self._lock = threading.Lock()
        # key -> (monotonic time of the last line written, events held back since)
        self._throttled: dict[str, tuple[float, int]] = {}

    def event(self, kind: str, text: str, **fields: object) -> None:
        """Write one event; ``text`` is the human line, ``fields`` the JSON data."""
        if self.quiet and kind != "warning":
            return
        stamp = timestamp()
        if self.log_format == "json":
            line = json.dumps({"time": stamp, "event": kind, **fields}, default=str)
        else:
            line = f"{stamp} {text}"
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()

    def warning(self, text: str) -> None:
        """Write a warning, even when quiet."""
        self.event("warning", f"warning: {text}", message=text)

    def throttled_warning(self, key: str, text: str, interval: float = THROTTLE_INTERVAL) -> None:
        """A warning written at most once per ``interval`` for ``key``; the next one counts those held back."""
        now = time.monotonic()
        with self._lock:
            last, held = self._throttled.get(key, (-math.inf, 0))
            if now - last < interval:
                self._throttled[key] = (last, held + 1)
                return
            self._throttled[key] = (now, 0)
        if held:
            text += f" ({held} more like this since the last such line)"
        self.warning(text)

    def connection(self, peer: str, local: str, what: str, **fields: object) -> None:
        """A connection opened, closed or failed."""
        self.event("connection", f"{peer} -> {local} {what}", peer=peer, local=local, what=what, **fields)

    def command(self, peer: str, local: str, argv: Sequence[str], result: Exit | None,
                duration: float = 0.0, reason: str = "", line: str = "") -> None:
        """A command finished (``result``) or was refused (``result`` None, ``reason`` says why).

        ``argv`` is what ran (or was asked for, when refused); ``line`` is the
        client's own text, kept in the JSON log only (escaped there by JSON).
        """
        if self.quiet:
            return
        if result is None:
            outcome, output_bytes = "refused", 0
        else:
            outcome = describe_outcome(result)
            output_bytes = result.stdout_bytes + result.stderr_bytes
            duration = result.duration
        verb = "refused" if result is None else "ran"
        text = f"{peer} -> {local} {verb} {render_argv(argv)}: {outcome}, {output_bytes} B, {duration * 1000:.1f} ms"
        if reason:
            text += f" ({render_text(reason)})"
        self.event(
            "command",
            text,
            peer=peer,
            local=local,
            argv=list(argv),
            line=line,
            outcome=outcome,
            output_bytes=output_bytes,
            duration_ms=round(duration * 1000, 3),
            **({"reason": reason} if reason else {}),
        )


def timestamp() -> str:
    """The time now, UTC, to the millisecond: ``2026-11-30T19:04:08.123Z``."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def render_argv(argv: Sequence[str]) -> str:
    """An argv as one line a POSIX shell would split back into it; control characters escaped.

    Printable arguments are quoted as ``shlex.quote`` does; any other is
    written in ``$'...'`` form with ``\\n``, ``\\t``, ``\\xHH`` escapes, so the
    result never holds a newline.
    """
    return " ".join(_render_argument(argument) for argument in argv) if argv else "''"


def render_text(text: str) -> str:
    """``text`` on one line: control characters escaped as in :func:`render_argv`."""
    return text if _PRINTABLE(text) else _ansi_c_quote(text)[2:-1]


def _render_argument(argument: str) -> str:
    if _PLAIN_ARGUMENT(argument):
        return argument
    if _PRINTABLE(argument):
        return shlex.quote(argument)
    return _ansi_c_quote(argument)


def _ansi_c_quote(text: str) -> str:
    pieces = []
    for character in text:
        if character == "\\" or character == "'":
            pieces.append("\\" + character)
        elif character == "\n":
            pieces.append("\\n")
        elif character == "\t":
            pieces.append("\\t")
        elif character == "\r":
            pieces.append("\\r")
        elif " " <= character <= "~":
            pieces.append(character)
        elif ord(character) < 0x100:
            pieces.append(f"\\x{ord(character):02x}")
        else:
            pieces.append(f"\\u{ord(character):04x}" if ord(character) < 0x10000 else f"\\U{ord(character):08x}")
    return "$'" + "".join(pieces) + "'"


def describe_outcome(result: Exit) -> str:
    """How a command ended, as the log says it: ``exit 0``, ``signal 9 (timed out)``."""
    outcome = f"signal {result.signal}" if result.signal is not None else f"exit {result.exit_status}"
    if result.timed_out:
        outcome += " (timed out)"
    if result.truncated:
        outcome += " (truncated)"
    return outcome
