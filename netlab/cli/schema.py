"""``netlab schema``: the JSON Schema of scenario files, for editors with a YAML language server."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "schema", help="print the JSON Schema of scenario files (for editor completion and checks)",
        description="Print a JSON Schema of scenario files, generated from the experiments' parameters. "
                    "Save it (e.g. as scenarios/netlab-scenario.schema.json) and start a scenario with "
                    "'# yaml-language-server: $schema=netlab-scenario.schema.json' so an editor completes "
                    "and checks its keys.")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from netlab.scenario.describe import scenario_schema

    print(json.dumps(scenario_schema(), indent=1))
    return 0
