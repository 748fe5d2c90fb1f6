"""One self-contained HTML page for a result: tables, charts, parameters, environment, notes.

How this works: :func:`render_report` reads only the saved document (and the
experiment's chart declarations) and returns a single HTML page that needs
nothing else: the CSS is inline, every chart is inline SVG, there is no script
and no link to fetch, so the file opens offline and can be mailed. Long notes
leave the results table as numbered footnotes under it, as in the terminal.
Every text is escaped.
"""

from __future__ import annotations

import html
import os
from typing import Any

from netlab.scenario.render import network_parts, summary_lines, table_rows
from netlab.scenario.results import result_stem, write_atomically
from netlab.tables import FittedTable, move_notes

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 72rem; margin: 1.5rem auto; padding: 0 1rem; color: #222; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5rem 0; font-size: 0.85rem; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.45rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
.note { background: #fff4d6; padding: 0.4rem 0.6rem; }
figure { margin: 1rem 0; } figure svg { max-width: 100%; height: auto; }
figcaption { font-size: 0.85rem; color: #555; }
ol.footnotes { font-size: 0.85rem; color: #333; }
pre.method { white-space: pre-wrap; font-family: inherit; }
footer { margin-top: 2rem; font-size: 0.8rem; color: #666; }
"""


def render_report(document: dict[str, Any], source: str = "") -> str:
    """The HTML page of a result document.

    Args:
        document: a loaded result (see :func:`netlab.scenario.results.load_document`).
        source: the JSON file's name, shown in the footer.
    """
    scenario = document["scenario"]
    experiment = document["experiment"]
    title = f"{scenario['name']}: {experiment['summary']}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>netlab {_text(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{_text(title)}</h1>",
    ]
    if scenario.get("description"):
        parts.append(f'<p class="description">{_text(scenario["description"])}</p>')
    parts.append(
        f'<p class="run">Started {_text(document["started"])}, {document["completed_runs"]} of '
        f'{document["total_runs"]} runs, repeat {scenario["repeat"]}, seed {scenario["seed"]}, run timeout '
        f'{scenario["timeout"]:g} s, from <code>{_text(scenario["path"])}</code>.</p>'
    )
    if document.get("note"):
        parts.append(f'<p class="note" id="document-note"><strong>Note: {_text(document["note"])}.</strong></p>')
    parts += _parameters(scenario)
    parts += _results(document)
    parts += _charts(document)
    if experiment.get("method"):
        parts += ["<h2>Method</h2>", f'<pre class="method">{_text(experiment["method"].strip())}</pre>']
    parts += _network(document)
    parts += _environment(document["environment"])
    parts.append(f"<footer>netlab {_text(str(document['environment'].get('netlab', '')))} result"
                 f"{' ' + _text(os.path.basename(source)) if source else ''}.</footer>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def report_path(document: dict[str, Any], json_path: str) -> str:
    """Where the report of ``json_path`` goes by default: beside it, ``<stem>.html``."""
    if json_path.endswith(".json"):
        return json_path[: -len(".json")] + ".html"
    stem = result_stem(document["scenario"]["name"], document["started"].replace("+00:00", "Z"))
    return os.path.join(os.path.dirname(os.path.abspath(json_path)), stem + ".html")


def write_report(document: dict[str, Any], json_path: str, out: str | None = None) -> str:
    """Write the report atomically (default beside the JSON); return its path.

    Raises:
        UsageError: the file cannot be written.
    """
    path = out or report_path(document, json_path)
    write_atomically(path, render_report(document, json_path))
    return path


def results_table(document: dict[str, Any]) -> FittedTable:
    """The result's summary table with its long notes moved to footnotes (width is not limited)."""
    headings, rows = table_rows(document)
    names = [column["name"] for column in document["columns"]]
    note_columns = [names.index("note")] if "note" in names else []
    table = FittedTable(headings, rows)
    move_notes(table, note_columns)
    return table


def _parameters(scenario: dict[str, Any]) -> list[str]:
    rows = [(name, _value(value), "fixed") for name, value in scenario.get("parameters", {}).items()]
    rows += [(name, ", ".join(_value(value) for value in values), "varied")
             for name, values in scenario.get("matrix", {}).items()]
    for extra in scenario.get("include", []) or []:
        rows.append(("include", ", ".join(f"{key}={_value(value)}" for key, value in extra.items()), "extra cell"))
    if not rows:
        return []
    return ["<h2>Parameters</h2>", _table(["parameter", "value", "how"], [list(row) for row in rows],
                                          table_id="parameters")]


def _results(document: dict[str, Any]) -> list[str]:
    table = results_table(document)
    parts = ["<h2>Results</h2>", _table(table.headings, table.rows, table_id="results", footnotes=True)]
    if table.footnotes:
        parts.append('<ol class="footnotes">')
        parts += [f'<li id="footnote-{number}" value="{number}">{_text(text)}</li>' for number, text in table.footnotes]
        parts.append("</ol>")
    parts += [f'<p class="summary">{_text(line)}</p>' for line in summary_lines(document)]
    return parts


def _network(document: dict[str, Any]) -> list[str]:
    sentence, tables = network_parts(document.get("network") or {"kind": "loopback"})
    parts = ["<h2>Network</h2>", f"<p>{_text(sentence).replace('**', '')}</p>"]
    for index, (caption, headings, rows) in enumerate(tables):
        if caption:
            parts.append(f"<p>{_text(caption)}</p>")
        parts.append(_table(headings, rows, table_id=f"network-{index + 1}"))
    return parts


def _charts(document: dict[str, Any]) -> list[str]:
    from netlab.errors import UsageError
    from netlab.scenario.plot import draw, result_charts

    try:
        charts = result_charts(document)
        drawn = [draw(data, "svg").decode() for data in charts]
    except UsageError as exc:  # an unknown experiment, or matplotlib missing: the page says so and goes on
        return ["<h2>Charts</h2>", f'<p class="note">No charts: {_text(str(exc))}</p>']
    if not charts:
        return []
    parts = ["<h2>Charts</h2>"]
    for data, svg in zip(charts, drawn):
        svg = svg[svg.index("<svg"):]  # drop the XML declaration and doctype: inline SVG needs neither
        caption = data.chart.title + (f" ({data.caption()})" if data.caption() else "")
        parts.append(f'<figure id="chart-{_text(data.chart.name)}">{svg}<figcaption>{_text(caption)}</figcaption>'
                     "</figure>")
    return parts


def _environment(environment: dict[str, Any]) -> list[str]:
    rows = [[key, _value(value)] for key, value in environment.items() if key != "sysctls"]
    sysctls = [[name, _value(value)] for name, value in sorted(environment.get("sysctls", {}).items())]
    parts = ["<h2>Environment</h2>", _table(["what", "value"], rows, table_id="environment")]
    if sysctls:
        parts.append(_table(["sysctl", "value"], sysctls, table_id="sysctls"))
    return parts


def _table(headings: list[str], rows: list[list[str]], table_id: str, footnotes: bool = False) -> str:
    head = "".join(f"<th>{_text(heading)}</th>" for heading in headings)
    body = []
    for row in rows:
        cells = []
        for cell in row:
            if footnotes and cell.startswith("[") and cell.endswith("]") and cell[1:-1].isdigit():
                number = cell[1:-1]
                cells.append(f'<td><sup><a href="#footnote-{number}">{number}</a></sup></td>')
            else:
                css = ' class="number"' if _numeric(cell) else ""
                cells.append(f"<td{css}>{_text(cell)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>' + "".join(body) + "</tbody></table>"


def _numeric(cell: str) -> bool:
    return bool(cell) and cell.split(" ")[0].replace(",", "").replace(".", "", 1).lstrip("-").isdigit()


def _value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return " ".join(str(item) for item in value)
    return str(value)


def _text(text: str) -> str:
    return html.escape(text, quote=True)

