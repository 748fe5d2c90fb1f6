"""``netlab walkthrough NAME``: run a guided capture and explain it step by step.

Each walkthrough runs a real experiment on loopback (or over a UNIX socket),
prints every packet or call with a one-line explanation, and says where its
pcap files are (a fresh temporary directory unless ``--pcap DIR``).
``--all --markdown DIR`` regenerates the lessons in ``docs/walkthroughs``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from netlab.cli.common import add_table_options, table_options
from netlab.errors import UsageError
from netlab.inspect.render import walkthrough_markdown, walkthrough_text
from netlab.inspect.walkthroughs import WALKTHROUGHS, run_walkthrough


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
    add_table_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.list:
        for name, function in WALKTHROUGHS.items():
            print(f"{name:18} {(function.__doc__ or '').strip().splitlines()[0]}")
        return 0
    if bool(args.name) == bool(args.all):
        raise UsageError("name one walkthrough or give --all (see --list)")
    names = list(WALKTHROUGHS) if args.all else [args.name]
    options = table_options(args)
    if options.columns:
        raise UsageError("walkthrough tables keep all their columns (each row is explained); use --wide to "
                         "see them whole")
    pcap_dir = args.pcap or tempfile.mkdtemp(prefix="netlab-walkthrough-")
    for directory in filter(None, (pcap_dir, args.markdown)):
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create {directory}: {exc.strerror}; choose a writable directory") from None
    for name in names:
        walkthrough = run_walkthrough(name, pcap_dir)
        if args.markdown:
            path = os.path.join(args.markdown, f"{name}.md")
            with open(path, "w", encoding="utf-8") as file:
                file.write(walkthrough_markdown(walkthrough))
            print(f"netlab: wrote {path}", file=sys.stderr)
        else:
            print(walkthrough_text(walkthrough, options), flush=True)
    return 0
