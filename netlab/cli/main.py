"""The ``netlab`` command: argument parsing and dispatch to one module per subcommand.

Each subcommand module offers ``add_parser(subparsers)`` and ``run(args) -> int``.
Only the chosen subcommand's module is imported (``netlab serve`` never loads
scapy); every module is imported for ``netlab --help`` or an unknown command.
Expected errors (every :class:`NetlabError`) print one line, ``netlab: ...``,
and exit with the error's code; Ctrl-C exits 130 without a traceback. A
subcommand module may set ``USAGE_EXIT_CODE`` (``exec`` uses 255, as ssh does,
so that a usage error is never mistaken for a remote status of 2).

Every subcommand's ``--help`` shows each option's default (:class:`DefaultsShown`)
and, when it takes sizes or durations, the accepted forms; an unknown option
prints that subcommand's usage, not the top-level one.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from netlab import __version__
from netlab.cli.parsers import subcommand_parsers
from netlab.errors import NetlabError
from netlab.suggest import did_you_mean
from netlab.units import DURATION_FORMS, PERCENT_FORMS, SIZE_FORMS

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
    "netlab.cli.schema",
    "netlab.cli.completion",
    "netlab.cli.config",
    "netlab.cli.help",
)

#: The commands whose defaults the config file may set (see :mod:`netlab.cli.config`).
CONFIGURED_COMMANDS = ("serve", "exec", "shell")

#: The units every size, duration and percentage option and scenario key accepts.
UNITS_HELP = (f"units: sizes are {SIZE_FORMS}; durations are {DURATION_FORMS}; "
              f"percentages are {PERCENT_FORMS}")


class NetlabArgumentParser(argparse.ArgumentParser):
    """An argument parser whose usage errors exit with ``usage_exit_code`` (2 unless a subcommand says).

    A subcommand's parser reports an unknown option itself, with its own usage.
    """

    usage_exit_code = 2
    is_subcommand = True

    def error(self, message: str) -> NoReturn:
        """Print the usage and ``message``, then exit with :attr:`usage_exit_code`."""
        self.print_usage(sys.stderr)
        self.exit(self.usage_exit_code, f"{self.prog}: error: {message}{_did_you_mean(self, message)}\n")

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        """Parse; a subcommand with arguments left over shows its own usage and exits."""
        parsed, extras = super().parse_known_args(args, namespace)
        if extras and self.is_subcommand:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras


class DefaultsShown(argparse.HelpFormatter):
    """Appends ``(default: X)`` to an option's help unless it already names its default.

    Flags (``store_true``) and options whose default is None or empty say
    nothing more: their help says what happens without them.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (not action.option_strings or action.nargs == 0 or default in (None, [], "", argparse.SUPPRESS)
                or "default" in text.lower()):
            return action.help
        shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


def _did_you_mean(parser: argparse.ArgumentParser, message: str) -> str:
    """``; did you mean 'exec'?`` for an invalid choice close to a valid one."""
    if "invalid choice: " not in message:
        return ""
    wrong = message.split("invalid choice: ", 1)[1].split(" (", 1)[0].strip("'")
    choices = [choice for action in parser._actions for choice in (action.choices or ())]
    return did_you_mean(wrong, [str(choice) for choice in choices])


def _finish(parser: argparse.ArgumentParser) -> None:
    """Show defaults in every subcommand's help, and the unit forms where it takes units."""
    for _name, child in subcommand_parsers(parser):
        base: Any = child.formatter_class
        if not issubclass(base, DefaultsShown):
            child.formatter_class = type(f"Defaults{base.__name__}", (DefaultsShown, base), {})  # type: ignore[assignment]
        if any(getattr(action, "metavar", None) in ("S", "SIZE", "SPEC", "PCT") for action in child._actions):
            child.epilog = f"{child.epilog}\n{UNITS_HELP}" if child.epilog else UNITS_HELP


def _chosen(argv: Sequence[str] | None) -> str | None:
    """The subcommand named in ``argv`` (its first word that is not an option)."""
    return next((word for word in argv or () if not word.startswith("-")), None)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser: the subcommand named in ``argv``, or all of them."""
    parser = NetlabArgumentParser(
        prog="netlab",
        description="A networking lab: one command service over TCP, UNIX and sequenced UDP, measured and explained.",
        epilog="`netlab help COMMAND` or `netlab COMMAND --help` for one command; `netlab help units` for the "
               "forms of sizes, durations and percentages.",
    )
    parser.is_subcommand = False
    parser.add_argument("-V", "--version", action="version", version=f"netlab {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                       parser_class=NetlabArgumentParser)
    module_name = f"netlab.cli.{_chosen(argv)}"
    modules = (module_name,) if module_name in SUBCOMMAND_MODULES else SUBCOMMAND_MODULES
    for name in modules:
        module = importlib.import_module(name)
        module.add_parser(subparsers)
        if len(modules) == 1:  # an unknown option of the subcommand is reported by the top parser
            parser.usage_exit_code = getattr(module, "USAGE_EXIT_CODE", parser.usage_exit_code)
    _finish(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(argv)
    if _chosen(argv) in CONFIGURED_COMMANDS:
        from netlab.cli.config import apply_config, load_config

        try:
            apply_config(parser, load_config())
        except NetlabError as exc:  # a broken config file is a usage error of this command (exec: 255)
            print(f"netlab: {exc}", file=sys.stderr)
            code = getattr(parser, "usage_exit_code", 2)
            return code if code != 2 else exc.exit_code
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
