"""``netlab results``: show a saved result again, or compare two side by side."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from netlab.cli.common import add_format_option, add_table_options, table_options
from netlab.scenario.compare import compare_documents
from netlab.scenario.render import FORMATS, render, render_comparison, render_result_list
from netlab.scenario.results import list_results, load_document
from netlab.units import percent_argument

EXIT_REGRESSED = 1


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("results", help="list, show, compare or plot saved results",
                                   description="Re-render results/*.json files written by 'netlab run'.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = actions.add_parser("show", help="print a saved result as a table")
    show.add_argument("file", help="a results/*.json file")
    add_format_option(show, FORMATS, "the result")
    add_table_options(show)
    show.set_defaults(handler=run_show)
    compare = actions.add_parser(
        "compare", help="put two results of one experiment side by side, matching rows by parameters",
        description="Pair the measured columns of two results of the same experiment (parameter and key columns "
                    "are what a row is and get no ratio), then print a summary. Exit 1 when --threshold is given "
                    "and a measured column with a better direction got worse by more than it; exit 2 when the "
                    "results are of different experiments.")
    compare.add_argument("first", metavar="A", help="the baseline result (.json)")
    compare.add_argument("second", metavar="B", help="the result to compare with it (.json)")
    add_format_option(compare, FORMATS, "the comparison")
    compare.add_argument("--threshold", type=percent_argument(), default=None, metavar="PCT",
                         help="exit 1 when a measured column got worse by more than PCT percent (for CI)")
    add_table_options(compare)
    compare.set_defaults(handler=run_compare)
    listing = actions.add_parser("list", help="one line per saved run: experiment, time, cells, failures, tag",
                                 description="List the results 'netlab run' saved in DIR, oldest first: the "
                                             "experiment, when it started, how many cells failed, were "
                                             "incomplete or skipped, and its --tag. A .json that is not a "
                                             "result is listed with the reason.")
    listing.add_argument("directory", nargs="?", default="results", metavar="DIR",
                         help="where the results are (default results)")
    add_format_option(listing, FORMATS, "the list")
    add_table_options(listing)
    listing.set_defaults(handler=run_list)
    plot = actions.add_parser("plot", help="draw the charts the result's experiment declares (PNG and SVG)",
                              description="Draw each chart the experiment declares as <result>-<chart>.png and "
                                          ".svg (matplotlib, no display needed).")
    plot.add_argument("file", help="a results/*.json file, or what 'netlab bench --json' printed")
    plot.add_argument("--out", metavar="DIR", default=None, help="where the images go (default: beside FILE)")
    plot.set_defaults(handler=run_plot)


def run_list(args: argparse.Namespace) -> int:
    print(render_result_list(list_results(args.directory), args.format, table_options(args)))
    return 0


def run_show(args: argparse.Namespace) -> int:
    print(render(load_document(args.file), args.format, table_options(args)))
    return 0


def run_compare(args: argparse.Namespace) -> int:
    first, second = load_document(args.first), load_document(args.second)
    comparison = compare_documents(first, second, args.threshold or 0.0)
    print(render_comparison(comparison, args.first, args.second, args.format, table_options(args)))
    regressions = comparison.regressions
    if args.threshold is not None and regressions:
        worst = max(regressions, key=lambda entry: abs((entry["change"] or 0) - 1))
        print(f"netlab: {len(regressions)} measured values regressed by more than {args.threshold:g}% "
              f"(e.g. {worst['column']} of {worst['row']}: {worst['a']:g} -> {worst['b']:g})", file=sys.stderr)
        return EXIT_REGRESSED
    return 0


def run_plot(args: argparse.Namespace) -> int:
    from netlab.scenario.plot import write_charts

    document = _chartable(args.file)
    stem = os.path.basename(args.file).removesuffix(".json")
    paths = write_charts(document, args.out or os.path.dirname(os.path.abspath(args.file)), stem)
    for path in paths:
        print(path)
    count = len(paths) // 2
    print(f"netlab: {count} chart{'' if count == 1 else 's'} written as PNG and SVG", file=sys.stderr)
    return 0


def _chartable(path: str) -> dict[str, Any]:
    """A saved result, or the output of ``netlab bench --json`` made chartable."""
    from netlab.scenario.bench_charts import bench_document, is_bench_output

    try:
        with open(path, encoding="utf-8") as stream:
            data = json.load(stream)
    except (OSError, ValueError):
        data = None  # load_document says what is wrong with it
    if is_bench_output(data):
        return bench_document(data)
    return load_document(path)
