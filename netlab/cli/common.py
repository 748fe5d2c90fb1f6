"""Options shared by several subcommands, and their conversion to netlab values."""

from __future__ import annotations

import argparse
import dataclasses
import os
from typing import Any

from netlab.cli.config import Configured
from netlab.errors import UsageError
from netlab.proto.framing import FRAMING_NAMES
from netlab.proto.seq.config import LOSS_TIMERS
from netlab.proto.seq.congestion import CONTROLLERS
from netlab.tables import OUTPUT_FORMATS, TableOptions
from netlab.transport.address import SOCKET_SCHEMES, UDP_SCHEMES, Address, default_address, parse_address
from netlab.units import duration_argument

TRANSPORTS = SOCKET_SCHEMES
TOKEN_ENVIRONMENT = "NETLAB_TOKEN"
_DURATION = duration_argument()


def add_address_options(parser: argparse.ArgumentParser) -> None:
    """--transport, --address and --framing."""
    parser.add_argument("--transport", choices=TRANSPORTS, default=None,
                        help="transport to use when --address is not given (default tcp4)")
    parser.add_argument("--address", metavar="URL", default=None,
                        help="e.g. tcp4://127.0.0.1:6969, tcp6://[::1]:6969, unix:///path.sock, udp://127.0.0.1:6969")
    parser.add_argument("-p", "--port", type=port_number, default=None, metavar="N",
                        help="this port instead of the address's (tcp4, tcp6, udp, udp6; default 6969)")
    parser.add_argument("--framing", choices=FRAMING_NAMES, default="length",
                        help="how messages are delimited on the wire (default length)")
    add_token_options(parser)


def add_token_options(parser: argparse.ArgumentParser) -> None:
    """--token-file (and --token, hidden, which :func:`resolve_token` refuses: ``ps`` would show it)."""
    parser.add_argument("--token-file", metavar="PATH", default=None,
                        help=f"read the shared secret for the auth step from PATH (made by `netlab token new PATH`; "
                             f"default: ${TOKEN_ENVIRONMENT} if set)")
    parser.add_argument("--token", default=None, help=argparse.SUPPRESS)  # refused: see resolve_token


def add_udp_options(parser: argparse.ArgumentParser) -> None:
    """--impair, --rto-floor, --congestion and --loss-timer, which apply to the udp and udp6 transports."""
    parser.add_argument("--impair", metavar="SPEC", default=None,
                        help="seeded impairment on this end's UDP socket, e.g. loss=5%%,dup=1%%,reorder=5%%,"
                             "delay=10ms,seed=7 (udp/udp6 only)")
    parser.add_argument("--rto-floor", type=positive_float, default=None, metavar="S",
                        help="lowest retransmission timeout: 1 (RFC 6298) or e.g. 0.02 (udp/udp6 only); "
                             "the probe timeout (the default --loss-timer) uses it only until a round trip "
                             "is measured")
    parser.add_argument("--congestion", choices=CONTROLLERS, default=None,
                        help="congestion control of the sequenced UDP sender: none (default: only the receive "
                             "window limits it), reno (RFC 5681/6582) or cubic (RFC 9438) (udp/udp6 only)")
    parser.add_argument("--loss-timer", choices=LOSS_TIMERS, default=None,
                        help="what finds losses no acknowledgement reveals: pto (default: RFC 9002's probe "
                             "timeout) or rto (RFC 6298's retransmission timeout, TCP's) (udp/udp6 only)")


def udp_options(args: argparse.Namespace, address: Address) -> dict[str, Any]:
    """The UDP transport options named by --impair, --rto-floor, --congestion and --loss-timer.

    Raises:
        UsageError: an option was given for a transport other than udp/udp6.
    """
    options: dict[str, Any] = {}
    if args.impair is not None:
        from netlab.transport.impairment import parse_impairment

        options["impairment"] = parse_impairment(args.impair)
    for name in ("rto_floor", "congestion", "loss_timer"):  # each given flag passes on as the option of its name
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    if options and address.scheme not in UDP_SCHEMES:
        raise UsageError(f"--impair, --rto-floor, --congestion and --loss-timer apply to udp and udp6, "
                         f"not {address.scheme}")
    return options


def resolve_address(args: argparse.Namespace) -> Address:
    """The address named by --address, else the default of --transport; --port replaces its port."""
    if args.address and not (isinstance(args.address, Configured) and args.transport):  # --transport beats the file
        address = parse_address(args.address)
        if args.transport and address.scheme != args.transport:
            raise UsageError(f"--transport {args.transport} disagrees with --address {args.address}; give one of them")
    else:
        address = default_address(args.transport or "tcp4")
    port = getattr(args, "port", None)
    if port is None:
        return address
    if address.port is None:
        raise UsageError(f"--port applies to tcp4, tcp6, udp and udp6, not {address.scheme}: a UNIX address is a path")
    return dataclasses.replace(address, port=port)


def port_number(text: str) -> int:
    """argparse type: a port number 0-65535 (0: the kernel picks a free one)."""
    return _port_from(text, 0)


def nonzero_port(text: str) -> int:
    """argparse type: a port number 1-65535 (one that names a real port, as a capture or a dissector needs)."""
    return _port_from(text, 1)


def _port_from(text: str, lowest: int) -> int:
    if not text.isdigit() or not lowest <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port {lowest}-65535, got {text!r}")
    return int(text)


def resolve_token(args: argparse.Namespace, *, for_server: bool = False) -> bytes | None:
    """The token from --token-file or $NETLAB_TOKEN, as bytes; None when neither is set.

    A token is never taken from the command line, where ``ps`` shows it to
    every user of the machine. A server's token must be strong (see
    :func:`netlab.service.token.check_token_strength`).

    Raises:
        UsageError: --token was given, the file cannot be read or is readable
            by others, or the token is empty (or weak, for a server).
    """
    from netlab.service.token import check_token_strength, read_token_file

    if args.token is not None:
        raise UsageError(f"--token would show the secret to every user in ps: put it in a file made by "
                         f"`netlab token new PATH` and pass --token-file PATH, or set {TOKEN_ENVIRONMENT}")
    if args.token_file is not None:
        token = read_token_file(args.token_file)
        source = args.token_file
    else:
        text = os.environ.get(TOKEN_ENVIRONMENT)
        if text is None:
            return None
        token = text.encode()
        source = f"${TOKEN_ENVIRONMENT}"
    if not token:
        raise UsageError(f"the token in {source} is empty: make one with `netlab token new PATH`")
    if for_server:
        check_token_strength(token, source)
    return token


def positive_float(text: str) -> float:
    """argparse type: a duration > 0 in seconds (``2``, ``2s``, ``500ms``, ``1m``; see :mod:`netlab.units`)."""
    return _DURATION(text)


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _int_at_least(text, 0)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _int_at_least(text, 1)


def _int_at_least(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
    return value


def add_format_option(parser: argparse.ArgumentParser, choices: tuple[str, ...] = OUTPUT_FORMATS,
                      what: str = "the tables") -> None:
    """--format table|markdown|csv|json, the same on every command that prints tables."""
    parser.add_argument("--format", choices=choices, default="table",
                        help=f"how to print {what}: table (fitted to the terminal), markdown, csv or json "
                             f"(default table)")


def add_table_options(parser: argparse.ArgumentParser) -> None:
    """--wide and --columns: how tables are shown (they fit the terminal by default)."""
    parser.add_argument("--wide", action="store_true",
                        help="show tables whole: no footnotes, abbreviations or splitting to fit the terminal")
    parser.add_argument("--columns", metavar="A,B,C", default=None,
                        help="show only these columns (headings or names), in this order")


def table_options(args: argparse.Namespace) -> TableOptions:
    """The :class:`~netlab.tables.TableOptions` named by --wide and --columns."""
    columns = tuple(name.strip() for name in (args.columns or "").split(",") if name.strip())
    if args.columns is not None and not columns:
        raise UsageError("--columns is empty: give column names, e.g. --columns transport,backlog")
    return TableOptions(wide=args.wide, columns=columns)
