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
import pwd
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from netlab.errors import PolicyError, UsageError
from netlab.service.builtins import BUILTINS

DEFAULT_ALLOWED_PROGRAMS: tuple[str, ...] = ("ls", "pwd", "date", "uname", "whoami", "hostname", "id")
#: The built-ins' names (the one list is :data:`netlab.service.builtins.BUILTINS`).
BUILTIN_COMMANDS: tuple[str, ...] = tuple(BUILTINS)
DEFAULT_ENVIRONMENT_ALLOWLIST: tuple[str, ...] = (
    "PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "HOME", "USER", "LOGNAME", "TERM",
)
DEFAULT_OUTPUT_CAP = 64 * 1024 * 1024
#: The user external commands run as when ``netlab serve`` starts as root.
DEFAULT_RUN_AS = "nobody"


@dataclass(frozen=True)
class ArgumentPolicy:
    """Which arguments one allowed program may be given.

    Attributes:
        refused_short: option letters refused anywhere in a short-option
            cluster (``-uf`` holds ``f``), even where they might be an
            attached option argument: refusing on doubt.
        refused_long: long option names refused, and every abbreviation of
            them (GNU getopt accepts ``--fi`` for ``--file``).
        short_with_argument: short options whose argument is the rest of the
            cluster or the next argv element (so that element is not an operand).
        long_with_argument: long options whose argument may be the next argv element.
        options_allowed: False refuses every option.
        max_operands: the most operands (non-option arguments); None: any.
        operand_prefix: every operand must start with this ("" allows any).
        reason: why, for the refusal message.
    """

    refused_short: str = ""
    refused_long: tuple[str, ...] = ()
    short_with_argument: str = ""
    long_with_argument: tuple[str, ...] = ()
    options_allowed: bool = True
    max_operands: int | None = None
    operand_prefix: str = ""
    reason: str = ""


#: Argument policies of the default allowlist, by program base name.
DEFAULT_ARGUMENT_POLICIES: Mapping[str, ArgumentPolicy] = {
    # -f/--file reads a file (its lines appear in error messages), -s/--set and
    # an MMDDhhmm operand set the clock, -r/--reference reveals any file's mtime.
    "date": ArgumentPolicy(
        refused_short="fsr", refused_long=("file", "set", "reference"),
        short_with_argument="d", long_with_argument=("date",), max_operands=1, operand_prefix="+",
        reason="date may only print the time: -f/--file, -s/--set, -r/--reference and a "
               "date operand are refused (a +FORMAT operand is fine)",
    ),
    # any operand or -F/--file/-b sets the host name
    "hostname": ArgumentPolicy(options_allowed=False, max_operands=0,
                               reason="hostname takes no arguments here (with one it renames the host)"),
}



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
        argument_policies: per program base name, which arguments it may get.
        run_as: the user external commands run as (the server must be root to
            switch); None runs them as the server's own user.
    """

    allowed_programs: tuple[str, ...] = DEFAULT_ALLOWED_PROGRAMS
    unsafe_shell: bool = False
    command_timeout: float = 30.0
    output_cap: int = DEFAULT_OUTPUT_CAP
    kill_grace: float = 1.0
    working_directory: str | None = None
    environment_allowlist: tuple[str, ...] = DEFAULT_ENVIRONMENT_ALLOWLIST
    argument_policies: Mapping[str, ArgumentPolicy] = field(default_factory=lambda: DEFAULT_ARGUMENT_POLICIES)
    run_as: str | None = None

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
        if self.run_as is not None:
            user_account(self.run_as)  # raises UsageError for an unknown user

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


def check_arguments(argv: Sequence[str], policy: Policy) -> None:
    """Refuse arguments the program's argument policy forbids; return quietly otherwise.

    Also refuses an argument holding a NUL byte (no program can receive one).

    Args:
        argv: the split command line; argv[0] is an allowed program.
        policy: the server's policy.
    Raises:
        PolicyError: an argument is refused; the message says which and why.
    """
    for argument in argv:
        if "\0" in argument:
            raise PolicyError(f"argument {argument!r} holds a NUL byte, which no program can receive; remove it")
    rules = policy.argument_policies.get(os.path.basename(argv[0]))
    if rules is None:
        return
    program = os.path.basename(argv[0])
    operands = 0
    arguments = iter(argv[1:])
    for argument in arguments:
        if argument == "--":
            rest = list(arguments)
            operands += len(rest)
            for operand in rest:
                _check_operand(program, operand, rules)
            continue
        if argument.startswith("-") and argument != "-":
            if not rules.options_allowed:
                raise PolicyError(f"{program}: option {argument!r} is refused: {rules.reason}")
            if _option_takes_next(program, argument, rules):
                next(arguments, None)
            continue
        operands += 1
        _check_operand(program, argument, rules)
    if rules.max_operands is not None and operands > rules.max_operands:
        raise PolicyError(f"{program}: too many operands: {rules.reason}")


def _option_takes_next(program: str, argument: str, rules: ArgumentPolicy) -> bool:
    """Check one option argument; True when the next argv element is its argument."""
    if argument.startswith("--"):
        name, has_value, _ = argument[2:].partition("=")
        if any(refused.startswith(name) for refused in rules.refused_long):
            raise PolicyError(f"{program}: option {argument!r} is refused: {rules.reason}")
        return not has_value and any(long.startswith(name) for long in rules.long_with_argument)
    cluster = argument[1:]
    for index, letter in enumerate(cluster):
        if letter in rules.refused_short:
            raise PolicyError(f"{program}: option {argument!r} is refused: {rules.reason}")
        if letter in rules.short_with_argument:
            return index == len(cluster) - 1  # else the rest of the cluster is its argument
    return False


def _check_operand(program: str, operand: str, rules: ArgumentPolicy) -> None:
    if rules.max_operands == 0 or not operand.startswith(rules.operand_prefix):
        raise PolicyError(f"{program}: operand {operand!r} is refused: {rules.reason}")


def resolve_command(argv: Sequence[str], policy: Policy) -> str:
    """Return what to execute for ``argv`` if the policy allows the program and its arguments.

    Raises:
        PolicyError: the program or one of its arguments is refused.
    """
    program = resolve_allowed_program(argv[0], policy)
    check_arguments(argv, policy)
    return program


def user_account(name: str) -> pwd.struct_passwd:
    """The account of user ``name`` (a name or a numeric uid).

    Raises:
        UsageError: no such user.
    """
    try:
        return pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except (KeyError, OverflowError):
        raise UsageError(f"no user {name!r} on this machine: pick an existing one for --run-as "
                         f"(e.g. {DEFAULT_RUN_AS})") from None


def default_run_as(requested: str | None, effective_uid: int) -> str | None:
    """The user external commands run as: ``requested``, else ``nobody`` for a root server.

    ``root`` (or uid 0) means no switch. A user other than the server's own
    needs root.

    Raises:
        UsageError: a user was asked for but the server is not root.
    """
    if requested is None:
        return DEFAULT_RUN_AS if effective_uid == 0 else None
    account = user_account(requested)
    if account.pw_uid == 0:
        return None
    if effective_uid != 0 and account.pw_uid != effective_uid:
        raise UsageError(f"--run-as {requested} needs a server started as root (this one runs as uid {effective_uid})")
    return requested if effective_uid == 0 else None


def check_command(argv: Sequence[str], policy: Policy) -> None:
    """Refuse a command the policy does not allow; return quietly otherwise.

    Built-ins are always allowed. In ``unsafe_shell`` mode every command is
    allowed (the shell receives the whole line).

    Args:
        argv: the split command line.
        policy: the server's policy.
    Raises:
        PolicyError: argv is empty, names a program that is not allowed, or
            holds an argument its argument policy refuses.
    """
    if not argv:
        raise PolicyError("the command is empty; send a command such as 'echo hi'")
    if policy.unsafe_shell or argv[0] in BUILTINS:
        return
    resolve_command(argv, policy)


def describe_allowed(policy: Policy) -> str:
    """A one-line list of what may run, for error messages and server banners."""
    programs = ", ".join(policy.allowed_programs) or "no programs"
    return f"{programs} and the built-ins {', '.join(BUILTIN_COMMANDS)}"


def command_directory(requested: str | None, run_as: str | None, current: str) -> str | None:
    """Where external commands run: ``--cwd`` when given; else, for commands run as another user, a
    directory that user can enter and list.

    That is the server's own ``current`` directory when the user can use it,
    else the user's home when it can, else ``/``: a root server started in
    ``/root`` (mode 0700) would otherwise run every command in a directory
    its user cannot read (``ls`` fails with "Permission denied").

    Returns:
        The directory, or None to keep the server's own (no other user, or no switch).
    """
    if requested is not None or run_as is None:
        return requested
    account = user_account(run_as)
    for candidate in (current, account.pw_dir):
        if candidate and _user_can_list(candidate, account):
            return None if candidate == current else candidate
    return "/"


def _user_can_list(path: str, account: pwd.struct_passwd) -> bool:
    """True when ``account`` may search every directory on the way to ``path`` and list ``path`` itself."""
    groups = set(os.getgrouplist(account.pw_name, account.pw_gid))
    path = os.path.abspath(path)
    ancestors = [path]
    while ancestors[-1] != os.path.dirname(ancestors[-1]):
        ancestors.append(os.path.dirname(ancestors[-1]))
    for index, directory in enumerate(ancestors):
        try:
            status = os.stat(directory)
        except OSError:
            return False
        if not stat.S_ISDIR(status.st_mode):
            return False
        if status.st_uid == account.pw_uid:
            bits = (status.st_mode >> 6) & 7
        elif status.st_gid in groups:
            bits = (status.st_mode >> 3) & 7
        else:
            bits = status.st_mode & 7
        needed = 5 if index == 0 else 1  # list (read and search) the directory; search the ones above
        if bits & needed != needed and account.pw_uid != 0:
            return False
    return True
