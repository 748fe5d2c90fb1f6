"""Time-sequence graphs (Stevens/tcptrace style) of a capture: sequence number against time.

How this works: :func:`time_sequence` picks the direction that carried the
most data (TCP payload bytes, or sequenced-UDP DATA datagrams) and collects,
from the analyzed rows, each data packet as a vertical bar from its first to
its last sequence number at its time (TCP bytes; for UDP one datagram is one
number), the other direction's acknowledgements as a step line, and the
retransmissions, marked; for sequenced UDP also the SACK ranges the receiver
reports holding past a gap. :func:`draw_time_sequence` draws it with matplotlib
(see :mod:`netlab.figures`); a flat stretch of the ACK line under new data is
a gap the receiver is waiting to fill.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from netlab.errors import UsageError
from netlab.figures import figure_bytes, new_figure
from netlab.inspect.analyze import PacketRow
from netlab.inspect.stream import SegmentKind

_UDP_FIELDS = re.compile(r"^UDP (\w+) seq=(\d+) ack=(\d+)")
_SACK = re.compile(r" sack=(\S+)")


@dataclass
class TimeSequence:
    """What a time-sequence graph draws, for one direction of one flow.

    Attributes:
        sender, receiver: the data's ``host:port`` ends.
        unit: ``bytes`` (TCP) or ``datagrams`` (sequenced UDP).
        data: ``(time, first, last)`` per data packet.
        acks: ``(time, acknowledged up to)`` from the receiver.
        retransmits: ``(time, first)`` of each retransmission.
        sacks: ``(time, first, last)`` of each range the receiver holds past a gap (sequenced UDP).
    """

    sender: str
    receiver: str
    unit: str
    data: list[tuple[float, float, float]] = field(default_factory=list)
    acks: list[tuple[float, float]] = field(default_factory=list)
    retransmits: list[tuple[float, float]] = field(default_factory=list)
    sacks: list[tuple[float, float, float]] = field(default_factory=list)


def time_sequence(rows: Sequence[PacketRow]) -> TimeSequence:
    """The time-sequence data of the busiest data direction in ``rows``.

    Raises:
        UsageError: no packet in the capture carried data.
    """
    carried: dict[tuple[str, str], int] = {}
    for row in rows:
        if _data_sequence(row) is not None:
            carried[(row.source, row.destination)] = carried.get((row.source, row.destination), 0) + max(row.length, 1)
    if not carried:
        raise UsageError("no packet in this capture carried data: a time-sequence graph needs a transfer "
                         "(e.g. capture 'netlab exec -- blob 1MiB')")
    sender, receiver = max(carried, key=lambda key: carried[key])
    unit = "datagrams" if any(row.protocol == "UDP" for row in rows if row.source == sender) else "bytes"
    graph = TimeSequence(sender, receiver, unit)
    for row in rows:
        if row.source == sender and row.destination == receiver:
            first = _data_sequence(row)
            if first is None:
                continue
            last = first + (row.length if unit == "bytes" else 1)
            graph.data.append((row.time, first, last))
            if SegmentKind.RETRANSMIT.value in row.notes:
                graph.retransmits.append((row.time, first))
        elif row.source == receiver and row.destination == sender:
            acknowledged = _acknowledgement(row)
            if acknowledged is not None:
                graph.acks.append((row.time, acknowledged))
                sack = _SACK.search(row.content[0]) if row.protocol == "UDP" and row.content else None
                for low, high in re.findall(r"\+(\d+)\.\.\+(\d+)", sack.group(1) if sack else ""):
                    graph.sacks.append((row.time, acknowledged + int(low), acknowledged + int(high)))
    return graph


def draw_time_sequence(graph: TimeSequence, image_format: str, title: str = "") -> bytes:
    """The graph as PNG or SVG bytes.

    Raises:
        UsageError: matplotlib is missing or the format is not png/svg.
    """
    figure = new_figure("time-sequence", (8.0, 4.6))
    axes = figure.add_subplot()
    for time, first, last in graph.data:
        axes.plot([time, time], [first, last], color="C0", linewidth=1.4)
    axes.plot([], [], color="C0", label=f"data sent by {graph.sender}")
    if graph.acks:
        times = [time for time, _ in graph.acks]
        values = [value for _, value in graph.acks]
        axes.step(times, values, where="post", color="C2", linewidth=1, label=f"acknowledged by {graph.receiver}")
    for time, first, last in graph.sacks:
        axes.plot([time, time], [first, last], color="C1", linewidth=3, alpha=0.6)
    if graph.sacks:
        axes.plot([], [], color="C1", linewidth=3, alpha=0.6, label="held past a gap (SACK)")
    if graph.retransmits:
        axes.plot([time for time, _ in graph.retransmits], [value for _, value in graph.retransmits], "x",
                  color="C3", markersize=7, label=f"retransmission ({len(graph.retransmits)})")
    axes.set_xlabel("time since the first packet, s")
    axes.set_ylabel(f"relative sequence number ({graph.unit})")
    axes.set_title(title or f"Time-sequence graph: {graph.sender} -> {graph.receiver}")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
    return figure_bytes(figure, image_format)


def _data_sequence(row: PacketRow) -> float | None:
    if row.protocol == "TCP":
        return float(row.sequence) if row.length > 0 and row.sequence is not None else None
    match = _UDP_FIELDS.match(row.content[0]) if row.content else None
    return float(match.group(2)) if match and match.group(1) == "DATA" else None


def _acknowledgement(row: PacketRow) -> float | None:
    if row.protocol == "TCP":
        return float(row.acknowledgement) if row.acknowledgement is not None and "ACK" in row.flags else None
    match = _UDP_FIELDS.match(row.content[0]) if row.content else None
    return float(match.group(3)) if match else None


def image_format_of(path: str) -> str:
    """``png`` or ``svg`` from a file name.

    Raises:
        UsageError: any other suffix.
    """
    suffix = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    if suffix not in ("png", "svg"):
        raise UsageError(f"{path}: name the image .png or .svg")
    return suffix

