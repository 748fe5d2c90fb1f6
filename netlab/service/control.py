"""What a client may do to its running command: stdin, signals, hanging up.

How this works: while a command runs, the executor's loop also watches the
client's connection through a :class:`CommandControl` (the connection handler).
When the connection is readable the executor calls :meth:`CommandControl.poll`,
which reads what arrived and acts on the command through the
:class:`RunningCommand` it was given: bytes for stdin, the end of stdin, a
signal (RFC 4254's "signal" request: a name such as ``INT``), or a hang-up
(the connection closed or broke), on which the command's process group is
killed: SIGTERM, then SIGKILL after the policy's grace period, as on a timeout.
"""

from __future__ import annotations

import signal
from typing import Protocol

#: The signals a client may send, by their RFC 4254 names (no ``SIG`` prefix).
SIGNALS_BY_NAME: dict[str, int] = {
    name: int(getattr(signal, f"SIG{name}"))
    for name in ("INT", "TERM", "HUP", "KILL", "QUIT", "USR1", "USR2", "ALRM", "PIPE", "CONT", "STOP")
}


def signal_number(name: str) -> int | None:
    """The number of the signal a client named (e.g. ``INT`` -> 2); None when it may not be sent."""
    return SIGNALS_BY_NAME.get(name)


class RunningCommand(Protocol):
    """The running command, as the client's side channel sees it."""

    def write_stdin(self, data: bytes) -> None:
        """Queue ``data`` for the command's stdin (dropped when it has none or closed it)."""

    def close_stdin(self) -> None:
        """End the command's stdin once what is queued is written."""

    def send_signal(self, signal_number: int) -> None:
        """Deliver a signal to the command's process group."""

    def hang_up(self, reason: str) -> None:
        """The client is gone: kill the group (SIGTERM, grace, SIGKILL); ``reason`` says why."""

    def stop_watching(self) -> None:
        """Stop calling :meth:`CommandControl.poll` for this command (e.g. the next request is queued)."""


class CommandControl(Protocol):
    """The client's side channel while its command runs."""

    def fileno(self) -> int:
        """A descriptor readable when the client sent something or left; -1 for none."""

    def attach(self, command: RunningCommand) -> None:
        """The command started: act on anything the client sent already."""

    def poll(self, command: RunningCommand) -> None:
        """The descriptor is readable: read what arrived and act on it."""
