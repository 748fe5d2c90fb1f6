"""Experiment ``framing``: where messages begin and end, per transport and framing.

How this works: a real netlab server (iterative model) runs with the framing
under test; its listener is wrapped so every accepted connection is tapped
(each server-side ``receive`` is recorded). A client built from the framer
alone (no session, so it may pipeline) sends ``messages`` short commands
``echo m0001``, ``echo m0002``, ... back to back without waiting for replies
(one send per encoded message), then reads replies. ``ack`` cannot pipeline:
its client sends one command and waits for the reply before the next, which
is the round trip per message that the framing costs.

- ``delivery: burst``: the server is busy (its accept waits until the client
  has sent everything, or at most ``busy`` seconds), so the commands are
  already queued when the server first reads: on a byte stream they merge into
  as few receives as the buffer allows. (An AF_UNIX sender, stream or
  seqpacket, blocks when its send buffer is full: each small write is charged
  to it as a whole buffer, not by its bytes, so a few hundred short writes to
  an unread peer fill it, and net.unix.max_dgram_qlen, a limit for datagram
  sockets, plays no part. The UNIX rows' note gives the count, measured in
  the run on a fresh socket pair; past it the exchange lasts until the
  ``busy`` bound ends.)
- ``delivery: sliced``: the client writes through the slicer
  (:class:`~netlab.transport.slicer.SlicingConnection`): each send becomes
  1-16 byte writes with 0.5 ms pauses while the server reads as data comes, so
  commands arrive in pieces.

After sending, the client half-closes (except with ``ack``, whose lock-step
needs the connection both ways until the last reply), so the server reads to
the end. Counted: commands the server ran exactly as sent ("intact"), glued to
another ("merged"), or never whole ("split") — from the server's own command
log; the server's receive calls; replies that match their command in order,
out of step, or cut short (missing the final newline).

Against a remote target (``netlab run --target``) only ``delivery: sliced``
in the target's framing runs: the client's slices and the replies are
counted, while the server's receives and its command log (intact, merged,
split) are the target's own and stay empty. A burst needs the server held
busy, which only a server netlab starts can be, so it is skipped.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from netlab.errors import ProtocolError, TransportError
from netlab.proto.framing import FRAMING_NAMES, Framer, Role, make_framer
from netlab.proto.messages import END_OF_STREAM, Error, Exit, Output, Request
from netlab.scenario.charts import BARS, Chart
from netlab.scenario.experiments.base import Experiment, Parameter, RunContext, RunSkipped
from netlab.scenario.experiments.common import (
    ALL_TRANSPORTS,
    milliseconds,
    on_client,
    placed_service,
    require_transport,
    service_url,
)
from netlab.scenario.experiments.kernel import sends_until_full
from netlab.service.channel import Channel
from netlab.service.client import Client
from netlab.transport import SlicingConnection, TappedConnection, TapRecorder, connect
from netlab.transport.base import Connection

DELIVERIES = ("burst", "sliced")
SEND_TIMEOUT = 10.0


@dataclass
class FramingRow:
    """How one framing fared on one transport."""

    transport: str = field(metadata={"key": True})
    framing: str = field(metadata={"key": True})
    delivery: str = field(metadata={"key": True})
    sent: int = 0
    server_receives: int | None = field(default=0, metadata={"heading": "server recvs"})
    intact: int | None = 0
    merged: int | None = field(default=0, metadata={"heading": "merged (sticky)"})
    split: int | None = 0
    replies: int = 0
    in_step: int = field(default=0, metadata={"heading": "replies in step"})
    out_of_step: int = field(default=0, metadata={"heading": "out of step"})
    truncated: int = 0
    client_writes: int = field(default=0, metadata={"heading": "client writes"})
    elapsed_ms: float | None = field(default=None, metadata={"better": "lower", "heading": "exchange ms"})
    note: str = ""


def run(parameters: Mapping[str, Any], context: RunContext) -> list[FramingRow]:
    """Send the commands over one transport and framing and count what arrived how."""
    transport, framing, delivery = parameters["transport"], parameters["framing"], parameters["delivery"]
    count, quiet = parameters["messages"], parameters["quiet"]
    require_transport(transport, context.network)
    recorder = TapRecorder()
    gate = threading.Event() if delivery == "burst" else None

    def tap_after_gate(connection: Connection) -> Connection:
        """Tap every accepted connection; in a burst, hold the accept until the client sent all."""
        if gate is not None:
            gate.wait(parameters["busy"])
        return TappedConnection(connection, recorder, label="server")

    lines = [f"echo m{number:04d}" for number in range(1, count + 1)]
    if context.target is not None:
        return [_against_target(parameters, context, lines)]
    replies: list[bytes] = []
    elapsed = 0.0
    with placed_service(context, service_url(transport, context), model="iterative", framing=framing,
                        wrap_accepted=tap_after_gate) as service:
        inner = on_client(context, lambda: connect(service.address, timeout=min(5.0, context.remaining())))
        tapped = TappedConnection(inner, recorder, label="client")
        writer: Connection = tapped
        if delivery == "sliced":
            writer = SlicingConnection(tapped, context.random, parameters["slice_min"], parameters["slice_max"],
                                       parameters["slice_delay"])
        started = time.monotonic()
        try:
            replies = _exchange(writer, framing, lines, gate, quiet, context)
            elapsed = time.monotonic() - started
        finally:
            writer.close()
            if gate is not None:
                gate.set()
    server_lines = [event["line"] for event in service.log_events("command")]
    intact, merged, split = _classify(lines, server_lines)
    expected = [line[len("echo "):].encode() + b"\n" for line in lines]
    in_step = sum(1 for reply, wanted in zip(replies, expected) if reply == wanted)
    events = recorder.events()
    server_receives = sum(1 for e in events if e.connection == "server" and e.direction == "recv" and e.size)
    client_writes = sum(1 for e in events if e.connection == "client" and e.direction == "send")
    return [FramingRow(
        transport=transport,
        framing=framing,
        delivery=delivery,
        sent=count,
        server_receives=server_receives,
        intact=intact,
        merged=merged,
        split=split,
        replies=len(replies),
        in_step=in_step,
        out_of_step=len(replies) - in_step,
        truncated=sum(1 for reply in replies if not reply.endswith(b"\n")),
        client_writes=client_writes,
        elapsed_ms=milliseconds(elapsed),
        note=_note(count, server_receives, intact, merged, split, len(replies), in_step) + (
            _send_buffer_note(transport, len(lines[0])) if delivery == "burst" else ""),
    )]


def _against_target(parameters: Mapping[str, Any], context: RunContext, lines: list[str]) -> FramingRow:
    """Sliced delivery to a remote target: the replies are counted; the server's side is the target's own."""
    if parameters["delivery"] == "burst":
        raise RunSkipped("burst delivery holds the server busy while the client sends, which only a server "
                         "netlab starts itself can be")
    target = context.target
    assert target is not None
    recorder = TapRecorder()
    client = Client(target.url, framing=parameters["framing"], connect_timeout=min(5.0, context.remaining()),
                    read_timeout=min(SEND_TIMEOUT, context.remaining()), token=target.token)
    tapped = TappedConnection(client.connection, recorder, label="client")
    writer = SlicingConnection(tapped, context.random, parameters["slice_min"], parameters["slice_max"],
                               parameters["slice_delay"])
    started = time.monotonic()
    try:
        replies = _exchange(writer, parameters["framing"], lines, None, parameters["quiet"], context)
        elapsed = time.monotonic() - started
    finally:
        writer.close()
    expected = [line[len("echo "):].encode() + b"\n" for line in lines]
    in_step = sum(1 for reply, wanted in zip(replies, expected) if reply == wanted)
    return FramingRow(
        transport=parameters["transport"], framing=parameters["framing"], delivery=parameters["delivery"],
        sent=len(lines), server_receives=None, intact=None, merged=None, split=None, replies=len(replies),
        in_step=in_step, out_of_step=len(replies) - in_step,
        truncated=sum(1 for reply in replies if not reply.endswith(b"\n")),
        client_writes=sum(1 for e in recorder.events() if e.connection == "client" and e.direction == "send"),
        elapsed_ms=milliseconds(elapsed),
        note=f"{len(replies)} replies for {len(lines)} commands, {in_step} in step; against a remote target the "
             "server's receives and command log are its own, so intact, merged and split are not counted",
    )


def _send_buffer_note(transport: str, size: int) -> str:
    """For UNIX transports: how many such writes an unread peer takes before EAGAIN (measured now)."""
    kinds = {"unix": socket.SOCK_STREAM, "unix-seqpacket": socket.SOCK_SEQPACKET}
    if transport not in kinds:
        return ""
    count = sends_until_full(kinds[transport], size)
    if count is None:
        return ""
    return f"; an unread {transport} peer takes {count} {size}-byte writes before EAGAIN (the send buffer fills)"


def _exchange(connection: Connection, framing: str, lines: list[str], gate: threading.Event | None, quiet: float,
              context: RunContext) -> list[bytes]:
    """Send every command back to back (ack: one at a time) and collect the replies."""
    framer = make_framer(framing, Role.CLIENT)
    requests = [Request(request_id, tuple(line.split()), line) for request_id, line in enumerate(lines, start=1)]
    if framing == "ack":
        replies: list[bytes] = []
        for request in requests:
            data = framer.encode(request)
            if data:
                connection.send(data, SEND_TIMEOUT)
            if gate is not None:
                gate.set()
            replies += _read_replies(connection, framer, 1, quiet, context)
        return replies
    encoded = [framer.encode(request) for request in requests]
    # A pipelining client must read while it writes, or both ends can block on full buffers.
    collected: list[bytes] = []
    reader = threading.Thread(
        target=lambda: collected.extend(_read_replies(connection, framer, len(lines), quiet, context)),
        name="netlab-framing-reader", daemon=True)
    reader.start()
    for data in encoded:
        if data:
            connection.send(data, SEND_TIMEOUT)
    if gate is not None:
        gate.set()
    connection.shutdown_write()
    reader.join(context.remaining())
    return collected


def _read_replies(connection: Connection, framer: Framer, wanted: int, quiet: float,
                  context: RunContext) -> list[bytes]:
    """Read until ``wanted`` replies, end of stream, or ``quiet`` seconds of silence."""
    channel = Channel(connection, framer)
    replies: list[bytes] = []
    current: list[bytes] = []
    while len(replies) < wanted and not context.cancelled.is_set() and context.remaining() > 0:
        try:
            message = channel.next_message(min(quiet, context.remaining()))
        except TransportError:  # silence (ReadTimeout) or a broken connection
            break
        except ProtocolError:  # raw bytes that the framer cannot read: what was complete is what came back
            break
        if message is END_OF_STREAM:
            break
        if isinstance(message, Output):
            current.append(message.data)
        elif isinstance(message, (Exit, Error)):
            if isinstance(message, Error):
                current.append(f"error: {message.message}\n".encode())
            replies.append(b"".join(current))
            current = []
    return replies


def _classify(lines: list[str], server_lines: list[str]) -> tuple[int, int, int]:
    """Count sent commands the server ran intact, merged with others, or never whole."""
    ran_alone = {line for line in server_lines}
    merged_tokens: set[str] = set()
    for server_line in server_lines:
        whole_commands = re.findall(r"echo (m\d{4})(?=echo |$|\s)", server_line)
        if server_line.count("echo") > 1:
            merged_tokens.update(whole_commands)
    intact = merged = split = 0
    for line in lines:
        token = line[len("echo "):]
        if line in ran_alone:
            intact += 1
        elif token in merged_tokens:
            merged += 1
        else:
            split += 1
    return intact, merged, split


def _note(sent: int, receives: int, intact: int, merged: int, split: int, replies: int, in_step: int) -> str:
    if intact == sent and in_step == sent:
        return f"all {sent} intact and answered in step ({receives} server recvs)"
    parts = []
    if merged:
        parts.append(f"{merged} commands merged into others")
    if split:
        parts.append(f"{split} never arrived whole")
    parts.append(f"{replies} replies for {sent} commands, {in_step} in step")
    return "; ".join(parts)


def _check_cell(parameters: Mapping[str, Any]) -> str | None:
    if parameters["slice_min"] > parameters["slice_max"]:
        return "slice_min must not exceed slice_max"
    if parameters["delivery"] == "sliced" and parameters["transport"] in ("unix-seqpacket", "udp"):
        return (f"sliced delivery is for byte streams: on {parameters['transport']} every slice would be a message "
                "of its own; use burst")
    return None


EXPERIMENT = Experiment(
    name="framing",
    summary="message boundaries: raw merges and desyncs, ack pays a round trip, length is free",
    parameters=(
        Parameter("transport", str, "tcp4", "which transport", choices=ALL_TRANSPORTS),
        Parameter("framing", str, "length", "the framing under test", choices=FRAMING_NAMES),
        Parameter("delivery", str, "burst", "burst: server busy while all is sent; sliced: 1-16 byte writes",
                  choices=DELIVERIES),
        Parameter("messages", int, 100, "commands sent back to back", minimum=1, maximum=9999),
        Parameter("slice_min", int, 1, "sliced: smallest write, bytes", minimum=1, maximum=65536, unit="bytes"),
        Parameter("slice_max", int, 16, "sliced: largest write, bytes", minimum=1, maximum=65536, unit="bytes"),
        Parameter("slice_delay", float, 0.0005, "sliced: pause between writes, s", minimum=0, maximum=0.1, unit="s"),
        Parameter("busy", float, 0.2, "burst: longest time the server stays busy, s", minimum=0, maximum=10, unit="s"),
        Parameter("quiet", float, 0.5, "stop reading after this many seconds without a reply", minimum=0.01,
                  maximum=30, unit="s"),
    ),
    row_type=FramingRow,
    run=run,
    method=__doc__ or "",
    local_only="",
    charts=(
        Chart("boundaries", "What each framing does to 100 back-to-back messages", BARS,
              x=("transport", "framing", "delivery"), y=("merged", "split", "out_of_step"),
              y_label="messages"),
    ),
    check_cell=_check_cell,
)
