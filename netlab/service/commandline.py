"""How a command line becomes an argv: the one rule both ends of the service share.

How this works: a command line is split with POSIX shell quoting rules
(``shlex``) into a literal argv; no shell ever sees it, so ``;``, ``|``,
``$(...)`` and backticks are plain characters inside arguments. The client
splits what the user typed before sending; the server splits a line that
arrives without an argv (the text framings).
"""

from __future__ import annotations

import re
import shlex

from netlab.errors import PolicyError

# A line made only of printable ASCII (and tab/CR/LF) without quotes or
# backslashes splits the same under shlex and str.split; shlex is pure Python
# and costs several microseconds, so such lines (almost all) skip it.
_PLAIN_LINE = re.compile(r"[\t\n\r !#-&(-\[\]-~]*")


def split_command_line(line: str) -> list[str]:
    """Split a command line into a literal argv with POSIX shell quoting rules.

    Quotes and backslashes group and escape; nothing is expanded: ``$(id)``,
    backticks, ``;`` and ``|`` stay literal characters of some argument. A
    newline is whitespace like a space.

    Args:
        line: the command line as the client typed it.
    Returns:
        The argv, never empty.
    Raises:
        PolicyError: the line is empty, holds a NUL byte, or has an unclosed quote.
    """
    if "\0" in line:
        raise PolicyError("the command line contains a NUL byte; remove it (arguments cannot hold NUL)")
    if _PLAIN_LINE.fullmatch(line):
        argv = line.split()
    else:
        try:
            argv = shlex.split(line)
        except ValueError as exc:
            raise PolicyError(
                f"cannot split the command line ({str(exc).lower()}): close the quote or escape it with a backslash"
            ) from None
    if not argv:
        raise PolicyError("the command line is empty; send a command such as 'echo hi'")
    return argv

