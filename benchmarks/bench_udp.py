"""Sequenced UDP against raw UDP on loopback: bulk goodput and small-message round trips.

How this works: every figure is a ratio measured side by side in one run. The
receiving side runs in a forked process so the two ends do not share a GIL.

- Bulk: 10 MiB one way (``--total`` for longer, steady-state runs), timed from the sender's first send to the receiver's
  last arrival (both processes read the same monotonic clock). Raw: a blast of
  datagrams of the payload size, counting what arrived (raw UDP may lose
  some). Sequenced: the same bytes as messages of about 64 KiB (whole
  fragments) over a udp:// connection with the same datagram size.
- Round trip: 16-byte ping-pong, raw ``send``/``recv`` against a
  ``Connection.send``/``receive`` pair, both with an echoing server process.

Beside each ratio it prints CPU time (user + system, ``time.process_time``)
per datagram at the sequenced receiver and per round trip at each client: a
figure of our own layer that another process's load disturbs less than rates.

Run: ``python benchmarks/bench_udp.py [--quick] [--total MIB]``. Targets: bulk goodput >=
0.4x raw, round trip rate >= 0.7x raw. Nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket
import statistics
import time
from multiprocessing.connection import Connection as Pipe

from netlab.proto.seq import SequencingStatistics
from netlab.proto.seq.wire import HEADER_SIZE
from netlab.transport import connect, listen
from netlab.transport.udp import UdpOptions

TOTAL = 10 * 1024 * 1024
MESSAGE_SIZE = 64 * 1024
SOCKET_BUFFER = 4 * 1024 * 1024
PING_SIZE = 16


def _udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
    return sock


# ------------------------------------------------------------------ raw UDP


def _raw_receiver(sock: socket.socket, size: int, pipe: Pipe) -> None:
    sock.settimeout(0.5)
    received, last = 0, 0.0
    buffer = bytearray(size)
    pipe.send("ready")
    try:
        while received < TOTAL // size * size:
            received += sock.recv_into(buffer)
            last = time.monotonic()
    except TimeoutError:
        pass
    pipe.send((received, last))


def raw_bulk(size: int) -> tuple[float, float]:
    """Returns (bytes per second at the receiver, fraction delivered)."""
    receiver = _udp_socket()
    receiver.bind(("127.0.0.1", 0))
    ours, theirs = multiprocessing.Pipe()
    process = multiprocessing.Process(
        target=_raw_receiver, args=(receiver, size, theirs)
    )
    process.start()
    assert ours.recv() == "ready"
    sender = _udp_socket()
    sender.connect(receiver.getsockname())
    payload = bytes(size)
    started = time.monotonic()
    for _ in range(TOTAL // size):
        sender.send(payload)
    received, last = ours.recv()
    elapsed = last - started
    process.join()
    sender.close()
    receiver.close()
    return received / elapsed, received / (TOTAL // size * size)


def _raw_echo(sock: socket.socket, count: int, pipe: Pipe) -> None:
    pipe.send("ready")
    for _ in range(count):
        data, peer = sock.recvfrom(PING_SIZE)
        sock.sendto(data, peer)


def raw_round_trips(count: int) -> tuple[float, float]:
    """Round trips per second, and the client's CPU seconds per round trip."""
    server = _udp_socket()
    server.bind(("127.0.0.1", 0))
    ours, theirs = multiprocessing.Pipe()
    process = multiprocessing.Process(target=_raw_echo, args=(server, count, theirs))
    process.start()
    assert ours.recv() == "ready"
    client = _udp_socket()
    client.connect(server.getsockname())
    message = bytes(PING_SIZE)
    started, cpu_started = time.perf_counter(), time.process_time()
    for _ in range(count):
        client.send(message)
        client.recv(PING_SIZE)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    process.join()
    client.close()
    server.close()
    return count / elapsed, cpu / count


# ------------------------------------------------------------ sequenced UDP


def _sequenced_receiver(options: UdpOptions, pipe: Pipe) -> None:
    with listen("udp://127.0.0.1:0", options=options) as listener:
        pipe.send(listener.address.port)
        connection = listener.accept(timeout=10)
        received, last = 0, 0.0
        cpu_started = time.process_time()
        while received < TOTAL:
            received += len(connection.receive(timeout=30))
            last = time.monotonic()
        cpu = time.process_time() - cpu_started
        pipe.send((received, last, connection.statistics(), cpu))
        connection.receive(timeout=10)  # end of stream
        connection.close()


def sequenced_bulk(size: int) -> tuple[float, SequencingStatistics, float]:
    """Returns (bytes per second at the receiver, its statistics, its CPU seconds per datagram)."""
    options = UdpOptions(
        payload_size=size, window=min(512, SOCKET_BUFFER // size), rto_floor=0.02
    )
    ours, theirs = multiprocessing.Pipe()
    process = multiprocessing.Process(
        target=_sequenced_receiver, args=(options, theirs)
    )
    process.start()
    port = ours.recv()
    from netlab.transport.address import Address

    connection = connect(Address("udp", "127.0.0.1", port), 5.0, options=options)
    # Messages of whole fragments, so datagrams are as full as the raw ones.
    fragment = size - HEADER_SIZE
    payload = bytes(fragment * max(1, MESSAGE_SIZE // fragment))
    started = time.monotonic()
    for offset in range(0, TOTAL, len(payload)):
        connection.send(payload[: TOTAL - offset], timeout=30)
    received, last, stats, cpu = ours.recv()
    elapsed = last - started
    connection.close()
    process.join()
    return received / elapsed, stats, cpu / max(1, stats.datagrams_received)


def _sequenced_echo(count: int, pipe: Pipe) -> None:
    with listen("udp://127.0.0.1:0") as listener:
        pipe.send(listener.address.port)
        connection = listener.accept(timeout=10)
        for _ in range(count):
            connection.send(connection.receive(timeout=10))
        connection.receive(timeout=10)
        connection.close()


def sequenced_round_trips(count: int) -> tuple[float, float]:
    """Round trips per second over udp://, and the client's CPU seconds per round trip."""
    ours, theirs = multiprocessing.Pipe()
    process = multiprocessing.Process(target=_sequenced_echo, args=(count, theirs))
    process.start()
    port = ours.recv()
    from netlab.transport.address import Address

    connection = connect(Address("udp", "127.0.0.1", port), 5.0)
    message = bytes(PING_SIZE)
    started, cpu_started = time.perf_counter(), time.process_time()
    for _ in range(count):
        connection.send(message)
        connection.receive(timeout=10)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    connection.close()
    process.join()
    return count / elapsed, cpu / count


def main() -> None:
    global TOTAL
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="one run per figure instead of three"
    )
    parser.add_argument("--round-trips", type=int, default=20000)
    parser.add_argument(
        "--total",
        type=int,
        default=TOTAL // 2**20,
        help="MiB per bulk run (short runs mostly time the start; 200 shows the steady state)",
    )
    arguments = parser.parse_args()
    TOTAL = arguments.total * 2**20
    multiprocessing.set_start_method("fork")
    runs = 1 if arguments.quick else 3
    print(f"{'figure':<34} {'raw':>14} {'sequenced':>14} {'ratio':>7}")
    for size in (60000, 1200):
        raw = [raw_bulk(size) for _ in range(runs)]
        ours = [sequenced_bulk(size) for _ in range(runs)]
        raw_rate = statistics.median(rate for rate, _ in raw)
        our_rate = statistics.median(rate for rate, _, _ in ours)
        delivered = min(fraction for _, fraction in raw)
        label = f"bulk {TOTAL // 2**20} MiB, {size} B datagrams"
        print(
            f"{label:<34} {raw_rate / 1e6:>10.1f} MB/s {our_rate / 1e6:>10.1f} MB/s "
            f"{our_rate / raw_rate:>7.2f}   (raw delivered {delivered:.1%})"
        )
        receiver = ours[-1][1]
        cpu = statistics.median(cpu for _, _, cpu in ours)
        print(
            f"    receiver: {cpu * 1e6:.1f} us CPU per datagram; {receiver.datagrams_received} datagrams, "
            f"{receiver.acks_sent} ACKs sent, {receiver.duplicates} duplicates, {receiver.out_of_order} out of order"
        )
    raw_trips = [raw_round_trips(arguments.round_trips) for _ in range(runs)]
    our_trips = [sequenced_round_trips(arguments.round_trips) for _ in range(runs)]
    raw_rtt = statistics.median(rate for rate, _ in raw_trips)
    our_rtt = statistics.median(rate for rate, _ in our_trips)
    print(
        f"{f'{PING_SIZE} B round trips':<34} {raw_rtt:>12.0f}/s {our_rtt:>12.0f}/s {our_rtt / raw_rtt:>7.2f}"
    )
    raw_cpu = statistics.median(cpu for _, cpu in raw_trips)
    our_cpu = statistics.median(cpu for _, cpu in our_trips)
    print(f"    client CPU per round trip: raw {raw_cpu * 1e6:.1f} us, sequenced {our_cpu * 1e6:.1f} us")


if __name__ == "__main__":
    main()
