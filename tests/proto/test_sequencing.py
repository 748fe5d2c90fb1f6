"""Unit tests of the sequencing layer: wire format, RTO, handshake, replay, wrap, damage.

The ends are driven by hand here (bytes in, bytes out, a number for the clock)
so each test can drop, repeat or alter exactly the datagram it is about.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import replace

import pytest

from netlab.errors import BrokenError, ClosedError, RemoteProtocolError, UsageError
from netlab.proto.seq import (
    AMPLIFICATION_FACTOR,
    FAST_FLOOR,
    INITIAL_SIZE,
    ConnectionState,
    SequencingAcceptor,
    SequencingConfig,
    SequencingConnection,
)
from netlab.proto.seq.cookie import CookieIssuer
from netlab.proto.seq.ranges import RangeSet
from netlab.proto.seq.rto import RetransmissionTimer
from netlab.proto.seq.wire import (
    FLAG_MESSAGE_END,
    HEADER_SIZE,
    MASK_64,
    DatagramType,
    MalformedDatagram,
    crc32,
    decode_header,
    encode,
    pack_sack_blocks,
    unwrap_sequence,
)
from netlab.testing.network import PAIR_ADDRESS, PAIR_CONFIG, LinkImpairment, Pair, Simulation, joined

ADDRESS = PAIR_ADDRESS
CONFIG = PAIR_CONFIG


# ----------------------------------------------------------------- wire format


def test_header_bytes_are_exactly_as_documented() -> None:
    header, payload = encode(
        DatagramType.DATA, FLAG_MESSAGE_END, 0x0102030405060708, 42, 7, 256, b"hi"
    )
    datagram = header + payload
    assert datagram.hex() == (
        "05"
        "01"
        "00"
        "01"
        "0102030405060708"
        "000000000000002a"
        "0000000000000007"
        "00000100" + f"{zlib.crc32(b'hi' + datagram[:32]):08x}" + "6869"
    )
    assert (
        datagram.hex()
        == "050100010102030405060708000000000000002a000000000000000700000100dfb7980b6869"
    )
    decoded = decode_header(memoryview(datagram))
    assert (decoded.type, decoded.flags, decoded.connection_id) == (
        DatagramType.DATA,
        FLAG_MESSAGE_END,
        0x0102030405060708,
    )
    assert (decoded.sequence, decoded.acknowledgement, decoded.window) == (42, 7, 256)
    assert (
        decoded.payload_offset == HEADER_SIZE
        and decoded.payload_checksum == zlib.crc32(b"hi")
    )


def test_sack_blocks_are_relative_to_the_acknowledgement() -> None:
    blocks = pack_sack_blocks([(12, 15), (20, 21)], 10)
    assert blocks == bytes.fromhex("00000002000000030000000a00000001")
    header, _ = encode(DatagramType.ACK, 0, 1, 0, 10, 5, b"", blocks)
    decoded = decode_header(memoryview(header))
    assert decoded.sack_blocks == ((2, 3), (10, 1))
    assert decoded.payload_offset == HEADER_SIZE + 16
    assert int.from_bytes(header[32:36], "big") == zlib.crc32(header[:32] + header[36:])


@pytest.mark.parametrize("position", [0, 5, 20, 33, 36, 40])
def test_any_flipped_bit_is_a_checksum_failure(position: int) -> None:
    header, payload = encode(DatagramType.DATA, 0, 9, 1, 2, 3, b"payload!")
    damaged = bytearray(header + payload)
    damaged[position] ^= 0x10
    with pytest.raises(MalformedDatagram):
        decode_header(memoryview(damaged))


def test_the_checksum_is_zlibs_crc32_whichever_implementation_computes_it() -> None:
    generator = random.Random(3)
    for size in (0, 1, 36, 1164, 60000):
        data = generator.randbytes(size)
        start = generator.getrandbits(32)
        assert crc32(data) == zlib.crc32(data)
        assert crc32(memoryview(data), start) == zlib.crc32(data, start)


def test_sequence_numbers_unwrap_across_two_to_the_64() -> None:
    top = 1 << 64
    assert unwrap_sequence(3, top - 2) == top + 3
    assert unwrap_sequence(top - 2, top + 3) == top - 2
    assert unwrap_sequence(5, 5) == 5
    assert unwrap_sequence((top + 100) & MASK_64, top + 90) == top + 100


def test_range_set_merges_and_reports_new_parts() -> None:
    ranges = RangeSet()
    assert ranges.add(10, 12) == [(10, 12)]
    assert ranges.add(14, 16) == [(14, 16)]
    assert ranges.add(11, 15) == [(12, 14)]
    assert ranges.ranges() == [(10, 16)]
    assert ranges.add(10, 16) == []
    ranges.add(20, 22)
    ranges.discard_below(15)
    assert ranges.ranges() == [(15, 16), (20, 22)]
    assert ranges.highest == 22


# ------------------------------------------------------------------------ RTO


def test_first_sample_sets_srtt_and_rttvar_per_rfc_6298() -> None:
    timer = RetransmissionTimer(floor=0.02, initial=1.0)
    assert timer.rto == 1.0
    timer.add_sample(0.1)
    assert timer.srtt == pytest.approx(0.1)
    assert timer.rttvar == pytest.approx(0.05)
    assert timer.rto == pytest.approx(max(0.02, 0.1 + 4 * 0.05))
    timer.add_sample(0.2)
    assert timer.rttvar == pytest.approx(0.75 * 0.05 + 0.25 * 0.1)
    assert timer.srtt == pytest.approx(0.875 * 0.1 + 0.125 * 0.2)
    assert timer.rto == pytest.approx(timer.srtt + 4 * timer.rttvar)


def test_floor_applies_and_backoff_doubles_to_the_cap() -> None:
    timer = RetransmissionTimer(floor=1.0, initial=1.0, maximum=8.0)
    timer.add_sample(0.001)
    assert timer.rto == 1.0  # the RFC floor
    seen = []
    for _ in range(5):
        timer.back_off()
        seen.append(timer.rto)
    assert seen == [2.0, 4.0, 8.0, 8.0, 8.0]
    timer.add_sample(0.001)
    assert timer.rto == 1.0  # a valid sample clears the backoff


def test_karns_rule_no_sample_from_a_retransmitted_datagram() -> None:
    pair = Pair()
    client = pair.client
    client.timer.srtt = client.timer.rttvar = None  # forget the handshake sample
    client.send_message(b"once", pair.now)
    lost = pair.take(client)
    assert len(lost) == 1
    pair.now = client.next_deadline() or 0.0
    client.handle_timeout(pair.now)
    resent = pair.take(client)
    assert (
        resent == [lost[0]]
        or decode_header(memoryview(resent[0])).sequence
        == decode_header(memoryview(lost[0])).sequence
    )
    pair.now += 0.05
    pair.deliver(client, resent)
    pair.server.handle_timeout(pair.now + 1.0)  # the delayed ACK
    pair.deliver(pair.server)
    assert client.all_acknowledged
    assert client.timer.srtt is None  # the ACK was ambiguous: no sample taken
    client.send_message(b"fresh", pair.now)
    pair.deliver(client)
    pair.now += 0.03
    pair.server.handle_timeout(pair.now)
    pair.deliver(pair.server)
    assert client.timer.srtt == pytest.approx(0.03)


# The handshake's RTT sample is 0 (no time passes): the RTO is its 20 ms floor; the probe
# period is srtt 0 + the 1 ms granularity + the 5 ms max_ack_delay.
@pytest.mark.parametrize(("loss_timer", "first_wait"), [("rto", 0.02), ("pto", 0.006)])
def test_retry_limit_fails_with_a_clear_timeout(loss_timer: str, first_wait: float) -> None:
    config = SequencingConfig(
        max_datagram_size=200, rto_floor=0.02, initial_rto=0.1, retry_limit=3, loss_timer=loss_timer
    )
    pair = Pair(config)
    pair.client.send_message(b"into the void", pair.now)
    pair.take(pair.client)
    waits = []  # how long each timer waited: the RTO, or the probe period (initial_rto before a sample)
    last: list[bytes] = []
    for _ in range(10):
        deadline = pair.client.next_deadline()
        if deadline is None:
            break
        waits.append(deadline - pair.now)
        pair.now = deadline
        pair.client.handle_timeout(pair.now)
        last = pair.take(pair.client)
    assert pair.client.state is ConnectionState.FAILED
    assert isinstance(pair.client.error, TimeoutError)
    assert "after 4 transmissions" in str(pair.client.error)
    assert pair.client.statistics(pair.now).retransmits_timeout == 3
    assert waits[:3] == pytest.approx([first_wait, 2 * first_wait, 4 * first_wait])  # doubled per expiry
    # Giving up says so: a peer that still hears us fails now, not after its idle timeout.
    assert [decode_header(memoryview(datagram)).type for datagram in last] == [DatagramType.RESET]
    pair.deliver(pair.client, last)
    assert isinstance(pair.server.error, BrokenError)


# ------------------------------------------------------------------ handshake


def test_server_keeps_no_state_and_never_amplifies_before_the_cookie() -> None:
    acceptor = SequencingAcceptor(CONFIG, CookieIssuer(b"a" * 32))
    rng = random.Random(5)
    received = sent = 0
    for size in [0, 1, 35, 36, 100, INITIAL_SIZE - 1, INITIAL_SIZE, 2000]:
        for kind in DatagramType:
            header, _ = encode(kind, 0, rng.getrandbits(64), 1, 0, 10)
            datagram = (
                (header + rng.randbytes(max(0, size - HEADER_SIZE)))[: max(size, 0)]
                if size
                else b""
            )
            if size >= HEADER_SIZE:
                datagram = b"".join(
                    encode(
                        kind,
                        0,
                        rng.getrandbits(64),
                        1,
                        0,
                        10,
                        bytes(size - HEADER_SIZE),
                    )
                )
            replies, connection = acceptor.handle_datagram(datagram, ADDRESS, 0.0)
            reply_bytes = sum(len(h) + len(p) for h, p in replies)
            assert reply_bytes <= AMPLIFICATION_FACTOR * len(datagram)
            assert connection is None  # nothing is created without a valid cookie
            received += len(datagram)
            sent += reply_bytes
    assert sent <= AMPLIFICATION_FACTOR * received
    assert acceptor.stats.retries_sent > 0
    small_initial = b"".join(encode(DatagramType.INITIAL, 0, 1, 1, 0, 10, bytes(100)))
    assert acceptor.handle_datagram(small_initial, ADDRESS, 0.0) == ([], None)


def test_cookie_is_bound_to_address_connection_and_time() -> None:
    issuer = CookieIssuer(b"c" * 32, lifetime=10.0)
    cookie = issuer.make(ADDRESS, 77, now=100.0)
    assert issuer.verify(cookie, ADDRESS, 77, now=105.0)
    assert issuer.verify(cookie, ADDRESS, 77, now=119.0)  # previous bucket still valid
    assert not issuer.verify(cookie, ("127.0.0.2", 50000), 77, now=105.0)
    assert not issuer.verify(cookie, ADDRESS, 78, now=105.0)
    assert not issuer.verify(cookie, ADDRESS, 77, now=125.0)
    assert not CookieIssuer(b"d" * 32).verify(cookie, ADDRESS, 77, now=105.0)


def cookie_echo(acceptor: SequencingAcceptor, client: SequencingConnection) -> bytes:
    """The COOKIE_ECHO ``client`` sends once ``acceptor`` answered its INITIAL (from ADDRESS, at time 0)."""
    [initial] = joined(client.datagrams_to_send())
    for reply in joined(acceptor.handle_datagram(initial, ADDRESS, 0.0)[0]):
        client.receive_datagram(reply, 0.0)
    [echo] = joined(client.datagrams_to_send())
    return echo


def test_echo_from_another_address_is_refused() -> None:
    acceptor = SequencingAcceptor(CONFIG, CookieIssuer(b"e" * 32))
    client = SequencingConnection.connect(CONFIG, 0.0)
    echo = cookie_echo(acceptor, client)
    replies, connection = acceptor.handle_datagram(echo, ("10.9.9.9", 1), 0.0)
    assert connection is None and acceptor.stats.cookies_rejected == 1
    assert all(
        decode_header(memoryview(r)).type == DatagramType.RETRY for r in joined(replies)
    )


def test_lost_accept_is_repeated_until_the_client_confirms() -> None:
    acceptor = SequencingAcceptor(CONFIG, CookieIssuer(b"f" * 32))
    client = SequencingConnection.connect(CONFIG, 0.0)
    echo = cookie_echo(acceptor, client)
    _lost_accept, server = acceptor.handle_datagram(echo, ADDRESS, 0.0)
    assert server is not None
    deadline = server.next_deadline()
    assert deadline is not None
    server.handle_timeout(deadline)
    [accept] = joined(server.datagrams_to_send())
    assert decode_header(memoryview(accept)).type == DatagramType.ACCEPT
    client.receive_datagram(accept, deadline)
    assert client.is_established
    for datagram in joined(client.datagrams_to_send()):
        server.receive_datagram(datagram, deadline)
    assert not server.handshake_pending


# ----------------------------------------------------- exactly-once delivery


def test_replayed_datagram_is_never_delivered_twice() -> None:
    pair = Pair()
    pair.client.send_message(b"rm -rf /tmp/x", pair.now)
    [request] = pair.take(pair.client)
    pair.deliver(pair.client, [request])
    assert pair.messages(pair.server) == [b"rm -rf /tmp/x"]
    for _ in range(3):  # replays after the application consumed it
        pair.deliver(pair.client, [request])
    assert pair.messages(pair.server) == []
    assert pair.server.statistics(pair.now).duplicates == 3


def with_other_payload(datagram: bytes, payload: bytes) -> bytes:
    """``datagram``'s DATA header (same sequence, checksum made right) around other bytes."""
    forged = decode_header(memoryview(datagram))
    header, body = encode(DatagramType.DATA, forged.flags, forged.connection_id, forged.sequence,
                          forged.acknowledgement, forged.window, payload)
    return header + body


def test_same_sequence_with_other_bytes_is_a_protocol_error() -> None:
    pair = Pair()
    pair.client.send_message(b"first", pair.now)
    [datagram] = pair.take(pair.client)
    pair.deliver(pair.client, [datagram])
    pair.messages(pair.server)
    with pytest.raises(RemoteProtocolError):
        pair.server.receive_datagram(with_other_payload(datagram, b"other"), pair.now)
    assert pair.server.state is ConnectionState.FAILED


def test_duplicate_in_the_reorder_buffer_with_other_bytes_is_a_protocol_error() -> None:
    pair = Pair()
    pair.client.send_message(b"a", pair.now)
    pair.client.send_message(b"b", pair.now)
    _first, second = pair.take(pair.client)
    pair.deliver(pair.client, [second, second])
    assert pair.server.statistics(pair.now).duplicates == 1
    with pytest.raises(RemoteProtocolError):
        pair.server.receive_datagram(with_other_payload(second, b"B"), pair.now)


def test_multi_fragment_message_reassembles_out_of_order() -> None:
    pair = Pair()
    message = random.Random(1).randbytes(CONFIG.fragment_size * 5 + 3)
    pair.client.send_message(message, pair.now)
    fragments = pair.take(pair.client)
    assert len(fragments) == 6
    pair.deliver(pair.client, list(reversed(fragments)))
    assert pair.messages(pair.server) == [message]
    assert pair.server.statistics(pair.now).out_of_order == 5


def test_datagrams_in_a_reused_buffer_are_copied_before_the_buffer_changes() -> None:
    pair = Pair()
    long_message = random.Random(2).randbytes(CONFIG.fragment_size * 3 + 7)
    short_message = b"short"
    pair.client.send_message(long_message, pair.now)
    pair.client.send_message(short_message, pair.now)
    buffer = bytearray(CONFIG.max_datagram_size)
    for datagram in reversed(pair.take(pair.client)):  # reversed: fragments wait in the reorder buffer
        buffer[: len(datagram)] = datagram
        pair.server.receive_datagram(memoryview(buffer)[: len(datagram)], pair.now)
        buffer[:] = bytes(len(buffer))  # the caller reuses its buffer at once
    assert pair.messages(pair.server) == [long_message, short_message]


def lose_the_first_of_six(pair: Pair) -> list[bytes]:
    """The client sends six one-byte messages, the first is lost, the server ACKs the rest (with SACK blocks)."""
    for index in range(6):
        pair.client.send_message(bytes([index]), pair.now)
    datagrams = pair.take(pair.client)
    pair.deliver(pair.client, datagrams[1:])
    pair.deliver(pair.server)
    return datagrams


def test_fast_retransmit_after_a_sack_gap_before_any_timeout() -> None:
    pair = Pair()
    datagrams = lose_the_first_of_six(pair)
    resent = pair.take(pair.client)
    assert (
        len(resent) == 1
        and decode_header(memoryview(resent[0])).sequence
        == decode_header(memoryview(datagrams[0])).sequence
    )
    stats = pair.client.statistics(pair.now)
    assert (stats.retransmits_fast, stats.retransmits_timeout) == (1, 0)
    pair.deliver(pair.client, resent)
    assert pair.messages(pair.server) == [bytes([index]) for index in range(6)]


def test_a_lost_retransmission_is_resent_once_later_data_is_acknowledged() -> None:
    pair = Pair()
    datagrams = lose_the_first_of_six(pair)
    [first_resend] = pair.take(pair.client)  # fast retransmit ... lost again
    pair.now += 0.002  # RFC 9002's time threshold: out for max(9/8 RTT, 1 ms); the RTT here is ~0
    pair.client.send_message(b"later", pair.now)
    later = pair.take(pair.client)
    pair.deliver(pair.server)  # nothing new for the same ACK: not yet resent
    assert pair.take(pair.client) == []
    pair.deliver(pair.client, later)  # sent after the retransmission, and it arrives
    pair.deliver(pair.server)
    [second_resend] = pair.take(pair.client)
    assert second_resend[12:20] == first_resend[12:20] == datagrams[0][12:20]  # the same sequence number
    stats = pair.client.statistics(pair.now)
    assert (stats.retransmits_fast, stats.retransmits_timeout) == (2, 0)
    pair.deliver(pair.client, [second_resend])
    assert pair.messages(pair.server) == [bytes([index]) for index in range(6)] + [b"later"]


def test_the_acknowledgement_of_a_retransmitted_datagram_declares_nothing_sent_before_it_lost() -> None:
    """An acknowledgement of a resent datagram is most often its first transmission's.

    Taken for the retransmission's, it made everything sent before the
    retransmission look overdue to the time threshold: a whole window
    declared lost at once, and the acknowledgements of those originals did
    it again (a storm of spurious retransmissions that ended in WriteTimeout
    under the conformance suite's impairment).
    """
    pair = Pair()
    client = pair.client
    for index in range(6):
        client.send_message(bytes([index]), pair.now)
    first_six = pair.take(client)
    pair.now = 0.001
    client.send_message(b"in flight", pair.now)
    in_flight = pair.take(client)
    pair.now = 0.010
    pair.deliver(client, first_six[1:])  # the first is late, not lost
    pair.deliver(pair.server)  # SACKs: a fast retransmit of the first; an RTT sample of 10 ms
    assert len(pair.take(client)) == 1
    pair.now = 0.0101
    pair.deliver(client, first_six[:1])  # the late original: its ACK looks like the retransmission's
    pair.deliver(pair.server)
    pair.now = 0.013  # "in flight" has been out 12 ms, more than 9/8 of the 10 ms sample
    deadline = client.next_deadline()
    if deadline is not None and deadline <= pair.now:
        client.handle_timeout(pair.now)
    assert pair.take(client) == []  # nothing acknowledged was sent after it: not lost
    pair.deliver(client, in_flight)
    pair.now = 0.02
    pair.server.handle_timeout(pair.now)  # the delayed ACK
    pair.deliver(pair.server)
    assert client.all_acknowledged
    assert pair.messages(pair.server) == [bytes([index]) for index in range(6)] + [b"in flight"]
    stats = client.statistics(pair.now)
    assert (stats.retransmits_fast, stats.retransmits_timeout) == (1, 0)


def test_only_the_timers_retransmissions_count_towards_the_retry_limit() -> None:
    """Retransmissions an acknowledgement caused show the peer is there: the timer still probes."""
    pair = Pair(replace(PAIR_CONFIG, retry_limit=1))
    client = pair.client
    lose_the_first_of_six(pair)
    pair.take(client)  # a fast retransmit, lost
    pair.now += 0.002
    client.send_message(b"later", pair.now)
    pair.deliver(client)
    pair.deliver(pair.server)
    pair.take(client)  # the time threshold's retransmission, lost too: sent three times now
    pair.now = client.next_deadline() or 0.0
    client.handle_timeout(pair.now)  # the probe timeout
    assert client.error is None
    [probe] = pair.take(client)
    pair.deliver(client, [probe])
    assert pair.messages(pair.server) == [bytes([index]) for index in range(6)] + [b"later"]
    stats = client.statistics(pair.now)
    assert (stats.retransmits_fast, stats.retransmits_timeout) == (2, 1)


def test_sequence_numbers_wrap_around_two_to_the_64() -> None:
    config = SequencingConfig(
        max_datagram_size=120,
        receive_window=8,
        rto_floor=FAST_FLOOR,
        initial_sequence=MASK_64 - 4,
    )
    sim = Simulation(11, LinkImpairment(loss=0.1, reorder=0.2, duplicate=0.05), config)
    assert sim.run_until(lambda: sim.server is not None and sim.client.is_established)
    assert sim.server is not None
    messages = [random.Random(index).randbytes(index * 37) for index in range(1, 25)]
    for message in messages:
        sim.client.send_message(message, sim.now)
        sim.server.send_message(message[::-1], sim.now)
    sim.flush()
    assert sim.run_until(
        lambda: (
            len(sim.received["server"]) == len(messages)
            and len(sim.received["client"]) == len(messages)
        )
    )
    assert sim.received["server"] == messages
    assert sim.received["client"] == [message[::-1] for message in messages]
    assert sim.client.next_sequence > 1 << 64  # really crossed the wrap


# ------------------------------------------------------------ damage, garbage


def test_garbage_and_damaged_datagrams_are_counted_and_dropped() -> None:
    pair = Pair()
    rng = random.Random(3)
    for size in (0, 1, 35, 36, 37, 500):
        pair.server.receive_datagram(rng.randbytes(size), pair.now)
    pair.client.send_message(b"good", pair.now)
    [datagram] = pair.take(pair.client)
    damaged = bytearray(datagram)
    damaged[-1] ^= 0xFF
    pair.server.receive_datagram(bytes(damaged), pair.now)
    stats = pair.server.statistics(pair.now)
    assert stats.checksum_failures + stats.malformed == 7
    assert stats.checksum_failures >= 1
    assert pair.messages(pair.server) == []
    pair.deliver(pair.client, [datagram])
    assert pair.messages(pair.server) == [b"good"]


# -------------------------------------------------------------- flow control


def test_window_bounds_what_an_unread_receiver_holds() -> None:
    pair = Pair()
    for index in range(40):
        pair.client.send_message(bytes([index]), pair.now)
    pair.settle()
    server = pair.server
    assert server.queued_datagrams <= CONFIG.receive_window
    assert pair.client.send_backlog > 0  # the rest waits for window
    received = pair.messages(server)
    pair.settle()
    received += pair.messages(server)
    pair.settle()
    received += pair.messages(server)
    pair.settle()
    received += pair.messages(server)
    assert received == [bytes([index]) for index in range(40)]


# --------------------------------------------------------------- life cycle


def test_fin_in_both_directions_closes_cleanly() -> None:
    pair = Pair()
    pair.client.send_message(b"bye", pair.now)
    pair.client.shutdown_write(pair.now)
    pair.settle()
    assert pair.messages(pair.server) == [b"bye"] and pair.server.at_end
    with pytest.raises(ClosedError):
        pair.client.send_message(b"late", pair.now)
    pair.server.send_message(b"ok", pair.now)
    pair.server.close(pair.now)
    pair.settle()
    assert pair.messages(pair.client) == [b"ok"] and pair.client.at_end
    assert (
        pair.client.state is ConnectionState.CLOSED
        and pair.server.state is ConnectionState.CLOSED
    )
    deadline = pair.client.next_deadline()
    assert deadline is not None
    pair.client.handle_timeout(deadline)
    assert pair.client.is_done()


def test_reset_reaches_the_peer_as_broken() -> None:
    pair = Pair()
    pair.server.reset(pair.now)
    pair.deliver(pair.server)
    assert isinstance(pair.client.error, BrokenError)
    assert isinstance(pair.server.error, ClosedError)


def test_keepalive_then_idle_timeout() -> None:
    config = SequencingConfig(
        max_datagram_size=200, keepalive_interval=1.0, idle_timeout=3.0
    )
    pair = Pair(config)
    pair.now = 1.0
    pair.client.handle_timeout(pair.now)
    [ping] = pair.take(pair.client)
    assert decode_header(memoryview(ping)).type == DatagramType.PING
    pair.deliver(pair.client, [ping])
    [ack] = pair.take(pair.server)
    assert decode_header(memoryview(ack)).type == DatagramType.ACK
    for _ in range(10):  # the peer goes silent
        deadline = pair.client.next_deadline()
        assert deadline is not None
        pair.now = deadline
        pair.client.handle_timeout(pair.now)
        pair.take(pair.client)
        if pair.client.error is not None:
            break
    assert isinstance(pair.client.error, BrokenError)
    assert pair.now == pytest.approx(3.0)


def test_config_rejects_nonsense() -> None:
    with pytest.raises(UsageError):
        SequencingConfig(max_datagram_size=70000)
    with pytest.raises(UsageError):
        SequencingConfig(receive_window=0)
    with pytest.raises(UsageError):
        SequencingConfig(initial_sequence=1 << 64)


def test_worked_examples_in_the_docs_match_the_encoder() -> None:
    from pathlib import Path

    doc = (
        Path(__file__).resolve().parents[2] / "docs" / "udp-sequencing.md"
    ).read_text()
    data = b"".join(
        encode(
            DatagramType.DATA, FLAG_MESSAGE_END, 0x0102030405060708, 42, 7, 256, b"hi"
        )
    )
    ack = b"".join(
        encode(
            DatagramType.ACK,
            0,
            0x0102030405060708,
            43,
            10,
            250,
            b"",
            pack_sack_blocks([(12, 15), (20, 21)], 10),
        )
    )
    assert f"`{data.hex()}`" in doc
    assert f"`{ack.hex()}`" in doc
    decoded = decode_header(memoryview(ack))
    assert decoded.sack_blocks == ((2, 3), (10, 1)) and decoded.window == 250


def test_three_duplicate_acks_trigger_a_fast_retransmit() -> None:
    pair = Pair()
    client = pair.client
    client.send_message(b"first", pair.now)
    client.send_message(b"second", pair.now)
    first, _second = pair.take(client)
    base = decode_header(memoryview(first)).sequence
    server_next = pair.server.next_sequence
    for count in range(3):
        header, _ = encode(
            DatagramType.ACK, 0, client.connection_id, server_next, base, 16
        )
        client.receive_datagram(header, pair.now)
        resent = pair.take(client)
        if count < 2:
            assert resent == []
    assert len(resent) == 1 and decode_header(memoryview(resent[0])).sequence == base
    assert client.statistics(pair.now).retransmits_fast == 1


def test_duplicate_acks_do_not_resend_a_retransmission_again() -> None:
    """Three duplicates of an ACK that left before a retransmission could arrive say nothing about it."""
    pair = Pair()
    client = pair.client
    for index in range(6):
        client.send_message(bytes([index]), pair.now)
    datagrams = pair.take(client)
    pair.deliver(client, datagrams[2:])
    pair.deliver(pair.server)  # SACKs three above the first two: both resent
    assert len(pair.take(client)) == 2
    pair.deliver(client, datagrams[:1])  # the first was only late
    [ack] = pair.take(pair.server)  # the cumulative point moves to the second, a retransmission
    pair.deliver(pair.server, [ack] * 4)  # and the network repeats that ACK
    assert pair.take(client) == []
    assert client.statistics(pair.now).retransmits_fast == 2


# ------------------------------------------------- largest datagram, announced


def exchange_sizes(pair: Pair, rounds: int = 100) -> list[int]:
    """Move datagrams both ways until quiet; return the size of every one."""
    sizes: list[int] = []
    for _ in range(rounds):
        from_client, from_server = pair.take(pair.client), pair.take(pair.server)
        if not from_client and not from_server:
            return sizes
        sizes += [len(datagram) for datagram in from_client + from_server]
        for datagram in from_client:
            pair.server.receive_datagram(datagram, pair.now)
        for datagram in from_server:
            pair.client.receive_datagram(datagram, pair.now)
    raise AssertionError("the ends never went quiet")


@pytest.mark.parametrize(("client_size", "server_size"), [(9000, 1200), (1200, 9000), (1500, 1500)])
def test_each_end_sends_no_datagram_larger_than_the_other_accepts(client_size: int, server_size: int) -> None:
    pair = Pair(replace(CONFIG, max_datagram_size=client_size), replace(CONFIG, max_datagram_size=server_size))
    agreed = min(client_size, server_size)
    assert pair.client.datagram_size == pair.server.datagram_size == agreed
    assert pair.client.fragment_size == agreed - HEADER_SIZE
    message = bytes(range(256)) * 60
    pair.client.send_message(message, pair.now)
    pair.server.send_message(message, pair.now)
    sizes = exchange_sizes(pair)
    assert max(sizes) == agreed
    assert pair.messages(pair.server) == [message] and pair.messages(pair.client) == [message]


def test_the_handshake_carries_each_ends_largest_datagram() -> None:
    client = SequencingConnection.connect(replace(CONFIG, max_datagram_size=9000), 0.0)
    [initial] = joined(client.datagrams_to_send())
    header = decode_header(memoryview(initial))
    assert len(initial) == INITIAL_SIZE
    assert initial[header.payload_offset :] == (9000).to_bytes(4, "big") + bytes(INITIAL_SIZE - HEADER_SIZE - 4)
    acceptor = SequencingAcceptor(replace(CONFIG, max_datagram_size=1500), CookieIssuer(b"s" * 32))
    [retry] = joined(acceptor.handle_datagram(initial, ADDRESS, 0.0)[0])
    cookie = retry[decode_header(memoryview(retry)).payload_offset :]
    client.receive_datagram(retry, 0.0)
    [echo] = joined(client.datagrams_to_send())
    assert echo[decode_header(memoryview(echo)).payload_offset :] == cookie + (9000).to_bytes(4, "big")
    replies, server = acceptor.handle_datagram(echo, ADDRESS, 0.0)
    [accept] = joined(replies)
    assert accept[decode_header(memoryview(accept)).payload_offset :] == (1500).to_bytes(4, "big")
    client.receive_datagram(accept, 0.0)
    assert server is not None and server.datagram_size == client.datagram_size == 1500


def test_a_peer_that_announces_nothing_is_sent_initial_size_datagrams() -> None:
    acceptor = SequencingAcceptor(replace(CONFIG, max_datagram_size=9000), CookieIssuer(b"s" * 32))
    initial = b"".join(encode(DatagramType.INITIAL, 0, 7, 100, 0, 16, bytes(INITIAL_SIZE - HEADER_SIZE)))
    [retry] = joined(acceptor.handle_datagram(initial, ADDRESS, 0.0)[0])
    cookie = retry[decode_header(memoryview(retry)).payload_offset :]
    echo = b"".join(encode(DatagramType.COOKIE_ECHO, 0, 7, 100, 0, 16, cookie))  # the cookie alone
    _, server = acceptor.handle_datagram(echo, ADDRESS, 0.0)
    assert server is not None and server.datagram_size == INITIAL_SIZE


def test_messages_queued_before_the_accept_are_cut_to_the_peers_limit() -> None:
    client = SequencingConnection.connect(replace(CONFIG, max_datagram_size=9000), 0.0)
    acceptor = SequencingAcceptor(replace(CONFIG, max_datagram_size=600), CookieIssuer(b"s" * 32))
    [initial] = joined(client.datagrams_to_send())
    for reply in joined(acceptor.handle_datagram(initial, ADDRESS, 0.0)[0]):
        client.receive_datagram(reply, 0.0)
    message = bytes(range(256)) * 20  # one 9000-byte fragment, or nine of 600
    client.send_message(message, 0.0)
    [echo] = joined(client.datagrams_to_send())
    replies, server = acceptor.handle_datagram(echo, ADDRESS, 0.0)
    assert server is not None
    for reply in joined(replies):
        client.receive_datagram(reply, 0.0)
    pair = Pair.__new__(Pair)
    pair.now, pair.client, pair.server = 0.0, client, server
    assert max(exchange_sizes(pair)) == 600
    assert pair.messages(server) == [message]
