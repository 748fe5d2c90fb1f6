"""Loss recovery of a sequenced connection: what is in flight, what was lost, when to resend.

How this works (in the spirit of aioquic's ``quic/recovery.py``): a
:class:`LossRecovery` keeps the DATA datagrams the peer has not acknowledged
in send-time order, the peer's cumulative and selective acknowledgements and
the RFC 6298 timer (:mod:`netlab.proto.seq.rto`). It never encodes or sends
anything: :meth:`LossRecovery.on_acknowledgement` and
:meth:`LossRecovery.on_timeout` return the datagrams to resend (already
marked as resent), and the connection encodes them. The rules:

- Retransmission timeout: only the oldest datagram's deadline matters (the
  list is in send-time order); a timeout backs the RTO off once and resends
  every datagram whose deadline passed. A datagram sent more than
  ``1 + retry_limit`` times fails the connection (:class:`RetryLimit`).
- Fast retransmit: after three duplicate ACKs (RFC 5681), and once a datagram
  three numbers above an unacknowledged one has been selectively acknowledged.
- A retransmission lost again is resent once a datagram sent after it has been
  acknowledged (RACK's time-based rule, RFC 8985, kept to retransmissions).
- RTT samples only from datagrams sent once (Karn's rule).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

from netlab.proto.seq.config import PeerViolation, SequencingConfig
from netlab.proto.seq.ranges import RangeSet
from netlab.proto.seq.rto import RetransmissionTimer
from netlab.proto.seq.wire import MASK_64, unwrap_sequence

#: Duplicate ACKs (and SACKed datagrams above a hole) that declare a datagram lost.
_REORDER_THRESHOLD = 3


class Sent:
    """One DATA datagram waiting for its acknowledgement."""

    __slots__ = (
        "deadline",
        "flags",
        "payload",
        "payload_checksum",
        "sent_at",
        "transmissions",
    )

    def __init__(
        self,
        payload: bytes | memoryview,
        flags: int,
        payload_checksum: int,
        now: float,
        rto: float,
    ) -> None:
        self.payload = payload
        self.flags = flags
        self.payload_checksum = payload_checksum
        self.sent_at = now
        self.deadline = now + rto
        self.transmissions = 1


class RetryLimit(NamedTuple):
    """The decision that the peer is gone: ``sequence`` went unacknowledged ``transmissions`` times."""

    sequence: int
    transmissions: int


#: What one acknowledgement changed: ``(released_bytes, resend, opened)``, a
#: plain tuple (it is made for every datagram). ``released_bytes``: payload
#: bytes acknowledged now, cumulatively or selectively; ``resend``:
#: ``(sequence, record)`` pairs declared lost, to retransmit at once (already
#: marked resent); ``opened``: the cumulative point advanced, something new was
#: acknowledged or the peer's window opened, so queued data may go out.
AcknowledgementOutcome = tuple[int, list[tuple[int, Sent]], bool]

_NOTHING: AcknowledgementOutcome = (0, [], False)
_OPENED: AcknowledgementOutcome = (0, [], True)


class LossRecovery:
    """The sending side's unacknowledged datagrams, the peer's window and the retransmission timer."""

    __slots__ = (
        "duplicate_acks",
        "fast_scan",
        "outstanding",
        "peer_edge",
        "resent_outstanding",
        "retry_limit",
        "sacked",
        "send_base",
        "timer",
    )

    def __init__(self, config: SequencingConfig, initial_sequence: int) -> None:
        """Args:
        config: the connection's settings (RTO floor, initial RTO, cap, retry limit).
        initial_sequence: our first sequence number.
        """
        self.timer = RetransmissionTimer(config.rto_floor, config.initial_rto, config.max_rto)
        self.retry_limit = config.retry_limit
        #: Sent, not yet acknowledged: sequence -> record, oldest transmission first.
        self.outstanding: OrderedDict[int, Sent] = OrderedDict()
        self.send_base = initial_sequence  # lowest unacknowledged sequence number
        self.peer_edge = initial_sequence  # one past the highest the peer accepts
        self.sacked = RangeSet()
        self.fast_scan = initial_sequence
        self.duplicate_acks = 0
        self.resent_outstanding = 0  # outstanding datagrams sent more than once

    def clear(self) -> None:
        """Forget everything in flight (the connection failed)."""
        self.outstanding.clear()
        self.resent_outstanding = 0

    def mark_resent(self, sequence: int, record: Sent, now: float) -> None:
        """``record`` goes out again now: it becomes the newest transmission."""
        if record.transmissions == 1:
            self.resent_outstanding += 1
        record.transmissions += 1
        record.sent_at = now
        record.deadline = now + self.timer.rto
        self.outstanding.move_to_end(sequence)

    def on_acknowledgement(
        self,
        is_pure_ack: bool,
        wire_acknowledgement: int,
        window: int,
        sack_blocks: tuple[tuple[int, int], ...],
        next_sequence: int,
        now: float,
    ) -> AcknowledgementOutcome:
        """Take the acknowledgement fields of one datagram from the peer.

        Args:
            is_pure_ack: the datagram is an ACK (only those count as duplicate ACKs).
            wire_acknowledgement: its 64-bit cumulative acknowledgement.
            window: its window field.
            sack_blocks: its ``(offset, length)`` SACK blocks.
            next_sequence: the next sequence number we would use.
            now: current time.
        Returns:
            The :class:`AcknowledgementOutcome`.
        Raises:
            PeerViolation: the peer acknowledged a number we never sent.
        """
        send_base = self.send_base
        if not sack_blocks and wire_acknowledgement == send_base & MASK_64:
            # Nothing new acknowledged (the common case while the peer only
            # receives): only the window or a duplicate ACK can matter.
            edge = send_base + window
            if edge > self.peer_edge:
                self.peer_edge = edge
                return _OPENED
            if is_pure_ack and self.outstanding:
                return self._duplicate_acknowledgement(send_base, now)
            return _NOTHING
        acknowledgement = unwrap_sequence(wire_acknowledgement, send_base)
        if acknowledgement < send_base:
            return _NOTHING  # An old, reordered datagram: its acknowledgement says nothing new.
        if acknowledgement > next_sequence:
            raise PeerViolation(f"the peer acknowledged {wire_acknowledgement}, which we never sent")
        outstanding = self.outstanding
        sacked = self.sacked
        pop = outstanding.pop
        released: list[Sent] = []  # acknowledged now, cumulatively or selectively
        advanced = acknowledgement != send_base
        if advanced:
            for sequence in range(send_base, acknowledgement):
                record = pop(sequence, None)
                if record is not None:
                    released.append(record)
            self.send_base = acknowledgement
            self.duplicate_acks = 0
            if sacked.starts:
                sacked.discard_below(acknowledgement)
        if sack_blocks:
            for offset, length in sack_blocks:
                start = acknowledgement + offset
                end = min(start + length, next_sequence)
                if start >= end or start <= acknowledgement:
                    continue
                for new_start, new_end in sacked.add(start, end):
                    for sequence in range(new_start, new_end):
                        record = pop(sequence, None)
                        if record is not None:
                            released.append(record)
        progress = advanced or bool(released)
        released_bytes = 0
        newest_sample: float | None = None  # of a datagram sent once (Karn)
        newest_resent: float | None = None  # of a retransmitted one
        for record in released:
            released_bytes += len(record.payload)
            if record.transmissions == 1:
                if newest_sample is None or record.sent_at > newest_sample:
                    newest_sample = record.sent_at
            else:
                self.resent_outstanding -= 1
                if newest_resent is None or record.sent_at > newest_resent:
                    newest_resent = record.sent_at
        if newest_sample is not None:
            self.timer.add_sample(now - newest_sample)
        edge = acknowledgement + window
        window_opened = edge > self.peer_edge
        if window_opened:
            self.peer_edge = edge
        resend: list[tuple[int, Sent]] = []
        if not progress and not window_opened and is_pure_ack and outstanding:
            resend = self._duplicate_acknowledgement(acknowledgement, now)[1]
        if sacked.ends:
            lost_below = sacked.ends[-1] - _REORDER_THRESHOLD
            scan = max(self.send_base, self.fast_scan)
            if scan < lost_below:
                get = outstanding.get
                for sequence in range(scan, lost_below):
                    record = get(sequence)
                    if record is not None and record.transmissions == 1:
                        self._resend(sequence, record, now, resend)
                self.fast_scan = lost_below
        if self.resent_outstanding:
            newest = newest_sample
            if newest_resent is not None and (newest is None or newest_resent > newest):
                newest = newest_resent
            if newest is not None:
                self._resend_lost_retransmissions(newest, now, resend)
        return released_bytes, resend, progress or window_opened

    def _duplicate_acknowledgement(self, acknowledgement: int, now: float) -> AcknowledgementOutcome:
        """A duplicate ACK (RFC 5681): nothing new, the same cumulative point; the third resends it."""
        self.duplicate_acks += 1
        if self.duplicate_acks == _REORDER_THRESHOLD:
            record = self.outstanding.get(acknowledgement)
            if record is not None:
                resend: list[tuple[int, Sent]] = []
                self._resend(acknowledgement, record, now, resend)
                return 0, resend, False
        return _NOTHING

    def on_timeout(self, now: float) -> list[tuple[int, Sent]] | RetryLimit:
        """Resend every datagram whose deadline passed (backing the RTO off once).

        Returns:
            The ``(sequence, record)`` pairs to retransmit, or :class:`RetryLimit`
            when one of them has already been sent ``1 + retry_limit`` times.
        """
        outstanding = self.outstanding
        resend: list[tuple[int, Sent]] = []
        while outstanding:
            sequence, record = next(iter(outstanding.items()))
            if record.deadline > now:
                break
            if record.transmissions > self.retry_limit:
                return RetryLimit(sequence, record.transmissions)
            if not resend:
                self.timer.back_off()
            self._resend(sequence, record, now, resend)
        return resend

    def _resend(self, sequence: int, record: Sent, now: float, resend: list[tuple[int, Sent]]) -> None:
        self.mark_resent(sequence, record, now)
        resend.append((sequence, record))

    def _resend_lost_retransmissions(
        self, acknowledged_sent_at: float, now: float, resend: list[tuple[int, Sent]]
    ) -> None:
        """Resend each retransmission sent before a datagram the peer has since acknowledged.

        The duplicate-ACK and SACK rules act once per datagram; without this
        (RACK's time-based rule, RFC 8985, kept to retransmissions) a lost
        retransmission waits for the timer, and the window stalls with it.
        """
        lost: list[tuple[int, Sent]] = []
        for sequence, record in self.outstanding.items():  # in send-time order
            if record.sent_at >= acknowledged_sent_at:
                break
            if record.transmissions > 1:
                lost.append((sequence, record))
        for sequence, record in lost:
            self._resend(sequence, record, now, resend)
