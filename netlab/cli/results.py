"""``netlab results``: show a saved result again, or compare two side by side."""

from __future__ import annotations

import argparse

from netlab.scenario.render import FORMATS, render, render_comparison
from netlab.scenario.results import compare_documents, load_document


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("results", help="show or compare saved results",
                                   description="Re-render results/*.json files written by 'netlab run'.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = actions.add_parser("show", help="print a saved result as a table")
    show.add_argument("file", help="a results/*.json file")
    show.add_argument("--format", choices=FORMATS, default="table")
    show.set_defaults(handler=run_show)
    compare = actions.add_parser("compare", help="put two results side by side, matching rows by parameters")
    compare.add_argument("first", metavar="A", help="the baseline result (.json)")
    compare.add_argument("second", metavar="B", help="the result to compare with it (.json)")
    compare.add_argument("--format", choices=FORMATS, default="table")
    compare.set_defaults(handler=run_compare)


def run_show(args: argparse.Namespace) -> int:
    print(render(load_document(args.file), args.format))
    return 0


def run_compare(args: argparse.Namespace) -> int:
    first, second = load_document(args.first), load_document(args.second)
    entries = compare_documents(first, second)
    print(render_comparison(entries, args.first, args.second, args.format))
    return 0
