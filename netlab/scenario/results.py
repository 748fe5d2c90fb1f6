"""Result documents: build them from a scenario run, save them atomically, load and compare them.

How this works: a result is one JSON document holding the scenario as run,
the environment, every run's raw rows (the samples) and one summary row per
(cell, row position): a number measured over several repeats becomes
``{"median", "min", "max", "n"}``; a label that differs between repeats lists
its values. Files are written next to each other as ``<name>-<UTC>.json`` and
``.md``, each through a temporary file in the same directory and
``os.replace``, so a reader never sees half a file and a failure leaves none.
Rendering lives in :mod:`netlab.scenario.render`, comparing in
:mod:`netlab.scenario.compare`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import tempfile
from collections.abc import Callable
from typing import Any

from netlab.errors import UsageError
from netlab.files import atomic_file, remove_quietly
from netlab.scenario.bench_charts import is_bench_output
from netlab.scenario.matrix import seed_sharing_parameters
from netlab.scenario.runner import STATUS_FAILED, STATUS_INCOMPLETE, STATUS_OK, STATUS_SKIPPED, ScenarioRun

RESULT_FORMAT = "netlab-result/1"
#: The keys rendering and comparing read, and the type each must have.
_DOCUMENT_KEYS: dict[str, type | tuple[type, ...]] = {
    "scenario": dict, "experiment": dict, "columns": list, "started": str, "environment": dict,
    "total_runs": int, "completed_runs": int, "note": str, "summary": list,
}


def build_document(scenario_run: ScenarioRun, environment: dict[str, Any], tag: str = "") -> dict[str, Any]:
    """Return the JSON-ready result document of a (possibly interrupted) scenario run.

    ``tag`` is the user's label for the run (``netlab run --tag``), kept as is.
    """
    scenario = scenario_run.scenario
    experiment = scenario.experiment
    runs = []
    for outcome in scenario_run.outcomes:
        runs.append({
            "index": outcome.run.index,
            "cell": outcome.run.cell.index,
            "repeat": outcome.run.repeat,
            "seed": outcome.run.seed,
            "parameters": outcome.run.cell.parameters,
            "varied": outcome.run.cell.varied,
            "status": outcome.status,
            "message": outcome.message,
            "duration_s": round(outcome.duration, 6),
            "rows": outcome.rows,
        })
    done, total = len(scenario_run.outcomes), scenario_run.total_runs
    return {
        "format": RESULT_FORMAT,
        "scenario": scenario.as_dict(),
        "experiment": {"name": experiment.name, "summary": experiment.summary, "method": experiment.method},
        "columns": row_columns(experiment.row_type),
        "started": scenario_run.started.isoformat(timespec="seconds"),
        "finished": scenario_run.finished.isoformat(timespec="seconds"),
        "tag": tag,
        "environment": environment,
        "network": scenario_run.network,
        "total_runs": total,
        "completed_runs": done,
        "interrupted": scenario_run.interrupted,
        "note": f"interrupted after {done} of {total} runs" if scenario_run.interrupted else "",
        "shared_seed": list(seed_sharing_parameters(scenario)),
        "runs": runs,
        "summary": summarize(runs),
    }


def list_results(directory: str) -> list[dict[str, Any]]:
    """One entry per ``*.json`` in ``directory``, oldest first: file, experiment, started, tag and the cell counts
    (files that are not results last).

    A file that is not a netlab result is listed with ``problem`` saying why, not skipped silently.

    Raises:
        UsageError: the directory does not exist or cannot be read.
    """
    try:
        names = sorted(name for name in os.listdir(directory) if name.endswith(".json"))
    except OSError as exc:
        raise UsageError(f"cannot list {directory}: {exc.strerror}; give the directory 'netlab run --out' "
                         "wrote to (default results/)") from None
    entries: list[dict[str, Any]] = []
    for name in names:
        path = os.path.join(directory, name)
        try:
            document = load_document(path)
        except UsageError as exc:
            entries.append({"file": path, "problem": str(exc).removeprefix(f"{path}: ")})
            continue
        entries.append({"file": path, "experiment": document["experiment"]["name"],
                        "started": str(document["started"]).replace("+00:00", "Z"), "tag": document.get("tag", ""),
                        "interrupted": document["interrupted"], **count_cells(document)})
    return sorted(entries, key=lambda entry: ("problem" in entry, entry.get("started", ""), entry["file"]))


def count_cells(document: dict[str, Any]) -> dict[str, int]:
    """How many cells had each outcome: ``cells``, ``incomplete``, ``failed``, ``skipped``.

    A cell counts as incomplete (or failed, skipped) when any of its runs was.
    """
    counts = {"cells": 0, STATUS_INCOMPLETE: 0, STATUS_FAILED: 0, STATUS_SKIPPED: 0}
    for cell in document["summary"]:
        counts["cells"] += 1
        for status in (STATUS_INCOMPLETE, STATUS_FAILED, STATUS_SKIPPED):
            counts[status] += status in cell["status"].split("/")
    return counts


def row_columns(row_type: type) -> list[dict[str, Any]]:
    """The columns of an experiment's row dataclass: ``{"name", "heading", "key", "better"}`` each, in order.

    A field with ``metadata={"hidden": True}`` is no column: its values stay in the saved rows only.
    """
    return [
        {
            "name": f.name,
            "heading": f.metadata.get("heading", f.name.replace("_", " ")),
            "key": bool(f.metadata.get("key", False)),
            "better": f.metadata.get("better"),
        }
        for f in dataclasses.fields(row_type)
        if not f.metadata.get("hidden")  # kept in the JSON rows, not a table column (e.g. a trace)
    ]


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per cell (in run order): its status, and its rows summarized over repeats."""
    cells: dict[int, list[dict[str, Any]]] = {}
    for run in runs:
        cells.setdefault(run["cell"], []).append(run)
    summary = []
    for cell_index, cell_runs in cells.items():
        ok_runs = [run for run in cell_runs if run["status"] == STATUS_OK]
        measured_runs = [run for run in cell_runs if run["status"] in (STATUS_OK, STATUS_INCOMPLETE)]
        messages = sorted({run["message"] for run in cell_runs if run["status"] != STATUS_OK})
        statuses = {run["status"] for run in cell_runs}
        status = STATUS_OK if statuses == {STATUS_OK} else "/".join(sorted(statuses))
        rows = []
        positions = max((len(run["rows"]) for run in measured_runs), default=0)
        for position in range(positions):
            samples = [run["rows"][position] for run in measured_runs if position < len(run["rows"])]
            rows.append(_summarize_rows(samples))
        summary.append({
            "cell": cell_index,
            "varied": cell_runs[0]["varied"],
            "parameters": cell_runs[0]["parameters"],
            "status": status,
            "runs": len(cell_runs),
            "ok_runs": len(ok_runs),
            "incomplete_runs": len(measured_runs) - len(ok_runs),
            "messages": messages,
            "rows": rows,
        })
    return summary


def _summarize_rows(samples: list[dict[str, Any]]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name in samples[0]:
        values: list[Any] = [sample.get(name) for sample in samples]
        if len(values) > 1 and all(_is_number(value) for value in values):
            row[name] = {
                "median": statistics.median(values),
                "min": min(values),
                "max": max(values),
                "n": len(values),
            }
        else:
            distinct = dict.fromkeys(json.dumps(value, sort_keys=True, default=str) for value in values)
            row[name] = values[0] if len(distinct) == 1 else " / ".join(dict.fromkeys(str(value) for value in values))
    return row


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def result_stem(name: str, started_iso: str) -> str:
    """``backlog-20250301T101500Z`` from the scenario name and its start time."""
    compact = started_iso.replace("-", "").replace(":", "").replace("+0000", "Z")
    return f"{name}-{compact}"


def save_document(document: dict[str, Any], directory: str, render_markdown: Callable[[dict[str, Any]], str]) -> str:
    """Write ``<stem>.json`` and ``<stem>.md`` atomically in ``directory``.

    Args:
        document: from :func:`build_document`.
        directory: created if missing.
        render_markdown: turns the document into the Markdown text.
    Returns:
        The path of the JSON file.
    Raises:
        UsageError: the directory cannot be created or written.
    """
    prepare_directory(directory)
    stem = result_stem(document["scenario"]["name"], document["started"].replace("+00:00", "Z"))
    base = os.path.join(directory, stem)
    suffix = 1
    while os.path.exists(base + ".json") or os.path.exists(base + ".md"):
        suffix += 1
        base = os.path.join(directory, f"{stem}-{suffix}")
    json_text = json.dumps(document, indent=1, sort_keys=False, default=str) + "\n"
    markdown_text = render_markdown(document)
    write_atomically(base + ".json", json_text)
    try:
        write_atomically(base + ".md", markdown_text)
    except BaseException:
        remove_quietly(base + ".json")  # a result is both files or neither
        raise
    return base + ".json"


def prepare_directory(directory: str) -> None:
    """Create ``directory`` if missing and check that a file can be written in it.

    Raises:
        UsageError: it cannot be created or written.
    """
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise UsageError(
            f"cannot create the results directory {directory}: {exc.strerror}; pick another --out"
        ) from None
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise UsageError(f"cannot write results in {directory}: {exc.strerror}; pick another --out") from None


def write_atomically(path: str, text: str | bytes) -> None:
    """Write ``text`` (or bytes: an image) to ``path`` via a temp file in the same directory and ``os.replace``.

    Raises:
        UsageError: the directory is not writable or the write failed (nothing is left behind).
    """
    try:
        with atomic_file(path) as stream:
            stream.write(text.encode() if isinstance(text, str) else text)
    except OSError as exc:  # a full disk, say
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}; pick another --out") from None


def load_document(path: str) -> dict[str, Any]:
    """Read a saved result.

    Raises:
        UsageError: missing file, not JSON, or not a netlab result.
    """
    try:
        with open(path, encoding="utf-8") as stream:
            document = json.load(stream)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file: give a results/*.json file written by 'netlab run'") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a text file: give a results/*.json file written by 'netlab run'") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it ({exc.strerror or exc}): give a results/*.json file written by "
                         "'netlab run'") from None
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{path}: line {exc.lineno}: not valid JSON ({exc.msg}): give the .json result, not the .md"
        ) from None
    if is_bench_output(document):
        raise UsageError(f"{path}: a netlab bench --json file, not a result of netlab run: 'netlab results plot' "
                         "draws it")
    if not isinstance(document, dict) or document.get("format") != RESULT_FORMAT:
        raise UsageError(f"{path}: not a netlab result file (expected format {RESULT_FORMAT})")
    missing = [key for key, kind in _DOCUMENT_KEYS.items() if not isinstance(document.get(key), kind)]
    if missing:
        raise UsageError(f"{path}: a damaged netlab result ({', '.join(missing)} missing or malformed): run it again")
    return document

