"""``netlab bench``: round trips and bulk throughput beside a stdlib baseline.

The measurements live in :mod:`netlab.scenario.throughput`; this module picks
the matrix from the filters, measures each baseline once per transport (and
reuses it for every framing and model on that transport), and renders the rows
with tabulate or as JSON. A cell that cannot run (IPv6 off, a framing that
cannot carry the transfer) becomes a note under the table, not a failure.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from tabulate import tabulate

from netlab.errors import NetlabError, UsageError
from netlab.proto.framing import FRAMING_NAMES
from netlab.scenario.experiments.common import ipv6_loopback_available
from netlab.scenario.throughput import (
    BULK_FRAMINGS,
    PLACEMENTS,
    STREAM_TRANSPORTS,
    BulkFigures,
    BulkRow,
    RoundTripFigures,
    RoundTripRow,
    baseline_bulk,
    baseline_round_trips,
    measure_bulk,
    measure_round_trips,
)
from netlab.service.builtins import parse_size
from netlab.service.server import MODELS

FULL_COUNT = 20_000
QUICK_COUNT = 1_000
FULL_BULK_SIZE = "256MiB"
QUICK_BULK_SIZE = "8MiB"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench", help="round trips and MB/s beside a stdlib baseline",
        description="Measure echo round trips (p50/p99/p99.9) and blob MB/s over each stream transport, framing "
                    "and model, each beside a minimal stdlib socket baseline measured in the same run.")
    parser.add_argument("--quick", action="store_true",
                        help=f"a short run: length framing, threaded model, {QUICK_COUNT} round trips, "
                             f"{QUICK_BULK_SIZE} bulk (filters still apply)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of tables")
    parser.add_argument("--transport", action="append", choices=STREAM_TRANSPORTS, default=None,
                        help="only this transport (repeatable; default all stream transports)")
    parser.add_argument("--framing", action="append", choices=FRAMING_NAMES, default=None,
                        help="only this framing (repeatable)")
    parser.add_argument("--model", action="append", choices=MODELS, default=None,
                        help="only this server model (repeatable)")
    parser.add_argument("--placement", choices=PLACEMENTS, default="process",
                        help="run the servers in a child process (default, honest on few cores) or a thread")
    parser.add_argument("--count", type=int, default=None, metavar="N", help="round trips per measurement")
    parser.add_argument("--bulk-size", default=None, metavar="SIZE", help="blob size, e.g. 256MiB")
    parser.add_argument("--no-bulk", action="store_true", help="skip the bulk measurements")
    parser.add_argument("--no-round-trips", action="store_true", help="skip the round-trip measurements")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    transports = args.transport or list(STREAM_TRANSPORTS)
    framings = args.framing or (["length"] if args.quick else list(FRAMING_NAMES))
    models = args.model or (["threaded"] if args.quick else list(MODELS))
    count = args.count or (QUICK_COUNT if args.quick else FULL_COUNT)
    if count < 1:
        raise UsageError(f"--count must be at least 1, got {count}")
    try:
        bulk_size = parse_size(args.bulk_size or (QUICK_BULK_SIZE if args.quick else FULL_BULK_SIZE))
    except ValueError as exc:
        raise UsageError(f"--bulk-size: {exc}; write e.g. 256MiB") from None
    round_trip_rows: list[RoundTripRow] = []
    bulk_rows: list[BulkRow] = []
    notes: list[str] = []
    for transport in transports:
        if not _transport_usable(transport, notes):
            continue
        if not args.no_round_trips:
            round_trip_rows += _round_trips(transport, framings, models, count, args.placement, notes)
        if not args.no_bulk:
            bulk_rows += _bulk(transport, framings, models, bulk_size, args.placement, notes)
    if args.json:
        json.dump({"round_trips": [asdict(row) for row in round_trip_rows],
                   "bulk": [asdict(row) for row in bulk_rows], "notes": notes}, sys.stdout, indent=1)
        print()
    else:
        print(render_tables(round_trip_rows, bulk_rows, notes))
    return 0


def _transport_usable(transport: str, notes: list[str]) -> bool:
    if transport == "tcp6" and not ipv6_loopback_available():
        notes.append("tcp6 skipped: ::1 is not usable on this machine")
        return False
    return True


def _round_trips(transport: str, framings: list[str], models: list[str], count: int, placement: str,
                 notes: list[str]) -> list[RoundTripRow]:
    try:
        baseline: RoundTripFigures = baseline_round_trips(transport, count=count, placement=placement)
    except NetlabError as exc:
        notes.append(f"{transport} round-trip baseline failed: {exc}")
        return []
    rows = []
    for framing in framings:
        for model in models:
            try:
                rows.append(measure_round_trips(transport, framing, model, count=count, placement=placement,
                                                baseline=baseline))
            except NetlabError as exc:
                notes.append(f"{transport}/{framing}/{model} round trips failed: {exc}")
    return rows


def _bulk(transport: str, framings: list[str], models: list[str], size: int, placement: str,
          notes: list[str]) -> list[BulkRow]:
    usable = [framing for framing in framings if framing in BULK_FRAMINGS]
    if len(usable) < len(framings):
        notes.append(f"{transport}: no bulk row for raw (one receive is one reply, so a bulk reply cannot be told "
                     "from the next)")
    if not usable:
        return []
    try:
        baseline: BulkFigures = baseline_bulk(transport, payload_size=size, placement=placement)
    except NetlabError as exc:
        notes.append(f"{transport} bulk baseline failed: {exc}")
        return []
    rows = []
    for framing in usable:
        for model in models:
            try:
                rows.append(measure_bulk(transport, framing, model, payload_size=size, placement=placement,
                                         baseline=baseline))
            except NetlabError as exc:
                notes.append(f"{transport}/{framing}/{model} bulk failed: {exc}")
    return rows


def render_tables(round_trip_rows: list[RoundTripRow], bulk_rows: list[BulkRow], notes: list[str]) -> str:
    """The round-trip and bulk tables, then the notes, as text."""
    parts = []
    if round_trip_rows:
        parts.append(tabulate(
            [[row.transport, row.framing, row.model, f"{row.per_second:,.0f}", f"{row.p50_us:.1f}",
              f"{row.p99_us:.1f}", f"{row.p999_us:.1f}", f"{row.baseline_per_second:,.0f}",
              f"{row.baseline_p50_us:.1f}", f"{row.ratio:.2f}"] for row in round_trip_rows],
            headers=["transport", "framing", "model", "echo rt/s", "p50 us", "p99 us", "p99.9 us",
                     "stdlib rt/s", "stdlib p50 us", "ratio"],
            disable_numparse=True))
    if bulk_rows:
        parts.append(tabulate(
            [[row.transport, row.framing, row.model, f"{row.payload_bytes:,}", f"{row.megabytes_per_second:,.0f}",
              _verified(row.verified), f"{row.baseline_megabytes_per_second:,.0f}", f"{row.ratio:.2f}"]
             for row in bulk_rows],
            headers=["transport", "framing", "model", "blob bytes", "MB/s", "verified", "stdlib MB/s", "ratio"],
            disable_numparse=True))
    if notes:
        parts.append("\n".join(f"note: {note}" for note in notes))
    if not parts:
        return "nothing measured: the filters left no transport, framing and model to run"
    return "\n\n".join(parts)


def _verified(verified: bool | None) -> str:
    return "n/a" if verified is None else "yes" if verified else "NO"
