"""``netlab shell``: an interactive prompt on a server, one connection for the session.

Each line runs on the server. Local words: ``help`` prints the help below,
``exit [N]`` and ``quit`` leave (as Ctrl-D does), with status N or the last
command's. Ctrl-C while a command runs sends it SIGINT (a Signal request) and
the prompt returns with its status; at the prompt Ctrl-C clears the line. The
framings that cannot carry a signal (raw, ack, line) cannot cancel a remote
command: Ctrl-C then drops the connection and opens a new one. readline
editing and history in ``~/.netlab_history``; a status other than 0 is shown.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from netlab.cli.common import add_address_options, positive_float, resolve_address, resolve_token
from netlab.cli.exec import limit_notices
from netlab.errors import PolicyError, UsageError
from netlab.proto.framing import FRAMERS
from netlab.proto.messages import STDOUT
from netlab.service.client import Client
from netlab.transport.address import Address

HISTORY_FILE = os.path.expanduser("~/.netlab_history")
HISTORY_LENGTH = 1000
PROMPT = "netlab$ "
LOCAL_HELP = """\
netlab shell: each line runs on the server as one command (split like a shell
would, never run by one). Local words:
  help        this text
  exit [N]    leave, with status N (default: the last command's)
  quit        leave (Ctrl-D too)
Ctrl-C stops the running command (it gets SIGINT; the length framing only,
other framings reconnect instead); at the prompt it clears the line."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("shell", help="interactive prompt on a server",
                                   description="An interactive prompt: each line runs on the server. "
                                               "Type help for the local words (exit, quit, help).")
    add_address_options(parser)
    parser.add_argument("-t", "--timeout", type=positive_float, default=60.0, metavar="S",
                        help="give up when the server sends nothing for S seconds (default 60)")
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


def _write_output(stream: int, data: bytes) -> None:
    target = sys.stdout.buffer if stream == STDOUT else sys.stderr.buffer
    target.write(data)
    target.flush()


def run(args: argparse.Namespace) -> int:
    interactive = sys.stdin.isatty()
    if interactive:
        _enable_history()
    # Ctrl-C raises KeyboardInterrupt in the main thread even if a parent ignored SIGINT.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    address = resolve_address(args)
    cancels = FRAMERS[args.framing].capabilities.stdin_and_signals
    client = _connect(args, address)
    if interactive:
        print(f"connected to {address} ({args.framing} framing); type help for help, Ctrl-D or exit leaves",
              file=sys.stderr)
    last_status = 0
    try:
        while True:
            try:
                line = input(PROMPT if interactive else "")
            except EOFError:
                if interactive:
                    print(file=sys.stderr)
                return last_status
            except KeyboardInterrupt:  # at the prompt: drop the line, prompt again
                print(file=sys.stderr)
                continue
            words = line.split()
            if not words:
                continue
            if words[0] in ("exit", "quit"):
                return _leave_status(words, last_status)
            if words == ["help"]:
                print(LOCAL_HELP)
                continue
            try:
                last_status = _run_line(client, line)
            except KeyboardInterrupt:
                # a second Ctrl-C, or a framing that cannot carry the signal: the reply is lost
                why = "interrupted" if cancels else f"the {args.framing} framing cannot cancel a remote command"
                print(f"netlab: {why}; reconnecting", file=sys.stderr)
                client.close()
                client = _connect(args, address)
                last_status = 130
    finally:
        client.close()


def _connect(args: argparse.Namespace, address: Address) -> Client:
    client = Client(address, framing=args.framing, read_timeout=args.timeout, token=resolve_token(args))
    client.raw_whole_reply = True  # raw: a reply is what arrives until a quiet second, as exec reads it
    return client


def _run_line(client: Client, line: str) -> int:
    """Run one line; report a refusal or a non-zero status on stderr; return the status."""
    try:
        reply = client.run(line, on_output=_write_output, keep_output=False, interruptible=True)
    except (PolicyError, UsageError) as exc:
        print(f"netlab: {exc}", file=sys.stderr)
        return exc.exit_code
    for notice in limit_notices(reply.exit):
        print(f"netlab: {notice}", file=sys.stderr)
    if reply.exit.signal is not None:
        name = signal.Signals(reply.exit.signal).name if reply.exit.signal in signal.valid_signals() else ""
        print(f"[killed by signal {reply.exit.signal}{f' ({name})' if name else ''}]", file=sys.stderr)
        return 128 + reply.exit.signal
    if reply.exit.exit_status:
        print(f"[exit {reply.exit.exit_status}]", file=sys.stderr)
        return reply.exit.exit_status
    return 0


def _leave_status(words: list[str], last_status: int) -> int:
    if len(words) == 2 and words[0] == "exit" and words[1].isdigit() and int(words[1]) <= 255:
        return int(words[1])
    return last_status
