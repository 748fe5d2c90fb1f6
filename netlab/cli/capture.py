"""``netlab capture``: watch netlab traffic on loopback, one decoded row per packet.

Rows are printed as packets arrive (``--format table``) or as one JSON array at
the end (``--format json``). The capture always ends by itself: after
``--count`` packets or ``--duration`` seconds, whichever comes first (Ctrl-C
ends it early); ``--pcap`` writes what was seen as a pcapng file (or classic
pcap with ``--pcap-format pcap``). The socket is read through a TPACKET_V3 ring
where the kernel gives one (``--method``). The kernel's counters for the
capture socket (PACKET_STATISTICS) go into the summary line, the JSON output's
``capture`` object and the pcapng file's statistics block; when the kernel
dropped packets the capture says so in a WARNING line and exits 1 (the rows and
the file hold what was captured). ``--read FILE`` decodes a pcap or pcapng file
instead of capturing, and repeats the drop counts a pcapng file holds. AF_UNIX
traffic has no packets: ``netlab walkthrough sticky-packets`` shows its
send/recv calls.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence

from netlab.cli.common import add_format_option, add_table_options, nonzero_port, positive_float, table_options
from netlab.cli.exec import describe_size
from netlab.cli.progress import Progress
from netlab.errors import UsageError
from netlab.inspect.analyze import PacketAnalyzer, PacketRow, datagrams_of
from netlab.inspect.ladder import ladder_svg, ladder_text
from netlab.inspect.layers import bind_netlab_ports
from netlab.inspect.pcap import FORMATS as FILE_FORMATS
from netlab.inspect.pcap import read_pcap, read_statistics, write_pcap
from netlab.inspect.render import FORMATS, PACKET_HEADERS, packet_cells, packet_table, packets_csv, packets_json
from netlab.inspect.sniffer import (
    DEFAULT_BUFFER_SIZE,
    DEFAULT_DURATION,
    MAX_PACKETS,
    METHODS,
    STOP_TIMEOUT,
    Capture,
    CapturedPacket,
    PacketFilter,
)
from netlab.inspect.timeseq import draw_time_sequence, image_format_of, time_sequence
from netlab.tables import terminal_width
from netlab.transport.address import DEFAULT_PORT, TCP_SCHEMES, UDP_SCHEMES, parse_address
from netlab.units import size_argument

DEFAULT_COUNT = 1000
#: The exit code of a capture that is missing packets (the kernel dropped some, or reading the socket failed).
EXIT_INCOMPLETE = 1
WAIT_SLICE = 0.2
#: Column widths of the live table (the last column takes the rest of the line).
LIVE_WIDTHS = (5, 10, 46, 8, 8, 8, 6)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "capture", help="capture netlab traffic and decode it",
        description="Capture TCP/UDP traffic on loopback, another interface (--interface) or inside a lab host "
                    "(--netns) (root or CAP_NET_RAW) and decode netlab's messages in it; or decode a pcap file "
                    "with --read.")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--address", metavar="URL", help="capture the traffic of this server address, e.g. "
                        "tcp4://127.0.0.1:6969 or udp://127.0.0.1:6969")
    target.add_argument("-p", "--port", type=nonzero_port, metavar="N",
                        help=f"capture TCP and UDP on port N (default {DEFAULT_PORT})")
    parser.add_argument("-c", "--count", type=_count, default=DEFAULT_COUNT, metavar="N",
                        help=f"stop after N packets (default {DEFAULT_COUNT})")
    parser.add_argument("--duration", type=positive_float, default=DEFAULT_DURATION, metavar="S",
                        help=f"stop after S seconds (default {DEFAULT_DURATION:g})")
    parser.add_argument("-w", "--pcap", metavar="FILE",
                        help="also write the packets to a capture file (Wireshark, tshark), with the kernel's drop "
                             "counts when pcapng")
    parser.add_argument("--pcap-format", choices=FILE_FORMATS, default="pcapng",
                        help="pcapng (default: keeps the kernel's packet and drop counts in a statistics block) or "
                             "classic pcap (for tools that read nothing else; it has no place for them)")
    parser.add_argument("--method", choices=METHODS, default="auto",
                        help="read the packet socket through a TPACKET_V3 ring (ring), with recvmsg (recv), or the "
                             "ring where the kernel gives one (auto, the default)")
    parser.add_argument("--buffer-size", type=size_argument(4096), default=DEFAULT_BUFFER_SIZE, metavar="SIZE",
                        help=f"the ring's size (or the receive buffer's with --method recv), e.g. 64MiB "
                             f"(default {describe_size(DEFAULT_BUFFER_SIZE)}); a bigger one rides out longer bursts")
    parser.add_argument("-r", "--read", metavar="FILE", help="decode this pcap file instead of capturing")
    add_format_option(parser, FORMATS, "the packets")
    parser.add_argument("-i", "--interface", metavar="IFACE", help="the interface to capture on (default lo, or the "
                        "host's veth with --netns)")
    parser.add_argument("--netns", metavar="NAME", help="capture inside a network namespace: server, client or "
                        "router of the lab that is up (netlab lab up), or a namespace's full name")
    add_table_options(parser)
    parser.add_argument("--ladder", action="store_true",
                        help="also draw a ladder diagram of the exchange (one column per endpoint; with --read, "
                             "instead of the table)")
    parser.add_argument("--ladder-svg", metavar="FILE", help="write the ladder diagram as SVG to FILE")
    parser.add_argument("--time-sequence", metavar="FILE",
                        help="write a time-sequence graph (sequence number vs time, ACKs, retransmissions) of the "
                             "busiest data direction to FILE (.png or .svg)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    tcp_ports, udp_ports = _ports(args)
    bind_netlab_ports(tcp_ports, udp_ports)
    _check_outputs(args)  # bad output names fail now, not after the capture
    if args.read:
        if args.pcap:
            raise UsageError("--read decodes an existing file; --pcap writes a new capture: give one of them")
        return _print_all(args, list(read_pcap(args.read))[: args.count], _file_statistics(args.read))
    if args.columns:
        raise UsageError("--columns applies to --read (a live capture prints each packet as it comes); "
                         "use --wide to see long lines whole")
    if args.pcap:
        write_pcap(args.pcap, [], file_format=args.pcap_format)  # an unwritable path fails now, not after the capture
    namespace, interface = _where(args)
    capture = Capture(PacketFilter.for_ports(tcp_ports, udp_ports), count=args.count, duration=args.duration,
                      interface=interface, method=args.method, buffer_size=args.buffer_size)
    analyzer = PacketAnalyzer()
    rows: list[PacketRow] = []
    consumed = 0  # packets looked at so far (some give no row)
    width = None if args.wide else terminal_width()
    progress = Progress(0)  # on a terminal: packets so far and the time bound; silent anywhere else
    if namespace is None:
        capture.start()
    else:
        from netlab.lab.namespace import entered

        with entered(namespace):  # the packet socket is made, and stays, in the namespace
            capture.start()
    try:  # from here on a Ctrl-C still stops the capture, reports what it took and writes its file
        place = f"{interface} in {namespace}" if namespace else interface
        print(f"netlab: capturing on {place}, {_describe(tcp_ports, udp_ports)}, up to {args.count} packets or "
              f"{args.duration:g} s, through {_describe_method(capture)}", file=sys.stderr, flush=True)
        if args.format == "table":
            print(_live_line(PACKET_HEADERS, width), flush=True)
        while True:
            ended = capture.wait(WAIT_SLICE)
            captured = capture.packets()
            if args.format == "table":  # live rows; other formats are decoded once the capture is over
                for row in _rows(analyzer, captured[consumed:]):
                    rows.append(row)
                    progress.finish()  # the status line gives way to the row, then comes back under it
                    print(_live_line(packet_cells(row), width), flush=True)
            consumed = len(captured)
            if ended and len(capture.packets()) == consumed:
                break
            if time.monotonic() - progress.started > args.duration + STOP_TIMEOUT:
                break  # the reader is stuck past its duration: stop() marks the capture incomplete
            left = max(0.0, args.duration - (time.monotonic() - progress.started))
            progress.status(f"{consumed} of at most {args.count} packets; the capture ends within {left:.0f} s")
    except KeyboardInterrupt:
        print("netlab: capture interrupted", file=sys.stderr)
    finally:
        progress.finish()
        packets = capture.stop()
    if args.format != "table":  # decoded now: scapy held no lock the reading thread needed while it ran
        rows = list(_rows(analyzer, packets))
    statistics = capture.statistics
    if args.format == "json":
        print(packets_json(rows, {**statistics.as_dict(), "captured": len(packets)}))
    elif args.format == "csv":
        print(packets_csv(rows))
    elif args.format == "markdown":  # a live table is printed as packets come; Markdown needs them all
        print(packet_table(rows, table_options(args), "github"))
    if args.ladder and args.format == "table":
        print(f"\n{ladder_text(rows, width or 10**6)}")
    if args.pcap:
        written = write_pcap(args.pcap, packets, file_format=args.pcap_format, statistics=statistics)
        kept = " and the kernel's counters" if args.pcap_format == "pcapng" else ""
        print(f"netlab: wrote {written} packets{kept} to {args.pcap}", file=sys.stderr)
    print(f"netlab: {len(packets)} packets captured; {statistics.drop_summary()} (PACKET_STATISTICS)",
          file=sys.stderr)
    _write_pictures(args, rows)  # last: a capture without data still keeps its pcap
    return _verdict(capture)


def _rows(analyzer: PacketAnalyzer, packets: Sequence[CapturedPacket]) -> Iterator[PacketRow]:
    """The rows of ``packets`` (dissected by scapy; some packets give none)."""
    for packet in packets:
        for datagram in datagrams_of(packet.dissect()):  # a segmented udp send: a row per datagram
            row = analyzer.row_for(datagram)
            if row is not None:
                yield row


def _verdict(capture: Capture) -> int:
    """0 for a whole capture; a WARNING line and EXIT_INCOMPLETE when the kernel dropped packets or reading failed."""
    problems = []
    if capture.statistics.kernel_drops:
        problems.append(f"the kernel dropped {capture.statistics.kernel_drops:,} packets the filter wanted; "
                        "give a bigger --buffer-size or capture less (--port, --count)")
    if capture.error is not None:
        problems.append(f"reading the packet socket failed ({capture.error}); the capture ends where it failed")
    for problem in problems:
        print(f"netlab: WARNING: the capture is incomplete: {problem}", file=sys.stderr)
    return EXIT_INCOMPLETE if problems else 0


def _describe_method(capture: Capture) -> str:
    statistics = capture.statistics
    size = describe_size(statistics.buffer_size)
    if statistics.method == "ring":
        return f"a {size} TPACKET_V3 ring"
    fallback = f" ({statistics.fallback_reason})" if statistics.fallback_reason else ""
    return f"recvmsg with a {size} receive buffer{fallback}"


def _where(args: argparse.Namespace) -> tuple[str | None, str]:
    """(namespace or None, interface) for --netns / --interface."""
    if not args.netns:
        return None, args.interface or "lo"
    from netlab.lab.namespace import list_namespaces, require_namespaces
    from netlab.lab.state import load_states

    require_namespaces()
    sides = {"server": "s", "client": "c", "router": "rs"}
    for state in load_states():
        namespaces = state["namespaces"]
        role = args.netns if args.netns in namespaces else next(
            (name for name, namespace in namespaces.items() if namespace == args.netns), None)
        if role is not None:
            return namespaces[role], args.interface or state["interfaces"][sides[role]]
    if args.netns in list_namespaces():
        return args.netns, args.interface or "lo"
    raise UsageError(f"no namespace or lab host called {args.netns}: `netlab lab status` lists the labs that are up")


def _file_statistics(path: str) -> dict[str, object] | None:
    """The counters a pcapng file keeps (its last statistics block), said on stderr; None when it has none."""
    blocks = read_statistics(path)
    if not blocks:
        return None
    last = blocks[-1]
    if last.comment:
        print(f"netlab: {path}: {last.comment}", file=sys.stderr)
    elif last.dropped:
        print(f"netlab: {path}: the kernel DROPPED {last.dropped:,} of {last.received or 0:,} frames during "
              "this capture", file=sys.stderr)
    return {"file": path, "kernel_packets": last.received, "kernel_drops": last.dropped}


def _print_all(args: argparse.Namespace, packets: list, capture: dict[str, object] | None = None) -> int:
    analyzer = PacketAnalyzer()
    rows = [row for row in (analyzer.row_for(packet) for packet in packets) if row is not None]
    if args.format == "json":
        print(packets_json(rows, capture))
    elif args.format == "csv":
        print(packets_csv(rows))
    elif args.ladder:
        print(ladder_text(rows, 10**6 if args.wide else terminal_width()))
    else:
        print(packet_table(rows, table_options(args), "github" if args.format == "markdown" else "simple"))
    _write_pictures(args, rows)
    return 0


def _check_outputs(args: argparse.Namespace) -> None:
    if args.time_sequence:
        image_format_of(args.time_sequence)
    for path in filter(None, (args.ladder_svg, args.time_sequence)):
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory) or not os.access(directory, os.W_OK):
            raise UsageError(f"cannot write {path}: its directory is missing or not writable")


def _write_pictures(args: argparse.Namespace, rows: list[PacketRow]) -> None:
    """--ladder-svg and --time-sequence: each file written whole or not at all."""
    from netlab.scenario.results import write_atomically

    if args.ladder_svg:
        write_atomically(args.ladder_svg, ladder_svg(rows, f"netlab capture: {len(rows)} packets"))
        print(f"netlab: ladder diagram written to {args.ladder_svg}", file=sys.stderr)
    if args.time_sequence:
        graph = time_sequence(rows)
        write_atomically(args.time_sequence, draw_time_sequence(graph, image_format_of(args.time_sequence)))
        print(f"netlab: time-sequence graph of {graph.sender} -> {graph.receiver} written to {args.time_sequence}",
              file=sys.stderr)


def _ports(args: argparse.Namespace) -> tuple[list[int], list[int]]:
    if args.address:
        address = parse_address(args.address)
        if address.scheme in TCP_SCHEMES:
            return [address.port or 0], []
        if address.scheme in UDP_SCHEMES:
            return [], [address.port or 0]
        raise UsageError(f"{address.scheme}:// traffic has no packets to capture: use a tcp4, tcp6, udp or udp6 "
                         "address (the syscall tap is shown by 'netlab walkthrough sticky-packets')")
    port = args.port if args.port is not None else DEFAULT_PORT
    return [port], [port]


def _describe(tcp_ports: list[int], udp_ports: list[int]) -> str:
    parts = [f"tcp port {port}" for port in tcp_ports] + [f"udp port {port}" for port in udp_ports]
    return " and ".join(parts)


def _live_line(cells: Sequence[object], width: int | None = None) -> str:
    """One live row in fixed columns; past ``width`` the last column wraps under itself (nothing is cut)."""
    fixed = [str(cell).ljust(size) for cell, size in zip(cells, LIVE_WIDTHS)]
    head = " ".join(fixed)
    tail = " ".join(str(cell) for cell in cells[len(LIVE_WIDTHS):])
    room = (width or 0) - len(head) - 1
    if width is None or room < 20 or len(tail) <= room:
        return f"{head} {tail}".rstrip()
    pieces = textwrap.wrap(tail, room, break_on_hyphens=False) or [""]
    indent = " " * (len(head) + 1)
    return "\n".join([f"{head} {pieces[0]}", *(indent + piece for piece in pieces[1:])])


def _count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_PACKETS:
        raise argparse.ArgumentTypeError(f"expected a packet count 1-{MAX_PACKETS}, got {text!r}")
    return int(text)
