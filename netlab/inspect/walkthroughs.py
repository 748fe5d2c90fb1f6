"""Guided captures: run a real experiment, capture it, explain it step by step.

How this works: each walkthrough starts an in-process server on an ephemeral
loopback port (or a UNIX socket in a temporary directory), runs a client
against it inside a :class:`Capture` (packets) and/or with the syscall tap
(send/recv calls), and returns a :class:`Walkthrough`: sections of packet rows
or calls, each with a one-line explanation computed from what was captured,
plus findings measured in the run (gaps, sizes). Captures are written as pcap
files into the directory given. Rendering to text or Markdown is separate from
running, so the same run prints to a terminal or regenerates the docs.
Every wait is bounded and waits on an event (a packet seen, a call recorded, a
command running), never on a guessed sleep.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from netlab.errors import ConnectionRefused, NetlabError, ReadTimeout, UsageError
from netlab.inspect.analyze import PacketRow
from netlab.inspect.experiment import running_server
from netlab.inspect.explain import explain_calls
from netlab.inspect.sniffer import Capture, CapturedPacket, PacketFilter
from netlab.inspect.walkthrough_parts import (
    TCP_ACK,
    TCP_FIN,
    TCP_SYN,
    WAIT,
    Call,
    Section,
    Walkthrough,
    closed_both_ways,
    packet_section,
    pcap_file,
    udp_closed_both_ways,
)
from netlab.proto.framing import Framer, Role, make_framer
from netlab.proto.messages import END_OF_STREAM, Exit, Output, Request
from netlab.service.channel import Channel
from netlab.service.client import Client
from netlab.transport import connect, listen
from netlab.transport.address import Address, ipv6_loopback_available
from netlab.transport.base import Connection
from netlab.transport.impairment import Impairment
from netlab.transport.sysctl import syn_resend_times
from netlab.transport.tap import TapEvent, TappedConnection, TapRecorder

#: tcp4 walkthrough clients connect from here, so both ends of a loopback packet differ.
CLIENT_HOST = "127.0.0.2"
#: The tap keeps whole transfers up to this size, so recvs can be split into frames.
TAP_PREVIEW_SIZE = 4096


# -- helpers -------------------------------------------------------------------


def _count_flags(packets: list[CapturedPacket], mask: int, exact: int | None = None) -> int:
    count = 0
    for packet in packets:
        flags = packet.tcp_flags
        if flags is not None and flags & mask and (exact is None or flags & (TCP_SYN | TCP_ACK | TCP_FIN) == exact):
            count += 1
    return count


def _client(address: Address, **options: Any) -> Client:
    """A client of the walkthrough's server; over tcp4 it connects from :data:`CLIENT_HOST`, so the two ends
    of every packet differ (on loopback both would be 127.0.0.1 and a ladder would have one column)."""
    connect_options = {"source_host": CLIENT_HOST} if address.scheme == "tcp4" else None
    return Client(address, connect_options=connect_options, **options)


def _exchange(address: Address, commands: list[str]) -> None:
    with _client(address, read_timeout=WAIT) as client:
        for command in commands:
            client.run(command)


# -- tcp-handshake ---------------------------------------------------------------


def tcp_handshake(pcap_dir: str | None) -> Walkthrough:
    """Capture one command over TCP/IPv4 from SYN to the last ACK."""
    walkthrough = Walkthrough(
        "tcp-handshake",
        "A command over TCP, packet by packet",
        "",
    )
    section, rows, _ = _captured_exchange("tcp4://127.0.0.1:0", pcap_dir, "tcp-handshake",
                                          "tcp4: one client, one command")
    walkthrough.lesson = (
        "Before a byte of the command moves, TCP spends three packets agreeing on sequence numbers; "
        f"after the reply, {_describe_close(rows)}. In between, netlab's length framing puts each message in "
        "one frame: a 4-byte length, a type byte and the fields.")
    walkthrough.sections.append(section)
    handshake = [row for row in rows if row.length == 0][:3]
    if len(handshake) == 3:
        walkthrough.findings.append(
            f"the handshake took {(handshake[2].time - handshake[0].time) * 1e6:.0f} us on loopback")
    carrying = [row for row in rows if len(row.content) > 1 and row.length]
    for row in carrying:
        walkthrough.findings.append(f"packet {row.number} carried {len(row.content)} messages in one segment: "
                                    + ", ".join(row.content))
    walkthrough.findings.append(f"{len(rows)} packets in all, {sum(row.length for row in rows)} bytes of payload")
    return walkthrough


def _describe_close(rows: list[PacketRow]) -> str:
    """How the capture shows the close: ``three more to close both directions (FIN, FIN+ACK, ACK)``."""
    first_fin = next((index for index, row in enumerate(rows) if "FIN" in row.flags.split(",")), None)
    if first_fin is None:
        return "the capture ended before either side closed"
    closing = [row for row in rows[first_fin:] if not row.length]
    names = ["+".join(flag for flag in row.flags.split(",") if flag in ("FIN", "ACK", "RST")) for row in closing]
    count = _NUMBER_WORDS.get(len(closing), str(len(closing)))
    fins = [index for index, row in enumerate(closing) if "FIN" in row.flags.split(",")]
    merged = ""
    if len(fins) == 2 and fins[1] == fins[0] + 1:
        merged = "; the second FIN also acknowledges the first, so no separate ACK goes before it"
    return f"{count} more to close both directions ({', '.join(names)}){merged}"


_NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}


def _captured_exchange(address: str, pcap_dir: str | None, pcap_name: str, heading: str,
                       command: str = "echo hello netlab") -> tuple[Section, list[PacketRow], int]:
    """Run one command against a fresh server under capture; return the section, rows and wire bytes."""
    with running_server(address) as server:
        bound = server.listener.address
        port = bound.port or 0
        with Capture(PacketFilter.for_ports(tcp_ports=[port])) as capture:
            _exchange(bound, [command])
            capture.wait_for(closed_both_ways(1), WAIT)
    text = (f"A server listens on {bound}; the client connects, runs `{command}` and closes.")
    section = packet_section(heading, text, capture, pcap_file(pcap_dir, pcap_name), [port])
    return section, section.packets, sum(len(packet.data) for packet in capture.packets())


# -- sticky-packets --------------------------------------------------------------


class _WatchedRecorder(TapRecorder):
    """A tap recorder one can wait on."""

    def __init__(self, preview_size: int) -> None:
        super().__init__(preview_size)
        self._changed = threading.Condition()

    def record(self, direction: str, data: bytes, connection: str, at: float | None = None) -> None:  # type: ignore[override]
        super().record(direction, data, connection, at)  # type: ignore[arg-type]
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[list[TapEvent]], bool], timeout: float) -> bool:
        """Wait until ``predicate`` holds for the events recorded so far; False when ``timeout`` ran out first."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self.events()), timeout)


def sticky_packets(pcap_dir: str | None) -> Walkthrough:
    """Three quick sends over a UNIX stream socket arrive as one recv; then the length framing."""
    del pcap_dir  # AF_UNIX has no packets: the tap is the capture
    walkthrough = Walkthrough(
        "sticky-packets",
        "Sticky packets: three sends, one recv",
        "A stream socket (TCP or UNIX stream) delivers bytes, not messages: what several send() calls "
        "wrote can come back from one recv(). The server below is busy with a `sleep` while the client "
        "sends three commands, so they wait together in the socket buffer. AF_UNIX has no packets, so "
        "netlab's syscall tap records every send() and recv() instead.",
    )
    commands = ["echo one", "echo two", "echo three"]
    for framing, text in (
        ("raw", "The raw framing (the classic tutorial): one recv() is taken as one command. The three "
                "commands merge into one line, and the server runs that line."),
        ("length", "The length framing: the same three sends merge the same way, but each frame starts with "
                   "its length, so the three requests can be told apart in the one read. The findings below "
                   "say what the server answered, and when."),
    ):
        walkthrough.sections.append(_sticky_section(framing, text, commands, walkthrough))
    return walkthrough


def _sticky_section(framing: str, text: str, commands: list[str], walkthrough: Walkthrough) -> Section:
    recorder = _WatchedRecorder(TAP_PREVIEW_SIZE)
    with tempfile.TemporaryDirectory(prefix="netlab-") as directory:
        address = f"unix://{directory}/sticky.sock"
        with running_server(address, framing=framing, recorder=recorder):
            connection = TappedConnection(connect(address, WAIT), recorder, "client")
            with connection:
                framer = make_framer(framing, Role.CLIENT)
                connection.send(framer.encode(Request(1, ("sleep", "0.3"), "sleep 0.3")), WAIT)
                recorder.wait_for(lambda events: any(e.connection == "server" and e.direction == "recv"
                                                     for e in events), WAIT)
                for number, command in enumerate(commands, 2):
                    connection.send(framer.encode(Request(number, tuple(command.split()), command)), WAIT)
                replies = _read_replies(connection, framer, 1 if framing == "raw" else len(commands) + 1)
                connection.shutdown_write()
                _read_to_end(connection)
            recorder.wait_for(lambda events: any(e.connection == "server" and e.size == 0 for e in events), WAIT)
    events = recorder.events()
    section = Section(f"{framing} framing over unix://", text, calls=events,
                      explanations=explain_calls(events, {"client": "server", "server": "client"},
                                                 split_frames=framing == "length"))
    server_recvs = [event for event in events if event.connection == "server" and event.direction == "recv"
                    and event.size]
    client_sends = [event for event in events if event.connection == "client" and event.direction == "send"]
    walkthrough.findings.append(f"{framing}: the client called send() {len(client_sends)} times, the server's "
                                f"recv() returned data {len(server_recvs)} times; the client got back "
                                f"{replies}")
    return section


def _read_replies(connection: Connection, framer: Framer, exits: int) -> str:
    """Read until ``exits`` replies ended (raw: one receive's worth); describe what came back."""
    channel = Channel(connection, framer, framer.receive_size)
    seen: list[str] = []
    deadline = time.monotonic() + WAIT
    while seen.count("exit") < exits:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            message = channel.next_message(remaining)
        except ReadTimeout:
            seen.append(f"then nothing for {WAIT:g} s")
            break
        if message is END_OF_STREAM:
            break
        if isinstance(message, Exit):
            seen.append("exit")
        elif isinstance(message, Output):
            seen.append(repr(message.data.decode("utf-8", "backslashreplace")))
    outputs = [item for item in seen if item != "exit" and not item.startswith("then")]
    stalled = [item for item in seen if item.startswith("then")]
    return f"{len(outputs)} output(s): {', '.join(outputs + stalled)}"


def _read_to_end(connection: Connection) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if not connection.receive(65536, max(0.0, deadline - time.monotonic())):
            return


# -- ack -------------------------------------------------------------------------


def ack_per_send(pcap_dir: str | None) -> Walkthrough:
    """The tutorial's fix for sticky packets: a size, an ``ok``, then the body, beside the raw case."""
    del pcap_dir  # AF_UNIX has no packets: the tap is the capture
    walkthrough = Walkthrough(
        "ack",
        "The ack fix: one message per read, a round trip each",
        "The story the classic tutorial tells ends here. Its raw protocol takes one recv() for one command, "
        "so commands sent quickly stick together (first section, as in sticky-packets). Its fix, netlab's "
        "`ack` framing: the sender first sends the body's size on a line, waits for the receiver's `ok`, "
        "and only then sends the body, so two messages can never share a read, and a reply comes back the "
        "same way. The price is a round trip per message in each direction.",
    )
    commands = ["echo one", "echo two", "echo three"]
    walkthrough.sections.append(_sticky_section(
        "raw", "The raw framing: the server is busy with `sleep 0.3` while the client sends three commands; "
               "they merge into one read and run as one line.", commands, walkthrough))
    walkthrough.sections.append(_ack_section(commands, walkthrough))
    return walkthrough


def _ack_section(commands: list[str], walkthrough: Walkthrough) -> Section:
    recorder = _WatchedRecorder(TAP_PREVIEW_SIZE)
    outputs: list[str] = []
    with tempfile.TemporaryDirectory(prefix="netlab-") as directory:
        address = f"unix://{directory}/ack.sock"
        with running_server(address, framing="ack", recorder=recorder):
            connection = TappedConnection(connect(address, WAIT), recorder, "client")
            started = time.monotonic()
            with Client(address, framing="ack", connection=connection, read_timeout=WAIT) as client:
                client.run("sleep 0.3")
                for command in commands:
                    outputs.append(repr(client.run(command).stdout.decode("utf-8", "backslashreplace")))
                elapsed = time.monotonic() - started
            recorder.wait_for(lambda events: any(e.connection == "server" and e.size == 0 for e in events), WAIT)
    events = recorder.events()
    explanations = explain_calls(events, {"client": "server", "server": "client"})
    section = Section("ack framing over unix://",
                      "The same commands over `ack`: the client cannot send the next size before the server "
                      "has read the body and answered, so no recv() can hold two commands.",
                      calls=events, explanations=explanations)
    client_sends = sum(1 for event in events if event.connection == "client" and event.direction == "send")
    server_recvs = sum(1 for event in events if event.connection == "server" and event.direction == "recv"
                       and event.size)
    merged_reads = [event for event, text in zip(events, explanations) if "merged into one read" in text]
    control_only = [event for event in merged_reads if _only_control_lines(event.preview)]
    oks = sum(1 for event in events if event.direction == "send" and event.preview == b"ok\n")
    merged = f"{len(merged_reads)} read(s) held more than one send"
    if merged_reads and len(control_only) == len(merged_reads):
        merged += " (only `ok` and size lines, which ack reads line by line: no read held two commands)"
    client_oks = sum(1 for event in events if event.connection == "client" and event.direction == "send"
                     and event.preview == b"ok\n")
    walkthrough.findings.append(
        f"ack: the client called send() {client_sends} times for {len(commands) + 1} commands ({client_oks} of "
        f"them an `ok` for a reply, the rest a size line and a body per command); the server's recv() returned "
        f"data {server_recvs} times; {merged}; {oks} `ok` lines in all; the client got back {len(outputs)} "
        f"output(s): {', '.join(outputs)} in {elapsed:.2f} s (0.3 s of it the sleep)")
    return section


def _only_control_lines(data: bytes) -> bool:
    """True when ``data`` is whole ack control lines: ``ok`` or a size."""
    lines = data.split(b"\n")
    return lines[-1] == b"" and all(line == b"ok" or line.isdigit() for line in lines[:-1])


# -- backlog-overflow ------------------------------------------------------------


def backlog_overflow(pcap_dir: str | None) -> Walkthrough:
    """A full accept queue: a SYN dropped and retried, then accepted; UNIX answers EAGAIN."""
    walkthrough = Walkthrough(
        "backlog-overflow",
        "A full accept queue",
        "The kernel finishes TCP handshakes by itself and parks the connections in the listener's accept "
        "queue until the program calls accept(). On Linux `listen(0)` leaves room for one. Here an "
        "iterative server is busy with client 1 (`sleep 0.5`), client 2 fills the queue, and client 3's "
        "SYN finds it full: the kernel drops it without a word. Client 3's kernel resends it when its SYN "
        f"retransmission timer fires, whether or not a slot has freed meanwhile (on this kernel at "
        f"{syn_resend_times()} after the first SYN).",
    )
    walkthrough.sections.append(_tcp_backlog(pcap_dir, walkthrough))
    walkthrough.sections.append(_unix_backlog(walkthrough))
    return walkthrough


def _tcp_backlog(pcap_dir: str | None, walkthrough: Walkthrough) -> Section:
    with running_server("tcp4://127.0.0.1:0", model="iterative", backlog=0) as server:
        address = server.listener.address
        port = address.port or 0
        with Capture(PacketFilter.for_ports(tcp_ports=[port])) as capture:
            first = _client(address, read_timeout=WAIT)
            busy = threading.Thread(target=first.run, args=("sleep 0.5",), daemon=True)
            busy.start()
            server.executor.wait_running(lambda running: running >= 1, WAIT)
            second = _client(address, read_timeout=WAIT)
            third: dict[str, object] = {}

            def connect_third() -> None:
                started = time.monotonic()
                try:
                    third["client"] = _client(address, connect_timeout=WAIT, read_timeout=WAIT)
                except NetlabError as exc:
                    third["error"] = exc
                third["waited"] = time.monotonic() - started

            connecting = threading.Thread(target=connect_third, daemon=True)
            connecting.start()
            capture.wait_for(lambda packets: _count_flags(packets, TCP_SYN, exact=TCP_SYN) >= 3, WAIT)
            busy.join(WAIT)
            first.close()
            second.run("echo from the queue")
            second.close()
            connecting.join(WAIT)
            client = third.get("client")
            if isinstance(client, Client):
                client.run("echo after a retried SYN")
                client.close()
            capture.wait_for(closed_both_ways(3), WAIT)
    if "error" in third:
        walkthrough.findings.append(f"client 3 could not connect: {third['error']}")
    else:
        walkthrough.findings.append(f"client 3's connect() took {float(third['waited']):.2f} s "  # type: ignore[arg-type]
                                    "(no error: to the program a full queue looks like a slow network)")
    section = packet_section(
        "tcp4, listen(0), iterative server",
        f"The server listens on {address} with backlog 0; clients 1, 2 and 3 connect in turn.",
        capture, pcap_file(pcap_dir, "backlog-overflow"), [port])
    retried = [row for row in section.packets if "SYN" in row.flags and "RETRANSMIT" in row.notes]
    for row in retried:
        first_syn = next(r for r in section.packets if r.source == row.source and r.flags == "SYN")
        walkthrough.findings.append(f"the dropped SYN from {row.source} was sent again "
                                    f"{row.time - first_syn.time:.2f} s after the first one")
    if not retried:
        walkthrough.findings.append("no SYN was retried in this run: the queue had room when client 3 connected")
    else:
        walkthrough.findings.extend(_slot_versus_timer(section.packets, retried[0]))
    return section


def _slot_versus_timer(rows: list[PacketRow], retried: PacketRow) -> list[str]:
    """When the queue had room again (client 1 hung up) against when client 3's SYN went again."""
    first_syn = next(row for row in rows if row.source == retried.source and row.flags == "SYN")
    client_one = next(row.source for row in rows if row.flags == "SYN")
    hang_up = next((row for row in rows if "FIN" in row.flags.split(",") and client_one in (row.source,
                    row.destination)), None)
    if hang_up is None or hang_up.time > retried.time:
        return []
    return [f"client 1's connection closed {hang_up.time - first_syn.time:.2f} s after client 3's first SYN "
            f"(then the server took client 2 off the queue and the slot was free), yet the SYN went again only "
            f"at {retried.time - first_syn.time:.2f} s: the SYN timer decided, not the free slot"]


def _unix_backlog(walkthrough: Walkthrough) -> Section:
    calls: list[Call] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="netlab-") as directory:
        address = f"unix://{directory}/backlog.sock"
        with listen(address, 0) as listener:
            opened: list[Connection] = []
            try:
                for attempt in range(1, 3):
                    calls.append(_unix_connect(address, attempt, started, opened))
                accepted = listener.accept(WAIT)
                opened.append(accepted)
                calls.append(Call(time.monotonic() - started, "accept()", "client 1's connection",
                                  "the server takes one connection off the queue: a slot frees"))
                calls.append(_unix_connect(address, 3, started, opened))
            finally:
                for connection in opened:
                    connection.close()
    refused = [call for call in calls if "EAGAIN" in call.result]
    walkthrough.findings.append(f"unix: {len(refused)} non-blocking connect() answered EAGAIN at once "
                                "(TCP stays silent instead; BSD and macOS answer ECONNREFUSED)")
    return Section(
        "unix://, listen(0), nobody accepting",
        "The same queue on an AF_UNIX stream socket, with non-blocking connects (timeout 0). No packets "
        "exist here; the calls and what the kernel answered are the record.",
        other_calls=calls, explanations=[call.explanation for call in calls])


def _unix_connect(address: str, attempt: int, started: float, opened: list[Connection]) -> Call:
    try:
        opened.append(connect(address, 0))
    except ConnectionRefused as exc:
        cause = exc.__cause__
        errno_name = "EAGAIN" if isinstance(cause, BlockingIOError) else type(cause).__name__
        return Call(time.monotonic() - started, f"connect() #{attempt}", f"{errno_name} (ConnectionRefused)",
                    "the queue is full: the kernel answers at once instead of dropping silently")
    return Call(time.monotonic() - started, f"connect() #{attempt}", "connected",
                "there was room: the connection waits in the accept queue")


# -- udp-loss-recovery -----------------------------------------------------------

#: Seeded loss on the client's receive path; seed 2 loses two DATA datagrams mid-reply.
UDP_LOSS = Impairment(loss=0.1, seed=2, path="receive")
UDP_COMMAND = "blob 12000"


def udp_loss_recovery(pcap_dir: str | None) -> Walkthrough:
    """Sequenced UDP loses datagrams; the SACK gap shows it and the sender retransmits."""
    walkthrough = Walkthrough(
        "udp-loss-recovery",
        "Sequenced UDP: a lost datagram, the SACK gap, the retransmit",
        "UDP delivers datagrams or loses them and never says which: no acknowledgement, no word of a loss "
        "(only a closed port answers, with an ICMP port unreachable that a connected socket reports as a "
        "refusal, as the timeouts table shows). netlab's sequencing layer numbers "
        "every datagram: the receiver acknowledges the next number it expects (ack) and, past a hole, the "
        f"ranges it holds anyway (SACK blocks, as offsets from ack). Here the client's endpoint drops "
        f"{UDP_LOSS.loss:.0%} of what it receives (a seeded impairment, seed {UDP_LOSS.seed}) while "
        f"`{UDP_COMMAND}` streams back in about ten datagrams. The kernel delivered every datagram, so the "
        "capture shows the ones the impairment then threw away; the ACKs show the hole they left.",
    )
    with running_server("udp://127.0.0.1:0") as server:
        address = server.listener.address
        port = address.port or 0
        with Capture(PacketFilter.for_ports(udp_ports=[port])) as capture:
            with Client(address, connect_timeout=WAIT, read_timeout=WAIT,
                        connect_options={"impairment": UDP_LOSS}) as client:
                reply = client.run(UDP_COMMAND, verify=True)
            capture.wait_for(udp_closed_both_ways, WAIT)
    section = packet_section(f"udp://, {UDP_COMMAND}, {UDP_LOSS.loss:.0%} loss on the client's receive path",
                             f"A server listens on {address}; the client runs `{UDP_COMMAND}` and closes.",
                             capture, pcap_file(pcap_dir, "udp-loss-recovery"), [port], udp=True)
    walkthrough.sections.append(section)
    rows = section.packets
    retransmitted = [row for row in rows if "RETRANSMIT" in row.notes]
    for row in retransmitted:
        sequence = _field(row, "seq")
        original = next(r for r in rows if r.source == row.source and r.content[0].startswith("UDP DATA")
                        and _field(r, "seq") == sequence)
        walkthrough.findings.append(f"DATA seq={sequence} was sent at {original.time * 1000:.3f} ms and again at "
                                    f"{row.time * 1000:.3f} ms ({(row.time - original.time) * 1e6:.0f} us later)")
    sacks = [row for row in rows if "sack=" in row.content[0]]
    walkthrough.findings.append(f"{len(sacks)} ACKs carried SACK blocks; {len(retransmitted)} datagrams were "
                                f"retransmitted; the client still received all {reply.stdout_bytes} bytes, "
                                f"SHA-256 {'verified' if reply.verified else 'NOT verified'}")
    return walkthrough


def _field(row: PacketRow, name: str) -> str:
    return next((word.split("=", 1)[1] for word in row.content[0].split() if word.startswith(f"{name}=")), "")


# -- tcp6-vs-tcp4 ----------------------------------------------------------------


def tcp6_vs_tcp4(pcap_dir: str | None) -> Walkthrough:
    """The same exchange over TCP/IPv4 and TCP/IPv6, compared."""
    walkthrough = Walkthrough(
        "tcp6-vs-tcp4",
        "The same exchange over IPv4 and IPv6",
        "TCP does not care which IP carries it: the same handshake, the same netlab frames, the same close. "
        "What changes is below: the IPv6 header is 40 bytes instead of IPv4's 20 (without options), so "
        "every packet is longer on the wire, and the MSS each end offers is computed from another limit.",
    )
    if not ipv6_loopback_available():
        raise UsageError("IPv6 is not available on loopback (cannot bind ::1): enable IPv6 to run tcp6-vs-tcp4")
    summary = []
    measured: dict[str, tuple[int, int, int]] = {}
    for scheme, host in (("tcp4", "127.0.0.1"), ("tcp6", "[::1]")):
        section, rows, wire = _captured_exchange(f"{scheme}://{host}:0", pcap_dir, f"tcp6-vs-tcp4-{scheme}",
                                                 scheme)
        walkthrough.sections.append(section)
        mss = next((int(item[4:]) for row in rows for item in row.content if item.startswith("MSS=")), 0)
        measured[scheme] = (len(rows), mss, wire)
        summary.append(f"{scheme}: {len(rows)} packets, MSS {mss}, {sum(r.length for r in rows)} B of payload, "
                       f"{wire} B on the wire")
    walkthrough.findings.extend(summary)
    (packets4, mss4, wire4), (packets6, mss6, wire6) = measured["tcp4"], measured["tcp6"]
    if packets4 == packets6 and packets4:
        walkthrough.findings.append(
            f"same packet count; IPv6 cost {wire6 - wire4} B more on the wire "
            f"({(wire6 - wire4) / packets4:g} B per packet) and offered an MSS {mss4 - mss6} B smaller "
            "(IPv4 on lo derives it from the 65535-byte datagram limit, IPv6 from the 65536-byte MTU)")
    return walkthrough


# -- over network namespaces (root) ------------------------------------------------


def mtu_and_segmentation(pcap_dir: str | None) -> Walkthrough:
    """A 64 KiB reply over loopback and over a 1,500-byte MTU, offloads on and off (root)."""
    return _lab_walkthrough("mtu_and_segmentation", pcap_dir)


def delay_and_loss(pcap_dir: str | None) -> Walkthrough:
    """TCP and sequenced UDP over 20 ms each way and 10 % loss: who resends what, and when (root)."""
    return _lab_walkthrough("delay_and_loss", pcap_dir)


# -- registry ---------------------------------------------------------------------

WALKTHROUGHS: dict[str, Callable[[str | None], Walkthrough]] = {
    "tcp-handshake": tcp_handshake,
    "sticky-packets": sticky_packets,
    "ack": ack_per_send,
    "backlog-overflow": backlog_overflow,
    "udp-loss-recovery": udp_loss_recovery,
    "tcp6-vs-tcp4": tcp6_vs_tcp4,
    "mtu-and-segmentation": mtu_and_segmentation,
    "delay-and-loss": delay_and_loss,
}


def _lab_walkthrough(name: str, pcap_dir: str | None) -> Walkthrough:
    """Walkthroughs over network namespaces live in lab_walkthroughs (they need root and the lab)."""
    from netlab.inspect import lab_walkthroughs

    walkthrough: Walkthrough = getattr(lab_walkthroughs, name)(pcap_dir)
    return walkthrough


def run_walkthrough(name: str, pcap_dir: str | None) -> Walkthrough:
    """Run the named walkthrough, writing its captures into ``pcap_dir`` (None: keep none).

    Raises:
        UsageError: unknown name; PrivilegeError: capturing needs root or CAP_NET_RAW.
    """
    try:
        walkthrough = WALKTHROUGHS[name]
    except KeyError:
        raise UsageError(f"unknown walkthrough {name!r}: choose one of {', '.join(WALKTHROUGHS)}") from None
    return walkthrough(pcap_dir)
