"""Congestion control of a sequenced connection: how many bytes may be in flight.

How this works (the interface follows aioquic's ``QuicCongestionControl``):
a :class:`CongestionController` is told of every datagram sent
(:meth:`~CongestionController.on_packet_sent`), acknowledged
(:meth:`~CongestionController.on_packets_acked`), declared lost
(:meth:`~CongestionController.on_packets_lost`), of an RFC 6298
retransmission timeout (:meth:`~CongestionController.on_retransmission_timeout`),
of an RFC 9002 probe timeout (:meth:`~CongestionController.on_probe_timeout`,
which changes no window) and persistent congestion
(:meth:`~CongestionController.on_persistent_congestion`), and of every RTT
sample (:meth:`~CongestionController.on_rtt_measurement`). It keeps
``bytes_in_flight`` and ``congestion_window``; the connection sends new data
and retransmissions only while ``bytes_in_flight < congestion_window`` (a
datagram may overshoot the window by less than one datagram, as TCP's may).
Sizes are whole datagrams, header included; the unit of growth is the
connection's largest datagram (``max_datagram``, TCP's SMSS).

The controllers, by name (:data:`CONTROLLERS`):

- ``none``: no congestion control: the window is unlimited, so only the
  peer's receive window limits what is in flight (the behaviour before
  congestion control existed, and still the default on loopback).
- ``reno``: RFC 5681 slow start (the window grows by the bytes acknowledged,
  so it doubles per round trip) and congestion avoidance (one datagram per
  window's worth acknowledged), with the recovery of RFC 6582 (NewReno): a
  loss halves the window once (``ssthresh = cwnd = max(cwnd / 2, 2
  datagrams)``) and starts a recovery that lasts until everything sent
  before it has been acknowledged (loss recovery, which knows the sequence
  numbers, calls :meth:`~CongestionController.on_recovery_end`); further
  losses during it, a lost retransmission included, do not halve the window
  again, and acknowledgements during it (NewReno's partial ACKs) do not
  grow it. The window is not inflated per duplicate
  ACK: lost datagrams leave ``bytes_in_flight`` when declared lost, which is
  what inflation stands for (RFC 6675 / RFC 9002 do the same). A
  retransmission timeout sets ``ssthresh = max(flight / 2, 2 datagrams)``
  and collapses the window to one datagram; persistent congestion (RFC 9002
  7.6, under the probe timeout) collapses it to two datagrams (the RFC's
  minimum window) after the loss's own reduction.
- ``cubic``: RFC 9438: after a loss the window is ``beta = 0.7`` of what it
  was (fast convergence lowers ``W_max`` when the loss came below the last
  one) and grows along ``W(t) = C (t - K)^3 + W_max`` (C = 0.4, in datagrams
  and seconds), never slower than the Reno-friendly estimate of section 4.3;
  a timeout sets ``ssthresh`` to 0.7 of the flight; slow start and recovery
  as ``reno`` (see :class:`CubicController`).

Each controller counts its congestion events (losses that reduced the
window, timeouts) and can keep a bounded trace of ``(time, cwnd,
ssthresh, bytes_in_flight, srtt, event)`` rows for plots.
"""

from __future__ import annotations

import math
from typing import NamedTuple

#: The names a configuration may give, in the order tables list them.
CONTROLLERS = ("none", "reno", "cubic")
#: RFC 9002's initial window: ten datagrams (at most 14,720 bytes, at least two datagrams).
INITIAL_WINDOW_DATAGRAMS = 10
#: The smallest window after a loss, in datagrams (RFC 5681: 2 SMSS).
MINIMUM_WINDOW_DATAGRAMS = 2
#: The window after a retransmission timeout, in datagrams (RFC 5681's loss window).
LOSS_WINDOW_DATAGRAMS = 1
#: ``none``'s window: larger than any flight a receive window allows.
UNLIMITED = 1 << 62
#: Most trace rows kept (a 20 Mbit/s transfer of ten seconds makes ~20,000 ack rows).
TRACE_LIMIT = 200_000
#: CUBIC's constants (RFC 9438 section 4.1 and 4.6).
CUBIC_C = 0.4
CUBIC_BETA = 0.7
#: The Reno-friendly estimate's additive increase, datagrams per window (RFC 9438 section 4.3).
CUBIC_ALPHA = 3 * (1 - CUBIC_BETA) / (1 + CUBIC_BETA)

EVENT_START = "start"
EVENT_ACK = "ack"
EVENT_LOSS = "loss"
EVENT_TIMEOUT = "timeout"
EVENT_RECOVERY_END = "recovery-end"
EVENT_PROBE = "probe"
EVENT_PERSISTENT = "persistent-congestion"


class TraceRow(NamedTuple):
    """One row of a controller's trace: the state right after ``event``."""

    time: float
    cwnd: int
    ssthresh: int | None
    bytes_in_flight: int
    srtt: float | None
    event: str


class CongestionController:
    """The interface, and ``none``: count what is in flight, never limit it.

    Attributes:
        name: the controller's name (one of :data:`CONTROLLERS`).
        max_datagram: bytes of the largest datagram the connection sends (SMSS).
        congestion_window: bytes that may be in flight.
        slow_start_threshold: ssthresh in bytes; None before the first loss.
        bytes_in_flight: bytes sent and neither acknowledged nor declared lost.
        congestion_events: losses that reduced the window, timeouts and persistent congestion included.
        timeouts: retransmission timeouts seen (RFC 6298 timer).
        probe_timeouts: probe timeouts seen (RFC 9002; they change no window).
        srtt: the latest smoothed RTT the connection reported (for the trace).
        trace: the trace rows, or None when tracing is off.
    """

    name = "none"

    def __init__(self, max_datagram: int, now: float, *, trace: bool = False) -> None:
        """Args:
        max_datagram: bytes of the largest datagram (header included).
        now: the current time (the trace's first row).
        trace: keep a trace of every change.
        """
        self.max_datagram = max_datagram
        self.congestion_window = self._initial_window()
        self.slow_start_threshold: int | None = None
        self.bytes_in_flight = 0
        self.congestion_events = 0
        self.timeouts = 0
        self.probe_timeouts = 0
        self.srtt: float | None = None
        self.trace: list[TraceRow] | None = [] if trace else None
        self._record(now, EVENT_START)

    def _initial_window(self) -> int:
        return UNLIMITED

    @property
    def window_room(self) -> int:
        """Bytes that may still be sent now (may be negative after a reduction)."""
        return self.congestion_window - self.bytes_in_flight

    def set_max_datagram(self, size: int) -> None:
        """The connection learned a smaller datagram size from the peer."""
        self.max_datagram = size

    def on_packet_sent(self, size: int, now: float) -> None:
        """``size`` bytes left for the peer (new data or a retransmission)."""
        self.bytes_in_flight += size

    def on_packets_acked(self, size: int, newest_sent_at: float, now: float) -> None:
        """Datagrams of ``size`` bytes in all, in flight until now, were acknowledged.

        Args:
            size: their bytes.
            newest_sent_at: when the most recently sent of them was sent.
            now: current time.
        """
        self.bytes_in_flight -= size

    def on_packets_lost(self, size: int, newest_sent_at: float, now: float) -> None:
        """Datagrams of ``size`` bytes were declared lost (they leave the flight).

        Args:
            size: their bytes.
            newest_sent_at: when the most recently sent of them was sent.
            now: current time.
        """
        self.bytes_in_flight -= size

    def on_retransmission_timeout(self, lost_size: int, now: float) -> None:
        """The retransmission timer expired; datagrams of ``lost_size`` bytes are declared lost."""
        self.bytes_in_flight -= lost_size
        self.timeouts += 1

    def on_probe_timeout(self, now: float) -> None:
        """The probe timer expired and probes went out (RFC 9002 6.2): counted and traced, no window change."""
        self.probe_timeouts += 1
        self._record(now, EVENT_PROBE)

    def on_persistent_congestion(self, now: float) -> None:
        """Everything sent over three probe periods was lost (RFC 9002 7.6); ``none`` has no window to collapse."""

    def on_rtt_measurement(self, latest_rtt: float, smoothed_rtt: float | None, now: float) -> None:
        """A round-trip sample was taken (``smoothed_rtt``: the connection's SRTT after it)."""
        self.srtt = smoothed_rtt

    def on_recovery_end(self, now: float) -> None:
        """Everything sent before the current recovery began has been acknowledged (RFC 6582's full ACK)."""

    def _record(self, now: float, event: str) -> None:
        trace = self.trace
        if trace is not None and len(trace) < TRACE_LIMIT:
            trace.append(TraceRow(now, min(self.congestion_window, UNLIMITED), self.slow_start_threshold,
                                  self.bytes_in_flight, self.srtt, event))


class RenoController(CongestionController):
    """RFC 5681 slow start and congestion avoidance with RFC 6582 (NewReno) recovery."""

    name = "reno"

    def __init__(self, max_datagram: int, now: float, *, trace: bool = False) -> None:
        self.in_recovery = False  # fast recovery: no growth, no further reduction
        self._resending_after_timeout = False  # slow start resends what the timeout declared lost: no reduction
        self._avoidance_credit = 0  # bytes acknowledged in congestion avoidance, not yet a datagram's growth
        self._traced_window = 0
        super().__init__(max_datagram, now, trace=trace)

    def _initial_window(self) -> int:
        return min(INITIAL_WINDOW_DATAGRAMS * self.max_datagram, max(2 * self.max_datagram, 14_720))

    @property
    def in_slow_start(self) -> bool:
        """True while the window is below ssthresh."""
        return self.slow_start_threshold is None or self.congestion_window < self.slow_start_threshold

    def on_packets_acked(self, size: int, newest_sent_at: float, now: float) -> None:
        """Grow the window (slow start or congestion avoidance), except during a recovery."""
        self.bytes_in_flight -= size
        if self.in_recovery:
            return  # A partial ACK: not everything sent before the loss is acknowledged yet.
        if self.in_slow_start:
            self.congestion_window += size
        else:
            self._grow_in_avoidance(size, now)
        if self.trace is not None and abs(self.congestion_window - self._traced_window) >= self.max_datagram:
            self._traced_window = self.congestion_window
            self._record(now, EVENT_ACK)

    def _grow_in_avoidance(self, size: int, now: float) -> None:
        """RFC 5681 (3.1): one datagram per window's worth of bytes acknowledged."""
        self._avoidance_credit += size
        if self._avoidance_credit >= self.congestion_window:
            self._avoidance_credit -= self.congestion_window
            self.congestion_window += self.max_datagram

    def on_packets_lost(self, size: int, newest_sent_at: float, now: float) -> None:
        """Halve the window and start a recovery, unless one is under way."""
        self.bytes_in_flight -= size
        if self.in_recovery or self._resending_after_timeout:
            return
        self.in_recovery = True
        self.congestion_events += 1
        self._reduce(now)
        self._record(now, EVENT_LOSS)

    def on_recovery_end(self, now: float) -> None:
        """The recovery is over: acknowledgements grow the window again."""
        if self.in_recovery or self._resending_after_timeout:
            self.in_recovery = self._resending_after_timeout = False
            self._record(now, EVENT_RECOVERY_END)

    def _reduce(self, now: float) -> None:
        window = max(self.congestion_window // 2, MINIMUM_WINDOW_DATAGRAMS * self.max_datagram)
        self.slow_start_threshold = self.congestion_window = window
        self._avoidance_credit = 0

    def on_retransmission_timeout(self, lost_size: int, now: float) -> None:
        """ssthresh from the flight (RFC 5681 3.1, eq. 4: ``max(flight / 2, 2 datagrams)``); the window drops to one."""
        flight = self.bytes_in_flight
        self.bytes_in_flight -= lost_size
        self.timeouts += 1
        self.congestion_events += 1
        self.slow_start_threshold = self._threshold_after_timeout(flight)
        self._collapse(LOSS_WINDOW_DATAGRAMS, now, EVENT_TIMEOUT)

    def _threshold_after_timeout(self, flight: int) -> int:
        """RFC 5681 (3.1, eq. 4): half the flight, at least two datagrams."""
        return max(flight // 2, MINIMUM_WINDOW_DATAGRAMS * self.max_datagram)

    def on_persistent_congestion(self, now: float) -> None:
        """RFC 9002 7.6.2: the window drops to the minimum (two datagrams); slow start resends what was lost."""
        self.congestion_events += 1
        self._collapse(MINIMUM_WINDOW_DATAGRAMS, now, EVENT_PERSISTENT)

    def _collapse(self, datagrams: int, now: float, event: str) -> None:
        """The window drops to ``datagrams``; slow start resends what was in flight (a timeout's end)."""
        self.congestion_window = datagrams * self.max_datagram
        self._avoidance_credit = 0
        self.in_recovery = False
        self._resending_after_timeout = True  # until what was in flight is acknowledged
        self._after_timeout(now)
        self._record(now, event)

    def _after_timeout(self, now: float) -> None:
        """What a subclass forgets on a timeout or persistent congestion."""


class CubicController(RenoController):
    """RFC 9438 CUBIC: the window grows along a cubic curve around the window of the last loss.

    Windows in the RFC's formulas are in datagrams (``max_datagram``) and
    times in seconds. On a loss (section 4.6) ``W_max`` becomes the window
    before it (or, by fast convergence, section 4.7, ``cwnd (1 + beta) / 2``
    when the loss came below the previous ``W_max``) and the window drops to
    ``beta = 0.7`` of itself. The first acknowledgement in congestion
    avoidance starts an epoch: with ``t`` the seconds since then,
    ``W_cubic(t) = C (t - K)^3 + W_max`` and ``K = cbrt((W_max -
    cwnd_epoch) / C)``, so the curve starts at the epoch's window, is concave
    up to ``W_max`` (reached at ``t = K``) and convex beyond. Each
    acknowledged datagram adds ``(target - cwnd) / cwnd`` datagrams, where
    ``target`` is ``W_cubic(t + RTT)`` held between ``cwnd`` and ``1.5 cwnd``
    (section 4.2). Beside it runs the Reno-friendly estimate (section 4.3)
    ``W_est``, which starts at the epoch's window and grows by ``alpha``
    datagrams per window acknowledged, ``alpha = 3 (1 - beta) / (1 + beta)``
    until ``W_est`` reaches the window of the last loss (``cwnd_prior``) and 1
    after; while ``W_cubic(t) < W_est`` the window is ``W_est`` (it is never
    lowered on an acknowledgement). A retransmission timeout (section 4.8)
    sets ``ssthresh = max(beta flight, 2 datagrams)`` and collapses the
    window to one datagram; the next epoch then starts with ``K = 0`` and
    ``W_max`` and ``W_est`` both the window at its start (so after
    persistent congestion too). Slow start and NewReno recovery are ``reno``'s; HyStart is
    not implemented, and the window grows in congestion avoidance whether or
    not the flight fills it.
    """

    name = "cubic"

    def __init__(self, max_datagram: int, now: float, *, trace: bool = False) -> None:
        self.epoch_start: float | None = None  # when the current congestion avoidance began (None: not yet)
        self.window_max = 0.0  # W_max, in datagrams (0 before the first congestion event)
        self.k = 0.0  # K, in seconds
        self.reno_estimate = 0.0  # W_est, in datagrams
        self._window_prior = 0.0  # cwnd_prior: the window when the last loss came, in datagrams
        self._epoch_after_timeout = False  # the next epoch starts from its own window (section 4.8)
        self._growth_credit = 0.0  # bytes of growth not yet added (the window is whole bytes)
        super().__init__(max_datagram, now, trace=trace)

    def cubic_window(self, elapsed: float) -> float:
        """``W_cubic(t)`` in datagrams, ``elapsed`` seconds into the current epoch."""
        return CUBIC_C * (elapsed - self.k) ** 3 + self.window_max

    def _reduce(self, now: float) -> None:
        """Multiplicative decrease by beta (section 4.6), with fast convergence (section 4.7)."""
        window = self.congestion_window / self.max_datagram
        fast_convergence = window < self.window_max
        self.window_max = window * (1 + CUBIC_BETA) / 2 if fast_convergence else window
        self._window_prior = window
        reduced = max(int(self.congestion_window * CUBIC_BETA), MINIMUM_WINDOW_DATAGRAMS * self.max_datagram)
        self.slow_start_threshold = self.congestion_window = reduced
        self._start_new_epoch(after_timeout=False)

    def _threshold_after_timeout(self, flight: int) -> int:
        """Section 4.8: ``ssthresh = max(beta flight, 2 datagrams)``."""
        return max(int(flight * CUBIC_BETA), MINIMUM_WINDOW_DATAGRAMS * self.max_datagram)

    def _after_timeout(self, now: float) -> None:
        self._start_new_epoch(after_timeout=True)

    def _start_new_epoch(self, *, after_timeout: bool) -> None:
        self.epoch_start = None
        self._epoch_after_timeout = after_timeout
        self._growth_credit = 0.0

    def _begin_epoch(self, window: float, now: float) -> None:
        """The first acknowledgement in congestion avoidance: t = 0 at ``cwnd_epoch = window``."""
        self.epoch_start = now
        self.reno_estimate = window
        if self._epoch_after_timeout:
            self.window_max, self.k = window, 0.0
            self._epoch_after_timeout = False
        else:
            gap = (self.window_max - window) / CUBIC_C  # negative when the epoch starts above W_max
            self.k = math.copysign(abs(gap) ** (1 / 3), gap)

    def _grow_in_avoidance(self, size: int, now: float) -> None:
        """Sections 4.2-4.5: toward ``W_cubic(t + RTT)``, or to ``W_est`` in the Reno-friendly region."""
        segment = self.max_datagram
        window = self.congestion_window / segment
        start = self.epoch_start
        if start is None:
            self._begin_epoch(window, now)
            start = now
        acked = size / segment
        alpha = 1.0 if self.reno_estimate >= self._window_prior else CUBIC_ALPHA
        self.reno_estimate += alpha * acked / window
        elapsed = now - start
        if self.cubic_window(elapsed) < self.reno_estimate:  # the Reno-friendly region
            self.congestion_window = max(self.congestion_window, int(self.reno_estimate * segment))
            self._growth_credit = 0.0
            return
        rtt = self.srtt if self.srtt is not None else 0.0
        target = min(max(self.cubic_window(elapsed + rtt), window), 1.5 * window)
        self._growth_credit += (target - window) / window * size  # bytes: (target - cwnd) / cwnd per datagram
        whole = int(self._growth_credit)
        self.congestion_window += whole
        self._growth_credit -= whole


def make_controller(name: str, max_datagram: int, now: float, *, trace: bool = False) -> CongestionController:
    """The controller called ``name`` (one of :data:`CONTROLLERS`).

    Raises:
        ValueError: an unknown name (the configuration checks names first).
    """
    kinds: dict[str, type[CongestionController]] = {
        "none": CongestionController,
        "reno": RenoController,
        "cubic": CubicController,
    }
    try:
        kind = kinds[name]
    except KeyError:
        raise ValueError(f"unknown congestion controller {name!r}: use one of {', '.join(CONTROLLERS)}") from None
    return kind(max_datagram, now, trace=trace)
