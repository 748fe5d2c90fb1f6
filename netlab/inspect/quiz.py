"""Questions at the end of each walkthrough whose answers are in the run just made (a self-graded lab).

How this works: each walkthrough has a function here that reads the finished
:class:`~netlab.inspect.walkthrough_parts.Walkthrough` (its packet rows and calls,
never its prose) and returns two or three :class:`Question` values, each with
the answer this run gives and why. ``netlab walkthrough NAME --quiz`` asks
them and checks what the reader types with :meth:`Question.check`: a whole
number must match exactly, a time within its tolerance, a word ignoring case.
A question whose answer the run cannot give (a capture that missed a packet)
is left out rather than asked with a wrong answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from netlab.inspect.analyze import PacketRow
from netlab.inspect.stream import SegmentKind
from netlab.inspect.walkthrough_parts import Walkthrough

_NUMBER = re.compile(r"-?\d+(\.\d+)?")


@dataclass(frozen=True)
class Question:
    """One question and this run's answer.

    Attributes:
        prompt: the question, ending with the unit expected.
        answer: the answer as this run gives it (a number as text, or a word).
        why: where the answer is seen in the run.
        tolerance: for numbers, how far (relative, e.g. 0.25) an answer may be and still count; 0 is exact.
    """

    prompt: str
    answer: str
    why: str
    tolerance: float = 0.0

    def check(self, reply: str) -> bool:
        """Whether ``reply`` (as typed) is this run's answer."""
        reply = reply.strip()
        expected = self.answer
        if _NUMBER.fullmatch(expected):
            match = _NUMBER.search(reply.replace(",", ""))
            if match is None:
                return False
            given, wanted = float(match.group(0)), float(expected)
            return abs(given - wanted) <= abs(wanted) * self.tolerance if self.tolerance else given == wanted
        return reply.lower() == expected.lower()


def questions(walkthrough: Walkthrough) -> list[Question]:
    """The questions of a finished walkthrough (none for an unknown name)."""
    build = QUIZZES.get(walkthrough.name)
    return build(walkthrough) if build else []


def _captures(walkthrough: Walkthrough) -> list[tuple[str, list[PacketRow]]]:
    """The sections that captured packets: each one's name (its heading up to the colon) and its rows."""
    return [(section.heading.split(":")[0], section.packets) for section in walkthrough.sections if section.packets]


def _packets(walkthrough: Walkthrough, index: int = 0) -> list[PacketRow]:
    captures = _captures(walkthrough)
    return captures[index][1] if len(captures) > index else []


def _announced_mss(rows: list[PacketRow]) -> str | None:
    """The MSS option of a capture's first packet (the client's SYN), when it carries one."""
    return next((item[4:] for item in rows[0].content if item.startswith("MSS=")), None)


def _tcp_handshake(walkthrough: Walkthrough) -> list[Question]:
    rows = _packets(walkthrough)
    if not rows:
        return []
    client = rows[0].source
    first_data = next((index for index, row in enumerate(rows) if row.length > 0), None)
    found = []
    if first_data is not None:
        found.append(Question("How many packets crossed before the first byte of the command did?",
                              str(first_data), f"packets 1-{first_data}: the handshake (SYN, SYN-ACK, ACK)"))
        request = rows[first_data]
        found.append(Question("How many bytes of payload did the packet carrying the command hold?",
                              str(request.length), f"packet {request.number}: len={request.length}, one length "
                              "frame (4-byte length, type byte, fields)"))
    reply = sum(row.length for row in rows if row.source != client)
    found.append(Question("How many payload bytes did the server send in all (stdout and the exit frame)?",
                          str(reply), "the len column of the server's packets, added up"))
    return found


def _backlog_overflow(walkthrough: Walkthrough) -> list[Question]:
    rows = _packets(walkthrough)
    found = []
    syn_sources = list(dict.fromkeys(row.source for row in rows if row.flags == "SYN"))
    if len(syn_sources) >= 3:
        third = syn_sources[2]
        syns = [row for row in rows if row.source == third and row.flags == "SYN"]
        found.append(Question("How many SYNs did client 3 send before it was accepted?", str(len(syns)),
                              f"the SYN rows from {third}: " + ", ".join(f"packet {row.number}" for row in syns)))
        if len(syns) >= 2:
            waited = (syns[1].time - syns[0].time) * 1000
            found.append(Question("How many milliseconds passed between client 3's first SYN and its retry "
                                  "(within 25 %)?", f"{waited:.0f}",
                                  f"packets {syns[0].number} and {syns[1].number}: the kernel's SYN retry timer",
                                  tolerance=0.25))
    calls = [call for section in walkthrough.sections for call in section.other_calls]
    refused = [call for call in calls if "EAGAIN" in call.result]
    if calls:
        found.append(Question("Over unix://, how many non-blocking connect() calls were refused at once?",
                              str(len(refused)), "the connect() rows that answered EAGAIN"))
    return found


def _sticky_packets(walkthrough: Walkthrough) -> list[Question]:
    found: list[Question] = []
    for section in walkthrough.sections[:2]:
        framing = section.heading.split()[0]
        sends = [event for event in section.calls if event.connection == "client" and event.direction == "send"]
        receives = [event for event in section.calls
                    if event.connection == "server" and event.direction == "recv" and event.size]
        if not sends:
            continue
        if not found:
            found.append(Question(f"With {framing} framing, how many times did the client call send()?",
                                  str(len(sends)), "the client's send rows in the first table"))
        found.append(Question(f"With {framing} framing, how many times did the server's recv() return data?",
                              str(len(receives)), f"the server's recv rows in the {framing} table"))
    return found


def _ack(walkthrough: Walkthrough) -> list[Question]:
    found = []
    raw = next((section for section in walkthrough.sections if section.heading.startswith("raw")), None)
    ack = next((section for section in walkthrough.sections if section.heading.startswith("ack")), None)
    if raw is not None:
        receives = [event for event in raw.calls if event.connection == "server" and event.direction == "recv"
                    and event.size]
        if receives:
            largest = max(receives, key=lambda event: event.size)
            found.append(Question("With raw framing, how many bytes did the server's largest recv() return?",
                                  str(largest.size), "the server's recv rows in the raw table: several sends merged"))
    if ack is not None:
        oks = [event for event in ack.calls if event.direction == "send" and event.preview == b"ok\n"]
        sends = [event for event in ack.calls if event.connection == "client" and event.direction == "send"]
        found.append(Question("With ack framing, how many `ok` lines were sent, by both ends together?",
                              str(len(oks)), "the send rows whose first bytes are 'ok\\n'"))
        found.append(Question("With ack framing, how many times did the client call send()?", str(len(sends)),
                              "the client's send rows in the ack table: a size line, an ok or a body each"))
    return found


def _udp_loss_recovery(walkthrough: Walkthrough) -> list[Question]:
    rows = _packets(walkthrough)
    retransmitted = [row for row in rows if SegmentKind.RETRANSMIT.value in row.notes]
    sacks = [row for row in rows if any(" sack=" in item for item in row.content)]
    found = [Question("How many DATA datagrams were sent again (retransmitted)?", str(len(retransmitted)),
                      "the rows marked RETRANSMIT")]
    if retransmitted:
        match = re.search(r"seq=(\d+)", retransmitted[0].content[0]) if retransmitted[0].content else None
        if match:
            found.append(Question("Which DATA sequence number was the first to be sent again?", match.group(1),
                                  f"packet {retransmitted[0].number}"))
    found.append(Question("How many ACKs carried SACK blocks (ranges held past a gap)?", str(len(sacks)),
                          "the ACK rows with sack=..."))
    return found


def _tcp6_vs_tcp4(walkthrough: Walkthrough) -> list[Question]:
    found = []
    captures = _captures(walkthrough)
    for name, rows in captures:
        mss = _announced_mss(rows)
        if mss is not None:
            scheme = name.split()[0]
            found.append(Question(f"What MSS did the {scheme} client offer in its SYN (bytes)?", mss,
                                  f"the first packet of the {scheme} capture: MSS={mss}"))
    counts = [len(rows) for _, rows in captures]
    if len(counts) == 2:
        found.append(Question("How many packets did the IPv6 exchange take?", str(counts[1]),
                              "the rows of the second capture"))
    return found


def _mtu_and_segmentation(walkthrough: Walkthrough) -> list[Question]:
    found = []
    for place, rows in _captures(walkthrough):
        mss = _announced_mss(rows)
        server = rows[0].destination
        data = [row for row in rows if row.source == server and row.length]
        if mss is not None and place.startswith("veth, offloads on"):
            found.append(Question(f"{place}: what MSS did the client announce in its SYN (bytes)?", mss,
                                  "the first packet of that capture"))
        if data and place.startswith("veth, offloads off"):
            found.append(Question(f"{place}: in how many segments did the server's data arrive?", str(len(data)),
                                  "the server's packets with a payload in that capture"))
        if data and place.startswith("veth, offloads on"):
            largest = max(row.length for row in data)
            found.append(Question(f"{place}: how many payload bytes did the largest captured segment carry?",
                                  str(largest), "the largest len from the server in that capture: more than the "
                                  "MTU, a GSO/GRO super-packet"))
    return found


def _delay_and_loss(walkthrough: Walkthrough) -> list[Question]:
    found = []
    for name, rows in _captures(walkthrough):
        again = [row for row in rows if SegmentKind.RETRANSMIT.value in row.notes]
        found.append(Question(f"{name}: how many packets did the server's side send again (RETRANSMIT)?",
                              str(len(again)), f"the rows marked RETRANSMIT in the {name} capture"))
        if again:
            first = again[0]
            label = first.sequence if first.protocol == "TCP" else None
            earlier = [row for row in rows if row.number < first.number and row.source == first.source
                       and row.content[:1] == first.content[:1] and (label is None or row.sequence == label)]
            if earlier:
                gap = round((first.time - earlier[-1].time) * 1000)
                found.append(Question(f"{name}: how many milliseconds after its first copy was packet "
                                      f"{first.number} sent again (ms)?", str(gap),
                                      f"packet {earlier[-1].number} at {earlier[-1].time * 1000:.1f} ms, packet "
                                      f"{first.number} at {first.time * 1000:.1f} ms: about a round trip means a "
                                      "fast retransmit, 200 ms or more a timeout", tolerance=0.25))
    return found


QUIZZES: dict[str, Callable[[Walkthrough], list[Question]]] = {
    "tcp-handshake": _tcp_handshake,
    "backlog-overflow": _backlog_overflow,
    "sticky-packets": _sticky_packets,
    "ack": _ack,
    "udp-loss-recovery": _udp_loss_recovery,
    "tcp6-vs-tcp4": _tcp6_vs_tcp4,
    "mtu-and-segmentation": _mtu_and_segmentation,
    "delay-and-loss": _delay_and_loss,
}
