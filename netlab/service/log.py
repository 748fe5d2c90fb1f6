"""The server's log: one line per connection and per command, on stderr.

Text lines read like the tutorial server's prints, but complete::

    127.0.0.1:56380 -> 127.0.0.1:6969 connected
    127.0.0.1:56380 -> 127.0.0.1:6969 "ls -l" exit 0, 312 B, 4.1 ms
    127.0.0.1:56380 -> 127.0.0.1:6969 closed after 3 commands

``json`` writes one JSON object per line for machines; ``quiet`` writes only
warnings. Writes are serialized by a lock so threads never interleave lines.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Protocol

from netlab.service.executor import CommandResult

LOG_FORMATS = ("text", "json")


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

    def event(self, kind: str, text: str, **fields: object) -> None:
        """Write one event; ``text`` is the human line, ``fields`` the JSON data."""
        if self.quiet and kind != "warning":
            return
        if self.log_format == "json":
            line = json.dumps({"event": kind, **fields}, default=str)
        else:
            line = text
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()

    def warning(self, text: str) -> None:
        """Write a warning, even when quiet."""
        self.event("warning", f"warning: {text}", message=text)

    def connection(self, peer: str, local: str, what: str, **fields: object) -> None:
        """A connection opened, closed or failed."""
        self.event("connection", f"{peer} -> {local} {what}", peer=peer, local=local, what=what, **fields)

    def command(self, peer: str, local: str, line: str, result: CommandResult | None, duration: float = 0.0) -> None:
        """A command finished (``result``) or was refused (``result`` None)."""
        if self.quiet:
            return
        if result is None:
            outcome, output_bytes = "refused", 0
        else:
            outcome = describe_outcome(result)
            output_bytes = result.stdout_bytes + result.stderr_bytes
            duration = result.duration
        text = f'{peer} -> {local} "{line}" {outcome}, {output_bytes} B, {duration * 1000:.1f} ms'
        self.event(
            "command",
            text,
            peer=peer,
            local=local,
            line=line,
            outcome=outcome,
            output_bytes=output_bytes,
            duration_ms=round(duration * 1000, 3),
        )


def describe_outcome(result: CommandResult) -> str:
    """How a command ended, as the log says it: ``exit 0``, ``signal 9 (timed out)``."""
    outcome = f"signal {result.signal}" if result.signal is not None else f"exit {result.exit_status}"
    if result.timed_out:
        outcome += " (timed out)"
    if result.truncated:
        outcome += " (truncated)"
    return outcome
