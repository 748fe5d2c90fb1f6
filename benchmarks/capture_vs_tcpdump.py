"""``netlab capture`` beside tcpdump on one loopback transfer: packets each saw, and what the kernel dropped.

How this works: for each size and round, a ``netlab serve`` child listens on
127.0.0.1 (port 0); tcpdump (``-w /dev/null``, its default 2 MiB buffer unless
``--tcpdump-buffer``) and ``netlab capture --format json`` (each ``--method``
asked for) start on ``lo`` with the same port filter, and the run waits until
each says it is listening. ``netlab exec -- blob SIZE`` then pulls SIZE bytes
(output to /dev/null); one second later both captures get SIGINT and report:
tcpdump its "packets captured / received by filter / dropped by kernel" lines,
netlab its JSON ``capture`` object (PACKET_STATISTICS of its socket). The CPU
time of the netlab capture process (user + system, from ``wait4``) is printed
too: a figure the machine's other load disturbs less than the counts. Methods
alternate order from round to round. Everything is loopback, every wait is
bounded, and every child and temporary file is removed, also on errors.

Run as root: ``python benchmarks/capture_vs_tcpdump.py --size 10MiB --size 256MiB --rounds 3
[--method auto --method recv] [--buffer-size 32MiB]``. Nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from netlab.service.launch import ChildServer, child_environment, netlab_argv
from netlab.units import parse_size

READY_TIMEOUT = 20.0
TRANSFER_TIMEOUT = 600.0
GRACE = 1.0
REPORT_TIMEOUT = 600.0
MAX_COUNT = 200_000
TCPDUMP_COUNTS = re.compile(r"(\d+) packets? (captured|received by filter|dropped by kernel)")


@dataclass
class Round:
    """One transfer seen by tcpdump and by one netlab capture."""

    size: str
    method: str
    seconds: float
    tcpdump_captured: int
    tcpdump_received: int
    tcpdump_dropped: int
    netlab_method: str
    netlab_captured: int
    netlab_kernel_packets: int
    netlab_dropped: int
    netlab_cpu: float
    netlab_exit: int

    @property
    def ratio(self) -> float:
        """netlab's packets over tcpdump's."""
        return self.netlab_captured / self.tcpdump_captured if self.tcpdump_captured else float("nan")


def _wait_for_line(process: subprocess.Popen[bytes], needle: str, timeout: float) -> list[str]:
    """Read ``process``'s stderr until a line holds ``needle`` (bounded); return the lines read."""
    assert process.stderr is not None
    lines: list[str] = []
    pending = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stderr, selectors.EVENT_READ)
        while (remaining := deadline - time.monotonic()) > 0 and selector.select(remaining):
            chunk = os.read(process.stderr.fileno(), 4096)
            if not chunk:
                break
            pending += chunk
            *complete, pending = pending.split(b"\n")
            lines += [line.decode(errors="replace") for line in complete]
            if any(needle in line for line in lines):
                return lines
    raise RuntimeError(f"{process.args[0]} did not say {needle!r} within {timeout:g} s: {lines}")


def _stop(process: subprocess.Popen[bytes], timeout: float) -> tuple[int, str, float]:
    """SIGINT ``process``, reap it (bounded; SIGKILL past the bound); its status, the rest of its stderr, CPU s."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            process.kill()
            pid, status, usage = os.wait4(process.pid, 0)
            break
        time.sleep(0.05)
    process.returncode = os.waitstatus_to_exitcode(status)
    assert process.stderr is not None
    rest = process.stderr.read().decode(errors="replace")
    process.stderr.close()
    return process.returncode, rest, usage.ru_utime + usage.ru_stime


def measure(size: str, method: str, buffer_size: str, tcpdump_buffer_kib: int | None, directory: str) -> Round:
    """One transfer of ``blob SIZE`` captured by tcpdump and by ``netlab capture --method METHOD``."""
    output = os.path.join(directory, "capture.json")
    started: list[subprocess.Popen[bytes]] = []
    environment = child_environment()
    try:
        with ChildServer("--address", "tcp4://127.0.0.1:0", "-q", "--output-cap", str(parse_size(size) + 1),
                         keep_lines=False) as server:
            port = server.url.rsplit(":", 1)[1]
            tcpdump = subprocess.Popen(
                ["tcpdump", "-i", "lo", "-n", "-w", "/dev/null", *(["-B", str(tcpdump_buffer_kib)]
                                                                 if tcpdump_buffer_kib else []), f"port {port}"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=directory)
            started.append(tcpdump)
            _wait_for_line(tcpdump, "listening on", READY_TIMEOUT)
            with open(output, "wb") as sink:
                netlab = subprocess.Popen(
                    netlab_argv("capture", "--port", port, "--count", str(MAX_COUNT), "--duration", "3600",
                                "--method", method, "--buffer-size", buffer_size, "--format", "json"),
                    stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.PIPE, cwd=directory, env=environment)
            started.append(netlab)
            said = _wait_for_line(netlab, "capturing on", READY_TIMEOUT)
            clock = time.perf_counter()
            subprocess.run(netlab_argv("exec", "--address", server.url, "--", "blob", size), check=True,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, timeout=TRANSFER_TIMEOUT,
                           cwd=directory, env=environment)
            seconds = time.perf_counter() - clock
            time.sleep(GRACE)  # the close and the last acknowledgements reach both captures
            _, tcpdump_said, _ = _stop(tcpdump, REPORT_TIMEOUT)
            netlab_exit, netlab_said, cpu = _stop(netlab, REPORT_TIMEOUT)
        counts = {kind: int(number) for number, kind in TCPDUMP_COUNTS.findall(tcpdump_said)}
        with open(output, encoding="utf-8") as stream:
            document = json.load(stream)
        counters = document["capture"]
        if netlab_exit not in (0, 1):
            raise RuntimeError(f"netlab capture exited {netlab_exit}: {said + netlab_said.splitlines()}")
        return Round(size, method, seconds, counts.get("captured", 0), counts.get("received by filter", 0),
                     counts.get("dropped by kernel", 0), counters["method"], counters["captured"],
                     counters["kernel_packets"], counters["kernel_drops"], cpu, netlab_exit)
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
                process.wait(10)
            if process.stderr is not None and not process.stderr.closed:
                process.stderr.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--size", action="append", help="blob size per transfer (repeatable; default 10MiB)")
    parser.add_argument("--rounds", type=int, default=3, help="transfers per size and method (default 3)")
    parser.add_argument("--method", action="append", choices=("auto", "ring", "recv"),
                        help="netlab capture --method (repeatable; default auto)")
    parser.add_argument("--buffer-size", default="32MiB", help="netlab capture --buffer-size (default 32MiB)")
    parser.add_argument("--tcpdump-buffer", type=int, metavar="KIB", help="tcpdump -B (default: its own, 2 MiB)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("capture_vs_tcpdump: run as root (both captures open packet sockets)", file=sys.stderr)
        return 2
    if shutil.which("tcpdump") is None:
        print("capture_vs_tcpdump: tcpdump is not installed (apt-get install tcpdump)", file=sys.stderr)
        return 2
    sizes, methods = args.size or ["10MiB"], args.method or ["auto"]
    for size in sizes:
        parse_size(size)
    print(f"load average at start: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}; {os.cpu_count()} CPUs")
    print("size     method  s       tcpdump captured/received/dropped   netlab captured/kernel/dropped  "
          "netlab/tcpdump  netlab CPU s  exit")
    rounds: list[Round] = []
    with tempfile.TemporaryDirectory(prefix="netlab-capture-bench-") as directory:
        for size in sizes:
            for number in range(args.rounds):
                for method in methods if number % 2 == 0 else list(reversed(methods)):
                    row = measure(size, method, args.buffer_size, args.tcpdump_buffer, directory)
                    rounds.append(row)
                    print(f"{row.size:<8} {row.netlab_method:<7} {row.seconds:<7.2f} "
                          f"{row.tcpdump_captured:>8}/{row.tcpdump_received}/{row.tcpdump_dropped:<16} "
                          f"{row.netlab_captured:>8}/{row.netlab_kernel_packets}/{row.netlab_dropped:<14} "
                          f"{row.ratio:<15.3f} {row.netlab_cpu:<13.2f} {row.netlab_exit}", flush=True)
    print("\nmedians (lowest-highest):")
    for size in sizes:
        for method in methods:
            chosen = [row for row in rounds if row.size == size and row.method == method]
            ratios = [row.ratio for row in chosen]
            drops = [row.netlab_dropped for row in chosen]
            print(f"  {size} {method}: netlab/tcpdump {statistics.median(ratios):.3f} ({min(ratios):.3f}-"
                  f"{max(ratios):.3f}); netlab kernel drops {statistics.median(drops):g} ({min(drops)}-{max(drops)}); "
                  f"tcpdump kernel drops {statistics.median(row.tcpdump_dropped for row in chosen):g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
