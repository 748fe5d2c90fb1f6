"""``did you mean 'backlog'?``: the nearest known name to a mistyped one (pure, no I/O)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(wrong: object, known: Iterable[object]) -> str:
    """``" (did you mean 'backlog'?)"`` for the known name nearest to ``wrong``, or ``""`` when none is close."""
    close = difflib.get_close_matches(str(wrong), [str(name) for name in known], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
