"""``netlab exec``: run one command on a server, like ``ssh host cmd``.

stdout and stderr go to ours; the exit code is the remote one (128+N when the
command died of signal N, 0 when the framing cannot carry a status, 255 for
netlab's own errors).
"""

from __future__ import annotations

import argparse
import sys

from netlab.cli.common import (
    add_address_options,
    add_udp_options,
    positive_float,
    resolve_address,
    resolve_token,
    udp_options,
)
from netlab.errors import NetlabError, UsageError
from netlab.proto.messages import STDOUT
from netlab.service.client import Client, Reply


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("exec", help="run one command on a server",
                                   description="Run one command on a netlab server and exit with its status.")
    add_address_options(parser)
    add_udp_options(parser)
    parser.add_argument("--timeout", type=positive_float, default=60.0, metavar="S",
                        help="give up when the server sends nothing for S seconds (default 60)")
    parser.add_argument("--connect-timeout", type=positive_float, default=5.0, metavar="S")
    parser.add_argument("--command-timeout", type=positive_float, default=None, metavar="S",
                        help="ask the server to kill the command after S seconds")
    parser.add_argument("--verify", action="store_true", help="check the server's SHA-256 of stdout")
    parser.add_argument("--timing", action="store_true", help="print connect / first byte / total on stderr")
    parser.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD [ARG...]")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        raise UsageError("no command given: netlab exec [options] -- CMD [ARG...]")
    stdout = sys.stdout.buffer
    stderr = sys.stderr.buffer

    def write_output(stream: int, data: bytes) -> None:
        target = stdout if stream == STDOUT else stderr
        target.write(data)
        target.flush()

    address = resolve_address(args)
    with Client(address, framing=args.framing, connect_timeout=args.connect_timeout, read_timeout=args.timeout,
                token=resolve_token(args), connect_options=udp_options(args, address)) as client:
        reply = client.run(argv, timeout=args.command_timeout or 0.0, on_output=write_output, keep_output=False,
                           verify=args.verify)
        if args.timing:
            print(f"netlab: connect {client.connect_time * 1000:.2f} ms, first byte {reply.first_byte * 1000:.2f} ms,"
                  f" total {reply.total * 1000:.2f} ms", file=sys.stderr)
    if args.verify:
        check_verified(reply, args.framing)
    return exit_code_of(reply)


def check_verified(reply: Reply, framing: str) -> None:
    """Raise when stdout does not match the server's SHA-256 (or cannot be checked)."""
    if reply.verified is None:
        raise NetlabError(f"cannot verify: the {framing} framing carries no SHA-256; use --framing length or line")
    if not reply.verified:
        raise NetlabError(f"stdout failed verification: received {reply.stdout_bytes} bytes whose SHA-256 "
                          f"differs from the server's ({reply.exit.stdout_bytes} bytes sent)")
    print(f"netlab: verified {reply.stdout_bytes} bytes, sha256 {reply.stdout_sha256.hex()}", file=sys.stderr)


def exit_code_of(reply: Reply) -> int:
    """The process exit code for a reply, as ssh does it."""
    if reply.exit.signal is not None:
        return 128 + reply.exit.signal
    return reply.exit.exit_status or 0
