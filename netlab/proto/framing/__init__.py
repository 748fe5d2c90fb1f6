"""The four stream framings, by name: raw, ack, line, length."""

from __future__ import annotations

from netlab.errors import UsageError
from netlab.proto.framing.ack import AckFramer
from netlab.proto.framing.base import DEFAULT_MAX_FRAME, OUTPUT_CHUNK_SIZE, Capabilities, Framer, Role
from netlab.proto.framing.length import LengthFramer
from netlab.proto.framing.line import LineFramer
from netlab.proto.framing.raw import RawFramer

FRAMERS: dict[str, type[Framer]] = {
    framer.name: framer for framer in (RawFramer, AckFramer, LineFramer, LengthFramer)
}
FRAMING_NAMES = tuple(FRAMERS)


def make_framer(name: str, role: Role, max_frame: int = DEFAULT_MAX_FRAME) -> Framer:
    """Return a new framer of the named framing for one end of a connection.

    Raises:
        UsageError: the name is not one of raw, ack, line, length.
    """
    try:
        framer_class = FRAMERS[name]
    except KeyError:
        raise UsageError(f"unknown framing {name!r}: choose one of {', '.join(FRAMING_NAMES)}") from None
    return framer_class(role, max_frame)


__all__ = [
    "DEFAULT_MAX_FRAME",
    "FRAMERS",
    "FRAMING_NAMES",
    "OUTPUT_CHUNK_SIZE",
    "AckFramer",
    "Capabilities",
    "Framer",
    "LengthFramer",
    "LineFramer",
    "RawFramer",
    "Role",
    "make_framer",
]
