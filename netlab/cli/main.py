"""The ``netlab`` command: argument parsing and dispatch to one module per subcommand.

Each subcommand module offers ``add_parser(subparsers)`` and ``run(args) -> int``.
Only the chosen subcommand's module is imported (``netlab serve`` never loads
scapy); every module is imported for ``netlab --help`` or an unknown command.
Expected errors (every :class:`NetlabError`) print one line, ``netlab: ...``,
and exit with the error's code; Ctrl-C exits 130 without a traceback. A
subcommand module may set ``USAGE_EXIT_CODE`` (``exec`` uses 255, as ssh does,
so that a usage error is never mistaken for a remote status of 2).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

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


class NetlabArgumentParser(argparse.ArgumentParser):
    """An argument parser whose usage errors exit with ``usage_exit_code`` (2 unless a subcommand says)."""

    usage_exit_code = 2

    def error(self, message: str) -> NoReturn:
        """Print the usage and ``message``, then exit with :attr:`usage_exit_code`."""
        self.print_usage(sys.stderr)
        self.exit(self.usage_exit_code, f"{self.prog}: error: {message}\n")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser: the subcommand named in ``argv``, or all of them."""
    parser = NetlabArgumentParser(
        prog="netlab",
        description="A networking lab: one command service over TCP, UNIX and sequenced UDP, measured and explained.",
    )
    parser.add_argument("--version", action="version", version=f"netlab {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                       parser_class=NetlabArgumentParser)
    chosen = next((word for word in argv or () if not word.startswith("-")), None)
    module_name = f"netlab.cli.{chosen}"
    modules = (module_name,) if module_name in SUBCOMMAND_MODULES else SUBCOMMAND_MODULES
    for name in modules:
        module = importlib.import_module(name)
        module.add_parser(subparsers)
        if len(modules) == 1:  # an unknown option of the subcommand is reported by the top parser
            parser.usage_exit_code = getattr(module, "USAGE_EXIT_CODE", parser.usage_exit_code)
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
