"""Shared-secret tokens: made strong, stored in owner-only files, never shown in ``ps``.

How this works: :func:`new_token` draws 32 random bytes and writes them as
43 URL-safe base64 characters; :func:`write_token_file` creates the file with
mode 0600 (refusing to overwrite one); :func:`read_token_file` refuses a file
that others may read, as ssh refuses a private key with loose permissions.
:func:`check_token_strength` is the server's minimum: at least
:data:`MIN_TOKEN_LENGTH` characters with at least :data:`MIN_DISTINCT_BYTES`
different ones, so that ``a`` or ``aaaaaaaaaaaaaaaa`` are refused.
"""

from __future__ import annotations

import os
import secrets
import stat

from netlab.errors import UsageError

TOKEN_BYTES = 32
MIN_TOKEN_LENGTH = 16
MIN_DISTINCT_BYTES = 8


def new_token() -> bytes:
    """A fresh random token: 32 random bytes as 43 URL-safe base64 characters."""
    return secrets.token_urlsafe(TOKEN_BYTES).encode()


def write_token_file(path: str, token: bytes) -> None:
    """Create ``path`` with mode 0600 holding ``token`` and a newline.

    Raises:
        UsageError: the file exists or cannot be created.
    """
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"{path} exists: remove it or pick another path (a token is never overwritten)") from None
    except OSError as exc:
        raise UsageError(f"cannot create {path}: {exc.strerror}") from None
    with os.fdopen(descriptor, "wb") as stream:
        stream.write(token + b"\n")


def read_token_file(path: str) -> bytes:
    """The token in ``path`` (one line; surrounding whitespace removed).

    Raises:
        UsageError: it cannot be read, or group or others may read it.
    """
    try:
        with open(path, "rb") as stream:
            mode = os.fstat(stream.fileno()).st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise UsageError(f"{path} may be read by other users (mode {stat.S_IMODE(mode):04o}): "
                                 f"run chmod 600 {path}")
            text = stream.read(4096)
    except OSError as exc:
        raise UsageError(f"cannot read the token file {path}: {exc.strerror}") from None
    return text.strip()


def check_token_strength(token: bytes, source: str) -> None:
    """Refuse a token too weak to stand against guessing.

    Raises:
        UsageError: shorter than 16 characters or fewer than 8 different ones.
    """
    if len(token) < MIN_TOKEN_LENGTH or len(set(token)) < MIN_DISTINCT_BYTES:
        raise UsageError(f"the token in {source} is too weak (at least {MIN_TOKEN_LENGTH} characters, "
                         f"{MIN_DISTINCT_BYTES} different): make one with `netlab token new PATH`")
