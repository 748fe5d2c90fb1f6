"""CPU time of a ``blob`` transfer on each end: per MiB over a stream, per datagram over sequenced UDP.

Wall-clock rates of a bulk transfer move by 2x on a shared machine; the CPU
each end spends per byte moves far less, and it is what a change to the bulk
path (frame sizes, copies, system calls per datagram) changes. This runs a
netlab server in a child process (pinned to the second CPU, the client here
to the first, when there are two), times ``--repeat`` blobs of ``--size``
bytes after a warm-up, and prints per blob: the wall rate, the client's CPU
(``time.process_time``) and the server's (the sum of its threads' schedstat),
per MiB for tcp4/unix and per datagram for udp (the blob's bytes over the
datagram's payload: output frames fill whole datagrams). Then the medians.

To compare two checkouts, run it alternately under each one's ``PYTHONPATH``
(the client and the server are both the checkout's)::

    python benchmarks/bench_bulk_cpu.py --transport unix --size 256MiB --repeat 5
    python benchmarks/bench_bulk_cpu.py --transport udp --datagram-size 1200 --size 16296000
    python benchmarks/bench_bulk_cpu.py --transport udp --datagram-size 60000 --size 128MiB --repeat 3

Nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from netlab.proto.seq.wire import HEADER_SIZE
from netlab.service.client import Client
from netlab.transport import connect
from netlab.transport.udp import UdpOptions
from netlab.units import parse_size

STARTUP_TIMEOUT = 10.0


def _server_cpu_seconds(pid: int) -> float:
    """CPU time of every thread of ``pid`` so far (schedstat: nanoseconds on the CPU)."""
    total = 0
    for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            with open(path) as stat:
                total += int(stat.read().split()[0])
        except OSError:
            pass  # the thread ended meanwhile
    return total / 1e9


def _pin(cpu: int | None) -> Callable[[], None] | None:
    """A preexec function pinning the child to ``cpu`` (None: not pinned)."""
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def _server(transport: str, size: int, datagram_size: int,
            cpu: int | None) -> Iterator[tuple[subprocess.Popen[str], Client]]:
    """A child server (pinned to ``cpu`` unless None) and a client of it (output cap raised for the blobs)."""
    cap = str(4 * size)
    with tempfile.TemporaryDirectory(prefix="netlab-bulk-cpu-") as directory:
        if transport == "udp":
            url = f"udp://127.0.0.1:{_free_udp_port()}"
            command = [sys.executable, "-m", "netlab.bench", "udp-server", url, "length", "threaded",
                       str(datagram_size), "0.02", "", cap]
            child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     preexec_fn=_pin(cpu))
            assert child.stdout is not None and child.stdin is not None
            url = json.loads(child.stdout.readline())
            options = UdpOptions.build(payload_size=datagram_size, rto_floor=0.02)
            client = Client(url, read_timeout=30, connection=connect(url, STARTUP_TIMEOUT, options=options))
        else:
            url = f"unix://{directory}/server.sock" if transport == "unix" else f"tcp4://127.0.0.1:{_free_port()}"
            command = [sys.executable, "-m", "netlab", "serve", "--address", url, "--quiet", "--output-cap", cap,
                       "--max-per-peer", "0"]
            child = subprocess.Popen(command, stdin=subprocess.DEVNULL, text=True, preexec_fn=_pin(cpu))
            client = _connect_when_up(url)
        try:
            with client:
                yield child, client
        finally:
            if transport == "udp":
                assert child.stdin is not None
                child.stdin.close()
            else:
                child.terminate()
            child.wait(STARTUP_TIMEOUT)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _connect_when_up(url: str) -> Client:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        try:
            return Client(url, read_timeout=30)
        except OSError:
            pass
        except Exception:  # netlab's connection errors until the server listens
            if time.monotonic() > deadline:
                raise
        time.sleep(0.05)


def measure(transport: str, size: int, datagram_size: int, repeat: int) -> dict[str, list[float]]:
    """Per blob: MB/s, client and server CPU in microseconds per unit (MiB, or datagram over udp)."""
    cpus = sorted(os.sched_getaffinity(0))
    server_core = cpus[1] if len(cpus) >= 2 else None
    if server_core is not None:
        os.sched_setaffinity(0, {cpus[0]})
    unit = size / (datagram_size - HEADER_SIZE) if transport == "udp" else size / 2**20
    figures: dict[str, list[float]] = {"MB/s": [], "client": [], "server": []}
    with _server(transport, size, datagram_size, server_core) as (child, client):
        client.run(("echo", "warm-up"))
        client.run(("blob", str(size)), keep_output=False)
        for _ in range(repeat):
            server_before, client_before = _server_cpu_seconds(child.pid), time.process_time()
            started = time.perf_counter()
            reply = client.run(("blob", str(size)), keep_output=False)
            seconds = time.perf_counter() - started
            client_cpu = time.process_time() - client_before
            server_cpu = _server_cpu_seconds(child.pid) - server_before
            if reply.stdout_bytes != size:
                raise SystemExit(f"the blob brought {reply.stdout_bytes} bytes instead of {size}")
            figures["MB/s"].append(size / seconds / 1e6)
            figures["client"].append(client_cpu / unit * 1e6)
            figures["server"].append(server_cpu / unit * 1e6)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transport", choices=("tcp4", "unix", "udp"), default="unix")
    parser.add_argument("--size", default=None, help="blob size (default 256MiB; udp: 16296000)")
    parser.add_argument("--datagram-size", type=int, default=1200, help="udp datagram size, header included")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    size = parse_size(args.size) if args.size else (16_296_000 if args.transport == "udp" else 256 * 2**20)
    figures = measure(args.transport, size, args.datagram_size, args.repeat)
    unit = "us/datagram" if args.transport == "udp" else "us/MiB"
    for index in range(args.repeat):
        print(f"blob {index + 1}: {figures['MB/s'][index]:8.0f} MB/s  client {figures['client'][index]:8.2f} {unit}"
              f"  server {figures['server'][index]:8.2f} {unit}")
    for name, values in figures.items():
        label = "MB/s" if name == "MB/s" else f"{name} {unit}"
        print(f"median {label}: {statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})")


if __name__ == "__main__":
    main()
