"""Compare two saved results of one experiment: measured columns only, a summary, regressions.

How this works: rows are matched by their varied parameters and key columns
(or their position in the cell). Only measured columns are compared: a key
column or a column named like a parameter (``commands``, ``loss``) is what
the row *is*, not what it measured, so it gets no ratio. A column whose row
field declares ``better: "higher"`` or ``"lower"`` (field metadata, saved in
the result's ``columns``) can regress: B is worse than A by more than the
threshold in that direction. Columns without a direction are compared but
never called a regression. Two results of different experiments are refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from netlab.errors import UsageError

HIGHER, LOWER = "higher", "lower"


@dataclass
class Comparison:
    """The outcome of :func:`compare_documents`.

    Attributes:
        entries: one per (matched row, measured numeric column): ``row``, ``column``,
            ``a``, ``b``, ``change`` (B/A or None), ``better`` (higher/lower/None),
            ``verdict`` (better, worse, same, changed, or '' without a ratio).
        only_first: row labels found only in A.
        only_second: row labels found only in B.
        matched: how many rows were found in both.
        threshold: the percentage past which a change counts (0: any change).
    """

    entries: list[dict[str, Any]] = field(default_factory=list)
    only_first: list[str] = field(default_factory=list)
    only_second: list[str] = field(default_factory=list)
    matched: int = 0
    threshold: float = 0.0

    @property
    def regressions(self) -> list[dict[str, Any]]:
        """The entries where a column with a direction got worse past the threshold."""
        return [entry for entry in self.entries if entry["verdict"] == "worse"]

    def summary(self) -> str:
        """One line: rows matched and unmatched, and how the measured values moved."""
        verdicts = [entry["verdict"] for entry in self.entries]
        past = f" by more than {self.threshold:g}%" if self.threshold else ""
        parts = [f"{self.matched} rows matched"]
        if self.only_first or self.only_second:
            parts.append(f"{len(self.only_first)} only in A, {len(self.only_second)} only in B")
        parts.append(f"{len(verdicts)} measured values: {verdicts.count('worse')} worse{past}, "
                     f"{verdicts.count('better')} better{past}, {verdicts.count('changed')} changed{past} "
                     f"(no better direction declared), {verdicts.count('same')} within it")
        return "; ".join(parts) + "."


def compare_documents(first: dict[str, Any], second: dict[str, Any], threshold: float = 0.0) -> Comparison:
    """Match the rows of two results of one experiment and pair up their measured numbers.

    Args:
        first: the baseline result (A).
        second: the result compared with it (B).
        threshold: percent; a change smaller than this is "same".
    Raises:
        UsageError: the results are of different experiments.
    """
    name_a, name_b = first["experiment"].get("name"), second["experiment"].get("name")
    if name_a != name_b:
        raise UsageError(f"A is a {name_a} result and B a {name_b} result: compare two results of the same "
                         "experiment")
    columns = {column["name"]: column for column in first["columns"] + second["columns"]}
    fixed = _parameter_names(first) | _parameter_names(second)
    measured = [name for name, column in columns.items() if not column.get("key") and name not in fixed]
    first_rows, second_rows = _keyed_rows(first), _keyed_rows(second)
    comparison = Comparison(
        only_first=[key for key in first_rows if key not in second_rows],
        only_second=[key for key in second_rows if key not in first_rows],
        threshold=threshold,
    )
    for key, row_a in first_rows.items():
        row_b = second_rows.get(key)
        if row_b is None:
            continue
        comparison.matched += 1
        for name in measured:
            a, b = _central(row_a.get(name)), _central(row_b.get(name))
            if a is None or b is None:
                continue
            better = columns[name].get("better")
            change = b / a if a else None
            comparison.entries.append({"row": key, "column": columns[name]["heading"], "a": a, "b": b,
                                       "change": change, "better": better,
                                       "verdict": _verdict(a, b, better, threshold)})
    return comparison


def _verdict(a: float, b: float, better: str | None, threshold: float) -> str:
    if a == b:
        return "same"
    if a == 0:
        moved = True
    else:
        moved = abs(b - a) / abs(a) * 100 > threshold
    if not moved:
        return "same"
    if better not in (HIGHER, LOWER):
        return "changed"
    return "better" if (b > a) == (better == HIGHER) else "worse"


def _parameter_names(document: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for cell in document["summary"]:
        names.update(cell.get("parameters", {}))
        names.update(cell.get("varied", {}))
    return names


def _keyed_rows(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    key_columns = [column["name"] for column in document["columns"] if column.get("key")]
    keyed: dict[str, dict[str, Any]] = {}
    for cell in document["summary"]:
        label = " ".join(f"{key}={value}" for key, value in cell["varied"].items()) or "defaults"
        for position, row in enumerate(cell["rows"]):
            extra = " ".join(
                f"{name}={row[name]}" for name in key_columns if name in row and name not in cell["varied"]
            )
            keyed[f"{label} {extra}".strip() if extra else f"{label} #{position + 1}"] = row
    return keyed


def _central(value: Any) -> float | None:
    if isinstance(value, dict) and "median" in value:
        return float(value["median"])
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None
