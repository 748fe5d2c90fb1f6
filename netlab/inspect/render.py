"""Rows and tap events as text tables or JSON.

How this works: computing rows (``analyze.py``) is separate from printing
them. :func:`packet_table` prints one line per packet: time, source ->
destination, TCP flags, relative seq/ack, payload length and what netlab said;
:func:`tap_table` prints the syscall tap's send/recv calls in the same style.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence

from netlab.inspect.analyze import PacketRow
from netlab.inspect.quiz import questions
from netlab.inspect.walkthrough_parts import Call, Section, Walkthrough
from netlab.tables import OUTPUT_FORMATS, TableOptions, draw_table, fit_table, show_table
from netlab.transport.tap import TapEvent

FORMATS = OUTPUT_FORMATS
#: Lessons in Markdown read well as raw text: their tables fit 100 columns.
MARKDOWN_TABLE = TableOptions(width=100)
#: Bytes of each send/recv shown in a table.
TAP_PREVIEW_SIZE = 24
#: Bytes of binary data shown, in hex.
TAP_HEX_SIZE = 12


def packet_cells(row: PacketRow) -> list[object]:
    """The table cells of one packet row."""
    netlab = "; ".join(row.content)
    if row.notes:
        netlab = " ".join(f"[{note}]" for note in row.notes) + (" " + netlab if netlab else "")
    return [
        row.number,
        f"{row.time:.6f}",
        f"{row.source} -> {row.destination}",
        row.flags or row.protocol,
        "" if row.sequence is None else row.sequence,
        "" if row.acknowledgement is None else row.acknowledgement,
        row.length,
        netlab,
    ]


PACKET_HEADERS = ["#", "time", "source -> destination", "flags", "seq", "ack", "len", "netlab"]
TAP_HEADERS = ["#", "time", "connection", "call", "bytes", "first bytes"]


def packet_table(rows: Sequence[PacketRow], options: TableOptions | None = None, table_format: str = "simple") -> str:
    """Packet rows as an aligned text (or Markdown) table, fitted to the terminal unless ``--wide``."""
    return show_table(PACKET_HEADERS, _strings(packet_cells(row) for row in rows), options,
                      note_columns=[len(PACKET_HEADERS) - 1], table_format=table_format)


def packets_csv(rows: Sequence[PacketRow]) -> str:
    """Packet rows as CSV, one line per packet, the table's columns."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(PACKET_HEADERS)
    writer.writerows(_strings(packet_cells(row) for row in rows))
    return buffer.getvalue().rstrip("\n")


def tap_cells(number: int, event: TapEvent, start: float) -> list[object]:
    """The table cells of one tap event; ``start`` is the time shown as 0."""
    shown = preview_bytes(event.preview, event.size) if event.size else "(end of stream)"
    return [number, f"{event.time - start:.6f}", event.connection, event.direction, event.size, shown]


def preview_bytes(data: bytes, size: int) -> str:
    """Text as a quoted string, binary (e.g. a length frame) as hex, with ``...`` when cut."""
    text = data[:TAP_PREVIEW_SIZE].decode("utf-8", "replace")
    if text.isprintable() or text.rstrip("\n").isprintable():
        return repr(text) + ("..." if size > TAP_PREVIEW_SIZE else "")
    return data[:TAP_HEX_SIZE].hex(" ") + (" ..." if size > TAP_HEX_SIZE else "")


def tap_table(events: Sequence[TapEvent], start: float | None = None, options: TableOptions | None = None) -> str:
    """Tap events as an aligned text table, times relative to ``start`` (default: the first event)."""
    if start is None:
        start = events[0].time if events else 0.0
    cells = [tap_cells(number, event, start) for number, event in enumerate(events, 1)]
    return show_table(TAP_HEADERS, _strings(cells), options, note_columns=[len(TAP_HEADERS) - 1])


def packets_json(rows: Sequence[PacketRow], capture: dict[str, object] | None = None) -> str:
    """Packet rows as JSON: ``{"capture": how they were captured (kernel counters) or null, "packets": [...]}``."""
    return json.dumps({"capture": capture, "packets": [row.as_dict() for row in rows]}, indent=2)


CALL_HEADERS = ["#", "time", "call", "result"]


def call_cells(calls: Sequence[Call]) -> list[list[str]]:
    """The table cells of plain calls (connect, accept) and what they returned."""
    return [[str(number), f"{call.time:.6f}", call.call, call.result] for number, call in enumerate(calls, 1)]


def section_steps(section: Section, options: TableOptions | None = None) -> str:
    """A section's table with each row followed by its one-line explanation (footnotes after the steps)."""
    headings, cells = section_table(section)
    options = options or TableOptions()
    fitted = fit_table(headings, cells, options.width, wide=options.wide, note_columns=[len(headings) - 1],
                       split=False)  # the explanations sit between the rows: one part only
    lines = draw_table(fitted.headings, fitted.rows).splitlines()
    out = lines[:2]
    for line, explanation in zip(lines[2:], section.explanations):
        out.append(line)
        out.append(f"{STEP_INDENT}{explanation}")
    return "\n".join(out) + fitted.render_notes()


def section_table(section: Section) -> tuple[Sequence[str], list[list[str]]]:
    """A section's headings and rows: its packets, its tapped calls, or its other calls."""
    if section.packets:
        return PACKET_HEADERS, _strings(packet_cells(row) for row in section.packets)
    if section.calls:
        start = section.calls[0].time
        return TAP_HEADERS, _strings(tap_cells(number, event, start) for number, event in enumerate(section.calls, 1))
    return CALL_HEADERS, call_cells(section.other_calls)


def walkthrough_data(walkthrough: Walkthrough) -> dict[str, object]:
    """A walkthrough as JSON-ready data: each section's columns, rows and one explanation per row."""
    sections = []
    for section in walkthrough.sections:
        headings, cells = section_table(section)
        sections.append({"heading": section.heading, "text": section.text, "columns": list(headings),
                         "rows": cells, "explanations": list(section.explanations), "pcap": section.pcap_path})
    return {"name": walkthrough.name, "title": walkthrough.title, "lesson": walkthrough.lesson,
            "sections": sections, "findings": list(walkthrough.findings)}


def walkthrough_csv(walkthrough: Walkthrough) -> str:
    """Every section's steps as CSV: the section heading, the step's cells and its explanation."""
    stream = io.StringIO()
    writer = csv.writer(stream, lineterminator="\n")
    for section in walkthrough.sections:
        headings, cells = section_table(section)
        writer.writerow(["section", *headings, "explanation"])
        explanations = [*section.explanations, *[""] * (len(cells) - len(section.explanations))]
        for row, explanation in zip(cells, explanations):
            writer.writerow([section.heading, *row, explanation])
    return stream.getvalue()


def _strings(rows: Iterable[Sequence[object]]) -> list[list[str]]:
    return [["" if cell is None else str(cell) for cell in row] for row in rows]


STEP_INDENT = "       -> "


def walkthrough_text(walkthrough: Walkthrough, options: TableOptions | None = None) -> str:
    """A walkthrough for the terminal: lesson, steps, findings and where the pcaps are."""
    parts = [walkthrough.title, "=" * len(walkthrough.title), "", walkthrough.lesson, ""]
    for section in walkthrough.sections:
        parts += [f"-- {section.heading}", section.text, "", section_steps(section, options), ""]
        if section.pcap_path:
            parts += [f"pcap: {section.pcap_path} (open it with wireshark or tshark -r)", ""]
    if walkthrough.findings:
        parts.append("What this run measured:")
        parts += [f"  - {finding}" for finding in walkthrough.findings]
    return "\n".join(parts).rstrip() + "\n"


def walkthrough_markdown(walkthrough: Walkthrough) -> str:
    """A walkthrough as a short Markdown lesson (no machine-specific paths)."""
    parts = [f"# {walkthrough.title}", "", walkthrough.lesson, "",
             f"Generated from a real run of `netlab walkthrough {walkthrough.name}`; run it yourself to see "
             "your own numbers (add `--pcap DIR` to keep the capture for Wireshark).", ""]
    for section in walkthrough.sections:
        parts += [f"## {section.heading}", "", section.text, "", "```text", section_steps(section, MARKDOWN_TABLE),
                  "```", ""]
    if walkthrough.findings:
        parts += ["## What this run measured", ""]
        parts += [f"- {finding}" for finding in walkthrough.findings]
    asked = questions(walkthrough)
    if asked:
        parts += ["", "## Questions", "",
                  f"Answered by the run above; `netlab walkthrough {walkthrough.name} --quiz` asks them about "
                  "your own run and checks your answers.", ""]
        for number, question in enumerate(asked, 1):
            parts += [f"{number}. {question.prompt}", "",
                      f"   <details><summary>Answer</summary>{question.answer} ({question.why})</details>", ""]
    return "\n".join(parts).rstrip() + "\n"
