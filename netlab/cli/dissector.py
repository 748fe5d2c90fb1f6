"""``netlab dissector``: print (or install) the Wireshark Lua dissector generated from netlab's scapy layers."""

from __future__ import annotations

import argparse
import sys

from netlab.cli.common import nonzero_port
from netlab.proto.framing import FRAMING_NAMES
from netlab.transport.address import DEFAULT_PORT


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "dissector", help="print a Wireshark Lua dissector for netlab traffic",
        description="Print a Lua dissector for Wireshark and tshark, generated from the same field definitions "
                    "as netlab's scapy layers: the four framings on a TCP port and the sequenced-UDP header. "
                    "Use: netlab dissector > netlab.lua; tshark -X lua_script:netlab.lua -r FILE.pcap")
    parser.add_argument("--port", type=nonzero_port, default=DEFAULT_PORT, metavar="N",
                        help=f"the server's TCP port (default {DEFAULT_PORT}; a Wireshark preference later)")
    parser.add_argument("--udp-port", type=nonzero_port, default=None, metavar="N",
                        help="the server's UDP port (default: the same as --port)")
    parser.add_argument("--framing", choices=FRAMING_NAMES, default="length",
                        help="the framing spoken on the TCP port (default length)")
    parser.add_argument("--install", action="store_true",
                        help="write it into Wireshark's personal plugin folder (~/.local/lib/wireshark/plugins)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from netlab.inspect.dissector import generate_dissector, install_dissector

    text = generate_dissector(args.port, args.udp_port or args.port, args.framing)
    if args.install:
        path = install_dissector(text)
        print(f"netlab: dissector written to {path}; restart Wireshark (or Analyze > Reload Lua Plugins)",
              file=sys.stderr)
        return 0
    sys.stdout.write(text)
    return 0
