"""Splitting one UDP payload that holds a segmented send (GSO) back into its datagrams."""

from __future__ import annotations

from netlab.proto.seq.wire import FLAG_MESSAGE_END, DatagramType, decode_header, encode, split_segments


def _datagram(sequence: int, payload: bytes, connection_id: int = 0x1122334455667788) -> bytes:
    return b"".join(encode(DatagramType.DATA, 0, connection_id, sequence, 7, 256, payload))


def test_a_run_of_equal_datagrams_and_a_short_last_one_is_cut_where_it_was_sent() -> None:
    sent = [_datagram(100 + index, bytes([index]) * 1164) for index in range(5)]
    sent.append(b"".join(encode(DatagramType.DATA, FLAG_MESSAGE_END, 0x1122334455667788, 105, 7, 256, b"end")))
    assert split_segments(b"".join(sent)) == sent
    assert [decode_header(memoryview(datagram)).sequence for datagram in split_segments(b"".join(sent))] == \
        list(range(100, 106))


def test_one_datagram_is_itself_even_when_its_payload_repeats_the_connection_id() -> None:
    connection_id = 0x0102030405060708
    tricky = _datagram(1, connection_id.to_bytes(8, "big") * 200, connection_id)
    assert split_segments(tricky) == [tricky]


def test_what_no_size_splits_is_left_whole() -> None:
    damaged = bytearray(b"".join([_datagram(1, bytes(100)), _datagram(2, bytes(100))]))
    damaged[50] ^= 0xFF  # the first datagram's checksum no longer holds
    assert split_segments(bytes(damaged)) == [bytes(damaged)]
    assert split_segments(b"not ours at all" * 10) == [b"not ours at all" * 10]
    assert split_segments(b"") == [b""]
