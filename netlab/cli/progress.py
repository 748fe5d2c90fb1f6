"""Progress of long runs on a terminal: done/total, elapsed time and an estimate of what is left.

How this works: a :class:`Progress` writes one line to stderr, rewritten in
place (``\\r`` and erase-line), only when stderr is a terminal; anywhere else
(a pipe, a file, CI) it writes nothing at all, so captured output never holds
progress noise. The estimate is the mean time of the steps done so far times
the steps left, shown once a step has finished.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

_CLEAR = "\r\033[K"
MAX_LINE = 200


class Progress:
    """One self-rewriting status line for ``total`` steps."""

    def __init__(self, total: int, stream: TextIO | None = None, clock: object = None) -> None:
        """Args: total: how many steps; stream: where to write (default stderr; silent unless a terminal)."""
        self.total = max(total, 0)
        self.stream = stream if stream is not None else sys.stderr
        self._clock = clock if callable(clock) else time.monotonic
        self.started = self._clock()
        self.active = bool(getattr(self.stream, "isatty", lambda: False)())
        self._shown = False

    def line(self, done: int, label: str = "") -> str:
        """The status text after ``done`` steps, e.g. ``[3/17] 0:12 elapsed, about 0:56 left: tcp4 backlog=3``."""
        elapsed = self._clock() - self.started
        text = f"[{min(done + 1, self.total)}/{self.total}] {_clock_text(elapsed)} elapsed"
        if 0 < done < self.total:
            text += f", about {_clock_text(elapsed / done * (self.total - done))} left"
        return (text + (f": {label}" if label else ""))[:MAX_LINE]

    def update(self, done: int, label: str = "") -> None:
        """Show that ``done`` steps have finished and the next is ``label`` (nothing off a terminal)."""
        if not self.active:
            return
        self.stream.write(_CLEAR + self.line(done, label))
        self.stream.flush()
        self._shown = True

    def status(self, text: str) -> None:
        """Show the elapsed time and ``text``, for a run not counted in steps (nothing off a terminal)."""
        if not self.active:
            return
        self.stream.write(_CLEAR + f"{_clock_text(self._clock() - self.started)} elapsed: {text}"[:MAX_LINE])
        self.stream.flush()
        self._shown = True

    def finish(self) -> None:
        """Erase the line, so what follows starts clean."""
        if self.active and self._shown:
            self.stream.write(_CLEAR)
            self.stream.flush()


def _clock_text(seconds: float) -> str:
    minutes, whole = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{whole:02d}" if hours else f"{minutes}:{whole:02d}"
