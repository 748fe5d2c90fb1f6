"""Where the benchmark's two ends run: the client on one CPU, every server it starts on another.

How this works: on a machine with at least two usable CPUs, :func:`choose_pinning`
takes the first two of this process's affinity set. :func:`pinned` pins the
calling thread (the benchmark's client; threads it starts inherit the mask) to
the client CPU for the block and remembers the server CPU; every child server or
peer the benchmark starts is then pinned, all its threads, by :func:`pin_server`
right after it starts (threads it makes later inherit their creator's mask). With
one CPU nothing is pinned and the output says so. Server threads inside this
process (``--placement thread``) share the client's CPU: that placement is never
pinned apart.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass


@dataclass(frozen=True)
class Pinning:
    """The client's CPU and the servers' CPU (None: not pinned)."""

    client_cpu: int | None
    server_cpu: int | None

    @property
    def active(self) -> bool:
        return self.client_cpu is not None and self.server_cpu is not None

    def describe(self) -> str:
        """One line for the output."""
        if not self.active:
            return "client and servers not pinned (fewer than two usable CPUs, or --no-pin)"
        return (f"client pinned to CPU {self.client_cpu}, every server and peer (child process) to CPU "
                f"{self.server_cpu}")


NOT_PINNED = Pinning(None, None)
_current: list[Pinning] = [NOT_PINNED]


def choose_pinning() -> Pinning:
    """Two different CPUs from this process's affinity set, or NOT_PINNED with fewer than two."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return NOT_PINNED
    return Pinning(cpus[0], cpus[1])


@contextmanager
def pinned(pinning: Pinning) -> Iterator[Pinning]:
    """Pin the calling thread to the client CPU for the block; servers started meanwhile go to the server CPU."""
    if not pinning.active:
        yield pinning
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {pinning.client_cpu})  # type: ignore[arg-type]
    _current.append(pinning)
    try:
        yield pinning
    finally:
        _current.pop()
        os.sched_setaffinity(0, before)


def current_pinning() -> Pinning:
    """The pinning of the innermost :func:`pinned` block (NOT_PINNED outside any)."""
    return _current[-1]


def pin_server(pid: int) -> None:
    """Pin every thread of the child process ``pid`` to the current server CPU (nothing when not pinning).

    A thread that ended meanwhile is skipped; the process itself gone is not an error here
    (its own failure is reported where it is waited for).
    """
    pinning = current_pinning()
    if not pinning.active:
        return
    try:
        threads = [int(name) for name in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        threads = [pid]
    for thread in threads:
        with suppress(ProcessLookupError, FileNotFoundError):
            os.sched_setaffinity(thread, {pinning.server_cpu})  # type: ignore[arg-type]


def allowed_cpus(pid: int) -> str:
    """``Cpus_allowed_list`` of ``pid`` as the kernel reports it in /proc/PID/status."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("Cpus_allowed_list:"):
                return line.split(":", 1)[1].strip()
    return ""
