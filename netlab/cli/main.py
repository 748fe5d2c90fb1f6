"""The ``netlab`` command: argument parsing and dispatch to one module per subcommand.

Each subcommand module offers ``add_parser(subparsers)`` and ``run(args) -> int``.
Only the chosen subcommand's module is imported (``netlab serve`` never loads
scapy); every module is imported for ``netlab --help`` or an unknown command.
Expected errors (every :class:`NetlabError`) print one line, ``netlab: ...``,
and exit with the error's code; Ctrl-C exits 130 without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from netlab import __version__
from netlab.errors import NetlabError

SUBCOMMAND_MODULES = (
    "netlab.cli.serve",
    "netlab.cli.exec",
    "netlab.cli.shell",
    "netlab.cli.run",
    "netlab.cli.results",
    "netlab.cli.report",
    "netlab.cli.capture",
    "netlab.cli.walkthrough",
    "netlab.cli.bench",
    "netlab.cli.lab",
    "netlab.cli.dissector",
    "netlab.cli.token",
)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser: the subcommand named in ``argv``, or all of them."""
    parser = argparse.ArgumentParser(
        prog="netlab",
        description="A networking lab: one command service over TCP, UNIX and sequenced UDP, measured and explained.",
    )
    parser.add_argument("--version", action="version", version=f"netlab {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = next((word for word in argv or () if not word.startswith("-")), None)
    module_name = f"netlab.cli.{chosen}"
    modules = (module_name,) if module_name in SUBCOMMAND_MODULES else SUBCOMMAND_MODULES
    for name in modules:
        importlib.import_module(name).add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except NetlabError as exc:
        print(f"netlab: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("netlab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 141


if __name__ == "__main__":
    raise SystemExit(main())
