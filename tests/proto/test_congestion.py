"""Congestion control of sequenced UDP: the controllers alone, then over the fake network and clock.

The controllers are pure (sizes and times in, a window out), so the RFC rules
are checked on them directly; the same rules are then checked end to end
with :class:`Simulation` (a seeded fake network, time moving only from event
to event) and with the hand-wired :class:`Pair`.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from netlab.errors import UsageError
from netlab.proto.seq import SequencingConfig
from netlab.proto.seq.congestion import (
    CUBIC_ALPHA,
    CUBIC_BETA,
    EVENT_LOSS,
    EVENT_PERSISTENT,
    EVENT_PROBE,
    EVENT_TIMEOUT,
    CongestionController,
    CubicController,
    RenoController,
    make_controller,
)
from netlab.proto.seq.wire import decode_header
from netlab.testing.network import SMALL_CONFIG, LinkImpairment, Pair, Simulation, exchange

SEGMENT = 1000


def grow(controller: CongestionController, rounds: int, now: float, rtt: float = 0.1) -> float:
    """Send a full window and have all of it acknowledged, ``rounds`` times; return the time after."""
    for _ in range(rounds):
        sent = controller.congestion_window
        controller.on_packet_sent(sent, now)
        now += rtt
        controller.on_rtt_measurement(rtt, rtt, now)
        controller.on_packets_acked(sent, now - rtt, now)
    return now


# ------------------------------------------------------------ the controllers alone


def test_none_never_limits_and_counts_the_flight() -> None:
    controller = make_controller("none", SEGMENT, 0.0)
    controller.on_packet_sent(10**9, 0.0)
    assert controller.window_room > 0
    controller.on_packets_lost(4000, 0.0, 1.0)
    controller.on_packets_acked(10**9 - 4000, 0.0, 1.0)
    assert controller.bytes_in_flight == 0 and controller.congestion_events == 0


def test_reno_slow_start_doubles_the_window_each_round_trip() -> None:
    controller = RenoController(SEGMENT, 0.0)
    windows = [controller.congestion_window]
    now = 0.0
    for _ in range(5):
        now = grow(controller, 1, now)
        windows.append(controller.congestion_window)
    assert windows[0] == 10 * SEGMENT
    assert all(after == 2 * before for before, after in zip(windows, windows[1:]))


def test_reno_congestion_avoidance_adds_one_datagram_per_round_trip() -> None:
    controller = RenoController(SEGMENT, 0.0)
    now = grow(controller, 3, 0.0)  # 80 datagrams
    controller.on_packet_sent(controller.congestion_window, now)
    controller.on_packets_lost(SEGMENT, now, now)  # halves to 40
    controller.on_packets_acked(controller.bytes_in_flight, now, now)  # the rest (partial ACKs: no growth)
    assert controller.congestion_window == controller.slow_start_threshold == 40 * SEGMENT
    controller.on_recovery_end(now)  # everything sent before the loss is acknowledged
    now = grow(controller, 4, now + 0.1)
    assert controller.congestion_window == 44 * SEGMENT


def test_reno_halves_once_per_recovery_and_again_in_the_next() -> None:
    controller = RenoController(SEGMENT, 0.0)
    now = grow(controller, 2, 0.0)  # 40 datagrams
    controller.on_packet_sent(40 * SEGMENT, now)
    window_sent_at = now
    now += 0.05
    for _ in range(3):  # three losses from the same window
        controller.on_packets_lost(SEGMENT, window_sent_at, now)
    controller.on_packets_lost(SEGMENT, now, now + 0.01)  # a retransmission lost again: the same recovery
    assert controller.congestion_window == controller.slow_start_threshold == 20 * SEGMENT
    assert controller.congestion_events == 1 and controller.in_recovery
    controller.on_recovery_end(now + 0.1)
    controller.on_packet_sent(SEGMENT, now + 0.1)
    controller.on_packets_lost(SEGMENT, now + 0.1, now + 0.2)  # a loss after the recovery: a new one
    assert controller.congestion_window == 10 * SEGMENT and controller.congestion_events == 2


def test_reno_partial_acknowledgements_do_not_grow_the_window() -> None:
    controller = RenoController(SEGMENT, 0.0)
    now = grow(controller, 1, 0.0)
    controller.on_packet_sent(20 * SEGMENT, now)
    controller.on_packets_lost(SEGMENT, now, now + 0.05)
    after_loss = controller.congestion_window
    controller.on_packets_acked(5 * SEGMENT, now, now + 0.1)  # sent before the recovery: partial
    assert controller.congestion_window == after_loss
    controller.on_recovery_end(now + 0.1)
    controller.on_packet_sent(after_loss, now + 0.1)
    controller.on_packets_acked(after_loss, now + 0.1, now + 0.2)  # sent after: the recovery is over
    assert controller.congestion_window == after_loss + SEGMENT  # congestion avoidance: one datagram


def test_a_timeout_collapses_the_window_to_one_datagram() -> None:
    controller = RenoController(SEGMENT, 0.0)
    now = grow(controller, 2, 0.0)
    controller.on_packet_sent(30 * SEGMENT, now)
    controller.on_retransmission_timeout(30 * SEGMENT, now + 1)
    assert controller.congestion_window == SEGMENT
    assert controller.slow_start_threshold == 15 * SEGMENT
    assert controller.bytes_in_flight == 0 and controller.timeouts == 1
    controller.on_packet_sent(SEGMENT, now + 1)
    controller.on_packets_lost(SEGMENT, now, now + 1.1)  # the old flight, lost again while resent: no cut
    assert controller.congestion_events == 1 and controller.slow_start_threshold == 15 * SEGMENT
    now = grow(controller, 2, now + 1.2)  # slow start from one datagram
    assert controller.congestion_window == 4 * SEGMENT


def paced_round(controller: CongestionController, now: float, rtt: float) -> float:
    """Send a full window as datagrams and have each acknowledged on its own, spread over one RTT; return the end."""
    count = max(1, controller.congestion_window // SEGMENT)
    controller.on_packet_sent(count * SEGMENT, now)
    for index in range(count):
        at = now + rtt * (index + 1) / count
        controller.on_rtt_measurement(rtt, rtt, at)
        controller.on_packets_acked(SEGMENT, now, at)
    return now + rtt


def cubic_after_loss(window: int, rtt: float = 0.1) -> tuple[CubicController, float]:
    """A CUBIC controller that slow-started to ``window`` datagrams, lost one and finished the recovery."""
    controller = CubicController(SEGMENT, 0.0)
    controller.on_packet_sent((window - 10) * SEGMENT, 0.0)
    controller.on_rtt_measurement(rtt, rtt, rtt)
    controller.on_packets_acked((window - 10) * SEGMENT, 0.0, rtt)  # slow start: + the bytes acknowledged
    assert controller.congestion_window == window * SEGMENT
    return controller, lose_one(controller, rtt)


def lose_one(controller: CongestionController, now: float) -> float:
    """A full window in flight, one datagram of it lost, the rest acknowledged, the recovery over."""
    controller.on_packet_sent(controller.congestion_window, now)
    controller.on_packets_lost(SEGMENT, now, now)
    controller.on_packets_acked(controller.bytes_in_flight, now, now)
    controller.on_recovery_end(now)
    return now


def test_cubic_cuts_the_window_to_beta_and_remembers_it_as_w_max() -> None:
    controller, _ = cubic_after_loss(100)
    assert controller.congestion_window == controller.slow_start_threshold == 70 * SEGMENT
    assert controller.window_max == 100 and controller.congestion_events == 1
    controller.on_packet_sent(20 * SEGMENT, 1.0)
    controller.on_packets_lost(SEGMENT, 1.0, 1.1)
    controller.on_packets_lost(SEGMENT, 1.0, 1.1)
    assert controller.congestion_window == 49 * SEGMENT and controller.congestion_events == 2, "one cut per recovery"
    small = CubicController(SEGMENT, 0.0)
    small.congestion_window = 2 * SEGMENT
    lose_one(small, 0.1)
    assert small.congestion_window == small.slow_start_threshold == 2 * SEGMENT  # never below two datagrams


def test_cubic_follows_the_cubic_curve_concave_then_convex_around_w_max() -> None:
    controller, now = cubic_after_loss(160)
    k = (160 * (1 - CUBIC_BETA) / 0.4) ** (1 / 3)  # RFC 9438 eq. 2 with cwnd_epoch = beta W_max
    samples = []  # (seconds into the epoch, window in datagrams) after each round trip
    for _ in range(int(1.6 * k / 0.1)):
        now = paced_round(controller, now, 0.1)
        assert controller.epoch_start is not None
        samples.append((now - controller.epoch_start, controller.congestion_window / SEGMENT))
    assert controller.k == pytest.approx(k)
    for elapsed, window in samples:  # the window tracks W_cubic(t) = C (t - K)^3 + W_max
        assert window == pytest.approx(0.4 * (elapsed - k) ** 3 + 160, abs=0.5), (elapsed, window)
    at_k = min(samples, key=lambda sample: abs(sample[0] - k))
    assert at_k[1] == pytest.approx(160, abs=0.5)
    growth = [(elapsed, after - before) for (_, before), (elapsed, after) in zip(samples, samples[1:])]
    concave = [step for elapsed, step in growth if elapsed < k - 0.2]
    convex = [step for elapsed, step in growth if elapsed > k + 0.2]
    assert all(step > 0 for step in concave + convex)
    assert all(later < earlier for earlier, later in zip(concave, concave[1:])), "concave: slower toward W_max"
    assert all(later > earlier for earlier, later in zip(convex, convex[1:])), "convex: faster beyond W_max"
    assert len(concave) > 20 and len(convex) > 10


def test_cubic_fast_convergence_lowers_w_max_after_a_loss_below_it() -> None:
    controller, now = cubic_after_loss(100)
    while controller.congestion_window < 90 * SEGMENT:  # regrow, but lose again before W_max = 100
        now = paced_round(controller, now, 0.1)
    window = controller.congestion_window
    lose_one(controller, now)
    assert controller.window_max == pytest.approx(window / SEGMENT * (1 + CUBIC_BETA) / 2)  # below 90
    assert controller.congestion_window == int(window * CUBIC_BETA)
    # A loss above the previous W_max is no sign of a newer flow: W_max is the window itself.
    controller, now = cubic_after_loss(100)
    while controller.congestion_window < 105 * SEGMENT:
        now = paced_round(controller, now, 0.1)
    window = controller.congestion_window
    lose_one(controller, now)
    assert controller.window_max == window / SEGMENT


def test_cubic_is_reno_friendly_at_a_short_round_trip() -> None:
    controller, now = cubic_after_loss(20, rtt=0.001)  # K = 2.47 s is 2,470 round trips of 1 ms
    windows = [controller.congestion_window / SEGMENT]
    for _ in range(24):
        now = paced_round(controller, now, 0.001)
        windows.append(controller.congestion_window / SEGMENT)
    assert controller.epoch_start is not None
    cubic = controller.cubic_window(now - controller.epoch_start)
    assert cubic < 15 and windows[-1] > 28, "W_est, not the cubic curve, sets the window"
    steps = [after - before for before, after in zip(windows, windows[1:])]
    # alpha = 3 (1 - beta) / (1 + beta) datagrams per round trip until W_est reaches the window before the loss
    # (20), then one datagram per round trip, as Reno (RFC 9438 4.3).
    assert all(step == pytest.approx(CUBIC_ALPHA, abs=0.1) for step in steps[:10]), steps
    assert all(step == pytest.approx(1, abs=0.1) for step in steps[13:]), steps


def test_cubic_timeout_sets_ssthresh_to_beta_flight_and_restarts_the_curve_at_its_window() -> None:
    controller, now = cubic_after_loss(100)
    controller.on_packet_sent(60 * SEGMENT, now)
    controller.on_retransmission_timeout(60 * SEGMENT, now + 1)
    assert controller.congestion_window == SEGMENT
    assert controller.slow_start_threshold == 42 * SEGMENT  # 0.7 of the flight, not Reno's half
    controller.on_recovery_end(now + 1)
    now += 1
    while controller.in_slow_start:
        now = paced_round(controller, now, 0.1)
    now = paced_round(controller, now, 0.1)
    start = controller.epoch_start
    assert start is not None and controller.k == 0  # RFC 9438 4.8: K = 0, W_max = the window at the start
    window_max = controller.window_max
    assert 42 <= window_max <= 64
    for _ in range(20):
        now = paced_round(controller, now, 0.1)
    assert controller.congestion_window / SEGMENT == pytest.approx(
        max(controller.cubic_window(now - start), controller.reno_estimate), abs=1.0)
    assert controller.congestion_window / SEGMENT > window_max + 0.4 * 2**3 * 0.9  # convex from the start


def test_the_trace_records_losses_and_timeouts() -> None:
    controller = RenoController(SEGMENT, 0.0, trace=True)
    now = grow(controller, 2, 0.0)
    controller.on_packet_sent(SEGMENT * 4, now)
    controller.on_packets_lost(SEGMENT, now, now + 0.1)
    controller.on_retransmission_timeout(SEGMENT * 3, now + 1)
    assert controller.trace is not None
    events = [row.event for row in controller.trace]
    assert events[0] == "start" and EVENT_LOSS in events and events[-1] == EVENT_TIMEOUT
    assert [row.time for row in controller.trace] == sorted(row.time for row in controller.trace)


def test_an_unknown_controller_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown congestion control 'vegas': use one of none, reno, cubic"):
        SequencingConfig(congestion="vegas")


# ------------------------------------------------------------ over the fake network


class DroppingSimulation(Simulation):
    """A :class:`Simulation` that also drops the client's DATA datagrams whose sequence number is listed."""

    def __init__(self, *args: object, drop: set[int], **kwargs: object) -> None:
        self.drop = drop
        self.first_sequence: int | None = None
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def transmit(self, destination: str, datagram: bytes) -> None:
        header = decode_header(memoryview(datagram))
        if destination == "server" and header.type == 5 and self.first_sequence is not None:
            offset = header.sequence - self.first_sequence
            if offset in self.drop:
                self.drop.discard(offset)  # only the first transmission
                return
        super().transmit(destination, datagram)


BULK = replace(SMALL_CONFIG, max_datagram_size=1200, receive_window=4096, congestion="reno", congestion_trace=True,
               ack_every=2)


def bulk(sim: Simulation, count: int) -> None:
    """Connect, send ``count`` one-datagram messages from the client, and run until all are delivered."""
    assert sim.run_until(lambda: sim.server is not None and sim.client.is_established)
    if isinstance(sim, DroppingSimulation):
        sim.first_sequence = sim.client.next_sequence
    payload = bytes(sim.client.fragment_size)
    for _ in range(count):
        sim.client.send_message(payload, sim.now)
    sim.flush()
    assert sim.run_until(lambda: len(sim.received["server"]) == count and sim.client.all_acknowledged)
    assert sim.client.error is None


def test_slow_start_doubles_per_round_trip_over_the_fake_network() -> None:
    sim = Simulation(1, LinkImpairment(delay=0.05), BULK)  # a 100 ms round trip
    bulk(sim, 2000)
    trace = sim.client.congestion_trace
    assert trace is not None
    start = next(row.time for row in trace if row.event == "ack")
    windows = []
    for round_trip in range(1, 6):  # the window at the end of each round trip of slow start
        windows.append(max(row.cwnd for row in trace if row.time <= start + (round_trip - 0.5) * 0.1))
    ratios = [after / before for before, after in zip(windows, windows[1:])]
    assert all(1.8 <= ratio <= 2.2 for ratio in ratios), (windows, ratios)
    stats = sim.client.statistics(sim.now)
    assert stats.congestion_events == 0 and stats.slow_start_threshold is None


def test_a_burst_of_losses_halves_the_window_once_and_newreno_repairs_it() -> None:
    sim = DroppingSimulation(2, LinkImpairment(delay=0.05), BULK, drop={200, 201, 203, 207})
    bulk(sim, 600)
    stats = sim.client.statistics(sim.now)
    assert stats.congestion_events == 1, "four losses of one window are one congestion event"
    assert stats.retransmits_timeout == 0 and stats.retransmits_fast == 4
    trace = sim.client.congestion_trace
    assert trace is not None
    [loss_index] = [index for index, row in enumerate(trace) if row.event == EVENT_LOSS]
    loss, before = trace[loss_index], trace[loss_index - 1].cwnd
    assert loss.cwnd == before // 2 == stats.slow_start_threshold
    assert stats.bytes_in_flight == 0
    assert sim.received["server"] == [bytes(sim.client.fragment_size)] * 600


def test_cubic_over_the_fake_network_cuts_to_beta_once_per_burst_and_delivers_everything() -> None:
    sim = DroppingSimulation(2, LinkImpairment(delay=0.05), replace(BULK, congestion="cubic"),
                             drop={200, 201, 203, 207})
    bulk(sim, 600)
    stats = sim.client.statistics(sim.now)
    assert stats.congestion == "cubic" and stats.congestion_events == 1
    trace = sim.client.congestion_trace
    assert trace is not None
    [loss_index] = [index for index, row in enumerate(trace) if row.event == EVENT_LOSS]
    loss, before = trace[loss_index], trace[loss_index - 1].cwnd
    assert loss.cwnd == int(before * CUBIC_BETA) == stats.slow_start_threshold
    assert stats.bytes_in_flight == 0
    assert sim.received["server"] == [bytes(sim.client.fragment_size)] * 600


@pytest.mark.parametrize("seed", range(3))
def test_cubic_bulk_under_seeded_loss_delivers_exactly_through_many_congestion_events(seed: int) -> None:
    sim = Simulation(seed, LinkImpairment(delay=0.02, loss=0.01, reorder=0.02),
                     replace(BULK, congestion="cubic", congestion_trace=False))
    bulk(sim, 3000)
    stats = sim.client.statistics(sim.now)
    assert stats.congestion_events >= 3  # the window went through several cubic epochs
    assert stats.bytes_in_flight == 0
    assert sim.received["server"] == [bytes(sim.client.fragment_size)] * 3000


def newreno_pair(congestion: str) -> tuple[Pair, list[bytes], list[bytes]]:
    """Ten datagrams, the 3rd and the 9th lost: SACKs reveal the 3rd; its repair is a partial ACK."""
    pair = Pair(replace(SequencingConfig(max_datagram_size=200, receive_window=64, initial_rto=1.0),
                        congestion=congestion))
    for index in range(10):
        pair.client.send_message(bytes([index]), pair.now)
    datagrams = pair.take(pair.client)
    assert len(datagrams) == 10
    pair.deliver(pair.client, datagrams[:2] + datagrams[3:8] + datagrams[9:])
    pair.deliver(pair.server)
    first_repair = pair.take(pair.client)
    pair.now += 0.0005  # less than RFC 9002's 1 ms granularity: the time threshold stays out of it
    pair.deliver(pair.client, first_repair)
    pair.deliver(pair.server)  # acknowledges everything below the 9th: a partial ACK
    return pair, datagrams, first_repair


def test_newreno_partial_ack_resends_the_next_hole_at_once() -> None:
    pair, datagrams, first_repair = newreno_pair("reno")
    assert [datagram[12:20] for datagram in first_repair] == [datagrams[2][12:20]]
    second_repair = pair.take(pair.client)
    assert [datagram[12:20] for datagram in second_repair] == [datagrams[8][12:20]]
    stats = pair.client.statistics(pair.now)
    assert stats.congestion_events == 1 and stats.retransmits_fast == 2
    pair.deliver(pair.client, second_repair)
    assert pair.messages(pair.server) == [bytes([index]) for index in range(10)]


def test_without_congestion_control_a_partial_ack_waits_for_the_other_rules() -> None:
    pair, _, _ = newreno_pair("none")
    assert pair.take(pair.client) == []  # under 1 ms has passed: neither threshold declares the 9th lost


def bulk_under_way(loss_timer: str) -> Simulation:
    """A reno bulk transfer of 300 messages over a 50 ms path, a third of it delivered."""
    sim = Simulation(3, LinkImpairment(delay=0.05), replace(BULK, initial_rto=0.2, loss_timer=loss_timer))
    assert sim.run_until(lambda: sim.server is not None and sim.client.is_established)
    payload = bytes(sim.client.fragment_size)
    for _ in range(300):
        sim.client.send_message(payload, sim.now)
    sim.flush()
    assert sim.run_until(lambda: len(sim.received["server"]) >= 100)
    return sim


def test_a_timeout_collapses_the_window_and_slow_start_resends() -> None:
    sim = bulk_under_way("rto")
    payload = bytes(sim.client.fragment_size)
    sim.impairment = replace(sim.impairment, loss=1.0)  # the path goes dark: every datagram in flight is lost
    assert sim.run_until(lambda: sim.client.statistics(sim.now).retransmission_timeouts >= 1)
    stats = sim.client.statistics(sim.now)
    assert stats.congestion_window == sim.client.datagram_size  # one datagram
    sim.impairment = replace(sim.impairment, loss=0.0)
    assert sim.run_until(lambda: len(sim.received["server"]) == 300 and sim.client.all_acknowledged)
    assert sim.received["server"] == [payload] * 300
    assert sim.client.statistics(sim.now).bytes_in_flight == 0


@pytest.mark.parametrize("loss_timer", ["pto", "rto"])
@pytest.mark.parametrize("congestion", ["reno", "cubic"])
@pytest.mark.parametrize("seed", range(12))
def test_delivered_bytes_stay_exact_under_seeded_loss(congestion: str, seed: int, loss_timer: str) -> None:
    impairment = LinkImpairment(loss=0.05 + 0.02 * (seed % 5), duplicate=0.02, reorder=0.05, corrupt=0.01)
    sim = exchange(seed, impairment, replace(SMALL_CONFIG, congestion=congestion, loss_timer=loss_timer), count=30)
    for end in (sim.client, sim.server):
        assert end is not None
        stats = end.statistics(sim.now)
        assert stats.bytes_in_flight == 0
        assert stats.congestion is not None and stats.congestion == congestion


# ------------------------------------------------------------ the probe timeout (RFC 9002 6.2)


def sampled_pair(congestion: str = "reno") -> Pair:
    """A pair whose client took two RTT samples: 0 (the handshake, no time passes) and 30 ms."""
    pair = Pair(SequencingConfig(max_datagram_size=200, receive_window=64, initial_rto=1.0, congestion=congestion))
    pair.client.send_message(b"sample", pair.now)
    pair.deliver(pair.client)
    pair.now += 0.03
    pair.server.handle_timeout(pair.now)  # the delayed ACK
    pair.deliver(pair.server)
    # RFC 6298: SRTT = 0 then 7/8 0 + 1/8 0.03; RTTVAR = 0 then 3/4 0 + 1/4 |0 - 0.03|.
    assert pair.client.timer.srtt == pytest.approx(0.00375) and pair.client.timer.rttvar == pytest.approx(0.0075)
    assert pair.client.all_acknowledged
    return pair


def test_the_probe_timeout_fires_after_srtt_four_rttvar_and_max_ack_delay_and_backs_off() -> None:
    pair = sampled_pair()
    client = pair.client
    period = 0.00375 + 4 * 0.0075 + 0.005  # srtt + max(4 rttvar, 1 ms) + max_ack_delay (the ack delay)
    for index in range(3):
        client.send_message(bytes([index]), pair.now)
    lost = pair.take(client)  # the whole flight is lost: no acknowledgement can reveal it
    sent_at = pair.now
    sequences = [decode_header(memoryview(datagram)).sequence for datagram in lost]
    probe_times = []
    for _ in range(3):
        deadline = client.next_deadline()
        assert deadline is not None
        probe_times.append(deadline - sent_at)
        pair.now = sent_at = deadline
        client.handle_timeout(pair.now)
        probes = pair.take(client)
        # Two probes, the oldest unacknowledged datagrams, sent again as they were.
        assert [decode_header(memoryview(datagram)).sequence for datagram in probes] == sequences[:2]
    assert probe_times == pytest.approx([period, 2 * period, 4 * period])
    stats = client.statistics(pair.now)
    assert stats.retransmission_timeouts == 3 and stats.retransmits_timeout == 6
    assert stats.retransmits_fast == 0


def test_a_probe_timeout_declares_nothing_lost_and_keeps_the_window() -> None:
    pair = sampled_pair()
    client = pair.client
    before = client.statistics(pair.now)
    for index in range(3):
        client.send_message(bytes([index]), pair.now)
    pair.take(client)
    flight = client.statistics(pair.now).bytes_in_flight
    pair.now = client.next_deadline() or 0.0
    client.handle_timeout(pair.now)
    probes = pair.take(client)
    after = client.statistics(pair.now)
    assert len(probes) == 2
    assert after.congestion_window == before.congestion_window
    assert after.congestion_events == 0 and after.slow_start_threshold is None
    assert after.bytes_in_flight == flight  # the probes are the same datagrams, still in flight once
    pair.deliver(client, probes)  # the probes arrive; their numbers are the originals', so the
    pair.now += 0.03  # acknowledgement may be the originals' and shows the time threshold nothing
    pair.server.handle_timeout(pair.now)
    pair.deliver(pair.server)
    assert pair.take(client) == []
    pair.now = client.next_deadline() or 0.0
    client.handle_timeout(pair.now)  # the next probe timeout resends the third
    repaired = pair.take(client)
    assert len(repaired) == 1
    pair.deliver(client, repaired)
    pair.settle()
    assert pair.messages(pair.server) == [b"sample"] + [bytes([index]) for index in range(3)]
    stats = client.statistics(pair.now)
    assert (stats.retransmits_fast, stats.retransmits_timeout) == (0, 3)
    assert stats.congestion_events == 0 and stats.slow_start_threshold is None  # no loss declared at all


def dark_path(seconds: float, loss_timer: str = "pto") -> Simulation:
    """A reno bulk transfer whose path drops everything for ``seconds`` in the middle."""
    sim = bulk_under_way(loss_timer)
    payload = bytes(sim.client.fragment_size)
    sim.impairment = replace(sim.impairment, loss=1.0)
    dark_until = sim.now + seconds
    assert sim.run_until(lambda: sim.now >= dark_until)
    sim.impairment = replace(sim.impairment, loss=0.0)
    assert sim.run_until(lambda: len(sim.received["server"]) == 300 and sim.client.all_acknowledged)
    assert sim.received["server"] == [payload] * 300
    assert sim.client.statistics(sim.now).bytes_in_flight == 0
    return sim


def test_persistent_congestion_collapses_the_window_to_two_datagrams() -> None:
    sim = dark_path(3.0)  # several probe periods of total loss
    trace = sim.client.congestion_trace
    assert trace is not None
    probes = [row for row in trace if row.event == EVENT_PROBE]
    [persistent] = [row for row in trace if row.event == EVENT_PERSISTENT]
    assert len(probes) >= 3 and persistent.cwnd == 2 * sim.client.datagram_size
    assert not [row for row in trace if row.event == EVENT_TIMEOUT]  # no RFC 6298 timeout ran


def test_a_short_outage_is_repaired_by_one_probe_without_collapsing_the_window() -> None:
    sim = dark_path(0.06)  # shorter than one probe period
    trace = sim.client.congestion_trace
    assert trace is not None
    assert not [row for row in trace if row.event in (EVENT_PERSISTENT, EVENT_TIMEOUT)]
    assert min(row.cwnd for row in trace if row.event != "start") > 2 * sim.client.datagram_size


def test_an_unknown_loss_timer_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown loss timer 'karn'"):
        SequencingConfig(loss_timer="karn")
