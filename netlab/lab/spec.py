"""The ``network:`` section of a scenario: where the hosts live and what the link between them does.

How this works: :func:`parse_network` turns the YAML value into a
:class:`NetworkSpec` or raises :class:`~netlab.errors.ScenarioError` naming the
key path. ``network: loopback`` (the default) keeps everything on 127.0.0.1.
``network: namespaces`` (or a mapping with ``kind: namespaces``) puts the
server and the client in network namespaces of their own, joined through a
router namespace by veth links. The link is described once and applies in both
directions; ``to_server:`` / ``to_client:`` override single settings for one
direction (an asymmetric bottleneck, as a congestion experiment wants)::

    network:
      kind: namespaces
      impairment: auto          # auto | netem | wire
      link:
        mtu: 1500
        rate: 20mbit            # shaped by the queue discipline below
        qdisc: tbf              # tbf | htb
        queue: 64KiB            # bytes the shaper may hold before it drops
        delay: 20ms             # one way
        jitter: 2ms
        loss: 1%
        duplicate: 0%
        reorder: 0%             # share of frames sent without the delay
        corrupt: 0%
      to_client: {rate: 50mbit}

Units: rates in bit/s with ``kbit``/``mbit``/``gbit`` (or a plain number of
bit/s); times, shares and sizes as everywhere in netlab (:mod:`netlab.units`):
times with ``us``/``ms``/``s`` (a plain number is milliseconds here, as
``tc netem`` reads it), shares with ``%`` (a plain number is percent), sizes
with ``B``, ``kB`` = 1000, ``KiB`` = 1024, ``MiB``... (a plain number is
bytes). This module is pure: no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from netlab.errors import ScenarioError
from netlab.fate import Chances
from netlab.units import parse_duration, parse_percent
from netlab.units import parse_size as units_parse_size

_T = TypeVar("_T")

KIND_LOOPBACK = "loopback"
KIND_NAMESPACES = "namespaces"
NETWORK_KINDS = (KIND_LOOPBACK, KIND_NAMESPACES)
IMPAIRMENT_CHOICES = ("auto", "netem", "wire")
QDISC_CHOICES = ("tbf", "htb")
MIN_MTU = 576
MAX_MTU = 65_535
MAX_DELAY_S = 10.0
MAX_RATE = 100 * 10**9
MIN_RATE = 8_000
MAX_QUEUE = 256 * 1024 * 1024

_RATE_UNITS = {"bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9}
_NUMBER_WITH_UNIT = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-z%]*)\s*$")
#: A link's settings in the order people read them (its shaping, then its chances).
LINK_KEYS = ("mtu", "rate", "qdisc", "queue", "delay", "jitter", "loss", "duplicate", "reorder", "corrupt")


@dataclass(frozen=True, kw_only=True)
class LinkSpec(Chances):
    """What one direction of the link does to frames: its :class:`~netlab.fate.Chances` (delay and
    jitter in seconds; loss, duplicate, reorder and corrupt as probabilities 0..1, a reordered frame
    skipping the delay, a corrupted one with one bit of its payload flipped), and its shaping.

    Attributes:
        mtu: the interfaces' MTU in bytes.
        rate: shaped rate in bit/s, or None for no shaping.
        qdisc: the kernel shaper: ``tbf`` or ``htb``.
        queue: bytes the shaper may queue before it drops; None for its default.
    """

    mtu: int = 1500
    rate: int | None = None
    qdisc: str = "tbf"
    queue: int | None = None

    def queue_bytes(self) -> int:
        """The shaper's queue limit: as set, or 100 ms at the rate (at least 4 full frames)."""
        if self.queue is not None:
            return self.queue
        by_rate = (self.rate or 0) // 8 // 10
        return max(by_rate, 4 * (self.mtu + 14))

    def burst_bytes(self) -> int:
        """TBF's bucket: 2 ms at the rate, at least two full frames (smaller starves the shaper)."""
        return max((self.rate or 0) // 8 // 500, 2 * (self.mtu + 14))

    def as_dict(self) -> dict[str, Any]:
        """The link as recorded in result files (seconds, fractions, bit/s, bytes), in :data:`LINK_KEYS` order."""
        return {name: getattr(self, name) for name in LINK_KEYS}

    def describe(self) -> str:
        """A short human description, e.g. ``20 Mbit/s, 20 ms, 1 % loss, MTU 1500``."""
        parts = []
        if self.rate:
            parts.append(f"{format_rate(self.rate)} ({self.qdisc}, queue {self.queue_bytes()} B)")
        if self.delay or self.jitter:
            parts.append(f"{self.delay * 1000:g} ms" + (f" ± {self.jitter * 1000:g} ms" if self.jitter else ""))
        for name in ("loss", "duplicate", "reorder", "corrupt"):
            value = getattr(self, name)
            if value:
                parts.append(f"{value * 100:g} % {name}")
        parts.append(f"MTU {self.mtu}")
        return ", ".join(parts)


@dataclass(frozen=True)
class NetworkSpec:
    """Where a scenario's hosts live.

    Attributes:
        kind: ``loopback`` or ``namespaces``.
        impairment: ``auto`` (netem when the kernel has it, else the wire),
            ``netem`` (fail without it) or ``wire`` (always netlab's own).
        to_server: the link as frames travel from the client to the server.
        to_client: the link as frames travel from the server to the client.
    """

    kind: str = KIND_LOOPBACK
    impairment: str = "auto"
    to_server: LinkSpec = field(default_factory=LinkSpec)
    to_client: LinkSpec = field(default_factory=LinkSpec)

    @property
    def namespaced(self) -> bool:
        """True when the hosts run in network namespaces."""
        return self.kind == KIND_NAMESPACES

    def as_dict(self) -> dict[str, Any]:
        """The network as recorded in result files."""
        if not self.namespaced:
            return {"kind": self.kind}
        return {"kind": self.kind, "impairment": self.impairment,
                "to_server": self.to_server.as_dict(), "to_client": self.to_client.as_dict()}


LOOPBACK = NetworkSpec()
_NETWORK_KEYS = ("kind", "impairment", "link", "to_server", "to_client")


def parse_network(value: object, path: str, where: str = "network") -> NetworkSpec:
    """Validate a scenario's ``network:`` value.

    Args:
        value: as loaded from YAML (None, a kind name, or a mapping).
        path: the scenario file, for messages.
        where: the key path, for messages.
    Returns:
        The validated :class:`NetworkSpec`.
    Raises:
        ScenarioError: one line naming the file, the key and what is allowed.
    """
    if value is None or value == KIND_LOOPBACK:
        return LOOPBACK
    if value == KIND_NAMESPACES:
        return NetworkSpec(kind=KIND_NAMESPACES)
    if not isinstance(value, dict):
        raise _error(path, where, f"expected {' or '.join(NETWORK_KINDS)}, or a mapping with kind: and link:, "
                                  f"got {show_value(value)}")
    for key in value:
        if key not in _NETWORK_KEYS:
            raise _error(path, f"{where}.{key}", f"unknown key; allowed: {', '.join(_NETWORK_KEYS)}")
    kind = value.get("kind", KIND_NAMESPACES)
    if kind not in NETWORK_KINDS:
        raise _error(path, f"{where}.kind", f"expected one of {', '.join(NETWORK_KINDS)}, got {show_value(kind)}")
    if kind == KIND_LOOPBACK:
        if len(value) > 1:
            raise _error(path, where, "loopback has no link to describe: drop the other keys or use kind: namespaces")
        return LOOPBACK
    impairment = value.get("impairment", "auto")
    if impairment not in IMPAIRMENT_CHOICES:
        raise _error(path, f"{where}.impairment",
                     f"expected one of {', '.join(IMPAIRMENT_CHOICES)}, got {show_value(impairment)}")
    both = _link_settings(value.get("link", {}), path, f"{where}.link")
    to_server = both | _link_settings(value.get("to_server", {}), path, f"{where}.to_server")
    to_client = both | _link_settings(value.get("to_client", {}), path, f"{where}.to_client")
    if to_server.get("mtu", 1500) != to_client.get("mtu", 1500):
        raise _error(path, where, "to_server and to_client must have the same mtu: it is a property of the interfaces")
    return NetworkSpec(KIND_NAMESPACES, impairment, LinkSpec(**to_server), LinkSpec(**to_client))


def _link_settings(value: object, path: str, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _error(path, where, f"expected a mapping of {', '.join(LINK_KEYS)}, got {show_value(value)}")
    settings: dict[str, Any] = {}
    for key, raw in value.items():
        here = f"{where}.{key}"
        if key == "mtu":
            if not isinstance(raw, int) or isinstance(raw, bool) or not MIN_MTU <= raw <= MAX_MTU:
                raise _error(path, here, f"expected an integer from {MIN_MTU} to {MAX_MTU}, got {show_value(raw)}")
            settings[key] = raw
        elif key == "rate":
            settings[key] = _bounded(parse_rate(raw), path, here, "a rate such as 20mbit", MIN_RATE, MAX_RATE,
                                     raw, nullable=True)
        elif key == "qdisc":
            if raw not in QDISC_CHOICES:
                raise _error(path, here, f"expected one of {', '.join(QDISC_CHOICES)}, got {show_value(raw)}")
            settings[key] = raw
        elif key == "queue":
            settings[key] = _bounded(parse_size(raw), path, here, "a size such as 64KiB", 1, MAX_QUEUE, raw,
                                     nullable=True)
        elif key in ("delay", "jitter"):
            settings[key] = _bounded(parse_time(raw), path, here, "a time such as 20ms", 0, MAX_DELAY_S, raw)
        elif key in ("loss", "duplicate", "reorder", "corrupt"):
            settings[key] = _bounded(parse_share(raw), path, here, "a share such as 1%", 0, 1, raw)
        else:
            raise _error(path, here, f"unknown key; allowed: {', '.join(LINK_KEYS)}")
    return settings


def _bounded(number: float | None, path: str, where: str, example: str, low: float, high: float,
             raw: object, *, nullable: bool = False) -> Any:
    if number is None and raw is None and nullable:
        return None
    if number is None or not low <= number <= high:
        raise _error(path, where, f"expected {example} (from {_plain(low)} to {_plain(high)}), got {show_value(raw)}")
    return number


def _split(raw: object) -> tuple[float, str] | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, (int, float)):
        return float(raw), ""
    if not isinstance(raw, str):
        return None
    match = _NUMBER_WITH_UNIT.match(raw.lower())
    return (float(match.group(1)), match.group(2)) if match else None


def parse_rate(raw: object) -> int | None:
    """``20mbit`` -> 20000000 (bit/s); a plain number is bit/s; None when not a rate."""
    parts = _split(raw)
    if parts is None or (parts[1] or "bit") not in _RATE_UNITS:
        return None
    return int(parts[0] * _RATE_UNITS[parts[1] or "bit"])


def parse_time(raw: object) -> float | None:
    """``20ms`` -> 0.02 (seconds); a plain number is milliseconds; None when not a time."""
    return _or_none(lambda: parse_duration(raw, bare="ms"))


def parse_share(raw: object) -> float | None:
    """``1%`` -> 0.01; a plain number is percent; None when not a share."""
    percent = _or_none(lambda: parse_percent(raw))
    return None if percent is None else percent / 100


def parse_size(raw: object) -> int | None:
    """``64KiB`` -> 65536, ``64kB`` -> 64000 (bytes); a plain number is bytes; None when not a size."""
    return _or_none(lambda: units_parse_size(raw))


def _or_none(parse: Callable[[], _T]) -> _T | None:
    try:
        return parse()
    except ValueError:
        return None


def format_rate(bits_per_second: float) -> str:
    """A rate for people: ``20 Mbit/s``."""
    for unit, scale in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bits_per_second >= scale:
            return f"{bits_per_second / scale:.3g} {unit}"
    return f"{bits_per_second:.0f} bit/s"


def _plain(number: float) -> str:
    return f"{number:g}"


def show_value(value: object) -> str:
    """A value as the user wrote it in YAML: strings in double quotes, YAML spellings for the rest."""
    if isinstance(value, str):
        return json.dumps(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return str(value)


def _error(path: str, where: str, problem: str) -> ScenarioError:
    return ScenarioError(f"{path}: {where}: {problem}")
