"""``netlab exec``: run one command on a server, like ``ssh host cmd``.

stdout and stderr go to ours, our stdin goes to the command (as ssh does; ``-n``
sends none), and the exit code tells what happened:

- the remote exit status (0..255), or 128+N when the command died of signal N
  (130 after Ctrl-C, which is sent to the command as a Signal request);
- 255 for netlab's own errors: a bad option or address, no connection, a
  protocol error (a framing mismatch is named), a read timeout, a refused
  command, a failed or impossible ``--verify`` (a truncated transfer is not
  verified);
- 254 (:data:`EXIT_NO_STATUS`) with the raw and ack framings, which cannot
  carry a status or stderr: the command ran, its status is unknown, and one
  line on stderr says so.

When the server stopped the command itself, one line on stderr says which limit
did it (``killed after the server's 30 s command timeout``, ``output truncated
at 64 MiB by the server's output cap; raise it with serve --output-cap``) and
the remote status is kept.

A single argument holding spaces is a command line, as ``ssh host 'CMD | CMD'``
sends it: a server in ``--unsafe-shell`` mode hands it to ``/bin/sh`` as it
is (so ``exec -- 'echo hi | tr a-z A-Z'`` prints ``HI``); any other server
splits it into words (``|`` is then a plain argument). Several arguments are
sent word for word, each one argument of the command.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
import time

from netlab.cli.common import (
    add_address_options,
    add_udp_options,
    positive_float,
    resolve_address,
    resolve_token,
    udp_options,
)
from netlab.errors import EXIT_NETLAB, NetlabError, UsageError
from netlab.proto.framing import FRAMERS
from netlab.proto.messages import STDOUT, Exit
from netlab.service.client import RAW_QUIET_PERIOD, Client, Reply

#: Usage errors exit 255 as ssh's do, never 2 (a remote status).
USAGE_EXIT_CODE = EXIT_NETLAB
#: The command ran but the framing (raw, ack) cannot say how it ended.
EXIT_NO_STATUS = 254


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "exec", help="run one command on a server",
        description="Run one command on a netlab server and exit with its status (128+N for signal N; "
                    f"255 for netlab's own errors; {EXIT_NO_STATUS} when the raw or ack framing cannot carry "
                    "the status).")
    parser.usage_exit_code = USAGE_EXIT_CODE
    add_address_options(parser)
    add_udp_options(parser)
    parser.add_argument("-t", "--timeout", type=positive_float, default=60.0, metavar="S",
                        help="give up when the server sends nothing for S seconds (default 60)")
    parser.add_argument("--connect-timeout", type=positive_float, default=5.0, metavar="S",
                        help="give up connecting after S seconds (default 5)")
    parser.add_argument("--command-timeout", type=positive_float, default=None, metavar="S",
                        help="ask the server to kill the command after S seconds (only lowers its own limit)")
    parser.add_argument("-n", "--no-stdin", action="store_true",
                        help="do not send our stdin to the command (as ssh -n); it reads an empty stdin")
    parser.add_argument("--quiet-period", type=positive_float, default=RAW_QUIET_PERIOD, metavar="S",
                        help=f"raw framing only: the reply ends after S seconds without a byte "
                             f"(default {RAW_QUIET_PERIOD:g}; nothing on the wire marks its end)")
    parser.add_argument("--verify", action="store_true", help="check the server's SHA-256 of stdout")
    parser.add_argument("--timing", action="store_true",
                        help="print connect, first byte and total (connect to exit) on stderr")
    parser.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD [ARG...]",
                        help="the command and its arguments, after --; one quoted argument with spaces is a "
                             "command line, as with ssh (a --unsafe-shell server runs it through /bin/sh)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except NetlabError as exc:  # every failure of our own is 255, as ssh's are
        print(f"netlab: {exc}", file=sys.stderr)
        return EXIT_NETLAB


def _run(args: argparse.Namespace) -> int:
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        raise UsageError("no command given: netlab exec [options] -- CMD [ARG...]")
    capabilities = FRAMERS[args.framing].capabilities
    stdout = sys.stdout.buffer
    stderr = sys.stderr.buffer

    def write_output(stream: int, data: bytes) -> None:
        target = stdout if stream == STDOUT else stderr
        target.write(data)
        target.flush()

    stdin = None
    if not args.no_stdin:
        if capabilities.stdin_and_signals:
            stdin = sys.stdin.fileno() if sys.stdin is not None else None
        elif _stdin_has_data():
            print(f"netlab: the {args.framing} framing cannot carry stdin: the command reads none "
                  "(use --framing length, or -n to say so)", file=sys.stderr)
    raw = args.framing == "raw"
    address = resolve_address(args)
    started = time.monotonic()
    with Client(address, framing=args.framing, connect_timeout=args.connect_timeout, read_timeout=args.timeout,
                token=resolve_token(args), connect_options=udp_options(args, address)) as client:
        connected = time.monotonic() - started  # on udp the handshake is the connection
        client.raw_quiet_period = args.quiet_period
        client.raw_whole_reply = True
        # raw output is checked for a mismatched server before it is printed
        reply = client.run(command_of(argv), timeout=args.command_timeout or 0.0,
                           on_output=None if raw else write_output, keep_output=raw, verify=args.verify,
                           stdin=stdin, interruptible=True)
        if raw:
            write_output(STDOUT, reply.stdout)
        if args.timing:
            total = connected + reply.total
            print(f"netlab: connect {connected * 1000:.2f} ms, first byte {reply.first_byte * 1000:.2f} ms "
                  f"after the request, total {total * 1000:.2f} ms (connect to exit)", file=sys.stderr)
    notices = limit_notices(reply.exit, args.command_timeout)
    if args.verify and reply.exit.truncated:  # one line: what happened, what to do, and that it is not verified
        notices[-1] += " (so stdout is not verified)"
    for notice in notices:
        print(f"netlab: {notice}", file=sys.stderr)
    if args.verify and not check_verified(reply, args.framing):
        return EXIT_NETLAB
    if reply.exit.exit_status is None and reply.exit.signal is None:
        print(f"netlab: the {args.framing} framing cannot carry the exit status or stderr (stderr arrives mixed "
              f"into stdout); exit code {EXIT_NO_STATUS} means the status is unknown: use --framing length "
              "or line to get it", file=sys.stderr)
        return EXIT_NO_STATUS
    return exit_code_of(reply)


def command_of(argv: list[str]) -> str | list[str]:
    """One argument with whitespace is a command line (as ssh sends it); otherwise the argv word for word."""
    if len(argv) == 1 and any(character.isspace() for character in argv[0]):
        return argv[0]
    return argv


def _stdin_has_data() -> bool:
    """True when our stdin is a pipe or a file (data someone meant to send), not a terminal or /dev/null."""
    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (OSError, ValueError, AttributeError):
        return False
    return stat.S_ISFIFO(mode) or (stat.S_ISREG(mode) and os.fstat(sys.stdin.fileno()).st_size > 0)


def limit_notices(exit_message: Exit, requested_timeout: float | None = None) -> list[str]:
    """One sentence per limit that stopped the command: what happened and what to change."""
    notices = []
    if exit_message.timed_out:
        limit = exit_message.command_timeout
        if requested_timeout and limit and abs(limit - requested_timeout) < 0.001:
            notices.append(f"killed after the {limit:g} s command timeout asked for with --command-timeout")
        else:
            said = f"{limit:g} s" if limit else "own"
            notices.append(f"killed after the server's {said} command timeout; raise it with "
                           "serve --command-timeout")
    if exit_message.truncated:
        cap = exit_message.output_cap
        notices.append(f"output truncated at {describe_size(cap) if cap else 'its limit'} by the server's output "
                       "cap; raise it with serve --output-cap")
    return notices


def describe_size(size: int) -> str:
    """A byte count as people write it: 64 MiB, 1000 bytes."""
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} bytes"


def check_verified(reply: Reply, framing: str) -> bool:
    """Say that stdout is verified and return True; False when the cap cut it (the notice said so).

    Raises:
        NetlabError: stdout does not match the server's SHA-256, or cannot be checked.
    """
    if reply.verified is None:
        raise NetlabError(f"cannot verify: the {framing} framing carries no SHA-256; use --framing length or line")
    if not reply.verified:
        raise NetlabError(f"stdout failed verification: received {reply.stdout_bytes} bytes whose SHA-256 "
                          f"differs from the server's ({reply.exit.stdout_bytes} bytes sent)")
    if reply.exit.truncated:  # the limit notice said why: a truncated transfer is not verified
        return False
    print(f"netlab: verified {reply.stdout_bytes} bytes, sha256 {reply.stdout_sha256.hex()}", file=sys.stderr)
    return True


def exit_code_of(reply: Reply) -> int:
    """The process exit code for a reply, as ssh does it."""
    if reply.exit.signal is not None:
        return 128 + reply.exit.signal
    return reply.exit.exit_status or 0
