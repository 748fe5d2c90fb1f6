"""``netlab walkthrough NAME``: run a guided capture and explain it step by step.

Each walkthrough runs a real experiment on loopback (or over a UNIX socket),
prints every packet or call with a one-line explanation, and says where its
pcap files are (a fresh temporary directory unless ``--pcap DIR``).
``--all --markdown DIR`` regenerates the lessons in ``docs/walkthroughs``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

from netlab.cli.common import add_format_option, add_table_options, table_options
from netlab.cli.progress import Progress
from netlab.errors import UsageError
from netlab.inspect.ladder import ladder_svg, ladder_text
from netlab.inspect.quiz import questions
from netlab.inspect.render import FORMATS, walkthrough_csv, walkthrough_data, walkthrough_markdown, walkthrough_text
from netlab.inspect.walkthroughs import WALKTHROUGHS, Walkthrough, run_walkthrough
from netlab.scenario.results import write_atomically
from netlab.tables import TableOptions, terminal_width

#: ``--quiz``: some answer did not match the run.
EXIT_WRONG_ANSWER = 1


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "walkthrough", help="run a guided capture and explain each packet",
        description="Run a real experiment under capture and explain it packet by packet. "
                    f"Walkthroughs: {', '.join(WALKTHROUGHS)}.")
    parser.add_argument("name", nargs="?", choices=tuple(WALKTHROUGHS), metavar="NAME",
                        help=f"one of: {', '.join(WALKTHROUGHS)}")
    parser.add_argument("--all", action="store_true", help="run every walkthrough in turn")
    parser.add_argument("--list", action="store_true", help="list the walkthroughs and exit")
    parser.add_argument("--pcap", metavar="DIR", help="keep the captures in DIR (default: a new temporary directory)")
    parser.add_argument("--markdown", metavar="DIR", help="write each walkthrough as DIR/NAME.md instead of printing")
    add_format_option(parser, FORMATS, "each walkthrough (csv: each section's steps, a blank line between sections)")
    add_table_options(parser)
    parser.add_argument("--quiz", action="store_true",
                        help="after the walkthrough, ask its questions (answers come from this run) and check the "
                             "answers; exit 1 if any is wrong")
    parser.add_argument("--ladder", action="store_true",
                        help="also draw each capture as a ladder diagram (text here, SVG beside the pcap)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.list:
        width = max(map(len, WALKTHROUGHS))
        for name, function in WALKTHROUGHS.items():
            print(f"{name:{width}}  {((function.__doc__ or '').strip().splitlines() or [''])[0]}".rstrip())
        return 0
    if bool(args.name) == bool(args.all):
        raise UsageError("name one walkthrough or give --all (see --list)")
    names = list(WALKTHROUGHS) if args.all else [args.name]
    options = table_options(args)
    if options.columns:
        raise UsageError("walkthrough tables keep all their columns (each row is explained); use --wide to "
                         "see them whole")
    if args.quiz and args.markdown:
        raise UsageError("--quiz asks questions on the terminal; --markdown writes the lessons (with the answers "
                         "folded): give one of them")
    for directory in filter(None, (args.pcap, args.markdown)):
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create {directory}: {exc.strerror}; choose a writable directory") from None
    pcap_dir = args.pcap or tempfile.mkdtemp(prefix="netlab-walkthrough-")
    wrong = False
    try:
        progress = Progress(len(names) if len(names) > 1 else 0)  # --all: which one, how long, how much left
        for done, name in enumerate(names):
            progress.update(done, name)
            walkthrough = run_walkthrough(name, pcap_dir)
            progress.finish()
            if args.markdown:
                path = os.path.join(args.markdown, f"{name}.md")
                with open(path, "w", encoding="utf-8") as file:
                    file.write(walkthrough_markdown(walkthrough))
                print(f"netlab: wrote {path}", file=sys.stderr)
            else:
                print(_show(walkthrough, args.format, options), flush=True)
            if args.ladder:
                _ladders(walkthrough, pcap_dir, options)
            if args.quiz and not ask(walkthrough):
                wrong = True
    finally:
        if not args.pcap:
            _remove_if_empty(pcap_dir)  # a walkthrough without packets (UNIX sockets) leaves no empty directory
    return EXIT_WRONG_ANSWER if wrong else 0


def _show(walkthrough: Walkthrough, output_format: str, options: TableOptions) -> str:
    """The walkthrough as --format asks: text with tables, Markdown, CSV of its steps, or JSON."""
    if output_format == "markdown":
        return walkthrough_markdown(walkthrough)
    if output_format == "csv":
        return walkthrough_csv(walkthrough)
    if output_format == "json":
        return json.dumps(walkthrough_data(walkthrough), indent=1)
    return walkthrough_text(walkthrough, options)


def ask(walkthrough: Walkthrough) -> bool:
    """Ask the walkthrough's questions on stdin/stdout; True when every answer was right.

    Raises:
        UsageError: standard input ended before every question was answered.
    """
    asked = questions(walkthrough)
    right = 0
    print(f"Questions about this run ({len(asked)}); type the answer and press Enter.", flush=True)
    for number, question in enumerate(asked, 1):
        print(f"\n{number}. {question.prompt}\n> ", end="", flush=True)
        reply = sys.stdin.readline()
        if not reply:
            raise UsageError(f"the quiz ended at question {number} of {len(asked)}: no more input to read")
        if question.check(reply):
            right += 1
            print(f"   right: {question.answer} ({question.why})")
        else:
            print(f"   not quite: this run says {question.answer} ({question.why})")
    print(f"\n{right} of {len(asked)} right.", flush=True)
    return right == len(asked)


def _ladders(walkthrough: Walkthrough, pcap_dir: str, options: TableOptions) -> None:
    """Print a ladder of every packet section, and write it beside its pcap as SVG."""
    for section in walkthrough.sections:
        if not section.packets:
            continue
        width = 10**6 if options.wide else terminal_width()
        print(f"-- ladder: {section.heading}\n{ladder_text(section.packets, width)}\n")
        stem = section.pcap_path[: -len(".pcap")] if section.pcap_path else os.path.join(pcap_dir, walkthrough.name)
        path = f"{stem}-ladder.svg"
        write_atomically(path, ladder_svg(section.packets, f"{walkthrough.title}: {section.heading}"))
        print(f"netlab: ladder diagram written to {path}", file=sys.stderr)


def _remove_if_empty(directory: str) -> None:
    try:
        os.rmdir(directory)
    except OSError:
        pass  # not empty (it holds the pcaps) or already gone
