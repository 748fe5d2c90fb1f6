"""``netlab shell``: the tutorial's interactive ``>>>`` prompt, done properly.

One connection for the whole session; readline editing and history in
``~/.netlab_history``; the exit status is shown when it is not zero; a refused
command is reported and the prompt continues; Ctrl-D leaves.
"""

from __future__ import annotations

import argparse
import os
import sys

from netlab.cli.common import add_address_options, positive_float, resolve_address, resolve_token
from netlab.errors import PolicyError, UsageError
from netlab.proto.messages import STDOUT
from netlab.service.client import Client

HISTORY_FILE = os.path.expanduser("~/.netlab_history")
HISTORY_LENGTH = 1000


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("shell", help="interactive prompt on a server",
                                   description="An interactive prompt: each line runs on the server.")
    add_address_options(parser)
    parser.add_argument("--timeout", type=positive_float, default=60.0, metavar="S")
    parser.set_defaults(handler=run)


def _enable_history() -> None:
    try:
        import readline
    except ImportError:  # not every Python has it; the prompt still works
        return
    try:
        readline.read_history_file(HISTORY_FILE)
    except OSError:
        pass
    readline.set_history_length(HISTORY_LENGTH)
    import atexit

    atexit.register(lambda: _save_history(readline))


def _save_history(readline: object) -> None:
    try:
        readline.write_history_file(HISTORY_FILE)  # type: ignore[attr-defined]
    except OSError:
        pass


def run(args: argparse.Namespace) -> int:
    interactive = sys.stdin.isatty()
    if interactive:
        _enable_history()

    def write_output(stream: int, data: bytes) -> None:
        target = sys.stdout.buffer if stream == STDOUT else sys.stderr.buffer
        target.write(data)
        target.flush()

    address = resolve_address(args)
    with Client(address, framing=args.framing, read_timeout=args.timeout, token=resolve_token(args)) as client:
        if interactive:
            print(f"connected to {address} ({args.framing} framing); Ctrl-D leaves", file=sys.stderr)
        last_status = 0
        while True:
            try:
                line = input(">>> " if interactive else "")
            except EOFError:
                if interactive:
                    print(file=sys.stderr)
                return last_status
            if not line.strip():
                continue
            try:
                reply = client.run(line, on_output=write_output, keep_output=False)
            except (PolicyError, UsageError) as exc:
                print(f"netlab: {exc}", file=sys.stderr)
                last_status = exc.exit_code
                continue
            if reply.exit.signal is not None:
                last_status = 128 + reply.exit.signal
                print(f"[killed by signal {reply.exit.signal}]", file=sys.stderr)
            elif reply.exit.exit_status:
                last_status = reply.exit.exit_status
                print(f"[exit {last_status}]", file=sys.stderr)
            else:
                last_status = 0
