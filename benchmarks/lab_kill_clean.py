"""SIGKILL a namespaced ``netlab run`` at random points, then ``netlab lab clean``: is anything of netlab's left?

How this works: ``--runs`` times (20 by default), a small scenario over
network namespaces (an impaired link, so netlab's wire process runs too) is
started with ``python -m netlab run`` and killed with SIGKILL after a delay
drawn from ``random.Random(--seed)`` between 0 and ``--latest`` seconds: some
kills land while the namespaces and veths are being built, some while the
wire starts, some during a run. Then ``netlab lab clean`` runs, and ``ip netns
list`` and ``ip link`` (in the root namespace) are read. A name counts as
left over when it has netlab's shape (``netlab-<6 hex>-<role>``,
``nl<6 hex>-<side>``) and no live netlab process owns its run (other netlab
runs on this machine that are still going are not ours to judge, and clean
keeps them). Processes still running the wire module with no live owner are
counted too.

Run as root: ``python benchmarks/lab_kill_clean.py [--runs 20] [--seed 1]
[--out results]``. It prints one line per kill and a summary; with ``--out``
it also writes ``lab-kill-clean-<UTC time>.md`` there. Nothing here asserts
a speed; every wait is bounded.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone

from netlab.lab.namespace import INTERFACE_PATTERN, NAMESPACE_PATTERN, can_make_namespaces
from netlab.lab.state import owner

SCENARIO = """\
experiment: link
seed: 3
timeout: 40
network:
  kind: namespaces
  impairment: wire
  link: {mtu: 1500, rate: 20mbit, delay: 20ms, loss: 1%}
parameters: {round_trips: 2000, bulk_bytes: 1048576, datagrams: 500}
"""
COMMAND_TIMEOUT = 60.0
_LINK_NAME = re.compile(r"^\d+:\s+([^:@\s]+)")


def netlab_names() -> tuple[list[str], list[str]]:
    """netlab's namespaces (``ip netns list``) and root-namespace links (``ip link``) that exist now."""
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
                                check=True).stdout.split("\n")
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
                           check=True).stdout.splitlines()
    found_namespaces = [line.split()[0] for line in namespaces if line.strip()
                        and NAMESPACE_PATTERN.match(line.split()[0])]
    found_links = [match.group(1) for line in links if (match := _LINK_NAME.match(line))
                   and INTERFACE_PATTERN.match(match.group(1))]
    return found_namespaces, found_links


def unowned(names: list[str]) -> list[str]:
    """The names whose run no live netlab process owns (leftovers, not someone's run in progress)."""
    left = []
    for name in names:
        match = NAMESPACE_PATTERN.match(name) or INTERFACE_PATTERN.match(name)
        if match and owner(match.group(1)) is None:
            left.append(name)
    return left


def orphan_wires() -> list[int]:
    """Pids of netlab wire processes whose parent is gone (reparented to init)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as stream:
                command = stream.read().split(b"\0")
            with open(f"/proc/{entry}/stat", encoding="ascii") as stream:
                parent = int(stream.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if b"netlab.lab.wire" in command and parent == 1:
            pids.append(int(entry))
    return pids


def one_kill(scenario: str, after: float, work: str) -> dict[str, object]:
    """Start a run, SIGKILL it ``after`` seconds later, clean; return what was there before and after."""
    environment = dict(os.environ)
    process = subprocess.Popen([sys.executable, "-m", "netlab", "run", scenario, "--out", work],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment)
    time.sleep(after)
    process.send_signal(signal.SIGKILL)
    process.wait(COMMAND_TIMEOUT)
    namespaces, links = netlab_names()
    before = unowned(namespaces) + unowned(links)
    cleaned = subprocess.run([sys.executable, "-m", "netlab", "lab", "clean"], capture_output=True, text=True,
                             timeout=COMMAND_TIMEOUT, env=environment, check=False)
    namespaces, links = netlab_names()
    if cleaned.returncode != 0:
        print(f"netlab lab clean said: {cleaned.stderr.strip()}", file=sys.stderr)
    return {"after": after, "left_before_clean": len(before), "clean_exit": cleaned.returncode,
            "left_after_clean": unowned(namespaces) + unowned(links), "orphan_wires": orphan_wires()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="how many runs to kill (default 20)")
    parser.add_argument("--seed", type=int, default=1, help="seeds the kill points (default 1)")
    parser.add_argument("--latest", type=float, default=4.0, help="kill at most this many seconds in (default 4)")
    parser.add_argument("--out", metavar="DIR", help="also write lab-kill-clean-<UTC time>.md in DIR")
    args = parser.parse_args()
    if not can_make_namespaces():
        print("lab_kill_clean: network namespaces need root (CAP_SYS_ADMIN and CAP_NET_ADMIN): run it as root",
              file=sys.stderr)
        return 2
    chooser = random.Random(args.seed)
    started = datetime.now(timezone.utc)
    results = []
    with tempfile.TemporaryDirectory(prefix="netlab-kill-") as work:
        scenario = os.path.join(work, "kill.yaml")
        with open(scenario, "w", encoding="utf-8") as stream:
            stream.write(SCENARIO)
        for number in range(1, args.runs + 1):
            result = one_kill(scenario, round(chooser.uniform(0.0, args.latest), 2), work)
            results.append(result)
            print(f"kill {number:2d} at {result['after']:.2f} s: {result['left_before_clean']} netlab names left "
                  f"by SIGKILL; after lab clean (exit {result['clean_exit']}): {len(result['left_after_clean'])}"
                  f" left {result['left_after_clean'] or ''}, orphan wires {result['orphan_wires'] or 0}",
                  flush=True)
    left_by_kill = sum(1 for result in results if result["left_before_clean"])
    clean_failures = sum(1 for result in results if result["left_after_clean"] or result["orphan_wires"]
                         or result["clean_exit"] != 0)
    summary = (f"{args.runs} runs killed with SIGKILL at random points (seed {args.seed}, 0-{args.latest:g} s): "
               f"{left_by_kill} left netlab namespaces or links behind; after netlab lab clean, "
               f"{clean_failures} showed anything of netlab's in ip netns list / ip link (or an orphan wire)")
    print(summary)
    if args.out:
        path = os.path.join(args.out, f"lab-kill-clean-{started.strftime('%Y%m%dT%H%M%SZ')}.md")
        lines = ["# lab-kill-clean: SIGKILL a namespaced run, then netlab lab clean", "",
                 f"Started {started.isoformat(timespec='seconds')}, from `benchmarks/lab_kill_clean.py --runs "
                 f"{args.runs} --seed {args.seed} --latest {args.latest:g}`.", "",
                 "| kill | after s | netlab names left by SIGKILL | clean exit | left after clean | orphan wires |",
                 "|-----:|--------:|-----------------------------:|-----------:|-----------------:|-------------:|"]
        for number, result in enumerate(results, 1):
            lines.append(f"| {number} | {result['after']:.2f} | {result['left_before_clean']} | "
                         f"{result['clean_exit']} | {len(result['left_after_clean'])} | "  # type: ignore[arg-type]
                         f"{len(result['orphan_wires'])} |")  # type: ignore[arg-type]
        lines += ["", summary + ".", "", (__doc__ or "").split("\n\n", 1)[1].strip(), ""]
        with open(path, "w", encoding="utf-8") as stream:
            stream.write("\n".join(lines))
        print(f"written to {path}", file=sys.stderr)
    return 1 if clean_failures else 0


if __name__ == "__main__":
    sys.exit(main())
