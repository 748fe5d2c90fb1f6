"""``netlab bench``: round trips and bulk throughput beside a stdlib baseline.

The measurements live in :mod:`netlab.bench`; this module picks
the matrix from the filters and measures every baseline and every cell once per
round, for ``--rounds`` alternating rounds (the order reversed every other
round), with the client and the child servers pinned to different CPUs when
there are two. Each row's ratio is the median of its per-round ratios (the
cell over its transport's baseline of the same round) with their spread; a
targets table puts each of the project's targets beside its median and spread,
and ``--peers`` adds pyzmq, grpcio and rpyc beside a length-prefixed stdlib
ping-pong over tcp4. Rows are rendered with netlab.tables (fitted to the
terminal) or as JSON. A cell that cannot run (IPv6 off, a framing that
cannot carry the transfer) becomes a note under the table, not a failure;
when the filters leave no cell at all, that is a usage error (exit 2) before
anything runs.

The udp transports join the round-trip table (against a raw UDP ping-pong) and
have their own bulk table: per datagram size, each framing and model without
impairment and then under ``--udp-impair`` on both ends, beside a raw UDP
blast of the same size and datagrams, measured in the same alternating rounds
as the stream bulk rows (one blast per datagram size and round). The issue's
targets (goodput >= 0.8x the blast with 1,200-byte datagrams and >= 0.5x with
60,000-byte ones, without impairment; round trips >= 0.7x the raw ping-pong)
are reported, never enforced.

A cell that fails (its server did not start, a connection broke) becomes a row
of its table with blank figures and its one-line reason in a ``note`` column;
``netlab bench`` then exits 1, so a failed measurement is never taken for a
finished one.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import math
import statistics
import sys
from collections.abc import Callable, Hashable, Iterable
from dataclasses import asdict, dataclass
from functools import partial
from typing import TypeVar

from netlab.bench.baseline import baseline_bulk, baseline_length_round_trips, baseline_round_trips, baseline_udp_blast
from netlab.bench.figures import (
    BULK_FRAMINGS,
    PLACEMENTS,
    ROUND_TRIP_TRANSPORTS,
    UDP_DATAGRAM_SIZES,
    UDP_LOSS_IMPAIRMENT,
    UDP_TRANSPORTS,
    BulkRow,
    RoundTripFigures,
    RoundTripRow,
    UdpBulkRow,
    UdpBulkSettings,
    bulk_row,
    round_trip_row,
    udp_bulk_row,
)
from netlab.bench.idle import IDLE_TRANSPORT, idle_round_trips, room_for_idle
from netlab.bench.measure import service_bulk, service_round_trips, service_udp_bulk
from netlab.bench.peers import PEERS, peer_available, peer_round_trips
from netlab.bench.pinning import NOT_PINNED, Pinning, choose_pinning, pinned
from netlab.bench.rounds import DEFAULT_ROUNDS, Rounds, Spread, run_rounds
from netlab.cli.common import (
    add_format_option,
    add_table_options,
    non_negative_int,
    positive_float,
    positive_int,
    table_options,
)
from netlab.cli.progress import Progress
from netlab.errors import UsageError
from netlab.proto.framing import FRAMING_NAMES
from netlab.proto.seq import FAST_FLOOR
from netlab.proto.seq.wire import HEADER_SIZE
from netlab.scenario.bench_charts import BENCH_FORMAT
from netlab.scenario.experiments.common import ipv6_loopback_available
from netlab.service.server import MODELS
from netlab.tables import TableOptions, show_table
from netlab.transport.impairment import parse_impairment
from netlab.units import parse_size, size_argument

FULL_COUNT = 20_000
#: --quick's round trips per round: with 1,000 (~0.1 s at ~100 us each) one round's echo ratio moved 0.38-1.08
#: within one quiet run. Five times as many made a quiet --quick run take 72-78 s instead of 49-55 s.
QUICK_COUNT = 5_000
FULL_BULK_SIZE = "256MiB"
#: --quick's stream blob: the full run's too, since 8 MiB lasted ~3 ms, too short to mean anything
#: (256 MiB: 50-130 ms at 2-6 GB/s).
QUICK_BULK_SIZE = FULL_BULK_SIZE
#: Sequenced UDP moves ~100 MB/s at 1200-byte datagrams, and much less under loss.
FULL_UDP_BULK_SIZE = "64MiB"
#: --quick's udp blob: this many full datagrams of each datagram size, at most QUICK_UDP_MOST bytes
#: (on a quiet 2-core machine 1,200-byte datagrams: ~16 MB, 60-110 ms; 60,000-byte: 128 MiB, 70-120 ms).
QUICK_UDP_DATAGRAMS = 14_000
QUICK_UDP_MOST = 128 * 2**20
#: The project's performance targets (ratios to the baseline of the same run), reported, never enforced.
ROUND_TRIP_TARGETS = {"tcp4": 0.8, "tcp6": 0.8, "unix": 0.7, "unix-seqpacket": 0.7, "udp": 0.7, "udp6": 0.7}
BULK_TARGET = 0.8
#: Sequenced UDP bulk over the raw blast, per datagram size (other sizes have no target).
UDP_BULK_TARGETS = {1200: 0.8, 60_000: 0.5}
#: The iterative and threaded models should be within this fraction of each other on one connection.
MODEL_SPREAD_TARGET = 0.10
NO_IMPAIRMENT = "none"
#: What --format offers (CSV would need one file per table).
BENCH_OUTPUTS = ("table", "markdown", "csv", "json")
#: transport, framing, model: what names a row (repeated when a table is split to fit).
KEY_COLUMNS = (0, 1, 2)
ROUND_TRIP_HEADINGS = ("transport", "framing", "model", "echo rt/s", "p50 us", "p99 us", "p99.9 us", "stdlib rt/s",
                       "stdlib p50 us", "ratio", "spread", "target")
BULK_HEADINGS = ("transport", "framing", "model", "blob bytes", "MB/s", "verified", "stdlib MB/s", "ratio", "spread",
                 "target")
UDP_BULK_HEADINGS = ("transport", "framing", "model", "datagram B", "impairment", "blob bytes", "seconds", "MB/s",
                     "verified", "RTO rtx", "fast rtx", "raw blast MB/s", "raw delivered", "ratio", "spread", "target")
EXIT_CELLS_FAILED = 1
ROUND_TRIPS, BULK, UDP_BULK = "round trips", "bulk", "udp bulk"
#: Names of the measurements that are not netlab cells: (transport, STDLIB, RAW/LENGTH/BULK), (tcp4, PEER, name).
STDLIB, PEER, RAW, LENGTH, BLAST, IDLE = "stdlib", "peer", "raw", "length", "raw blast", "idle"
#: The idle connections the issue's selector target names.
IDLE_TARGET = 10_000
LENGTH_BASELINE_TRANSPORTS = ("tcp4", "tcp6", "unix")
PEER_HEADINGS = ("stack (tcp4)", "rt/s", "p50 us", "ratio", "spread", "note")
TARGET_HEADINGS = ("target", "goal", "median", "spread", "verdict")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench", help="round trips and MB/s beside a stdlib baseline",
        description="Measure echo round trips (p50/p99/p99.9) and blob MB/s over each transport, framing "
                    "and model, each beside a minimal stdlib socket baseline measured in the same run (udp: "
                    "a raw UDP ping-pong and a raw one-way blast).")
    parser.add_argument("--quick", action="store_true",
                        help=f"a short run: length framing, threaded model, {QUICK_COUNT:,} round trips per round, "
                             f"{QUICK_BULK_SIZE} stream bulk, {QUICK_UDP_DATAGRAMS:,} datagrams of each size (at most "
                             f"{QUICK_UDP_MOST // 2**20} MiB) for udp bulk, no impaired udp rows unless --udp-impair "
                             "is given (filters still apply)")
    add_format_option(parser, BENCH_OUTPUTS, "the tables ('netlab results plot' draws the JSON)")
    parser.add_argument("--json", action="store_true", help="the same as --format json")
    add_table_options(parser)
    parser.add_argument("--transport", action="append", choices=ROUND_TRIP_TRANSPORTS, default=None,
                        help="only this transport (repeatable; default all, stream and udp)")
    parser.add_argument("--framing", action="append", choices=FRAMING_NAMES, default=None,
                        help="only this framing (repeatable)")
    parser.add_argument("--model", action="append", choices=MODELS, default=None,
                        help="only this server model (repeatable)")
    parser.add_argument("--placement", choices=PLACEMENTS, default="process",
                        help="run the servers in a child process (default, honest on few cores) or a thread")
    parser.add_argument("-c", "--count", type=positive_int, default=None, metavar="N",
                        help="round trips per measurement (at least 1)")
    parser.add_argument("--bulk-size", default=None, metavar="SIZE",
                        help=f"blob size, e.g. 256MiB (default {FULL_BULK_SIZE} on streams, {FULL_UDP_BULK_SIZE} "
                             f"on udp; with --quick {QUICK_UDP_DATAGRAMS:,} full datagrams, at most "
                             f"{QUICK_UDP_MOST // 2**20} MiB, on udp)")
    parser.add_argument("--datagram-size", action="append", type=size_argument(minimum=1), default=None, metavar="SIZE",
                        help="udp bulk datagram size, header included (repeatable; default "
                             f"{' and '.join(map(str, UDP_DATAGRAM_SIZES))})")
    parser.add_argument("--udp-impair", default=None, metavar="SPEC",
                        help=f"impairment on both ends for the second udp bulk row of each cell (default "
                             f"{UDP_LOSS_IMPAIRMENT.replace('%', '%%')}, none with --quick; '{NO_IMPAIRMENT}' skips "
                             "those rows)")
    parser.add_argument("--rto-floor", type=positive_float, default=FAST_FLOOR, metavar="S",
                        help=f"lowest retransmission timeout of the udp bulk rows (default {FAST_FLOOR}; "
                             "1 is RFC 6298's); those rows find losses with the probe timeout, sequenced "
                             "UDP's default, where the floor counts only until a round trip is measured")
    parser.add_argument("--verify", action="store_true",
                        help="bulk transfers ask for the server's SHA-256 of the blob and check it (both ends hash, "
                             "as exec --verify does; the baselines never hash)")
    parser.add_argument("--rounds", type=positive_int, default=DEFAULT_ROUNDS, metavar="N",
                        help=f"alternating rounds of every measurement; ratios are per-round medians with their "
                             f"spread (default {DEFAULT_ROUNDS}; --count is per round)")
    parser.add_argument("--no-pin", action="store_true",
                        help="do not pin the client and the child servers to different CPUs (pinned by default "
                             "when there are at least two)")
    parser.add_argument("--peers", action="store_true",
                        help="add a length-prefixed stdlib ping-pong, pyzmq REQ/REP, grpcio unary-unary and rpyc "
                             "over tcp4 (pip install 'netlab[peers]'; a missing package is a skipped row)")
    parser.add_argument("--idle", type=non_negative_int, default=0, metavar="N",
                        help="also time one client's echo p99 on a tcp4 selector server with N other connections "
                             "open and quiet, and without them, in the same rounds (e.g. 10000; raises the "
                             "open-files soft limit as needed; default 0: not measured)")
    parser.add_argument("--no-bulk", action="store_true", help="skip the bulk measurements")
    parser.add_argument("--no-round-trips", action="store_true", help="skip the round-trip measurements")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    transports = args.transport or list(ROUND_TRIP_TRANSPORTS)
    framings = args.framing or (["length"] if args.quick else list(FRAMING_NAMES))
    models = args.model or (["threaded"] if args.quick else list(MODELS))
    if args.no_bulk and args.no_round_trips and not args.idle:
        raise UsageError("--no-bulk and --no-round-trips together leave nothing to measure: drop one of them")
    count = args.count if args.count is not None else (QUICK_COUNT if args.quick else FULL_COUNT)
    bulk_size = _size(args.bulk_size or (QUICK_BULK_SIZE if args.quick else FULL_BULK_SIZE))
    udp_settings = _udp_settings(args)
    idle, idle_note = room_for_idle(args.idle) if args.idle else (0, "")
    options = table_options(args)
    check_columns(options)
    notes = _Notes()
    usable = [transport for transport in transports if _transport_usable(transport, notes)]
    stream_bulk = [] if args.no_bulk else [transport for transport in usable if transport not in UDP_TRANSPORTS]
    udp_bulk = [] if args.no_bulk else [transport for transport in usable if transport in UDP_TRANSPORTS]
    round_trip_plan = [] if args.no_round_trips else _round_trip_plan(usable, framings, models, count,
                                                                        args.placement, args.peers)
    if idle:
        round_trip_plan += [((IDLE_TRANSPORT, IDLE, str(connections)),
                             partial(idle_round_trips, connections, count=count, placement=args.placement))
                            for connections in (0, idle)]
    if idle_note:
        notes.append(idle_note)
    bulk_plan: list[tuple[Hashable, Callable[[], object]]] = []
    bulk_plan += _bulk_plan(stream_bulk, framings, models, bulk_size, args.placement, args.verify, notes)
    bulk_plan += _udp_bulk_plan(udp_bulk, framings, models, udp_settings, args.placement, notes)
    if not round_trip_plan and not bulk_plan:
        why = "; ".join(notes) or "no transport, framing and model is left"
        raise UsageError(f"the filters leave nothing to measure ({why}): widen --transport, --framing or --model")
    pinning = choose_pinning() if args.placement == "process" and not args.no_pin else NOT_PINNED
    placed = ("client and servers not pinned: --placement thread runs the servers in this process"
              if args.placement == "thread" else pinning.describe())
    notes.append(f"{placed}; {args.rounds} alternating rounds (the order reversed every other round); "
                 "a ratio is the median of the per-round ratios, its spread the lowest-highest")
    progress = Progress(args.rounds * (len(round_trip_plan) + len(bulk_plan)))
    steps = itertools.count()
    try:
        with pinned(pinning):
            def step(number: int, name: Hashable) -> None:
                label = " ".join(map(str, name)) if isinstance(name, tuple) else str(name)
                progress.update(next(steps), f"round {number + 1}/{args.rounds}: {label}")

            measured = run_rounds(round_trip_plan, args.rounds, step)
            round_trip_rows, peer_rows = _round_trip_rows(measured, usable, framings, models, args.placement,
                                                         pinning, notes, args.peers)
            bulk_measured = run_rounds(bulk_plan, args.rounds, step)
            bulk_rows = _bulk_rows(bulk_measured, stream_bulk, framings, models, bulk_size, args.placement, pinning,
                                   notes)
            udp_bulk_rows = _udp_bulk_rows(bulk_measured, udp_bulk, framings, models, udp_settings, args.placement,
                                           pinning, notes)
    finally:
        progress.finish()
    idle_figures = _idle_figures(measured, idle, notes)
    targets = target_rows(measured, bulk_measured, models, args.peers, idle)
    if args.json or args.format == "json":
        json.dump({"format": BENCH_FORMAT, "pinning": asdict(pinning), "rounds": args.rounds,
                   "round_trips": [asdict(row) for row in round_trip_rows],
                   "peers": [asdict(row) for row in peer_rows], "targets": [asdict(row) for row in targets],
                   "bulk": [asdict(row) for row in bulk_rows],
                   "udp_bulk": [asdict(row) for row in udp_bulk_rows], "idle": idle_figures, "notes": list(notes),
                   "failures": [asdict(failure) for failure in notes.failures]}, sys.stdout, indent=1)
        print()
    else:
        print(render_tables(round_trip_rows, bulk_rows, notes, udp_bulk_rows, options, notes.failures,
                            {"markdown": "github", "csv": "csv"}.get(args.format, "simple"), peer_rows, targets))
    failed = len(notes.failures) + sum(bool(row.failed) for row in peer_rows)  # a peer's failure is in its row
    if failed:
        print(f"netlab: {failed} benchmark cells failed (see the note column)", file=sys.stderr)
        return EXIT_CELLS_FAILED
    return 0


@dataclass(frozen=True)
class CellFailure:
    """One cell that could not be measured, shown as a row of its table.

    Attributes:
        table: ``round trips``, ``bulk`` or ``udp bulk``.
        cells: the row's leading cells (transport, framing, model, ...).
        reason: one line.
    """

    table: str
    cells: tuple[str, ...]
    reason: str


class _Notes(list[str]):
    """The notes under the tables, plus the cells that failed (``failures``)."""

    def __init__(self) -> None:
        super().__init__()
        self.failures: list[CellFailure] = []

    def fail(self, table: str, cells: tuple[str, ...], error: Exception) -> None:
        self.failures.append(CellFailure(table, cells, _one_line(error)))


def _one_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:300]


def _udp_settings(args: argparse.Namespace) -> list[UdpBulkSettings]:
    """Each udp bulk row's settings: per datagram size, without impairment and then with ``--udp-impair``."""
    spec = args.udp_impair if args.udp_impair is not None else (NO_IMPAIRMENT if args.quick else UDP_LOSS_IMPAIRMENT)
    impairment = "" if spec == NO_IMPAIRMENT else spec
    if impairment:
        parse_impairment(impairment)  # a bad spec is a usage error before anything runs
    settings = []
    for datagram_size in args.datagram_size or UDP_DATAGRAM_SIZES:
        if args.bulk_size:
            payload_size = _size(args.bulk_size)
        elif args.quick:
            payload_size = min(QUICK_UDP_DATAGRAMS * max(1, datagram_size - HEADER_SIZE), QUICK_UDP_MOST)
        else:
            payload_size = _size(FULL_UDP_BULK_SIZE)
        settings += [UdpBulkSettings(payload_size, datagram_size, impaired, args.rto_floor, args.verify)
                     for impaired in (("", impairment) if impairment else ("",))]
    return settings


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise UsageError(f"--bulk-size: {exc}") from None


def _transport_usable(transport: str, notes: list[str]) -> bool:
    if transport in ("tcp6", "udp6") and not ipv6_loopback_available():
        notes.append(f"{transport} skipped: ::1 is not usable on this machine")
        return False
    return True


def _round_trip_plan(transports: list[str], framings: list[str], models: list[str], count: int, placement: str,
                     peers: bool) -> list[tuple[tuple[str, str, str], Callable[[], object]]]:
    """Every round-trip measurement of the run, named (transport, framing or 'stdlib'/'peer', model or kind)."""
    plan: list[tuple[tuple[str, str, str], Callable[[], object]]] = []
    for transport in transports:
        plan.append(((transport, STDLIB, RAW), partial(baseline_round_trips, transport, count=count,
                                                        placement=placement)))
        if transport in LENGTH_BASELINE_TRANSPORTS:
            plan.append(((transport, STDLIB, LENGTH), partial(baseline_length_round_trips, transport, count=count,
                                                               placement=placement)))
        for framing in framings:
            for model in models:
                plan.append(((transport, framing, model), partial(service_round_trips, transport, framing, model,
                                                                  count=count, placement=placement)))
    if peers:
        if "tcp4" not in transports:
            plan.append((("tcp4", STDLIB, LENGTH), partial(baseline_length_round_trips, "tcp4", count=count,
                                                            placement=placement)))
        plan += [(("tcp4", PEER, name), partial(peer_round_trips, name, count=count)) for name in PEERS
                 if peer_available(name) is None]
    return plan


_Row = TypeVar("_Row")


def _compared_rows(measured: Rounds, table: str, baseline_name: str,
                   cells: Iterable[tuple[tuple[str, ...], tuple[str, ...], Hashable]],
                   build: Callable[[tuple[str, ...], Hashable, Spread], _Row], notes: _Notes) -> list[_Row]:
    """The one row builder of every table: per ``(shown cells, cell, its baseline)``, the row built from the
    rounds of both, or a failed row with the reason (the baseline's first)."""
    rows = []
    for shown, cell, base in cells:
        if base in measured.failures:
            notes.fail(table, shown, _Reason(f"{baseline_name} failed: {_one_line(measured.failures[base])}"))
        elif cell in measured.failures:
            notes.fail(table, shown, measured.failures[cell])
        elif cell in measured.results:
            found = measured.ratio(cell, base, _figure)
            assert found is not None
            rows.append(build(cell, base, found))
    return rows


def _figure(figures: object) -> float:
    """What a ratio compares: round trips/s or MB/s."""
    if isinstance(figures, RoundTripFigures):
        return figures.per_second
    return figures.megabytes_per_second  # type: ignore[attr-defined, no-any-return]


def _round_trip_rows(measured: Rounds, transports: list[str], framings: list[str], models: list[str],
                     placement: str, pinning: Pinning, notes: _Notes,
                     peers: bool) -> tuple[list[RoundTripRow], list[PeerRow]]:
    cells = [((transport, framing, model), (transport, framing, model), (transport, STDLIB, RAW))
             for transport in transports for framing in framings for model in models]

    def build(cell: tuple[str, ...], base: Hashable, found: Spread) -> RoundTripRow:
        transport, framing, model = cell
        return round_trip_row(transport, framing, model, placement, measured.results[cell], measured.results[base],
                              found, pinning=pinning.describe())

    rows = _compared_rows(measured, ROUND_TRIPS, "the stdlib baseline", cells, build, notes)
    return rows, _peer_rows(measured) if peers else []


def _median_figures(results: list[RoundTripFigures]) -> RoundTripFigures:
    """Each figure's median over the rounds."""
    return RoundTripFigures(*(statistics.median(getattr(result, name) for result in results)
                              for name in RoundTripFigures.__dataclass_fields__))


@dataclass(frozen=True)
class PeerRow:
    """A request/response stack over tcp4 beside the length-prefixed stdlib ping-pong of the same rounds.

    ``skipped`` or ``failed`` holds why it has no figures.
    """

    stack: str
    per_second: float | None
    p50_us: float | None
    ratio: float | None
    ratio_low: float | None
    ratio_high: float | None
    skipped: str = ""
    failed: str = ""


def _peer_rows(measured: Rounds) -> list[PeerRow]:
    """stdlib length-prefixed, netlab's tcp4 length echo (threaded when measured) and each peer."""
    base = ("tcp4", STDLIB, LENGTH)
    names: list[tuple[str, tuple[str, str, str]]] = [("stdlib length-prefixed", base)]
    names += [(f"netlab {key[1]}/{key[2]}", key) for key in measured.results
              if isinstance(key, tuple) and key[:2] == ("tcp4", LENGTH)]
    names += [(name, ("tcp4", PEER, name)) for name in PEERS]
    rows = []
    for stack, key in names:
        missing = peer_available(key[2]) if key[1] == PEER else None
        if missing:
            rows.append(PeerRow(stack, None, None, None, None, None, skipped=missing))
        elif key in measured.failures:
            rows.append(PeerRow(stack, None, None, None, None, None, failed=_one_line(measured.failures[key])))
        elif key in measured.results:
            figures = _median_figures(measured.results[key])
            ratio = measured.ratio(key, base, _figure)
            rows.append(PeerRow(stack, figures.per_second, figures.p50_us, *((ratio.median, ratio.low, ratio.high)
                                                                              if ratio else (None,) * 3)))
    return rows


def _bulk_plan(transports: list[str], framings: list[str], models: list[str], size: int, placement: str,
               verify: bool, notes: _Notes) -> list[tuple[tuple[str, str, str], Callable[[], object]]]:
    plan: list[tuple[tuple[str, str, str], Callable[[], object]]] = []
    usable = [framing for framing in framings if framing in BULK_FRAMINGS]
    for transport in transports:
        if len(usable) < len(framings):
            notes.append(f"{transport}: no bulk row for raw (one receive is one reply, so a bulk reply cannot be "
                         "told from the next)")
        if not usable:
            continue
        plan.append(((transport, STDLIB, BULK), partial(baseline_bulk, transport, payload_size=size,
                                                         placement=placement)))
        plan += [((transport, framing, model), partial(service_bulk, transport, framing, model, payload_size=size,
                                                       placement=placement, verify=verify))
                 for framing in usable for model in models]
    return plan


def _bulk_rows(measured: Rounds, transports: list[str], framings: list[str], models: list[str], size: int,
               placement: str, pinning: Pinning, notes: _Notes) -> list[BulkRow]:
    cells = [((transport, framing, model), (transport, framing, model), (transport, STDLIB, BULK))
             for transport in transports for framing in framings if framing in BULK_FRAMINGS for model in models]

    def build(cell: tuple[str, ...], base: Hashable, found: Spread) -> BulkRow:
        transport, framing, model = cell
        return bulk_row(transport, framing, model, placement, size, measured.results[cell], measured.results[base],
                        found, pinning=pinning.describe())

    rows = _compared_rows(measured, BULK, "the stdlib baseline", cells, build, notes)
    for row in rows:
        if row.received_bytes != row.payload_bytes:
            notes.append(f"{row.transport}/{row.framing}/{row.model}: the blob delivered {row.received_bytes:,} of "
                         f"{row.payload_bytes:,} bytes in at least one round")
    return rows


def _udp_names(transport: str, framing: str, model: str,
               settings: UdpBulkSettings) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, str, int]]:
    """A udp bulk cell's shown cells, its name in the rounds, and its raw blast's name."""
    impairment = settings.impairment or NO_IMPAIRMENT
    shown = (transport, framing, model, f"{settings.datagram_size:,}", impairment)
    return shown, (transport, framing, model, str(settings.datagram_size), impairment), (
        transport, BLAST, settings.datagram_size)


def _udp_bulk_plan(transports: list[str], framings: list[str], models: list[str], settings: list[UdpBulkSettings],
                   placement: str, notes: _Notes) -> list[tuple[Hashable, Callable[[], object]]]:
    """Every udp bulk measurement: per transport and datagram size the raw blast, then each cell."""
    plan: list[tuple[Hashable, Callable[[], object]]] = []
    usable = [framing for framing in framings if framing in BULK_FRAMINGS]
    for transport in transports:
        if len(usable) < len(framings):
            notes.append(f"{transport}: no bulk row for raw (one receive is one reply, so a bulk reply cannot be "
                         "told from the next)")
        for setting in settings if usable else ():
            _, _, blast = _udp_names(transport, "", "", setting)
            if blast not in dict(plan):
                plan.append((blast, partial(baseline_udp_blast, transport, payload_size=setting.payload_size,
                                            datagram_size=setting.datagram_size, placement=placement)))
            plan += [(_udp_names(transport, framing, model, setting)[1],
                      partial(service_udp_bulk, transport, framing, model, setting, placement=placement))
                     for framing in usable for model in models]
    return plan


def _udp_bulk_rows(measured: Rounds, transports: list[str], framings: list[str], models: list[str],
                   settings: list[UdpBulkSettings], placement: str, pinning: Pinning,
                   notes: _Notes) -> list[UdpBulkRow]:
    settings_of: dict[tuple[str, ...], UdpBulkSettings] = {}
    cells = []
    for transport in transports:
        for setting in settings:
            for framing in (framing for framing in framings if framing in BULK_FRAMINGS):
                for model in models:
                    names = _udp_names(transport, framing, model, setting)
                    settings_of[names[1]] = setting
                    cells.append(names)

    def build(cell: tuple[str, ...], base: Hashable, found: Spread) -> UdpBulkRow:
        transport, framing, model = cell[:3]
        return udp_bulk_row(transport, framing, model, placement, settings_of[cell], measured.results[cell],
                            measured.results[base], found, pinning=pinning.describe())

    rows = _compared_rows(measured, UDP_BULK, "the raw blast", cells, build, notes)
    for row in rows:
        if row.received_bytes < row.payload_bytes:
            notes.append(f"{row.transport}/{row.framing}/{row.model}/{row.datagram_size} B/"
                         f"{row.impairment or 'no impairment'}: the blob stopped with {row.received_bytes:,} of "
                         f"{row.payload_bytes:,} bytes in at least one round (the server's command timeout); its "
                         "MB/s covers what arrived")
    if rows:
        impairments = {row.impairment for row in rows} - {""}
        impaired = (f"; impaired rows: {', '.join(sorted(impairments))} on both ends (server and client)"
                    if impairments else "")
        notes.append(f"udp bulk: RTO floor {rows[0].rto_floor:g} s on both ends; retransmits are the server's "
                     f"(it sends the blob), counters the median over the rounds{impaired}; the raw blast is never "
                     "impaired")
    return rows


@dataclass(frozen=True)
class TargetRow:
    """One of the project's targets: the measured median ratio and its spread, and whether it is met.

    ``verdict`` is met, missed, or 'not measured: why'.
    """

    target: str
    goal: str
    median: float | None
    low: float | None
    high: float | None
    verdict: str


def _model_of(models: list[str]) -> str:
    return "threaded" if "threaded" in models else models[0]


def target_rows(measured: Rounds, bulk: Rounds, models: list[str], peers: bool, idle: int = 0) -> list[TargetRow]:
    """Each target of the issue, from ratios within the same rounds (``idle``: the idle connections measured)."""
    model = _model_of(models) if models else "threaded"
    rows = []

    def add(target: str, goal: float, found: Spread | None, why: str, *, within: bool = False,
            at_most: bool = False) -> None:
        wanted = f"within {goal:.0%}" if within else f"<= {goal:g}x" if at_most else f">= {goal:g}x"
        if found is None:
            rows.append(TargetRow(target, wanted, None, None, None, f"not measured: {why}"))
            return
        met = (abs(found.median - 1) <= goal if within else found.median <= goal if at_most
               else found.median >= goal)
        low, high = (found.low, found.high) if found.rounds > 1 else (None, None)  # one figure has no spread
        rows.append(TargetRow(target, wanted, found.median, low, high, "met" if met else "missed"))

    for transport in ("tcp4", "unix"):
        add(f"{transport} echo ({model}) / stdlib length ping-pong", 0.85,
            measured.ratio((transport, LENGTH, model), (transport, STDLIB, LENGTH), _figure),
            f"needs --transport {transport} --framing length")
    add(f"tcp4 echo ({model}) / pyzmq REQ/REP", 1.3,
        measured.ratio(("tcp4", LENGTH, model), ("tcp4", PEER, "pyzmq"), _figure),
        "needs --peers with pyzmq installed and tcp4 length" if not peers or peer_available("pyzmq")
        else "needs tcp4 length")
    add(f"udp echo / tcp4 echo ({model})", 0.6,
        measured.ratio(("udp", LENGTH, model), ("tcp4", LENGTH, model), _figure),
        "needs --transport udp --transport tcp4 --framing length")
    for transport in ("tcp4", "unix"):
        add(f"{transport} blob ({model}) / stdlib bulk", 0.9,
            bulk.ratio((transport, LENGTH, model), (transport, STDLIB, BULK), _figure),
            f"needs {transport} bulk with length framing")
    for size, goal in ((60_000, 0.5), (1200, 0.8)):
        add(f"udp blob {size:,} B / raw blast", goal,
            bulk.ratio(_udp_names("udp", LENGTH, model, UdpBulkSettings(datagram_size=size))[1],
                       ("udp", BLAST, size), _figure),
            f"needs udp bulk with --datagram-size {size}")
    for transport in ("tcp4", "unix"):
        add(f"{transport} iterative / threaded echo (length)", MODEL_SPREAD_TARGET,
            measured.ratio((transport, LENGTH, "iterative"), (transport, LENGTH, "threaded"), _figure),
            "needs --model iterative --model threaded", within=True)
        add(f"{transport} selector / threaded echo (length)", 0.9,
            measured.ratio((transport, LENGTH, "selector"), (transport, LENGTH, "threaded"), _figure),
            "needs --model selector --model threaded")
    add(f"tcp4 selector, {idle or IDLE_TARGET:,} idle: echo p99 / p99 with none", 1.5,
        measured.ratio((IDLE_TRANSPORT, IDLE, str(idle)), (IDLE_TRANSPORT, IDLE, "0"), _p99) if idle else None,
        f"needs --idle {IDLE_TARGET}", at_most=True)
    return rows


def _p99(figures: RoundTripFigures) -> float:
    return figures.p99_us


def _idle_figures(measured: Rounds, idle: int, notes: _Notes) -> dict[str, object] | None:
    """The idle measurement's medians for the JSON and a note (None when not asked); a failure is a failed row."""
    if not idle:
        return None
    names = {connections: (IDLE_TRANSPORT, IDLE, str(connections)) for connections in (0, idle)}
    for connections, name in names.items():
        if name in measured.failures:
            notes.fail(ROUND_TRIPS, (IDLE_TRANSPORT, IDLE, f"{connections:,} idle"), measured.failures[name])
    if any(name not in measured.results for name in names.values()):
        return None
    medians = {connections: _median_figures(measured.results[name]) for connections, name in names.items()}
    found = measured.ratio(names[idle], names[0], _p99)
    assert found is not None
    notes.append(f"idle: one client's echo on a tcp4 selector server with {idle:,} other connections open and quiet: "
                 f"p50 {medians[idle].p50_us:.1f} us, p99 {medians[idle].p99_us:.1f} us; with none: p50 "
                 f"{medians[0].p50_us:.1f} us, p99 {medians[0].p99_us:.1f} us (medians over the rounds)")
    return {"connections": idle, "with_idle": asdict(medians[idle]), "without": asdict(medians[0]),
            "p99_ratio": found.median, "p99_ratio_low": found.low, "p99_ratio_high": found.high,
            "rounds": found.rounds}


class _Reason(Exception):
    """A failure reason worded here (a baseline that failed for every cell of a transport)."""


def render_tables(round_trip_rows: list[RoundTripRow], bulk_rows: list[BulkRow], notes: list[str],
                  udp_bulk_rows: list[UdpBulkRow] | None = None, options: TableOptions | None = None,
                  failures: list[CellFailure] | None = None, table_format: str = "simple",
                  peer_rows: list[PeerRow] | None = None, targets: list[TargetRow] | None = None) -> str:
    """The round-trip, bulk, udp bulk, peers and targets tables (fitted to the terminal unless ``--wide``; failed
    cells as rows with their reason in a ``note`` column), then the notes. With ``table_format`` csv each table is
    CSV with a leading ``table`` column (blank lines between tables) and the notes go to stderr."""
    udp_bulk_rows = udp_bulk_rows or []
    failures = failures or []
    tables = (
        (ROUND_TRIPS, ROUND_TRIP_HEADINGS, [
            [row.transport, row.framing, row.model, f"{row.per_second:,.0f}", f"{row.p50_us:.1f}",
             f"{row.p99_us:.1f}", f"{row.p999_us:.1f}", f"{row.baseline_per_second:,.0f}",
             f"{row.baseline_p50_us:.1f}", f"{row.ratio:.2f}", _spread(row.ratio_low, row.ratio_high),
             _target(row.ratio, ROUND_TRIP_TARGETS[row.transport])]
            for row in round_trip_rows]),
        (BULK, BULK_HEADINGS, [
            [row.transport, row.framing, row.model, f"{row.payload_bytes:,}", f"{row.megabytes_per_second:,.0f}",
             _verified(row.verified), f"{row.baseline_megabytes_per_second:,.0f}", f"{row.ratio:.2f}",
             _spread(row.ratio_low, row.ratio_high), _target(row.ratio, BULK_TARGET)]
            for row in bulk_rows]),
        (UDP_BULK, UDP_BULK_HEADINGS, [
            [row.transport, row.framing, row.model, f"{row.datagram_size:,}", row.impairment or NO_IMPAIRMENT,
             f"{row.received_bytes:,}", f"{row.seconds:.3f}", f"{row.megabytes_per_second:,.0f}",
             _verified(row.verified), f"{row.retransmits_timeout:,}", f"{row.retransmits_fast:,}",
             f"{row.baseline_megabytes_per_second:,.0f}", f"{_fraction(row):.1%}", f"{row.ratio:.2f}",
             _spread(row.ratio_low, row.ratio_high),
             _target(row.ratio, UDP_BULK_TARGETS[row.datagram_size])
             if not row.impairment and row.datagram_size in UDP_BULK_TARGETS else "-"]
            for row in udp_bulk_rows]),
        ("peers", PEER_HEADINGS, [
            [row.stack, _number(row.per_second, ",.0f"), _number(row.p50_us, ".1f"), _number(row.ratio, ".2f"),
             _spread(row.ratio_low, row.ratio_high),
             f"skipped: {row.skipped}" if row.skipped else f"failed: {row.failed}" if row.failed else ""]
            for row in peer_rows or []]),
        ("targets", TARGET_HEADINGS, [
            [row.target, row.goal, _number(row.median, ".2f"), _spread(row.low, row.high), row.verdict]
            for row in targets or []]),
    )
    parts = []
    for table, headings, rows in tables:
        failed = [failure for failure in failures if failure.table == table]
        if failed:
            headings = (*headings, "note")
            rows = [[*row, ""] for row in rows]
            for failure in failed:
                blanks = [""] * (len(headings) - 1 - len(failure.cells))
                rows.append([*failure.cells, *blanks, f"failed: {failure.reason}"])
        if rows and table_format == "csv":
            buffer = io.StringIO()
            csv.writer(buffer, lineterminator="\n").writerows([["table", *headings], *([table, *row] for row in rows)])
            parts.append(buffer.getvalue().rstrip("\n"))
        elif rows:
            keys = KEY_COLUMNS + (4,) if table == UDP_BULK else KEY_COLUMNS if table in (ROUND_TRIPS, BULK) else (0,)
            parts.append(show_table(headings, rows, _picked(headings, options), key_columns=keys,
                                    table_format=table_format,
                                    note_columns=[len(headings) - 1] if table == "targets" else None))
    notes = [*notes, *_model_spread_notes(round_trip_rows)]
    if notes and table_format == "csv":  # CSV holds the tables only; the notes go beside them
        print("\n".join(f"netlab: note: {note}" for note in notes), file=sys.stderr)
    elif notes:
        parts.append("\n".join(f"note: {note}" for note in notes))
    return "\n\n".join(parts)


def check_columns(options: TableOptions) -> None:
    """Raise UsageError before measuring when --columns names a column no bench table has."""
    every = (*ROUND_TRIP_HEADINGS, *BULK_HEADINGS, *UDP_BULK_HEADINGS, *PEER_HEADINGS, *TARGET_HEADINGS)
    known = {heading.lower() for heading in every}
    unknown = [name for name in options.columns if name.lower() not in known]
    if unknown:
        raise UsageError(f"--columns: no bench table has {', '.join(unknown)}; they have: "
                         f"{', '.join(dict.fromkeys(every))}")


def _picked(headings: tuple[str, ...], options: TableOptions | None) -> TableOptions | None:
    """--columns as it applies to one table: the named columns that table has (all of them if none)."""
    if options is None or not options.columns:
        return options
    present = {heading.lower() for heading in headings}
    columns = tuple(name for name in options.columns if name.lower() in present)
    return TableOptions(width=options.width, wide=options.wide, columns=columns)


def _number(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def _spread(low: float | None, high: float | None) -> str:
    """The lowest-highest of per-round ratios ('' for one round or none)."""
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return ""
    return f"{low:.2f}-{high:.2f}"


def _fraction(row: UdpBulkRow) -> float:
    return row.baseline_received_bytes / row.baseline_sent_bytes if row.baseline_sent_bytes else 0.0


def _target(ratio: float, target: float) -> str:
    return f"{target:.1f}x {'met' if ratio >= target else 'missed'}"


def _model_spread_notes(rows: list[RoundTripRow]) -> list[str]:
    """Compare the iterative and threaded models per transport and framing (one connection each)."""
    by_cell = {(row.transport, row.framing, row.model): row for row in rows}
    notes = []
    for (transport, framing, model), iterative in by_cell.items():
        threaded = by_cell.get((transport, framing, "threaded"))
        if model != "iterative" or threaded is None:
            continue
        spread = abs(iterative.per_second - threaded.per_second) / max(iterative.per_second, threaded.per_second)
        verdict = "met" if spread <= MODEL_SPREAD_TARGET else "missed"
        notes.append(f"{transport}/{framing}: iterative and threaded differ by {spread:.0%} "
                     f"(target within {MODEL_SPREAD_TARGET:.0%}: {verdict})")
    return notes


def _verified(verified: bool | None) -> str:
    return "-" if verified is None else "yes" if verified else "NO"
