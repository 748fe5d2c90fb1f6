"""CPU time of one ``echo`` request on each end, without the kernel (in memory) and over sockets.

The echo path is the service's per-request cost: on a quiet machine a
loopback round trip costs the kernel 7-17 us, so every microsecond of Python
on either end moves the ratio to a bare ping-pong. This measures it as CPU
time (``time.thread_time``; over sockets the server's threads' schedstat), which a loaded machine
disturbs far less than wall time:

- ``server``: a :class:`ConnectionHandler` fed request frames built in advance
  (``feed``, ``take_request``, ``run_request``), its replies sent to a sink;
- ``client``: ``Client.run(("echo", 15 bytes))`` answered at once by a
  connection that hands back the reply frames built in advance;
- ``tcp4``/``unix``: ``netlab serve`` in a child process (``--model``) and
  the client here; the server's CPU is the sum over its threads (schedstat).

Run it with ``--repeat`` to get the median and spread of several runs; to
compare two checkouts run it alternately under each one's ``PYTHONPATH``.

    python benchmarks/bench_echo.py --count 20000 --repeat 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time

from netlab.proto.codec import encode_frame
from netlab.proto.framing import Role, make_framer
from netlab.proto.messages import STDOUT, Exit, Output, Request
from netlab.service.client import Client
from netlab.service.executor import Executor
from netlab.service.handler import ConnectionHandler, ServiceConfig
from netlab.service.launch import ChildServer
from netlab.service.log import ServerLog
from netlab.service.policy import Policy
from netlab.testing.transports import SinkConnection

ARGV = ("echo", "x" * 15)
LINE = " ".join(ARGV) + "\n"
REPLY_DATA = ARGV[1].encode() + b"\n"


class _Replay(SinkConnection):
    """The client's end: each request is answered by the next reply built in advance."""

    receives_in_place = True

    def __init__(self, replies: list[bytes]) -> None:
        super().__init__(keep=False)
        self._replies = iter(replies)
        self._ready = b""

    def send(self, data: bytes, timeout: float | None = None) -> None:
        self.sends += 1
        self._ready = next(self._replies)

    def receive(self, max_bytes: int = 65536, timeout: float | None = None) -> bytes:
        data, self._ready = self._ready, b""
        return data

    def receive_into(self, buffer: memoryview, timeout: float | None = None) -> int:
        data, self._ready = self._ready, b""
        buffer[: len(data)] = data
        return len(data)


def server_cpu(count: int) -> float:
    """Microseconds of CPU per echo request in a handler, in memory."""
    framer = make_framer("length", Role.CLIENT)
    frames = [framer.encode(Request(number, ARGV, LINE)) for number in range(1, count + 1)]
    handler = ConnectionHandler(SinkConnection(keep=False), Executor(Policy()), ServiceConfig(), ServerLog(quiet=True))
    feed, take, run = handler.feed, handler.take_request, handler.run_request
    started = time.thread_time()
    for frame in frames:
        feed(frame)
        request = take()
        assert request is not None
        run(request)
    return (time.thread_time() - started) / count * 1e6


def client_cpu(count: int) -> float:
    """Microseconds of CPU per ``Client.run`` of an echo, answered in memory."""
    replies = [encode_frame(Output(number, STDOUT, REPLY_DATA)) + encode_frame(Exit(number, 0, None, 1e-5, 16))
               for number in range(1, count + 2)]
    client = Client("memory://unused", connection=_Replay(replies))
    client.run(ARGV)  # the first reply passes the framing-guess bytes
    run = client.run
    started = time.thread_time()
    for _ in range(count):
        run(ARGV)
    return (time.thread_time() - started) / count * 1e6


def _process_cpu(pid: int) -> float:
    """Seconds of CPU every thread of process ``pid`` has run (the kernel's schedstat, in ns)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as stat:
                total += int(stat.read().split()[0])
        except OSError:
            pass  # the thread ended meanwhile
    return total / 1e9


def socket_cpu(transport: str, count: int, model: str = "threaded") -> tuple[float, float, float]:
    """(client us, server us, wall us) per echo round trip over a real socket, the server in a child process."""
    directory = tempfile.mkdtemp(prefix="netlab-bench-")
    address = {"tcp4": "tcp4://127.0.0.1:0", "unix": f"unix://{directory}/echo.sock"}[transport]
    try:
        with ChildServer("--address", address, "--model", model, "--quiet", keep_lines=False,
                         graceful=True) as server, Client(server.url) as client:
            for _ in range(200):
                client.run(ARGV)
            run = client.run
            pid = server.process.pid
            child, thread, wall = _process_cpu(pid), time.thread_time(), time.perf_counter()
            for _ in range(count):
                run(ARGV)
            wall = time.perf_counter() - wall
            thread = time.thread_time() - thread
            child = _process_cpu(pid) - child
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return thread / count * 1e6, child / count * 1e6, wall / count * 1e6


def _summary(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20_000, help="requests per run (default 20000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the median and spread are printed")
    parser.add_argument("--part", action="append", choices=("server", "client", "tcp4", "unix"),
                        help="what to measure (default: all)")
    parser.add_argument("--model", default="threaded", help="server model for tcp4/unix (default threaded)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    arguments = parser.parse_args()
    parts = arguments.part or ["server", "client", "tcp4", "unix"]
    figures: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        figures.setdefault(name, []).append(value)

    for _ in range(arguments.repeat):
        for part in parts:
            if part == "server":
                add("server_us", server_cpu(arguments.count))
            elif part == "client":
                add("client_us", client_cpu(arguments.count))
            else:
                client, server, wall = socket_cpu(part, arguments.count, arguments.model)
                add(f"{part}_client_us", client)
                add(f"{part}_server_us", server)
                add(f"{part}_wall_us", wall)
    result = {name: _summary(values) for name, values in figures.items()}
    if arguments.json:
        print(json.dumps(result))
        return
    for name, summary in result.items():
        print(f"{name:18} {summary['median']:8.2f} us  ({summary['min']:.2f}-{summary['max']:.2f})")


if __name__ == "__main__":
    main()
