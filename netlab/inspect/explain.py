"""One-line explanations of packets and syscalls, derived from what was captured.

How this works: an explainer reads rows in order and keeps just enough state to
say what each one means: which end opened each connection (the sender of a SYN
without ACK is a client, numbered in order of appearance), where each
handshake stands, when a SYN was last sent (so a retried SYN reports its real
gap). :func:`explain_calls` does the same for the syscall tap: it numbers the
bytes each end sent, so a recv can say how many sends it merged, and it splits
what a recv returned into ``length`` frames when asked to. Nothing here knows
what the experiment expected: every sentence comes from the rows themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from netlab.inspect.analyze import PacketRow, describe_message
from netlab.inspect.stream import FrameSplitter, SegmentKind
from netlab.transport.tap import TapEvent


@dataclass
class _FlowState:
    client: str
    server: str
    syn_times: list[float] = field(default_factory=list)
    established: bool = False
    fins: set[str] = field(default_factory=set)


class PacketExplainer:
    """Explains packet rows one at a time, in capture order."""

    def __init__(self) -> None:
        self._flows: dict[frozenset[str], _FlowState] = {}
        self._client_names: dict[str, str] = {}

    def role(self, endpoint: str) -> str:
        """``client N`` for an end that opened a connection, else ``server``."""
        return self._client_names.get(endpoint, "server")

    def explain(self, row: PacketRow) -> str:
        """The one-line meaning of ``row``."""
        if row.protocol == "UDP":
            return self._explain_datagram(row)
        flags = set(row.flags.split(","))
        pair = frozenset((row.source, row.destination))
        flow = self._flows.get(pair)
        if "SYN" in flags and "ACK" not in flags:
            return self._explain_syn(row, flow, pair)
        if flow is None:
            flow = _FlowState(client=row.destination, server=row.source)
            self._flows[pair] = flow
        sender = self.role(row.source)
        if "RST" in flags:
            return f"{sender} resets the connection: it is torn down at once, unread data is lost"
        if "SYN" in flags:
            mss = _mss(row)
            retried = " again (its first SYN-ACK went unanswered)" if SegmentKind.RETRANSMIT.value in row.notes else ""
            return (f"the server's kernel answers SYN-ACK{retried}{mss}: no accept() has run yet, "
                    "the kernel completes handshakes by itself")
        parts = []
        if row.length:
            parts.append(self._explain_payload(row, sender))
        if "FIN" in flags:
            answered = flow.fins - {row.source}
            flow.fins.add(row.source)
            text = f"{sender} closes its side (FIN): it will send no more data"
            if answered:
                text += f", and acknowledges {self.role(next(iter(answered)))}'s FIN in the same packet"
            parts.append(text)
        if not parts:
            parts.append(self._explain_ack(row, flow, sender))
        return "; ".join(parts)

    def _explain_syn(self, row: PacketRow, flow: _FlowState | None, pair: frozenset[str]) -> str:
        if flow is not None and SegmentKind.RETRANSMIT.value in row.notes and flow.syn_times:
            gap = row.time - flow.syn_times[-1]
            flow.syn_times.append(row.time)
            return (f"{self.role(row.source)} sends its SYN again {gap:.2f} s after the last one: "
                    "no SYN-ACK came back, so the kernel retried (connect() is still waiting)")
        if row.source not in self._client_names:
            self._client_names[row.source] = f"client {len(self._client_names) + 1}"
        self._flows[pair] = _FlowState(client=row.source, server=row.destination, syn_times=[row.time])
        return (f"{self.role(row.source)} opens a connection with SYN (relative seq 0){_mss(row)}")

    def _explain_ack(self, row: PacketRow, flow: _FlowState, sender: str) -> str:
        if not flow.established and row.source == flow.client:
            flow.established = True
            return ("the handshake's last ACK: connect() returns now; the connection waits "
                    "in the server's accept queue until accept() takes it")
        if flow.fins - {row.source}:
            return f"{sender} acknowledges the FIN"
        return (f"{sender} acknowledges what arrived (ack={row.acknowledgement}: the next byte it expects); "
                "a pure ACK carries no data")

    @staticmethod
    def _explain_payload(row: PacketRow, sender: str) -> str:
        retransmitted = [note for note in row.notes if note != SegmentKind.IN_ORDER.value]
        prefix = f"{sender} sends {row.length} B"
        if retransmitted:
            prefix += f" ({', '.join(retransmitted).lower()})"
        messages = [item for item in row.content if not item.startswith(("(frame continues", "DATA "))]
        if any(item.startswith("DATA ") for item in row.content):
            return f"{prefix} of unframed data: nothing on the wire marks where one message ends"
        if not messages:
            return f"{prefix}: part of a larger frame; the receiver keeps reading until the length is met"
        what = ", ".join(_message_meaning(item) for item in messages)
        if len(messages) > 1:
            return f"{prefix}: {len(messages)} messages in one segment ({what})"
        tail = "; the next frame starts here too" if any(i.startswith("(frame continues") for i in row.content) else ""
        return f"{prefix}: {what}{tail}"

    def _explain_datagram(self, row: PacketRow) -> str:
        if not row.content or not row.content[0].startswith("UDP "):
            return f"{row.length} B datagram without the sequencing header"
        words = row.content[0].split()
        kind = words[1]
        fields = dict(word.split("=", 1) for word in words if "=" in word)
        sender = "client" if kind in ("INITIAL", "COOKIE_ECHO") else None
        if SegmentKind.RETRANSMIT.value in row.notes:
            return f"DATA seq={fields.get('seq')} again: the sender retransmits what the SACKs showed missing"
        if kind == "DATA":
            if "FIN" in words:
                return "FIN (it takes a sequence number, like TCP's): this side has nothing more to send"
            end = ", the last fragment of its message" if "MESSAGE_END" in words else ""
            return f"DATA seq={fields.get('seq')}: one fragment of a message{end}"
        if kind == "ACK":
            sack = fields.get("sack")
            if sack:
                ack = fields.get("ack", "")
                return f"ACK: {_sack_holes(ack, sack)} still missing; {_sack_ranges(ack, sack)}"
            return f"ACK: everything before seq {fields.get('ack')} arrived (cumulative)"
        meaning = _HANDSHAKE_MEANINGS.get(kind, f"{kind}: a control datagram")
        return meaning if sender is None else f"{sender}: {meaning}"


_HANDSHAKE_MEANINGS = {
    "INITIAL": "INITIAL asks for a connection (padded to full size, so a spoofed request gains no amplification)",
    "RETRY": "RETRY: the server keeps no state yet and answers with a cookie to echo",
    "COOKIE_ECHO": "COOKIE_ECHO proves the client's address by returning the cookie",
    "ACCEPT": "ACCEPT: the server creates the connection and gives its initial sequence number",
    "PING": "PING: a keepalive",
    "RESET": "RESET: the connection is torn down",
}


def _sack_holes(ack: str, sack: str) -> str:
    """The sequence numbers an ACK with SACK blocks says are missing: ``seq 3..4`` at ack 3 with ``+2..+4``."""
    if not ack.isdigit():
        return f"seq {ack}"
    holes, expected = [], int(ack)
    for block in sack.split(","):
        start, _, end = block.partition("..")
        try:
            first, after = int(ack) + int(start), int(ack) + int(end)
        except ValueError:
            return f"seq {ack}"
        if first > expected:
            holes.append(f"{expected}" if first - 1 == expected else f"{expected}..{first - 1}")
        expected = max(expected, after)
    return "seq " + ", ".join(holes or [ack])


def _sack_ranges(ack: str, sack: str) -> str:
    """SACK blocks (offsets from ack) as absolute sequence ranges: ``+2..+4`` at ack 3 holds 5..6."""
    if not ack.isdigit():
        return f"SACK blocks {sack} name what arrived past the hole"
    held = []
    for block in sack.split(","):
        start, _, end = block.partition("..")
        first, last = int(ack) + int(start), int(ack) + int(end) - 1
        held.append(f"{first}" if first == last else f"{first}..{last}")
    return f"SACK says it holds seq {', '.join(held)} past the hole"


def _mss(row: PacketRow) -> str:
    mss = next((item for item in row.content if item.startswith("MSS=")), None)
    return f", offering {mss.replace('=', ' ')} (the largest segment it takes)" if mss else ""


def _message_meaning(item: str) -> str:
    if item.startswith("EXEC"):
        return f"the request {item} in one length frame"
    if item.startswith("STDOUT") or item.startswith("STDERR"):
        stream, size = item.split(" ", 1)
        return f"{size} of {stream.lower()}"
    if item.startswith("EXIT"):
        return f"the end of the reply ({item}, with byte counts, and the SHA-256 of stdout if the request asked)"
    return item


def explain_calls(events: Sequence[TapEvent], peers: dict[str, str], *, split_frames: bool = False) -> list[str]:
    """One line per tap event: which sends a recv merged, and what frames it held.

    Args:
        events: a conversation between tapped connections, as recorded.
        peers: each connection label mapped to the label of the other end.
        split_frames: also cut what each recv returned into ``length`` frames
            (needs a recorder whose preview holds whole transfers).
    Returns:
        The explanations, in the order of ``events``.
    """
    # A recv may be recorded a moment before the send that fed it, so sends are
    # numbered over the whole conversation first.
    send_ends: dict[str, list[int]] = {}
    for event in events:
        if event.direction == "send":
            ends = send_ends.setdefault(event.connection, [])
            ends.append((ends[-1] if ends else 0) + event.size)
    received: dict[str, int] = {}
    splitters: dict[str, FrameSplitter] = {}
    send_splitters: dict[str, FrameSplitter] = {}
    lines = []
    for event in events:
        label = event.connection
        if event.direction == "send":
            text = f"{label} calls send() once with {event.size} B"
            if split_frames and len(event.preview) == event.size:
                sent = send_splitters.setdefault(label, FrameSplitter()).feed(event.preview)
                if sent:
                    text += ": " + ", ".join(describe_message(message) for message in sent)
            lines.append(text)
            continue
        if event.size == 0:
            lines.append(f"{label}'s recv() returns 0 B: the other end closed (end of stream)")
            continue
        start = received.get(label, 0)
        received[label] = start + event.size
        sends = _sends_covered(send_ends.get(peers.get(label, ""), []), start, start + event.size)
        if sends > 1:
            text = f"{label}'s one recv() returns {event.size} B: {sends} sends merged into one read"
        elif sends == 1:
            text = f"{label}'s recv() returns {event.size} B: what one send() wrote"
        else:
            text = f"{label}'s recv() returns {event.size} B: part of one send"
        if split_frames and len(event.preview) == event.size:
            messages = splitters.setdefault(label, FrameSplitter()).feed(event.preview)
            if messages:
                text += (f"; the length framing finds {len(messages)} whole message(s) in it: "
                         + ", ".join(describe_message(message) for message in messages))
        lines.append(text)
    return lines


def _sends_covered(send_ends: Sequence[int], start: int, end: int) -> int:
    """How many sends (given by their cumulative end offsets) overlap the bytes [start, end)."""
    count = 0
    previous_end = 0
    for send_end in send_ends:
        if send_end > start and previous_end < end:
            count += 1
        previous_end = send_end
    return count
