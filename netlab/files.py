"""Files written whole or not at all: a temporary name beside the target, renamed when complete.

How this works: :func:`atomic_file` opens ``.tmp-*.part`` in the target's
directory (so the rename stays on one file system), yields it for writing,
gives it the mode ``open()`` would have (mkstemp makes 0600), syncs it and
renames it over the target; on any failure the temporary file is removed and
the target is left as it was.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO


@contextmanager
def atomic_file(path: str, buffering: int = -1) -> Iterator[BinaryIO]:
    """A binary stream whose content replaces ``path`` when the block ends without an error.

    Raises:
        OSError: the directory is not writable, or writing, syncing or renaming failed.
    """
    directory = os.path.dirname(os.path.abspath(path))
    descriptor, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=directory)
    try:
        with os.fdopen(descriptor, "wb", buffering=buffering) as stream:
            yield stream
            stream.flush()
            os.fchmod(stream.fileno(), 0o666 & ~process_umask())  # as open() would make it, not mkstemp's 0600
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        remove_quietly(temporary)
        raise


def process_umask() -> int:
    """This process's umask, read without changing it (Linux: /proc/self/status); 022 if unknown."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def remove_quietly(path: str) -> None:
    """Remove ``path`` if it is there."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
