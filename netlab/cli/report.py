"""``netlab report``: one self-contained HTML page of a saved result (tables, charts, environment)."""

from __future__ import annotations

import argparse
import sys

from netlab.scenario.report import write_report
from netlab.scenario.results import load_document


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report", help="write one self-contained HTML page of a saved result",
        description="Write an HTML page (tables, charts inline, parameters, environment, notes) that opens "
                    "offline, beside the JSON as <result>.html unless --out says otherwise.")
    parser.add_argument("file", help="a results/*.json file written by 'netlab run'")
    parser.add_argument("--out", metavar="FILE", default=None, help="where the page goes (default: beside FILE)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    document = load_document(args.file)
    path = write_report(document, args.file, args.out)
    print(path)
    print(f"netlab: report written to {path}", file=sys.stderr)
    return 0
