"""Turn result documents into tables: terminal, Markdown, CSV or JSON.

How this works: rendering reads only the saved document (never the
experiment module), so ``netlab results show`` works on any saved result. One
table row per summary row; a number summarized over repeats prints as
``median (min-max)`` and a legend under the table says so; a cell that failed
or was skipped prints its parameters and the reason in the ``note`` column,
and one that did not complete shows its rows with the reason. Under every
table one summary line counts the cells that did not complete, failed or were
skipped.
"""

from __future__ import annotations

import csv
import io
import json
import os
from typing import Any

from netlab.errors import UsageError
from netlab.lab.spec import LINK_KEYS
from netlab.scenario.compare import Comparison
from netlab.scenario.results import count_cells
from netlab.scenario.target import NOT_ON_TARGET
from netlab.tables import OUTPUT_FORMATS, TableOptions, column_indexes, show_table
from netlab.transport.sysctl import describe_syn_retries

FORMATS = OUTPUT_FORMATS
#: The saved Markdown reads well as raw text: its tables fit 100 columns.
MARKDOWN_TABLE = TableOptions(width=100)


def format_value(value: Any) -> str:
    """A cell of a table: numbers to 3 significant figures, summaries as median (min-max)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict) and "median" in value:
        if value["min"] == value["max"]:
            return format_value(value["median"])
        return f"{format_value(value['median'])} ({format_value(value['min'])}-{format_value(value['max'])})"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.3g}" if abs(value) >= 0.01 else f"{value:.2g}"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10000 else str(value)
    return str(value)


def table_rows(document: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The headings and formatted rows of a result's summary table."""
    columns = document["columns"]
    headings = [column["heading"] for column in columns]
    names = [column["name"] for column in columns]
    note_index = names.index("note") if "note" in names else len(names) - 1
    rows: list[list[str]] = []
    for cell in document["summary"]:
        for row in cell["rows"]:
            rows.append([format_value(row.get(column["name"])) for column in columns])
        if cell["status"] != "ok" and not cell["rows"]:
            values = {**cell["varied"], "note": f"{cell['status']}: {'; '.join(cell['messages'])}"}
            rows.append([format_value(values.get(column["name"])) for column in columns])
        elif cell["status"] != "ok":
            unsaid = [message for message in cell["messages"] if message not in rows[-1][note_index]]
            if unsaid:
                not_ok = cell["runs"] - cell["ok_runs"]
                rows[-1][note_index] = (rows[-1][note_index] + f"; {not_ok} of {cell['runs']} runs "
                                        f"{cell['status']}: {'; '.join(unsaid)}").lstrip("; ")
    return headings, rows


def summary_lines(document: dict[str, Any]) -> list[str]:
    """What goes under the table: the cell count by outcome, the repeat legend, the shared seeds."""
    counts = count_cells(document)
    parts = [f"{counts['cells']} cells"]
    if counts["incomplete"]:
        parts.append(f"{counts['incomplete']} did not complete within their bound (a measured result)")
    if counts["failed"]:
        parts.append(f"{counts['failed']} failed (the experiment broke)")
    if counts["skipped"]:
        parts.append(f"{counts['skipped']} skipped")
    if (document.get("network") or {}).get("kind") == "target":
        unmeasured = sum(str(row.get("note", "")).startswith(NOT_ON_TARGET)
                         for cell in document["summary"] for row in cell["rows"])
        if unmeasured:
            parts.append(f"{unmeasured} measurements not made against the target (their notes say why)")
    if len(parts) == 1:
        parts.append("all completed")
    lines = [", ".join(parts) + "."]
    if document["scenario"].get("repeat", 1) > 1:
        lines.append(f"Numbers are the median of {document['scenario']['repeat']} repeats, "
                     "with the range (min-max) in brackets when they differ.")
    shared = document.get("shared_seed") or []
    if shared:
        lines.append(f"Cells that differ only in {', '.join(shared)} share their seed, so they meet the same "
                     "random choices (the same loss pattern): a like-for-like comparison.")
    return lines


def render(document: dict[str, Any], output_format: str, options: TableOptions | None = None) -> str:
    """Render a result document in one of :data:`FORMATS`.

    Args:
        document: a result document.
        output_format: table, markdown, csv or json.
        options: ``--wide``/``--columns``/width for the table and markdown formats (``--columns`` picks CSV
            columns too); None fits the terminal.
    """
    if output_format == "json":
        return json.dumps(document, indent=1, default=str)
    headings, rows = table_rows(document)
    names = [column["name"] for column in document["columns"]]
    if output_format == "csv":
        indexes = list(range(len(names)))
        if options and options.columns:
            try:
                indexes = column_indexes(headings, options.columns, names)
            except ValueError as exc:
                raise UsageError(f"--columns: {exc}") from None
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow([names[index] for index in indexes])
        writer.writerows([[row[index] for index in indexes] for row in rows])
        return buffer.getvalue().rstrip("\n")
    table = results_table(document, "github" if output_format == "markdown" else "simple", options)
    note = document.get("note")
    return "\n\n".join([table, "\n".join(summary_lines(document)), *([note] if note else [])])


def results_table(document: dict[str, Any], table_format: str, options: TableOptions | None = None) -> str:
    """The summary table of a result, fitted (key columns repeated if it is split), with its notes under it."""
    headings, rows = table_rows(document)
    names = [column["name"] for column in document["columns"]]
    keys = [index for index, column in enumerate(document["columns"]) if column.get("key")] or [0]
    notes = [names.index("note")] if "note" in names else None
    return show_table(headings, rows, options, table_format=table_format, names=names, key_columns=keys,
                      note_columns=notes)


def render_markdown(document: dict[str, Any]) -> str:
    """The Markdown file saved beside each JSON result."""
    scenario = document["scenario"]
    experiment = document["experiment"]
    environment = document["environment"]
    lines = [f"# {scenario['name']}: {experiment['summary']}", ""]
    if scenario.get("description"):
        lines += [scenario["description"], ""]
    lines += [
        f"Started {document['started']}, {document['completed_runs']} of {document['total_runs']} runs, "
        f"repeat {scenario['repeat']}, seed {scenario['seed']}, run timeout {scenario['timeout']:g} s, "
        f"from `{scenario['path']}`"
        + (f" with `--network {scenario['network_override']}`." if scenario.get("network_override") else "."),
        "",
    ]
    if document.get("note"):
        lines += [f"**Note: {document['note']}.**", ""]
    lines += ["## Results", "", results_table(document, "github", MARKDOWN_TABLE), ""]
    lines += [" ".join(summary_lines(document)), ""]
    if experiment.get("method"):
        lines += ["## Method", "", experiment["method"].strip(), ""]
    lines += describe_network(document.get("network") or {"kind": "loopback"})
    lines += [
        "## Environment",
        "",
        f"{environment['kernel']} ({environment['machine']}), {environment['python']}, netlab {environment['netlab']}, "
        f"{environment['cpu_count']} CPUs. On this kernel {describe_syn_retries(environment['sysctls'])}.",
        "",
        show_table(["sysctl", "value"], sorted([name, "" if value is None else str(value)]
                                               for name, value in environment["sysctls"].items()),
                   MARKDOWN_TABLE, table_format="github"),
        "",
    ]
    return "\n".join(lines)


def network_parts(network: dict[str, Any]) -> tuple[str, list[tuple[str, list[str], list[list[str]]]]]:
    """What a result says about its network: one sentence, then ``(caption, headings, rows)`` tables.

    Loopback has the sentence alone; namespaces add the link settings per direction and the wire's counters.
    """
    if network.get("kind") == "target":
        return (f"Remote target {network.get('url', '?')}: a netlab serve on another host, spoken to in the "
                f"{network.get('framing', '?')} framing (token: {network.get('token', '?')}); nothing was started "
                f"for the server here. Kernel facts recorded: {network.get('kernel_facts', '?')}.", [])
    if network.get("kind") != "namespaces":
        return "Loopback (127.0.0.1 / ::1, UNIX paths in a temp directory).", []
    sentence = (f"Network namespaces (run id {network.get('run_id', '?')}): server and client joined through a "
                f"router namespace. Impairments applied by: **{network.get('mechanism', '?')}** "
                f"(netem available: {format_value(network.get('netem_available'))}). "
                f"Offloads: {network.get('offloads', '?')}.")
    rows = []
    for direction in ("to_server", "to_client"):
        link = network.get(direction) or {}
        rows.append([direction, *(format_value(link.get(name)) for name in LINK_KEYS)])
    tables = [("", ["direction", *LINK_KEYS], rows)]
    wire = network.get("wire")
    if wire:
        names = list(next(iter(wire.values())) or {})
        counts = [[direction, *(format_value((values or {}).get(name)) for name in names)]
                  for direction, values in wire.items()]
        tables.append(("Frames the wire handled (whole scenario):", ["direction", *names], counts))
    return sentence, tables


def describe_network(network: dict[str, Any]) -> list[str]:
    """The Markdown "Network" section: loopback, or the namespaced link, its mechanism and the wire's counters."""
    sentence, tables = network_parts(network)
    lines = ["## Network", "", sentence, ""]
    for caption, headings, rows in tables:
        lines += [caption, ""] if caption else []
        lines += [show_table(headings, rows, MARKDOWN_TABLE, table_format="github"), ""]
    return lines


def render_comparison(comparison: Comparison, first: str, second: str, output_format: str,
                      options: TableOptions | None = None) -> str:
    """Render a :class:`netlab.scenario.compare.Comparison`: the paired values, then the summary."""
    if output_format == "json":
        return json.dumps({"entries": comparison.entries, "only_in_a": comparison.only_first,
                           "only_in_b": comparison.only_second, "summary": comparison.summary()}, indent=1)
    rows = []
    for entry in comparison.entries:
        change = "" if entry["change"] is None else f"{entry['change']:.2f}x"
        rows.append([entry["row"], entry["column"], format_value(entry["a"]), format_value(entry["b"]), change,
                     entry["verdict"]])
    headings = ["row", "column", f"A: {first}", f"B: {second}", "B/A", "verdict"]
    if output_format == "csv":
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows([headings, *rows])
        return buffer.getvalue().rstrip("\n")
    lines = [show_table(headings, rows, options, table_format="github" if output_format == "markdown" else "simple",
                        key_columns=(0, 1)), ""]
    for name, labels in (("A", comparison.only_first), ("B", comparison.only_second)):
        if labels:
            shown = ", ".join(labels[:5]) + (f" and {len(labels) - 5} more" if len(labels) > 5 else "")
            lines.append(f"only in {name}: {shown}")
    lines.append(comparison.summary())
    return "\n".join(lines)


#: The columns of ``netlab results list``.
LIST_HEADINGS = ("file", "experiment", "started", "cells", "failed", "incomplete", "skipped", "tag", "note")


def render_result_list(entries: list[dict[str, Any]], output_format: str, options: TableOptions | None = None) -> str:
    """``netlab results list``: one line per saved run (see :func:`~netlab.scenario.results.list_results`)."""
    if output_format == "json":
        return json.dumps(entries, indent=1)
    rows = [[os.path.basename(entry["file"]), entry.get("experiment", ""), entry.get("started", ""),
             *(str(entry[key]) if key in entry else "" for key in ("cells", "failed", "incomplete", "skipped")),
             entry.get("tag", ""), entry.get("problem") or ("interrupted" if entry.get("interrupted") else "")]
            for entry in entries]
    if output_format == "csv":
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows([LIST_HEADINGS, *rows])
        return buffer.getvalue().rstrip("\n")
    if not rows:
        return "no results here"
    return show_table(LIST_HEADINGS, rows, options, table_format="github" if output_format == "markdown" else "simple")
