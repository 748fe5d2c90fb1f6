"""Loss recovery of a sequenced connection: what is in flight, what was lost, when to resend.

How this works (in the spirit of aioquic's ``quic/recovery.py``): a
:class:`LossRecovery` keeps the DATA datagrams the peer has not acknowledged:
those in flight in send-time order (``outstanding``) and those declared lost
and waiting to be sent again (``lost``), the peer's cumulative and selective
acknowledgements, the RFC 6298 timer (:mod:`netlab.proto.seq.rto`) and the
congestion controller (:mod:`netlab.proto.seq.congestion`), which it tells of
every datagram sent, acknowledged and lost. It never encodes or sends
anything: :meth:`LossRecovery.on_acknowledgement` and
:meth:`LossRecovery.on_timeout` declare datagrams lost, and
:meth:`LossRecovery.take_retransmissions` hands the connection those the
congestion window lets go out now (all of them under ``none``). The rules:

- Packet threshold (RFC 9002 6.1.1, as RFC 5681's three duplicates): a
  datagram sent once is lost once one three numbers above it has been
  acknowledged (selectively); also after three duplicate ACKs (RFC 5681)
  for a peer's acknowledgements that carry no SACK news.
- Time threshold (RFC 9002 6.1.2): a datagram sent before one that has been
  acknowledged is lost once it has been out 9/8 of max(SRTT, latest RTT)
  (at least 1 ms). This also catches a retransmission lost again.
- Retransmission ambiguity: QUIC never reuses a packet number, so it knows
  which transmission an acknowledgement is for; we resend under the same
  sequence number and cannot tell. So, as Karn's rule does for RTT samples,
  only datagrams sent once move the time threshold's "sent before" point:
  the acknowledgement of a retransmitted datagram is most often that of
  its first, earlier transmission (a spurious retransmission's original
  arriving late), and taking it for the retransmission's would declare
  lost everything sent in between, a whole window, whose acknowledgements
  would do the same again: a storm of spurious retransmissions that feeds
  itself through the queues it fills. Probes are no exception (RACK, RFC
  8985 6.2, takes a retransmission acknowledged at least a round trip
  after it for acknowledged itself; behind a growing queue that guess is
  wrong too), except when they show persistent congestion (below): after
  three probe periods of silence, an acknowledgement of probes alone is
  theirs, and what was sent before them is lost. For the same reason the
  packet threshold and the duplicate ACKs declare only datagrams sent
  once; a lost retransmission is the time threshold's (once a datagram
  sent once after it is acknowledged) or the timer's.
- NewReno recovery (RFC 6582, under ``reno`` and ``cubic``): a recovery
  starts with the first loss (or a timeout) and lasts until the cumulative
  point passes what had been sent then; the controller halves its window
  once per recovery. While a recovery lasts, an acknowledgement that advances the cumulative point but
  not past what had been sent when the recovery began declares the datagram
  at the new cumulative point lost at once, if it was sent (once) before the
  recovery began.
  When a datagram sent before the newest acknowledged one is not yet old
  enough, a timer waits for the rest of that time (``loss_time``).
- Probe timeout (RFC 9002 6.2, ``loss_timer="pto"``, the default): when
  nothing was acknowledged for ``srtt + max(4 rttvar, 1 ms) + max_ack_delay``
  (``initial_rto`` before any RTT sample) after the last datagram we sent,
  doubled per expiry in a row (capped at ``max_rto``), the oldest one or two
  unacknowledged datagrams are sent again as probes (regardless of the
  congestion window). A probe declares nothing lost and leaves the window
  alone; the SACK blocks of its acknowledgement let the packet threshold
  find what was lost (not the time threshold: a probe is a retransmission,
  see the ambiguity above); what they do not reveal, the next probe resends.
  Only persistent congestion (RFC 9002 7.6: an acknowledgement after three
  probe timeouts in a row that covers only datagrams sent after the third,
  so that everything sent over three probe periods was lost) collapses the
  window, to two datagrams. The probes resend the oldest data rather than
  new data (RFC 9002 allows either): the receiver delivers in order, so that
  is what blocks it, and a datagram the timer has already sent again
  ``retry_limit`` times fails the connection (:class:`RetryLimit`) as
  under the RFC 6298 timer.
- Retransmission timeout (RFC 6298, ``loss_timer="rto"``, kept for the
  lab's comparison with TCP): only the oldest datagram's deadline matters; a
  timeout backs the RTO off once. Under ``none`` it declares lost every
  datagram whose deadline passed; under a controller every datagram in
  flight (as Linux's loss state and RFC 5681's go-back after a timeout), and
  the window collapses to one datagram. A datagram the timer has already
  sent again ``retry_limit`` times fails the connection (:class:`RetryLimit`).
- The retry limit counts only what the timer resent (as TCP's
  ``tcp_retries2`` counts timeouts): a retransmission that an
  acknowledgement caused is proof that the peer is there.
- RTT samples only from datagrams sent once (Karn's rule).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

from netlab.proto.seq.config import PeerViolation, SequencingConfig
from netlab.proto.seq.congestion import CongestionController
from netlab.proto.seq.ranges import RangeSet
from netlab.proto.seq.rto import RetransmissionTimer
from netlab.proto.seq.wire import HEADER_SIZE, MASK_64, unwrap_sequence

#: Duplicate ACKs (and SACKed datagrams above a hole) that declare a datagram lost.
_REORDER_THRESHOLD = 3
#: RFC 9002's time threshold, as a multiple of the RTT, and its timer granularity.
TIME_THRESHOLD = 9 / 8
GRANULARITY = 0.001
#: RFC 9002's kPersistentCongestionThreshold: probe periods of total loss that collapse the window.
PERSISTENT_CONGESTION_THRESHOLD = 3
#: Most probes one probe timeout sends (RFC 9002 6.2.4).
PROBES_PER_TIMEOUT = 2
#: Why a datagram was declared lost (retransmissions are counted by it).
LOST_FAST = 0
LOST_TIMEOUT = 1
#: What :meth:`LossRecovery.on_timeout` did: nothing was due; the time
#: threshold declared datagrams lost; the RFC 6298 timer declared them lost;
#: a probe timeout left probes in :attr:`LossRecovery.probes`.
TIMER_NOTHING = 0
TIMER_LOSS = 1
TIMER_RETRANSMISSION = 2
TIMER_PROBE = 3


class Sent:
    """One DATA datagram waiting for its acknowledgement."""

    __slots__ = (
        "deadline",
        "flags",
        "lost_by",
        "payload",
        "payload_checksum",
        "sent_at",
        "size",
        "timer_resends",
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
        self.timer_resends = 0  # transmissions the loss timer made (probes, RTO retransmissions)
        self.size = len(payload) + HEADER_SIZE  # bytes on the wire, as the congestion window counts
        self.lost_by = LOST_FAST


class RetryLimit(NamedTuple):
    """The decision that the peer is gone: the timer resent ``sequence`` ``retry_limit`` times in vain.

    ``transmissions`` counts all of them, those acknowledgements caused included.
    """

    sequence: int
    transmissions: int


#: What one acknowledgement changed: ``(released_bytes, opened)``, a plain
#: tuple (it is made for every datagram). ``released_bytes``: payload bytes
#: acknowledged now, cumulatively or selectively; ``opened``: the cumulative
#: point advanced, something new was acknowledged or the peer's window
#: opened, so queued data may go out. Datagrams declared lost wait in
#: ``LossRecovery.lost`` for :meth:`LossRecovery.take_retransmissions`.
AcknowledgementOutcome = tuple[int, bool]

_NOTHING: AcknowledgementOutcome = (0, False)
_OPENED: AcknowledgementOutcome = (0, True)


class LossRecovery:
    """The sending side's unacknowledged datagrams, the peer's window, the timer and the congestion controller."""

    __slots__ = (
        "controller",
        "duplicate_acks",
        "fast_scan",
        "first_sample_at",
        "last_sent_at",
        "latest_rtt",
        "loss_time",
        "lost",
        "max_ack_delay",
        "max_backoff",
        "new_reno",
        "newest_acknowledged_sent_at",
        "outstanding",
        "peer_edge",
        "probe_timeout",
        "probe_times",
        "probes",
        "recover",
        "recovery_started",
        "retry_limit",
        "sacked",
        "send_base",
        "timer",
        "_lost_bytes",
        "_lost_newest",
        "_lost_oldest",
    )

    def __init__(self, config: SequencingConfig, initial_sequence: int, controller: CongestionController) -> None:
        """Args:
        config: the connection's settings (RTO floor, initial RTO, cap, retry limit).
        initial_sequence: our first sequence number.
        controller: the congestion controller told of every send, acknowledgement and loss.
        """
        self.timer = RetransmissionTimer(config.rto_floor, config.initial_rto, config.max_rto)
        self.retry_limit = config.retry_limit
        self.probe_timeout = config.loss_timer == "pto"
        self.max_ack_delay = config.ack_delay  # the peer's, assumed to be ours (it is not exchanged)
        self.max_backoff = config.max_rto
        self.controller = controller
        self.new_reno = controller.name != "none"  # partial ACKs and go-back after a timeout
        #: In flight, not yet acknowledged: sequence -> record, oldest transmission first.
        self.outstanding: OrderedDict[int, Sent] = OrderedDict()
        #: Declared lost, waiting to be sent again: sequence -> record, in the order declared.
        self.lost: OrderedDict[int, Sent] = OrderedDict()
        self.send_base = initial_sequence  # lowest unacknowledged sequence number
        self.peer_edge = initial_sequence  # one past the highest the peer accepts
        self.sacked = RangeSet()
        self.fast_scan = initial_sequence
        self.duplicate_acks = 0
        self.latest_rtt: float | None = None
        self.recover: int | None = None  # NewReno: our next sequence number when the recovery began
        self.recovery_started = 0.0
        self.last_sent_at = 0.0  # when the newest DATA datagram left (the probe timer runs from it)
        self.loss_time: float | None = None  # when the time threshold may declare the next datagram lost
        self.newest_acknowledged_sent_at = 0.0  # send time of the newest transmission acknowledged
        self.first_sample_at: float | None = None  # when the first RTT sample was taken
        self.probe_times: list[float] = []  # probe timeouts since the last acknowledgement of anything new
        self.probes: list[tuple[int, Sent]] = []  # what the last probe timeout resends
        self._lost_bytes = 0  # declared lost during the current call, for one controller report
        self._lost_newest = 0.0
        self._lost_oldest = 0.0

    @property
    def unacknowledged(self) -> bool:
        """True while any datagram (in flight or lost) awaits its acknowledgement."""
        return bool(self.outstanding) or bool(self.lost)

    def clear(self) -> None:
        """Forget everything in flight (the connection failed)."""
        self.outstanding.clear()
        self.lost.clear()

    def take_retransmissions(self, now: float) -> list[tuple[int, Sent]]:
        """The lost datagrams the congestion window lets go out now, marked as resent.

        Under ``none`` that is all of them. With nothing in flight at least one
        goes, so a window can never block the retransmission that reopens it.
        """
        lost = self.lost
        if not lost:
            return []
        controller = self.controller
        timer_rto = self.timer.rto
        outstanding = self.outstanding
        resend: list[tuple[int, Sent]] = []
        while lost and (controller.window_room > 0 or not outstanding):
            sequence, record = lost.popitem(last=False)
            record.transmissions += 1
            record.sent_at = now
            record.deadline = now + timer_rto
            outstanding[sequence] = record
            controller.on_packet_sent(record.size, now)
            resend.append((sequence, record))
        if resend:
            self.last_sent_at = now
        return resend

    def deadline(self) -> float | None:
        """When :meth:`on_timeout` has work: the time threshold's timer, else the probe or retransmission timer."""
        if self.loss_time is not None:
            return self.loss_time
        if self.probe_timeout:
            if not self.outstanding and not self.lost:
                return None
            return self.last_sent_at + self.probe_period()
        for oldest in self.outstanding.values():
            return oldest.deadline
        return None

    def probe_period(self) -> float:
        """RFC 9002 6.2.1: srtt + max(4 rttvar, granularity) + max_ack_delay, doubled per probe timeout in a row."""
        timer = self.timer
        srtt, rttvar = timer.srtt, timer.rttvar
        if srtt is None or rttvar is None:
            period = timer.rto  # the initial RTO before any sample (RFC 9002 starts from 333 ms x 3)
        else:
            period = srtt + max(4 * rttvar, GRANULARITY) + self.max_ack_delay
        return min(period * (1 << len(self.probe_times)), self.max_backoff)

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
            The :class:`AcknowledgementOutcome`; datagrams declared lost are in ``lost``.
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
                self._duplicate_acknowledgement(send_base, next_sequence, now)
                self._report_losses(now)
            return _NOTHING
        acknowledgement = unwrap_sequence(wire_acknowledgement, send_base)
        if acknowledgement < send_base:
            return _NOTHING  # An old, reordered datagram: its acknowledgement says nothing new.
        if acknowledgement > next_sequence:
            raise PeerViolation(f"the peer acknowledged {wire_acknowledgement}, which we never sent")
        outstanding = self.outstanding
        lost = self.lost
        sacked = self.sacked
        pop = outstanding.pop
        released: list[Sent] = []  # in flight until now, acknowledged cumulatively or selectively
        released_bytes = 0  # payload bytes, lost ones included
        advanced = acknowledgement != send_base
        newly_acknowledged: list[tuple[int, int]] = []  # [start, end) ranges: the cumulative one, then new SACKs
        if advanced:
            newly_acknowledged.append((send_base, acknowledgement))
            self.send_base = acknowledgement
            self.duplicate_acks = 0
            if sacked.starts:
                sacked.discard_below(acknowledgement)
            if self.recover is not None and acknowledgement >= self.recover:
                self.recover = None  # RFC 6582's full acknowledgement: the recovery is over
                self.controller.on_recovery_end(now)
        if sack_blocks:
            for offset, length in sack_blocks:
                start = acknowledgement + offset
                end = min(start + length, next_sequence)
                if start >= end or start <= acknowledgement:
                    continue
                newly_acknowledged.extend(sacked.add(start, end))
        for first, end in newly_acknowledged:
            for sequence in range(first, end):
                record = pop(sequence, None)
                if record is not None:
                    released.append(record)
                elif lost:
                    record = lost.pop(sequence, None)
                    if record is not None:
                        released_bytes += len(record.payload)
        progress = advanced or bool(released) or released_bytes > 0
        flight_bytes = 0
        newest_sent: float | None = None  # the newest acknowledged transmission
        newest_sample: float | None = None  # of a datagram sent once (Karn): its time is unambiguous
        for record in released:
            released_bytes += len(record.payload)
            flight_bytes += record.size
            sent_at = record.sent_at
            if newest_sent is None or sent_at > newest_sent:
                newest_sent = sent_at
            if record.transmissions == 1 and (newest_sample is None or sent_at > newest_sample):
                newest_sample = sent_at
        persistent = False
        if progress and self.probe_times:
            persistent = self._persistent_congestion(released)
            self.probe_times.clear()  # RFC 9002 6.2.1: an acknowledgement resets the backoff
        controller = self.controller
        if newest_sample is not None:
            self.latest_rtt = now - newest_sample
            self.timer.add_sample(self.latest_rtt)
            if self.first_sample_at is None:
                self.first_sample_at = now
            controller.on_rtt_measurement(self.latest_rtt, self.timer.srtt, now)
        if newest_sent is not None:
            controller.on_packets_acked(flight_bytes, newest_sent, now)
        edge = acknowledgement + window
        window_opened = edge > self.peer_edge
        if window_opened:
            self.peer_edge = edge
        if not progress and not window_opened and is_pure_ack and outstanding:
            self._duplicate_acknowledgement(acknowledgement, next_sequence, now)
        if sacked.ends:
            lost_below = sacked.ends[-1] - _REORDER_THRESHOLD
            scan = max(self.send_base, self.fast_scan)
            if scan < lost_below:
                get = outstanding.get
                for sequence in range(scan, lost_below):
                    record = get(sequence)
                    if record is not None and record.transmissions == 1:
                        self._declare_lost(sequence, record, next_sequence, now)
                self.fast_scan = lost_below
        # Only a datagram sent once says when what was acknowledged left (see the
        # module notes), or persistent congestion: after three probe periods of
        # silence, an acknowledgement of nothing but probes is theirs.
        reference = newest_sent if persistent else newest_sample
        if reference is not None and reference > self.newest_acknowledged_sent_at:
            self.newest_acknowledged_sent_at = reference
        if newest_sent is not None:
            self._detect_by_time(next_sequence, now)
        if self.recover is not None and advanced and self.recovery_started < now:
            self._partial_acknowledgement(acknowledgement, next_sequence, now)
        self._report_losses(now, persistent)
        return released_bytes, progress or window_opened

    def _persistent_congestion(self, released: list[Sent]) -> bool:
        """RFC 9002 7.6, for the acknowledgement that ends a run of probe timeouts.

        Persistent when at least three probe timeouts came in a row, an RTT
        sample had been taken before the first, and every transmission this
        acknowledgement covers was sent at or after the third probe timeout:
        then what was sent before it, over at least three probe periods (the
        period doubles per timeout: 1 + 2 = 3), was lost.
        """
        probe_times = self.probe_times
        if len(probe_times) < PERSISTENT_CONGESTION_THRESHOLD or self.first_sample_at is None:
            return False
        if self.first_sample_at >= probe_times[0]:
            return False
        third = probe_times[PERSISTENT_CONGESTION_THRESHOLD - 1]
        return bool(released) and all(record.sent_at >= third for record in released)

    def _duplicate_acknowledgement(self, acknowledgement: int, next_sequence: int, now: float) -> None:
        """A duplicate ACK (RFC 5681): nothing new, the same cumulative point; the third declares it lost.

        Only a datagram sent once: the duplicates that reach us after a
        retransmission mostly left the peer before it could arrive.
        """
        self.duplicate_acks += 1
        if self.duplicate_acks == _REORDER_THRESHOLD:
            record = self.outstanding.get(acknowledgement)
            if record is not None and record.transmissions == 1:
                self._declare_lost(acknowledgement, record, next_sequence, now)

    def _detect_by_time(self, next_sequence: int, now: float) -> None:
        """RFC 9002 6.1.2: in flight, sent before an acknowledged datagram, and out 9/8 RTT: lost.

        Sets :attr:`loss_time` to when the next such datagram will be old
        enough (None when there is none).
        """
        self.loss_time = None
        srtt = self.timer.srtt
        latest = self.latest_rtt
        if srtt is None and latest is None:
            return  # no round trip measured yet: the timer decides
        rtt = max(srtt if srtt is not None else 0.0, latest if latest is not None else 0.0)
        delay = max(TIME_THRESHOLD * rtt, GRANULARITY)
        acknowledged_sent_at = self.newest_acknowledged_sent_at
        found: list[tuple[int, Sent]] = []
        for sequence, record in self.outstanding.items():  # in send-time order
            sent_at = record.sent_at
            if sent_at >= acknowledged_sent_at:
                break
            if sent_at + delay > now:  # the same sum the timer waits for, so it always finds this one
                self.loss_time = sent_at + delay
                break
            found.append((sequence, record))
        for sequence, record in found:
            self._declare_lost(sequence, record, next_sequence, now)

    def _partial_acknowledgement(self, acknowledgement: int, next_sequence: int, now: float) -> None:
        """RFC 6582: a partial ACK declares the datagram at the new cumulative point lost."""
        record = self.outstanding.get(acknowledgement)
        if record is not None and record.transmissions == 1 and record.sent_at <= self.recovery_started:
            self._declare_lost(acknowledgement, record, next_sequence, now)

    def _declare_lost(self, sequence: int, record: Sent, next_sequence: int, now: float) -> None:
        """Move ``record`` from the flight to the lost datagrams (reported to the controller in one go)."""
        del self.outstanding[sequence]
        record.lost_by = LOST_FAST
        self.lost[sequence] = record
        self._lost_bytes += record.size
        if record.sent_at > self._lost_newest or self._lost_bytes == record.size:
            self._lost_newest = record.sent_at
        if record.sent_at < self._lost_oldest or self._lost_bytes == record.size:
            self._lost_oldest = record.sent_at
        if self.new_reno and self.recover is None:
            self.recover = next_sequence
            self.recovery_started = now

    def _report_losses(self, now: float, persistent: bool = False) -> None:
        if self._lost_bytes:
            self.controller.on_packets_lost(self._lost_bytes, self._lost_newest, now)
            self._lost_bytes = 0
            if persistent:
                self.controller.on_persistent_congestion(now)

    def on_timeout(self, next_sequence: int, now: float) -> int | RetryLimit:
        """Run the loss-detection timers that are due: the time threshold's, then the probe or RTO timer.

        Args:
            next_sequence: the next sequence number we would use.
            now: current time.
        Returns:
            :data:`TIMER_LOSS` when the time threshold declared datagrams lost
            (``take_retransmissions`` has work), :data:`TIMER_PROBE` when a
            probe timeout left probes in :attr:`probes`,
            :data:`TIMER_RETRANSMISSION` when the RFC 6298 timer declared
            datagrams lost, :data:`TIMER_NOTHING` when nothing was due, or
            :class:`RetryLimit` when the datagram to resend has already been
            sent ``1 + retry_limit`` times.
        """
        if self.loss_time is not None:
            if now < self.loss_time:
                return TIMER_NOTHING
            self._detect_by_time(next_sequence, now)
            lost_any = self._lost_bytes > 0
            self._report_losses(now)
            return TIMER_LOSS if lost_any else TIMER_NOTHING
        if self.probe_timeout:
            return self._probe(next_sequence, now)
        return self._retransmission_timeout(next_sequence, now)

    def _probe(self, next_sequence: int, now: float) -> int | RetryLimit:
        """RFC 9002 6.2.4: resend the oldest one or two unacknowledged datagrams; declare nothing lost."""
        if (not self.outstanding and not self.lost) or now < self.last_sent_at + self.probe_period():
            return TIMER_NOTHING
        outstanding, lost = self.outstanding, self.lost
        probes: list[tuple[int, Sent]] = []
        for sequence in range(self.send_base, next_sequence):  # the lowest unacknowledged numbers
            record = outstanding.get(sequence) or lost.get(sequence)
            if record is None:
                continue
            if record.timer_resends >= self.retry_limit:
                return RetryLimit(sequence, record.transmissions)
            probes.append((sequence, record))
            if len(probes) == PROBES_PER_TIMEOUT:
                break
        timer_rto = self.timer.rto
        for sequence, record in probes:
            if outstanding.pop(sequence, None) is None:
                del lost[sequence]  # declared lost and waiting for the window: in flight again now
                self.controller.on_packet_sent(record.size, now)
            record.transmissions += 1
            record.timer_resends += 1
            record.sent_at = now
            record.deadline = now + timer_rto
            record.lost_by = LOST_TIMEOUT
            outstanding[sequence] = record  # the newest transmission: last in send order
        self.probe_times.append(now)
        self.last_sent_at = now
        self.probes = probes
        self.controller.on_probe_timeout(now)
        return TIMER_PROBE

    def _retransmission_timeout(self, next_sequence: int, now: float) -> int | RetryLimit:
        """The RFC 6298 timer: declare datagrams lost (backing the RTO off once).

        Under ``none`` the datagrams whose deadline passed are lost; under a
        controller every datagram in flight is, and the window collapses.
        """
        outstanding = self.outstanding
        expired: list[tuple[int, Sent]] = []
        for sequence, record in outstanding.items():
            if record.deadline > now:
                break
            if record.timer_resends >= self.retry_limit:
                return RetryLimit(sequence, record.transmissions)
            expired.append((sequence, record))
        if not expired:
            return TIMER_NOTHING
        self.timer.back_off()
        if self.new_reno:
            expired = list(outstanding.items())
        size = 0
        for sequence, record in expired:
            del outstanding[sequence]
            record.lost_by = LOST_TIMEOUT
            record.timer_resends += 1
            self.lost[sequence] = record
            size += record.size
        if self.new_reno:
            self.recover = next_sequence
            self.recovery_started = now
            self.duplicate_acks = 0
        self.controller.on_retransmission_timeout(size, now)
        return TIMER_RETRANSMISSION
