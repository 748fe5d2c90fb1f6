"""Per-message CPU cost of each framing, beside a bare struct baseline.

How this works: one "message" is one Output of the payload travelling from a
server-side framer to a client-side framer exactly as the I/O loop moves it
(encode, receive_data, next_message until NEED_DATA; for ack also the size
line, the "ok" and the body, since that is what one ack message costs). Each
case runs in a timed loop; the best of several repeats is reported (the least
noisy estimate of CPU cost), and the repeats of all cases are interleaved so
the machine's load hits them alike. The baseline, measured in the same run, packs a
4-byte length plus the payload and unpacks it again. No sockets are involved:
this isolates what framing costs on top of the kernel.

Run: python benchmarks/bench_framing.py [--repeat N] [--seconds S]
"""

from __future__ import annotations

import argparse
import struct
import timeit
from collections.abc import Callable

from tabulate import tabulate

from netlab.proto.framing import Role, make_framer
from netlab.proto.messages import NEED_DATA, STDOUT, Exit, Output, Request
from netlab.proto.session import Session

SMALL = b"x" * 15 + b"\n"  # 16 bytes, one text line (so the line framing can carry it)
LARGE = (b"x" * 63 + b"\n") * 1024  # 64 KiB of 64-byte text lines
TARGET_US = 1.5  # what the length framing may add per small message
_LENGTH = struct.Struct(">I")


def baseline_case(payload: bytes) -> Callable[[], object]:
    """Pack a 4-byte length + payload, then unpack the length and slice the body."""
    pack, unpack_from = _LENGTH.pack, _LENGTH.unpack_from

    def run() -> object:
        frame = pack(len(payload)) + payload
        (size,) = unpack_from(frame)
        return frame[4 : 4 + size]

    return run


def _drain(next_message: Callable[[], object]) -> None:
    while next_message() is not NEED_DATA:
        pass


def framer_case(framing: str, payload: bytes) -> Callable[[], object]:
    """One Output through a server framer and a client framer (raw, line, length)."""
    server, client = make_framer(framing, Role.SERVER), make_framer(framing, Role.CLIENT)
    client.encode(Request(1, (), "bench"))
    message = Output(1, STDOUT, payload)
    encode, receive_data, next_message = server.encode, client.receive_data, client.next_message

    def run() -> None:
        receive_data(encode(message))
        _drain(next_message)

    return run


def ack_case(payload: bytes) -> Callable[[], object]:
    """One ack message: size line, "ok", body (the server sends output at the exit)."""
    server, client = make_framer("ack", Role.SERVER), make_framer("ack", Role.CLIENT)
    client.encode(Request(1, (), "bench"))
    client.receive_data(b"ok\n")
    client.data_to_send()
    output, end = Output(1, STDOUT, payload), Exit(1, 0)

    def run() -> None:
        server.encode(output)
        client.receive_data(server.encode(end))
        server.receive_data(client.data_to_send())
        client.receive_data(server.data_to_send())
        _drain(client.next_message)

    return run


def session_case(payload: bytes) -> Callable[[], object]:
    """One Output through a server Session and a client Session (length framing)."""
    server = Session(Role.SERVER, make_framer("length", Role.SERVER))
    client = Session(Role.CLIENT, make_framer("length", Role.CLIENT))
    server.receive_data(client.send(Request(1, ("bench",), "bench")))
    server.next_event()
    message = Output(1, STDOUT, payload)

    def run() -> None:
        client.receive_data(server.send(message))
        _drain(client.next_event)

    return run


def calls_per_repeat(case: Callable[[], object], seconds: float) -> int:
    """How many calls of ``case`` take about ``seconds``."""
    calls, elapsed = timeit.Timer(case).autorange()
    return max(1, int(calls * seconds / max(elapsed, 1e-9)))


def measure_interleaved(cases: dict[str, Callable[[], object]], repeat: int, seconds: float) -> dict[str, float]:
    """Best time per call in microseconds for each case.

    The repeats go round-robin over the cases, so a busy moment on the machine
    slows every case alike instead of skewing one of them against the baseline.
    """
    numbers = {name: calls_per_repeat(case, seconds) for name, case in cases.items()}
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(repeat):
        for name, case in cases.items():
            elapsed = timeit.Timer(case).timeit(numbers[name])
            best[name] = min(best[name], elapsed / numbers[name] * 1e6)
    return best


def run_benchmark(repeat: int, seconds: float) -> tuple[list[list[object]], float]:
    """Return table rows and the length framing's overhead on a small message."""
    rows: list[list[object]] = []
    length_overhead = 0.0
    for label, payload in (("16 B", SMALL), ("64 KiB", LARGE)):
        cases = {
            "struct baseline": baseline_case(payload),
            "raw": framer_case("raw", payload),
            "ack": ack_case(payload),
            "line": framer_case("line", payload),
            "length": framer_case("length", payload),
            "length + Session": session_case(payload),
        }
        costs = measure_interleaved(cases, repeat, seconds)
        baseline = costs["struct baseline"]
        for name, cost in costs.items():
            rows.append([label, name, cost, cost - baseline, cost / baseline])
        if payload is SMALL:
            length_overhead = costs["length"] - baseline
    return rows, length_overhead


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="timed repeats per case (best is kept)")
    parser.add_argument("--seconds", type=float, default=0.1, help="approximate length of one repeat")
    options = parser.parse_args()
    rows, length_overhead = run_benchmark(options.repeat, options.seconds)
    print(
        tabulate(
            rows,
            headers=["payload", "framing", "us / message", "minus baseline (us)", "x baseline"],
            floatfmt=("", "", ".3f", "+.3f", ".1f"),
        )
    )
    verdict = "met" if length_overhead <= TARGET_US else "missed"
    print(
        f"\nlength framing adds {length_overhead:.3f} us per 16-byte message above the struct baseline "
        f"(target <= {TARGET_US} us: {verdict})"
    )


if __name__ == "__main__":
    main()
