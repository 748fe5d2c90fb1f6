"""A cgroup v2 per external command, so that the kill reaches what left the process group.

How this works: a command that calls ``setsid`` (or ``setpgid``) leaves the
process group the executor kills, and would outlive its command. Where the
kernel allows it (root, a writable cgroup v2 hierarchy with ``cgroup.kill``,
Linux 5.14 or later), :func:`cgroup_base` names a directory under the
server's own cgroup; each command gets a child cgroup there
(:class:`CommandCgroup`), joined by the child process itself between fork and
exec (so nothing it starts can escape before it is in), and ended with
``cgroup.kill``, which SIGKILLs every member whatever its session. The
cgroup is removed once empty, the server's own ``netlab-PID`` directory when
the process exits, and the first probe of a process removes the empty ones
that killed servers left behind (their PID no longer runs). Elsewhere :func:`cgroup_base` returns None with
the reason in :func:`cgroup_unavailable_reason`, and only the process-group
kill applies (docs/security.md states this limit).
"""

from __future__ import annotations

import atexit
import itertools
import os
import re
import time

_COUNTER = itertools.count(1)
_PROBED: tuple[str | None, str] | None = None
#: How long removing an emptied cgroup may wait for the kernel to finish the kill.
REMOVE_WAIT = 2.0
_BASE_NAME = re.compile(r"netlab-([0-9]+)")


def _cgroup2_mount() -> str | None:
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as mounts:
            for line in mounts:
                fields = line.split()
                separator = fields.index("-")
                if fields[separator + 1] == "cgroup2":
                    return fields[4]
    except (OSError, ValueError, IndexError):
        return None
    return None


def _probe() -> tuple[str | None, str]:
    if os.geteuid() != 0:
        return None, "the server is not root"
    mount = _cgroup2_mount()
    if mount is None:
        return None, "no cgroup v2 hierarchy is mounted"
    try:
        with open("/proc/self/cgroup", encoding="utf-8") as own:
            relative = next(line.split(":", 2)[2].strip() for line in own if line.startswith("0::"))
    except (OSError, StopIteration):
        return None, "this process has no cgroup v2 membership"
    parent = os.path.join(mount, relative.lstrip("/"))
    _remove_leftovers(parent)
    base = os.path.join(parent, f"netlab-{os.getpid()}")
    try:
        os.makedirs(base, exist_ok=True)
    except OSError as exc:
        return None, f"cannot create a cgroup under {os.path.dirname(base)}: {exc.strerror}"
    if not os.path.exists(os.path.join(base, "cgroup.kill")):
        os.rmdir(base)
        return None, "the kernel has no cgroup.kill (Linux 5.14 or later)"
    atexit.register(_remove_tree, base)
    return base, ""


def _remove_tree(base: str) -> None:
    """Remove ``base`` and its command cgroups, where empty (a cgroup with processes stays)."""
    try:
        children = [entry.path for entry in os.scandir(base) if entry.is_dir()]
    except OSError:
        return
    for path in [*children, base]:
        try:
            os.rmdir(path)
        except OSError:
            pass


def _remove_leftovers(parent: str) -> None:
    """Remove the ``netlab-PID`` cgroups of servers that no longer run."""
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return
    for entry in entries:
        match = _BASE_NAME.fullmatch(entry.name)
        if match and entry.is_dir() and not os.path.exists(f"/proc/{match.group(1)}"):
            _remove_tree(entry.path)


def cgroup_base() -> str | None:
    """The directory under which commands get their cgroups, or None where that is not possible (probed once)."""
    global _PROBED
    if _PROBED is None:
        _PROBED = _probe()
    return _PROBED[0]


def cgroup_unavailable_reason() -> str:
    """Why :func:`cgroup_base` is None ("" when it is not)."""
    cgroup_base()
    assert _PROBED is not None
    return _PROBED[1]


class CommandCgroup:
    """One command's cgroup: the child joins it, the executor kills and removes it."""

    def __init__(self, base: str) -> None:
        """Create the cgroup (raises OSError when the kernel refuses)."""
        self.path = os.path.join(base, f"command-{next(_COUNTER)}")
        os.mkdir(self.path)
        self._procs = os.path.join(self.path, "cgroup.procs").encode()

    def join(self) -> None:
        """Move the calling process into the cgroup (run in the child between fork and exec)."""
        descriptor = os.open(self._procs, os.O_WRONLY)
        try:
            os.write(descriptor, b"0")
        finally:
            os.close(descriptor)

    def kill(self) -> None:
        """SIGKILL every process in the cgroup, whatever its session or group."""
        try:
            with open(os.path.join(self.path, "cgroup.kill"), "w", encoding="ascii") as kill:
                kill.write("1")
        except OSError:
            pass  # already gone

    def remove(self) -> None:
        """Kill what is left and remove the cgroup, waiting (bounded) for it to empty."""
        self.kill()
        deadline = time.monotonic() + REMOVE_WAIT
        while True:
            try:
                os.rmdir(self.path)
                return
            except FileNotFoundError:
                return
            except OSError:
                if time.monotonic() >= deadline:
                    return  # left behind, empty soon; the server's base cgroup holds it
                time.sleep(0.01)
