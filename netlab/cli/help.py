"""``netlab help [TOPIC]``: the help of one command (``netlab help exec``), or of a topic (``units``)."""

from __future__ import annotations

import argparse

from netlab.errors import UsageError
from netlab.suggest import did_you_mean

#: Topics that are not commands, with their text.
TOPICS = {
    "units": "units",
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "help", help="show the help of a command (netlab help exec) or of a topic (netlab help units)",
        description="Show the help of one command, as `netlab COMMAND --help` does, or of a topic: units.")
    parser.add_argument("topic", nargs="*", metavar="TOPIC",
                        help="a command (serve, exec, results show...) or a topic (units); none: every command")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from netlab.cli.main import UNITS_HELP, build_parser
    from netlab.cli.parsers import subcommand_parsers

    parser = build_parser()
    if not args.topic:
        parser.print_help()
        return 0
    wanted = " ".join(args.topic)
    if wanted == "units":
        print(UNITS_HELP.replace("; ", "\n  ").replace("units: ", "units:\n  "))
        return 0
    commands = dict(subcommand_parsers(parser))
    if wanted not in commands:
        raise UsageError(f"no command or topic {wanted!r}{did_you_mean(wanted, [*commands, *TOPICS])}: "
                         f"try one of {', '.join([*(name for name in commands if ' ' not in name), *TOPICS])}")
    commands[wanted].print_help()
    return 0
