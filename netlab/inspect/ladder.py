"""Ladder (sequence) diagrams of a capture: as text for the terminal and as SVG.

How this works: :func:`ladder_steps` turns analyzed packet rows into steps
(from endpoint, to endpoint, time, label). Endpoints become columns in the
order they first appear, so the side that opened the exchange is on the left
(with several clients, the server first).
A label reads like Wireshark's flow graph: TCP flags, relative seq/ack, payload
length and the netlab messages the packet completed (``EXEC id=1 "ls"``,
``EXIT 0``); a UDP label is the sequencing header as ``netlab capture`` shows
it. :func:`ladder_text` draws each step as an arrow between two columns with
the label inside it when it fits, else on its own line just above;
:func:`ladder_svg` draws the same as a standalone SVG (no script, no fonts to
fetch), retransmissions in red.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from netlab.inspect.analyze import PacketRow

TIME_WIDTH = 10
_MIN_GAP = 24
_SVG_COLUMN_GAP = 360
_SVG_ROW_HEIGHT = 34
_SVG_MARGIN = 90


@dataclass(frozen=True)
class LadderStep:
    """One packet as an arrow: from one endpoint to another, at a time, with a label."""

    source: str
    destination: str
    time: float
    label: str
    marked: bool = False


def ladder_steps(rows: Sequence[PacketRow]) -> tuple[list[str], list[LadderStep]]:
    """The endpoints (columns) and one step per packet row.

    Two endpoints keep their order of appearance (the one that opened on the left); with more (several
    clients), the endpoint in most packets (the server) comes first and the others follow in order.
    """
    endpoints: list[str] = []
    counts: dict[str, int] = {}
    steps = []
    for row in rows:
        for endpoint in (row.source, row.destination):
            if endpoint not in endpoints:
                endpoints.append(endpoint)
            counts[endpoint] = counts.get(endpoint, 0) + 1
        steps.append(LadderStep(row.source, row.destination, row.time, step_label(row), bool(row.notes)))
    if len(endpoints) > 2:
        busiest = max(endpoints, key=lambda endpoint: counts[endpoint])
        endpoints.remove(busiest)
        endpoints.insert(0, busiest)
    return endpoints, steps


def step_label(row: PacketRow) -> str:
    """``SYN seq=0 len=0``, ``PSH,ACK seq=1 ack=1 len=60 EXEC id=1 "ls"``, or the UDP header's fields."""
    parts = []
    if row.protocol == "TCP":
        parts.append(row.flags or "-")
        if row.sequence is not None:
            parts.append(f"seq={row.sequence}")
        if row.acknowledgement is not None and "ACK" in row.flags.split(","):
            parts.append(f"ack={row.acknowledgement}")
        parts.append(f"len={row.length}")
    if row.content:
        parts.append("; ".join(row.content))
    parts += [f"[{note}]" for note in row.notes]
    return " ".join(parts)


def ladder_text(rows: Sequence[PacketRow], width: int = 100) -> str:
    """The ladder as text, at most ``width`` columns where the labels allow (a long label gets its own line)."""
    endpoints, steps = ladder_steps(rows)
    if not steps:
        return "(no packets)"
    count = len(endpoints)
    room = max(width - TIME_WIDTH - 2, (count - 1) * _MIN_GAP + 1)
    gap = max(_MIN_GAP, (room - 1) // max(count - 1, 1)) if count > 1 else 0
    positions = [TIME_WIDTH + 2 + index * gap for index in range(count)]
    line_width = positions[-1] + 1
    lines = [_header(endpoints, positions, line_width), _lifelines(positions, line_width, "time".rjust(TIME_WIDTH))]
    for step in steps:
        start, end = positions[endpoints.index(step.source)], positions[endpoints.index(step.destination)]
        left, right = min(start, end), max(start, end)
        inner = right - left - 1
        label = f" {step.label} "
        time_text = f"{step.time:.6f}".rjust(TIME_WIDTH)
        if left == right:  # a packet to itself (both ends one address): a loop mark
            lines.append(_overlay(_lifelines(positions, line_width, time_text), left, f"|<-- {step.label}"))
            continue
        if len(label) + 4 <= inner:
            body = _arrow_body(label, inner, start < end)
        else:
            lines.append(_overlay(_lifelines(positions, line_width, " " * TIME_WIDTH), left + 2, step.label))
            body = _arrow_body("", inner, start < end)
        lines.append(_overlay(_lifelines(positions, line_width, time_text), left + 1, body))
    return "\n".join(line.rstrip() for line in lines)


def _arrow_body(label: str, inner: int, rightwards: bool) -> str:
    dashes = inner - len(label) - 1
    before = dashes // 2
    after = dashes - before
    if rightwards:
        return "-" * before + label + "-" * after + ">"
    return "<" + "-" * before + label + "-" * after


def _header(endpoints: Sequence[str], positions: Sequence[int], line_width: int) -> str:
    line = " " * (line_width + max(len(name) for name in endpoints))
    for name, position in zip(endpoints, positions):
        start = max(0, min(position - len(name) // 2, line_width - len(name)))
        line = line[:start] + name + line[start + len(name):]
    return line


def _lifelines(positions: Sequence[int], line_width: int, prefix: str) -> str:
    line = [" "] * line_width
    for position in positions:
        line[position] = "|"
    return prefix + "".join(line)[len(prefix):]


def _overlay(line: str, at: int, text: str) -> str:
    padded = line.ljust(at + len(text))
    return padded[:at] + text + padded[at + len(text):]


def ladder_svg(rows: Sequence[PacketRow], title: str = "") -> str:
    """The ladder as a standalone SVG document (inline-able in HTML)."""
    endpoints, steps = ladder_steps(rows)
    count = max(len(endpoints), 1)
    longest = max((len(step.label) for step in steps), default=0)
    column_gap = max(_SVG_COLUMN_GAP, int(longest * 6.7) + 30)  # 11 px monospace: ~6.6 px a character
    width = _SVG_MARGIN * 2 + (count - 1) * column_gap
    top = 70 if title else 50
    height = top + (len(steps) + 1) * _SVG_ROW_HEIGHT
    x = [_SVG_MARGIN + index * column_gap for index in range(count)]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans Mono, monospace" font-size="11">',
        "<defs>"
        '<marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#333"/></marker>'
        '<marker id="arrow-marked" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#c00"/></marker>'
        "</defs>",
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    if title:
        parts.append(f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="14" '
                     f'font-family="DejaVu Sans, sans-serif">{escape(title)}</text>')
    for name, position in zip(endpoints, x):
        parts.append(f'<text x="{position}" y="{top - 14}" text-anchor="middle" font-weight="bold">'
                     f"{escape(name)}</text>")
        parts.append(f'<line x1="{position}" y1="{top - 6}" x2="{position}" y2="{height - 10}" stroke="#999" '
                     'stroke-dasharray="4 3"/>')
    for index, step in enumerate(steps):
        y = top + (index + 1) * _SVG_ROW_HEIGHT
        start, end = x[endpoints.index(step.source)], x[endpoints.index(step.destination)]
        colour, marker = ("#c00", "arrow-marked") if step.marked else ("#333", "arrow")
        parts.append(f'<text x="8" y="{y + 4}" fill="#666">{step.time:.6f}</text>')
        parts.append(f'<line x1="{start}" y1="{y}" x2="{end}" y2="{y}" stroke="{colour}" stroke-width="1.3" '
                     f'marker-end="url(#{marker})"/>')
        parts.append(f'<text x="{(start + end) / 2}" y="{y - 5}" text-anchor="middle" fill="{colour}">'
                     f"{escape(step.label)}</text>")
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
