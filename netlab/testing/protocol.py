"""Sans-IO protocol helpers for tests: drain and feed a decoder, cut bytes, and a duplex pipe.

How this works: the duplex pipe moves bytes between a client end and a server
end (either two Sessions or two bare Framers), feeding each receiver's
``data_to_send`` back to the other side, so the ack framing's lock-step runs as
it would on a socket. Every byte moved is recorded in a transcript of
``("C" | "S", bytes)`` pairs. :func:`parse_protocol_doc` reads the worked
examples of docs/protocol.md. Nothing here opens a socket.
"""

from __future__ import annotations

import itertools
import re
from collections import deque
from collections.abc import Iterable
from typing import Any

from netlab.proto.framing import DEFAULT_MAX_FRAME, Framer, Role, make_framer
from netlab.proto.messages import END_OF_STREAM, NEED_DATA, Message
from netlab.proto.session import Session

MAX_PUMP_STEPS = 10_000
MAX_DRAIN = 100_000

End = Session | Framer


def next_of(end: End) -> object:
    """The next event of a Session or the next message of a Framer."""
    return end.next_event() if isinstance(end, Session) else end.next_message()


def encode_on(end: End, message: Message) -> bytes:
    """Send ``message`` through a Session (checked) or a Framer (unchecked)."""
    return end.send(message) if isinstance(end, Session) else end.encode(message)


def drain(end: End) -> list[Any]:
    """Pop events until NEED_DATA; END_OF_STREAM is kept as the last item."""
    events: list[Any] = []
    for _ in range(MAX_DRAIN):
        event = next_of(end)
        if event is NEED_DATA:
            return events
        events.append(event)
        if event is END_OF_STREAM:
            return events
    raise AssertionError(f"decoder produced more than {MAX_DRAIN} events without NEED_DATA")


def feed(end: End, chunks: Iterable[bytes], *, close: bool = False) -> list[Any]:
    """Feed each chunk (draining after each) and optionally the end of stream."""
    events: list[Any] = []
    for chunk in chunks:
        if chunk:
            end.receive_data(chunk)
            events.extend(drain(end))
    if close:
        end.receive_data(b"")
        events.extend(drain(end))
    return events


def split_at(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    """Cut ``data`` at the given offsets (any order, duplicates and ends ignored)."""
    points = [0, *sorted({cut for cut in cuts if 0 < cut < len(data)}), len(data)]
    return [data[start:end] for start, end in itertools.pairwise(points)]


class DuplexPipe:
    """Two ends of one connection joined in memory, delivering bytes in chunks.

    Args:
        client, server: Sessions or Framers of the same framing.
        chunk_size: deliver at most this many bytes per receive_data (None: whole).
    """

    def __init__(self, client: End, server: End, *, chunk_size: int | None = None) -> None:
        self.ends = {"C": client, "S": server}
        self.chunk_size = chunk_size
        self.transcript: list[tuple[str, bytes]] = []
        self.received: dict[str, list[Any]] = {"C": [], "S": []}

    @classmethod
    def of_sessions(
        cls,
        framing: str,
        *,
        max_frame: int = DEFAULT_MAX_FRAME,
        auth_required: bool = False,
        chunk_size: int | None = None,
    ) -> DuplexPipe:
        client = Session(Role.CLIENT, make_framer(framing, Role.CLIENT, max_frame))
        server = Session(Role.SERVER, make_framer(framing, Role.SERVER, max_frame), auth_required=auth_required)
        return cls(client, server, chunk_size=chunk_size)

    @classmethod
    def of_framers(
        cls, framing: str, *, max_frame: int = DEFAULT_MAX_FRAME, chunk_size: int | None = None
    ) -> DuplexPipe:
        return cls(
            make_framer(framing, Role.CLIENT, max_frame),
            make_framer(framing, Role.SERVER, max_frame),
            chunk_size=chunk_size,
        )

    @property
    def client(self) -> Any:
        return self.ends["C"]

    @property
    def server(self) -> Any:
        return self.ends["S"]

    def send(self, sender: str, *messages: Message) -> None:
        """Encode ``messages`` on ``sender`` ("C" or "S"), then run the pipe until quiet."""
        self._run(sender, b"".join(encode_on(self.ends[sender], message) for message in messages))

    def close(self, sender: str) -> None:
        """``sender`` closes its side: the peer sees the end of stream."""
        peer = "S" if sender == "C" else "C"
        self.ends[peer].receive_data(b"")
        self.received[peer].extend(drain(self.ends[peer]))

    def _run(self, sender: str, data: bytes) -> None:
        pending = deque([(sender, data)])
        for _ in range(MAX_PUMP_STEPS):
            if not pending:
                return
            source, data = pending.popleft()
            if not data:
                continue
            self.transcript.append((source, data))
            peer = "S" if source == "C" else "C"
            step = self.chunk_size or len(data)
            for start in range(0, len(data), step):
                self.ends[peer].receive_data(data[start : start + step])
                self.received[peer].extend(drain(self.ends[peer]))
                pending.append((peer, self.ends[peer].data_to_send()))
        raise AssertionError(f"the pipe did not go quiet within {MAX_PUMP_STEPS} steps")

    def merged_transcript(self) -> list[tuple[str, bytes]]:
        """The transcript with consecutive bytes in one direction joined."""
        return merge_runs(self.transcript)


def merge_runs(transcript: Iterable[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    merged: list[tuple[str, bytes]] = []
    for direction, data in transcript:
        if merged and merged[-1][0] == direction:
            merged[-1] = (direction, merged[-1][1] + data)
        elif data:
            merged.append((direction, data))
    return merged


_EXAMPLE_MARK = re.compile(r"<!-- example: ([a-z0-9-]+) -->\n```text\n(.*?)```", re.DOTALL)
_EXAMPLE_LINE = re.compile(r"(?P<direction>[CS]): (?P<hex>[0-9a-f]{2}(?: [0-9a-f]{2})*)(?: {2,}(?P<note>.*))?")


def parse_protocol_doc(text: str) -> dict[str, list[tuple[str, bytes]]]:
    """The doc's worked examples: name -> merged ("C" | "S", bytes) transcript.

    Every line of an example block must read ``C: <hex bytes>  <note>`` (or
    ``S:``); anything else fails, so a hand edit cannot slip past the tests.
    """
    examples: dict[str, list[tuple[str, bytes]]] = {}
    for match in _EXAMPLE_MARK.finditer(text):
        name, block = match.groups()
        if name in examples:
            raise AssertionError(f"example {name!r} appears twice in the protocol doc")
        lines = []
        for line in block.splitlines():
            parsed = _EXAMPLE_LINE.fullmatch(line)
            if parsed is None:
                raise AssertionError(f"example {name!r}: cannot parse line {line!r}")
            lines.append((parsed["direction"], bytes.fromhex(parsed["hex"])))
        examples[name] = merge_runs(lines)
    return examples
