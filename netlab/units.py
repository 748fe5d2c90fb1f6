"""One parser per unit: sizes, durations and percentages, for every flag and scenario key.

Every command-line option and every scenario key that takes a size, a
duration or a percentage reads it here, so the same spelling works
everywhere (``--output-cap 1KiB``, ``blob 10MiB``, ``--bulk-size 256MiB``,
``--command-timeout 500ms``, ``--impair loss=5%``, YAML ``loss: [5%]``).

Sizes (:func:`parse_size`): a plain number is bytes; ``B``; ``k``/``kB`` =
1000, ``KiB`` = 1024; ``M``/``MB``, ``MiB``; ``G``/``GB``, ``GiB``; case does
not matter. Durations (:func:`parse_duration`): ``us``, ``ms``, ``s``, ``m``
(minutes), ``h``; a plain number is in the caller's unit (seconds for every
flag; milliseconds for a link's delay, as ``tc netem`` writes it; an
impairment's ``delay=`` needs the unit).
Percentages (:func:`parse_percent`): ``5%`` or a plain ``5``, both five
percent, as ``tc netem`` reads them.

Each parser raises :class:`ValueError` with a message that shows the
accepted forms; :func:`size_argument` and friends wrap them for argparse.
Pure code: no I/O.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable

#: The accepted forms, as --help and error messages show them.
SIZE_FORMS = "bytes, or 1000, 10B, 4kB = 4000, 4KiB = 4096, 10MiB, 1GiB"
DURATION_FORMS = "seconds, or 2s, 500ms, 250us, 1m"
PERCENT_FORMS = "5% or 5 (percent)"

_SIZE_UNITS: dict[str, int] = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "kib": 2**10,
    "m": 10**6, "mb": 10**6, "mib": 2**20,
    "g": 10**9, "gb": 10**9, "gib": 2**30,
}
_DURATION_UNITS: dict[str, float] = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_NUMBER_WITH_UNIT = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z%]*)\s*")


def _split(raw: object) -> tuple[float, str] | None:
    """``"10 MiB"`` -> (10.0, "mib"); a YAML number -> (number, ""); None when neither."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, (int, float)):
        return (float(raw), "") if math.isfinite(raw) and raw >= 0 else None
    if not isinstance(raw, str):
        return None
    match = _NUMBER_WITH_UNIT.fullmatch(raw)
    return (float(match.group(1)), match.group(2).lower()) if match else None


def parse_size(raw: object) -> int:
    """A size in bytes: ``1000``, ``10B``, ``4k`` (4000), ``4KiB`` (4096), ``10MiB``, ``1GiB``.

    Raises:
        ValueError: not a number with one of the size units, or not a whole number of bytes.
    """
    parts = _split(raw)
    scale = _SIZE_UNITS.get(parts[1]) if parts is not None else None
    if parts is None or scale is None:
        raise ValueError(f"{raw!r} is not a size: write {SIZE_FORMS}")
    value = parts[0] * scale
    if value != int(value):
        raise ValueError(f"{raw!r} is not a whole number of bytes: write {SIZE_FORMS}")
    return int(value)


def parse_duration(raw: object, *, bare: str | None = "s") -> float:
    """A duration in seconds: ``2``, ``2s``, ``500ms``, ``250us``, ``1m``, ``1h``.

    Args:
        raw: the text (or a YAML number).
        bare: the unit of a plain number (``s`` for flags, ``ms`` for a link's delay),
            or None when a unit is required (an impairment's ``delay=10ms``).
    Raises:
        ValueError: not a number with one of the duration units.
    """
    parts = _split(raw)
    if bare is None and parts is not None and not parts[1]:
        raise ValueError(f"{raw!r} needs a unit: write 2s, 10ms or 250us")
    unit = (parts[1] or bare) if parts is not None else ""
    if parts is None or unit not in _DURATION_UNITS:
        forms = DURATION_FORMS if bare == "s" else f"{bare or 'a number with a unit'}, or 2s, 20ms, 250us"
        raise ValueError(f"{raw!r} is not a duration: write {forms}")
    return parts[0] * _DURATION_UNITS[unit]


def parse_percent(raw: object) -> float:
    """A percentage as a number of percent: ``5%`` -> 5.0, ``5`` -> 5.0, ``0.1%`` -> 0.1.

    Raises:
        ValueError: not a number, or a unit other than ``%``.
    """
    parts = _split(raw)
    if parts is None or parts[1] not in ("", "%"):
        raise ValueError(f"{raw!r} is not a percentage: write {PERCENT_FORMS}")
    return parts[0]


def _argument(parse: Callable[[str], float], check: Callable[[float], str]) -> Callable[[str], float]:
    def convert(text: str) -> float:
        try:
            value = parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        problem = check(value)
        if problem:
            raise argparse.ArgumentTypeError(f"{text!r}: {problem}")
        return value

    return convert


def size_argument(minimum: int = 0) -> Callable[[str], int]:
    """argparse type: a size (see :func:`parse_size`) of at least ``minimum`` bytes."""
    return _argument(parse_size, lambda value: f"must be at least {minimum} B" if value < minimum else "")  # type: ignore[return-value]


def percent_argument() -> Callable[[str], float]:
    """argparse type: a percentage >= 0 (see :func:`parse_percent`), as a number of percent."""
    return _argument(parse_percent, lambda value: "")


def duration_argument() -> Callable[[str], float]:
    """argparse type: a duration > 0 (see :func:`parse_duration`), in seconds."""
    return _argument(parse_duration, lambda value: "must be more than 0 s" if value <= 0 else "")
