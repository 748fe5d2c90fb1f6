"""What the command service may run.

How this works: a :class:`Policy` is an immutable bundle of the server's
settings (allowed programs, timeouts, output cap, environment). A command line
is split into a literal argv by :mod:`netlab.service.commandline` (no shell
ever sees it); :func:`check_command` then refuses any program
that is neither a built-in nor on the allowlist. In ``unsafe_shell`` mode (the
tutorial server) none of this applies: the executor hands the whole line to
``/bin/sh -c``.

Allowlist entries are bare names (``ls``, looked up on the command's PATH) or
absolute paths (``/usr/bin/ls``). A bare name in a request matches a bare
entry, or an absolute entry with that base name (which then runs that exact
file). A request whose program contains ``/`` runs only if that exact path is
an entry.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace

from netlab.errors import PolicyError, UsageError
from netlab.service.builtins import BUILTINS

DEFAULT_ALLOWED_PROGRAMS: tuple[str, ...] = ("ls", "pwd", "date", "uname", "whoami", "hostname", "id")
#: The built-ins' names (the one list is :data:`netlab.service.builtins.BUILTINS`).
BUILTIN_COMMANDS: tuple[str, ...] = tuple(BUILTINS)
DEFAULT_ENVIRONMENT_ALLOWLIST: tuple[str, ...] = (
    "PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "HOME", "USER", "LOGNAME", "TERM",
)
DEFAULT_OUTPUT_CAP = 64 * 1024 * 1024



@dataclass(frozen=True)
class Policy:
    """The command service's settings; immutable, shared by every request.

    Attributes:
        allowed_programs: programs that may run besides the built-ins: bare
            names resolved on PATH, or absolute paths.
        unsafe_shell: run the whole line through ``/bin/sh -c`` (tutorial mode:
            no allowlist, shell injection is the point of the lesson).
        command_timeout: seconds a command may run; a request may only lower it.
        output_cap: bytes delivered per stream (stdout, stderr); the rest is
            read and dropped, and the result is flagged ``truncated``.
        kill_grace: seconds between SIGTERM and SIGKILL when killing a command.
        working_directory: where commands run; None keeps the server's own.
        environment_allowlist: the only variables copied from the server's
            environment into a command's environment.
    """

    allowed_programs: tuple[str, ...] = DEFAULT_ALLOWED_PROGRAMS
    unsafe_shell: bool = False
    command_timeout: float = 30.0
    output_cap: int = DEFAULT_OUTPUT_CAP
    kill_grace: float = 1.0
    working_directory: str | None = None
    environment_allowlist: tuple[str, ...] = DEFAULT_ENVIRONMENT_ALLOWLIST

    def __post_init__(self) -> None:
        if not (math.isfinite(self.command_timeout) and self.command_timeout > 0):
            raise UsageError(f"command timeout must be a positive number of seconds, not {self.command_timeout!r}")
        if not (math.isfinite(self.kill_grace) and self.kill_grace >= 0):
            raise UsageError(f"kill grace must be zero or more seconds, not {self.kill_grace!r}")
        if self.output_cap < 0:
            raise UsageError(f"output cap must be zero or more bytes, not {self.output_cap!r}")
        for program in self.allowed_programs:
            if not program or ("/" in program and not os.path.isabs(program)) or program.endswith("/"):
                raise UsageError(
                    f"cannot allow {program!r}: give a bare program name (ls) or an absolute path (/usr/bin/ls)"
                )

    def with_allowed(self, *programs: str) -> Policy:
        """Return a copy that also allows ``programs`` (what ``--allow PROG`` does).

        Raises:
            UsageError: a program is neither a bare name nor an absolute path.
        """
        added = tuple(program for program in programs if program not in self.allowed_programs)
        return replace(self, allowed_programs=self.allowed_programs + added)


def resolve_allowed_program(program: str, policy: Policy) -> str:
    """Return what to execute for ``program`` (argv[0]) if the policy allows it.

    Built-ins are not resolved here: the executor handles them first.

    Args:
        program: argv[0] of the request.
        policy: the server's policy.
    Returns:
        An absolute path from the allowlist, or a bare name to look up on PATH.
    Raises:
        PolicyError: the program is not allowed.
    """
    allowed = policy.allowed_programs
    if "/" in program:
        if program in allowed:
            return program
        raise PolicyError(
            f"{program!r} is not allowed: a path must match an allowed path exactly; "
            f"allowed: {describe_allowed(policy)}; the server's --allow PROG adds one"
        )
    if program and program in allowed:
        return program
    for entry in allowed:
        if entry.startswith("/") and os.path.basename(entry) == program:
            return entry
    raise PolicyError(
        f"{program!r} is not allowed; allowed: {describe_allowed(policy)}; the server's --allow PROG adds one"
    )


def check_command(argv: Sequence[str], policy: Policy) -> None:
    """Refuse a command the policy does not allow; return quietly otherwise.

    Built-ins are always allowed. In ``unsafe_shell`` mode every command is
    allowed (the shell receives the whole line).

    Args:
        argv: the split command line.
        policy: the server's policy.
    Raises:
        PolicyError: argv is empty or names a program that is not allowed.
    """
    if not argv:
        raise PolicyError("the command is empty; send a command such as 'echo hi'")
    if policy.unsafe_shell or argv[0] in BUILTINS:
        return
    resolve_allowed_program(argv[0], policy)


def describe_allowed(policy: Policy) -> str:
    """A one-line list of what may run, for error messages and server banners."""
    programs = ", ".join(policy.allowed_programs) or "no programs"
    return f"{programs} and the built-ins {', '.join(BUILTIN_COMMANDS)}"
