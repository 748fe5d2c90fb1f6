"""Which framing a server seems to speak, from the first bytes it sent.

A client whose framing does not match the server's sees bytes it cannot
parse (or, for ``raw``, bytes it takes as output). What a netlab server of each
framing sends to a client speaking another is distinctive:

- ``length``: a connection-level Error frame (``00 00 00 NN 05 00 00 00 00``,
  a known error code, a UTF-8 message), then it closes;
- ``ack``: a decimal size line (``62\\n``) announcing its error message,
  then it closes (the body would follow an ``ok`` that never comes);
- ``line``: reply lines: an end of reply (``= exit 0 stdout=...``) or an
  error line (``! bad-request ...``);
- ``raw``: its error as plain text (``error: ...``), or the command's output
  as it is; so bytes that fit no other framing are taken as ``raw``.

Raw output can be anything, so the rules are strict: whole frames and lines
only, and the bare ``ack`` size line only when the server closed after it.
"""

from __future__ import annotations

import re

from netlab.proto.codec import TYPE_ERROR
from netlab.proto.framing.base import DEFAULT_MAX_FRAME
from netlab.proto.messages import ErrorCode

_ERROR_LABELS = "|".join(re.escape(code.label) for code in ErrorCode)
_LINE_REPLY = re.compile(
    rb"^(?:= (?:exit|signal) \d+ stdout=\d+ stderr=\d+ ms=[0-9.]+ sha256=[0-9a-f]*.*|! (?:" + _ERROR_LABELS.encode()
    + rb") .*)$",
    re.MULTILINE,
)
_ACK_SIZE_LINE = re.compile(rb"\d{1,12}\n")
_ERROR_CODES = {int(code) for code in ErrorCode}


def guess_framing(data: bytes, *, closed: bool = False) -> str | None:
    """Name the framing whose server would send ``data`` to a mismatched client.

    Args:
        data: the first bytes the server sent (a few hundred are enough).
        closed: the server closed the connection after them.
    Returns:
        ``"length"``, ``"ack"``, ``"line"``, or ``"raw"`` for anything else
        (which may also be a server that is not netlab's); None for no bytes.
    """
    if _looks_like_length_error(data):
        return "length"
    if closed and _ACK_SIZE_LINE.fullmatch(data):
        return "ack"
    if _LINE_REPLY.search(data):
        return "line"
    if data:
        return "raw"
    return None


def _looks_like_length_error(data: bytes) -> bool:
    if len(data) < 11 or data[0] != 0:
        return False
    length = int.from_bytes(data[:4], "big")
    if not 7 <= length <= DEFAULT_MAX_FRAME or data[4] != TYPE_ERROR or len(data) < 4 + length:
        return False
    if int.from_bytes(data[9:11], "big") not in _ERROR_CODES:
        return False
    try:
        data[11 : 4 + length].decode()
    except UnicodeDecodeError:
        return False
    return True
