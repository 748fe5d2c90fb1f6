"""Tables that fit: one place that makes every netlab table fit a width.

How this works: a renderer hands :func:`fit_table` its headings and rows (all
strings) and a width. In order, until the table fits:

1. Long notes leave the table: a cell of a note column longer than a few words
   becomes a footnote number (``[1]``), and the text is listed under the table;
   the same text anywhere in the table shares one number.
2. A unit repeated in every cell of a column (``12 ms``) moves to the heading.
3. The widest remaining headings are abbreviated (``connected at once`` ->
   ``con``), with a legend under the table saying what each abbreviation means.
4. The widest columns' cells are cut with an ellipsis, widest first, and the
   legend says that ``--wide`` shows them whole.

``wide=True`` skips all of this; ``columns`` keeps only the named columns (by
heading or by name). :func:`terminal_width` is the width to fit by default:
``COLUMNS``, or 100 when it is not set and stdout is not a terminal.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from tabulate import tabulate

DEFAULT_WIDTH = 100
#: A note cell longer than this leaves the table as a footnote.
NOTE_LIMIT = 24
#: Column gap of tabulate's "simple" format; "github" adds " | " between cells.
_GAPS = {"simple": 2, "github": 3, "plain": 2}
_NOTE_HEADINGS = ("note", "notes", "explanation", "meaning", "why")
_MIN_CELL = 6
_UNIT = re.compile(r"^(-?[\d.,]+) ?(ms|us|s|B|KiB|MiB|GiB|kB|MB|GB|%)$")


@dataclass
class FittedTable:
    """A table made to fit, and what was moved out of it.

    Attributes:
        headings: the headings as shown.
        rows: the cells as shown.
        footnotes: ``(number, text)`` for every note moved under the table.
        legend: ``(abbreviation, full heading)`` for every abbreviated heading.
        cut: whether some cells were shortened (``--wide`` shows them whole).
    """

    headings: list[str]
    rows: list[list[str]]
    footnotes: list[tuple[int, str]] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)
    cut: bool = False

    def render(self, table_format: str = "simple") -> str:
        """The table with its legend and footnotes under it."""
        text = tabulate(self.rows, headers=self.headings, tablefmt=table_format, disable_numparse=True)
        return text + self.render_notes(markdown=table_format == "github")

    def render_notes(self, markdown: bool = False) -> str:
        """The lines under the table (legend, then footnotes), with a leading blank line; '' when none."""
        lines = []
        if self.legend:
            lines.append("Columns: " + "; ".join(f"{short} = {full}" for short, full in self.legend) + ".")
        if self.cut:
            lines.append("Some cells are shortened (...): --wide shows them whole.")
        lines += [f"[{number}] {text}" for number, text in self.footnotes]
        if not lines:
            return ""
        separator = "\n\n" if markdown else "\n"
        return "\n\n" + separator.join(lines)


def terminal_width() -> int:
    """The width tables fit by default: ``COLUMNS``, the terminal's width, or 100 off a terminal."""
    text = os.environ.get("COLUMNS", "")
    if text.isdigit() and int(text) > 0:
        return int(text)
    if sys.stdout.isatty():
        return shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns
    return DEFAULT_WIDTH


def select_columns(headings: Sequence[str], rows: Sequence[Sequence[str]], wanted: Sequence[str],
                   names: Sequence[str] | None = None) -> tuple[list[str], list[list[str]]]:
    """Keep only the columns named in ``wanted`` (headings or names), in the order given.

    Raises:
        ValueError: a wanted column is not in the table (the message lists the ones that are).
    """
    names = list(names) if names is not None else list(headings)
    indexes = []
    for want in wanted:
        key = want.strip().lower()
        matches = [index for index, (heading, name) in enumerate(zip(headings, names))
                   if key in (heading.lower(), name.lower())]
        if not matches:
            choices = ", ".join(dict.fromkeys(name for name in names))
            raise ValueError(f"no column {want!r} in this table; it has: {choices}")
        indexes.append(matches[0])
    return [headings[index] for index in indexes], [[row[index] for index in indexes] for row in rows]


def fit_table(headings: Sequence[str], rows: Sequence[Sequence[str]], width: int | None = None, *,
              wide: bool = False, table_format: str = "simple",
              note_columns: Sequence[int] | None = None) -> FittedTable:
    """Make a table fit ``width`` columns (default :func:`terminal_width`); see the module docstring.

    Args:
        headings: one per column.
        rows: cells as strings.
        width: the width to fit; None for :func:`terminal_width`.
        wide: show everything, fit nothing.
        table_format: the tabulate format the caller renders with ("simple" or "github").
        note_columns: which columns hold notes (default: those headed note, explanation, ...).
    """
    table = FittedTable(list(headings), [list(row) for row in rows])
    if wide or not table.rows:
        return table
    width = width or terminal_width()
    if note_columns is None:
        note_columns = [index for index, heading in enumerate(headings) if heading.lower() in _NOTE_HEADINGS]
    _move_notes(table, note_columns)
    if _width(table, table_format) <= width:
        return table
    _units_to_headings(table)
    _abbreviate_headings(table, table_format, width)
    _cut_cells(table, table_format, width)
    return table


def _width(table: FittedTable, table_format: str) -> int:
    widths = _column_widths(table)
    gap = _GAPS.get(table_format, 2)
    extra = 4 if table_format == "github" else 0
    return sum(widths) + gap * max(len(widths) - 1, 0) + extra


def _column_widths(table: FittedTable) -> list[int]:
    return [max([len(heading), *(len(row[index]) for row in table.rows)])
            for index, heading in enumerate(table.headings)]


def _move_notes(table: FittedTable, note_columns: Sequence[int]) -> None:
    numbers: dict[str, int] = {}
    for row in table.rows:
        for index in note_columns:
            text = row[index]
            if len(text) <= NOTE_LIMIT:
                continue
            if text not in numbers:
                numbers[text] = len(numbers) + 1
                table.footnotes.append((numbers[text], text))
            row[index] = f"[{numbers[text]}]"


def _units_to_headings(table: FittedTable) -> None:
    for index, heading in enumerate(table.headings):
        units: set[str | None] = set()
        for row in table.rows:
            if not row[index]:
                continue
            match = _UNIT.match(row[index])
            units.add(match.group(2) if match else None)
        unit = units.pop() if len(units) == 1 else None
        if unit is not None:
            for row in table.rows:
                match = _UNIT.match(row[index])
                if match:
                    row[index] = match.group(1)
            table.headings[index] = f"{heading} ({unit})" if not heading.endswith(unit) else heading


def _abbreviate_headings(table: FittedTable, table_format: str, width: int) -> None:
    used: set[str] = set(table.headings)
    while _width(table, table_format) > width:
        widths = _column_widths(table)
        candidates = [index for index, heading in enumerate(table.headings)
                      if len(heading) > max(_cell_width(table, index), 3) and " " in heading.strip()
                      or len(heading) > max(_cell_width(table, index), 8)]
        if not candidates:
            return
        index = max(candidates, key=lambda position: widths[position] - _cell_width(table, position))
        full = table.headings[index]
        short = _abbreviation(full, max(_cell_width(table, index), 3), used)
        if len(short) >= len(full):
            return
        used.add(short)
        table.headings[index] = short
        table.legend.append((short, full))


def _cell_width(table: FittedTable, index: int) -> int:
    return max((len(row[index]) for row in table.rows), default=0)


def _abbreviation(heading: str, room: int, used: set[str]) -> str:
    words = re.findall(r"[A-Za-z0-9.%]+", heading)
    initials = "".join(word[0] for word in words).lower() if len(words) > 1 else heading[:room]
    candidate = initials if len(initials) <= room else initials[:room]
    if len(words) > 1 and len(candidate) < room:  # room to spare: first word cut, then the initials
        rest = "".join(word[0] for word in words[1:]).lower()
        head = words[0][: room - len(rest)]
        candidate = head + rest
    base, number = candidate, 2
    while candidate in used:
        candidate = f"{base[: max(room - 1, 1)]}{number}"
        number += 1
    return candidate


def _cut_cells(table: FittedTable, table_format: str, width: int) -> None:
    for _ in range(1000):  # bounded: every pass shortens one column by at least one character
        excess = _width(table, table_format) - width
        if excess <= 0:
            return
        widths = _column_widths(table)
        index = max(range(len(widths)), key=lambda position: widths[position])
        target = max(widths[index] - excess, _MIN_CELL, len(table.headings[index]))
        if target >= widths[index]:
            return
        for row in table.rows:
            if len(row[index]) > target:
                row[index] = row[index][: target - 3].rstrip() + "..."
                table.cut = True
