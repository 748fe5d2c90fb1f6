"""Tables that fit: the one place that draws netlab's tables and makes them fit a width.

How this works: a renderer hands :func:`fit_table` its headings and rows (all
strings) and a width. In order, until the table fits:

0. A table that fits is left as it is.
1. Long notes leave the table: a note cell longer than a few words becomes a
   footnote number (``[1]``) and the text is listed under the table; the same
   text anywhere in the table shares one number. Columns with no value at all
   are left out.
2. A unit repeated in every cell of a column (``12 ms``) moves to the heading.
3. Headings longer than their cells are abbreviated (``connected at once`` ->
   ``cao``), widest first, with a legend under the table.
4. If that is not enough, the headings stay whole and the table is split into
   parts shown one under the other, each repeating the key columns (the first
   column unless told otherwise), so no number is ever cut.

``wide=True`` skips all of this; ``--columns`` (:func:`column_indexes`) keeps
only the named columns; :func:`show_table` does all of it for every table.
:func:`terminal_width` is the width to fit by default: ``COLUMNS``, the
terminal's width, or 100 off a terminal. :func:`draw_table` draws ``simple``
(two spaces between columns) or ``github`` (Markdown) text with numeric columns
right-aligned and no padding beyond the widest cell.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field

#: What every --format accepts: a table for the terminal, Markdown, CSV or JSON.
OUTPUT_FORMATS = ("table", "markdown", "csv", "json")

DEFAULT_WIDTH = 100
#: A note cell longer than this leaves the table as a footnote.
NOTE_LIMIT = 24
_NOTE_HEADINGS = ("note", "notes", "explanation", "meaning", "why")
#: Headings this short are never abbreviated.
_SHORT_HEADING = 4
_NUMBER = re.compile(r"^[-+]?[\d,]*\.?\d+(e[-+]?\d+)?( \([-\d.,e+]+-[-\d.,e+]+\))?$")
_UNIT = re.compile(r"^(-?[\d.,]+) ?(ms|us|s|B|KiB|MiB|GiB|kB|MB|GB|%)$")


@dataclass
class FittedTable:
    """A table made to fit, and what was moved out of it.

    Attributes:
        headings: the headings as shown.
        rows: the cells as shown.
        footnotes: ``(number, text)`` for every note moved under the table.
        legend: ``(abbreviation, full heading)`` for every abbreviated heading.
        dropped: headings of columns left out because no row has a value.
        parts: column indexes of each part when the table was split (empty: one part).
        width: the width it was fitted to (notes under it wrap there), or None.
    """

    headings: list[str]
    rows: list[list[str]]
    footnotes: list[tuple[int, str]] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    parts: list[list[int]] = field(default_factory=list)
    width: int | None = None

    def render(self, table_format: str = "simple") -> str:
        """The table (or its parts) with the legend and footnotes under it."""
        return self.render_table(table_format) + self.render_notes(markdown=table_format == "github")

    def render_table(self, table_format: str = "simple") -> str:
        """The table alone (its parts one under the other, a blank line between)."""
        parts = self.parts or [list(range(len(self.headings)))]
        drawn = [draw_table([self.headings[index] for index in part], [[row[index] for index in part]
                            for row in self.rows], table_format) for part in parts]
        return "\n\n".join(drawn)

    def render_notes(self, markdown: bool = False, width: int | None = None) -> str:
        """The lines under the table (legend, then footnotes), with a leading blank line; '' when none.

        Args:
            markdown: separate the notes as paragraphs.
            width: wrap each note to this width (hanging indent); None (the default) leaves each note on one
                line, whole, so it can be searched for and copied.
        """
        lines = []
        if self.parts:
            lines.append(f"The table is split in {len(self.parts)} parts to fit {self.width} columns; "
                         "--wide shows it whole.")
        if self.legend:
            order = {heading: position for position, heading in enumerate(self.headings)}
            legend = sorted(self.legend, key=lambda pair: order.get(pair[0], 0))
            lines.append("Columns: " + "; ".join(f"{short} = {full}" for short, full in legend) + ".")
        if self.dropped:
            lines.append("Left out (no values): " + ", ".join(self.dropped) + ".")
        lines += [f"[{number}] {text}" for number, text in self.footnotes]
        if not lines:
            return ""
        if width:
            lines = [textwrap.fill(line, width, subsequent_indent="    ", break_on_hyphens=False,
                                   break_long_words=False) for line in lines]
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


@dataclass(frozen=True)
class TableOptions:
    """How a command shows its tables: ``--wide`` and ``--columns`` (and the width to fit).

    Attributes:
        width: the width to fit; None for :func:`terminal_width`.
        wide: show everything, fit nothing.
        columns: keep only these columns (headings or names), in this order; empty keeps all.
    """

    width: int | None = None
    wide: bool = False
    columns: tuple[str, ...] = ()


def show_table(headings: Sequence[str], rows: Sequence[Sequence[str]], options: TableOptions | None = None, *,
               table_format: str = "simple", names: Sequence[str] | None = None,
               key_columns: Sequence[int] = (0,), note_columns: Sequence[int] | None = None) -> str:
    """Pick the columns, fit the width and draw: what every netlab table goes through.

    Args:
        headings: one per column.
        rows: cells as strings.
        options: ``--wide``, ``--columns`` and the width; None for the defaults.
        table_format: "simple" (terminal) or "github" (Markdown).
        names: the columns' names as ``--columns`` may also give them (default: the headings).
        key_columns: the columns that name a row (repeated when a table is split).
        note_columns: the columns holding notes (default: by heading).
    Raises:
        UsageError: ``--columns`` names a column the table does not have.
    """
    options = options or TableOptions()
    if options.columns:
        from netlab.errors import UsageError

        try:
            indexes = column_indexes(headings, options.columns, names)
        except ValueError as exc:
            raise UsageError(f"--columns: {exc}") from None
        if note_columns is None:
            note_columns = [index for index, heading in enumerate(headings) if heading.lower() in _NOTE_HEADINGS]
        headings = [headings[index] for index in indexes]
        rows = [[row[index] for index in indexes] for row in rows]
        note_columns = [position for position, index in enumerate(indexes) if index in note_columns]
        key_columns = [position for position, index in enumerate(indexes) if index in key_columns] or [0]
    table = fit_table(headings, rows, options.width, wide=options.wide, table_format=table_format,
                      note_columns=note_columns, key_columns=key_columns)
    return table.render(table_format)


def column_indexes(headings: Sequence[str], wanted: Sequence[str], names: Sequence[str] | None = None) -> list[int]:
    """The indexes of the columns named in ``wanted`` (by heading or name, any case), in the order given.

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
            raise ValueError(f"no column {want!r} in this table; it has: {', '.join(names)}")
        indexes.append(matches[0])
    return indexes


def fit_table(headings: Sequence[str], rows: Sequence[Sequence[str]], width: int | None = None, *,
              wide: bool = False, table_format: str = "simple", note_columns: Sequence[int] | None = None,
              key_columns: Sequence[int] = (0,), split: bool = True) -> FittedTable:
    """Make a table fit ``width`` columns (default :func:`terminal_width`); see the module docstring.

    Args:
        headings: one per column.
        rows: cells as strings.
        width: the width to fit; None for :func:`terminal_width`.
        wide: show everything, fit nothing.
        table_format: how the caller draws it: "simple" or "github".
        note_columns: which columns hold notes (default: those headed note, explanation, ...).
        key_columns: the columns that name a row, repeated in every part of a split table.
        split: whether a table still too wide may be split in parts (not when rows are interleaved with text).
    """
    table = FittedTable(list(headings), [list(row) for row in rows])
    if wide or not table.rows:
        return table
    width = width or terminal_width()
    table.width = width
    if _width(table, table_format) <= width:
        return table
    if note_columns is None:
        note_columns = [index for index, heading in enumerate(headings) if heading.lower() in _NOTE_HEADINGS]
    move_notes(table, note_columns)
    keys = _drop_empty_columns(table, key_columns)
    if _width(table, table_format) <= width:
        return table
    _units_to_headings(table)
    full_headings = list(table.headings)
    _abbreviate_headings(table, table_format, width)
    if split and _width(table, table_format) > width:
        # Abbreviating was not enough: split instead, and keep the headings whole (parts read better).
        table.headings, table.legend = full_headings, []
        table.parts = _split(table, table_format, width, keys)
    return table


def draw_table(headings: Sequence[str], rows: Sequence[Sequence[str]], table_format: str = "simple") -> str:
    """The table as text, ``simple`` or ``github`` (Markdown); numeric columns right-aligned."""
    widths = [max([len(heading), *(len(row[index]) for row in rows)]) for index, heading in enumerate(headings)]
    right = [bool(column) and all(_NUMBER.match(cell) for cell in column)
             for column in ([row[index] for row in rows if row[index]] for index in range(len(headings)))]

    def line(cells: Sequence[str]) -> str:
        padded = [cell.rjust(size) if align else cell.ljust(size) for cell, size, align in zip(cells, widths, right)]
        if table_format == "github":
            return "| " + " | ".join(padded) + " |"
        return "  ".join(padded).rstrip()

    if table_format == "github":
        rule = "|" + "|".join("-" * (size + 1) + (":" if align else "-") for size, align in zip(widths, right)) + "|"
    else:
        rule = "  ".join("-" * size for size in widths)
    return "\n".join([line(headings), rule, *(line(row) for row in rows)])


def _width(table: FittedTable, table_format: str, columns: Sequence[int] | None = None) -> int:
    indexes = list(range(len(table.headings))) if columns is None else list(columns)
    text = draw_table([table.headings[index] for index in indexes],
                      [[row[index] for index in indexes] for row in table.rows], table_format)
    return max((len(line) for line in text.splitlines()), default=0)


def move_notes(table: FittedTable, note_columns: Sequence[int]) -> None:
    """Replace long notes in ``note_columns`` by footnote numbers (the same text shares one number)."""
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


def _drop_empty_columns(table: FittedTable, key_columns: Sequence[int]) -> list[int]:
    """Remove columns without any value; return the key columns' new indexes."""
    keep = [index for index in range(len(table.headings))
            if index in key_columns or any(row[index] for row in table.rows)]
    table.dropped = [heading for index, heading in enumerate(table.headings) if index not in keep]
    table.headings = [table.headings[index] for index in keep]
    table.rows = [[row[index] for index in keep] for row in table.rows]
    return [keep.index(index) for index in key_columns if index in keep]


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
    done: set[int] = set()
    for _ in range(len(table.headings)):  # bounded: each pass abbreviates one heading or stops
        if _width(table, table_format) <= width:
            return
        candidates = [index for index, heading in enumerate(table.headings)
                      if index not in done and len(heading) > max(_cell_width(table, index), _SHORT_HEADING)]
        if not candidates:
            return
        index = max(candidates, key=lambda position: len(table.headings[position]) - _cell_width(table, position))
        done.add(index)
        full = table.headings[index]
        short = _abbreviation(full, used)
        if len(full) - max(len(short), _cell_width(table, index)) >= 3:  # worth a legend entry
            used.add(short)
            table.headings[index] = short
            table.legend.append((short, full))


def _cell_width(table: FittedTable, index: int) -> int:
    return max((len(row[index]) for row in table.rows), default=0)


def _abbreviation(heading: str, used: set[str]) -> str:
    """Initials, keeping words with digits whole: ``connect p50 ms`` -> ``cp50m``; a clash takes more letters."""
    words = re.findall(r"[A-Za-z0-9.%+]+", heading)
    if not words:
        return heading
    tail = "".join(word if any(character.isdigit() for character in word) else word[0] for word in words[1:])
    first = words[0]
    for size in range(1, len(first) + 1):
        head = first if any(character.isdigit() for character in first) else first[:size]
        candidate = (head + tail).lower() if len(words) > 1 else first[: max(size, _SHORT_HEADING)].lower()
        if candidate not in used:
            return candidate
    number = 2
    while f"{first[:3].lower()}{number}" in used:
        number += 1
    return f"{first[:3].lower()}{number}"


def _split(table: FittedTable, table_format: str, width: int, keys: Sequence[int]) -> list[list[int]]:
    """Column groups, each the key columns plus as many others as fit ``width`` (at least one)."""
    others = [index for index in range(len(table.headings)) if index not in keys]
    parts: list[list[int]] = []
    current: list[int] = []
    for index in others:
        if current and _width(table, table_format, [*keys, *current, index]) > width:
            parts.append([*keys, *current])
            current = []
        current.append(index)
    if current:
        parts.append([*keys, *current])
    return parts
