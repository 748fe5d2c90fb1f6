"""Kernel settings read from ``/proc/sys``, and the TCP SYN retry schedule they imply.

How this works: :func:`read_sysctl` reads one dotted name (None when this
kernel has no such setting). :func:`syn_retry_schedule` turns
``net.ipv4.tcp_syn_retries`` and ``net.ipv4.tcp_syn_linear_timeouts`` into
the times a connecting client resends an unanswered SYN. Linux starts at a
1 s RTO; since 6.5 the first ``tcp_syn_linear_timeouts`` retransmissions
keep that 1 s (linear), then each doubles: with the defaults 6 and 4 the
gaps are 1, 1, 1, 1, 1, 2 s, so the resends come ~1, 2, 3, 4, 5, 7 s after
the first SYN and connect() gives up ~4 s later, at ~11 s. A kernel without
the setting (before 6.5) doubles from the start: 1, 3, 7, 15 s...
"""

from __future__ import annotations

import os

PROC_SYS = "/proc/sys"
SYN_RETRIES = "net.ipv4.tcp_syn_retries"
SYN_LINEAR_TIMEOUTS = "net.ipv4.tcp_syn_linear_timeouts"
#: Linux's initial retransmission timeout for a SYN (TCP_TIMEOUT_INIT), seconds.
INITIAL_SYN_RTO = 1.0


def read_sysctl(name: str) -> str | None:
    """The value of a dotted sysctl name, whitespace-normalized; None if absent or unreadable."""
    path = os.path.join(PROC_SYS, *name.split("."))
    try:
        with open(path, encoding="ascii") as stream:
            return " ".join(stream.read().split())
    except OSError:
        return None


def syn_retry_schedule(retries: int, linear_timeouts: int) -> tuple[list[float], float]:
    """When an unanswered SYN is resent, and when connect() gives up.

    Args:
        retries: ``tcp_syn_retries``.
        linear_timeouts: ``tcp_syn_linear_timeouts`` (0 on kernels without it).
    Returns:
        The resend times in seconds after the first SYN, and the give-up time.
    """
    gaps = [INITIAL_SYN_RTO * (1 if attempt <= linear_timeouts else 2 ** (attempt - linear_timeouts))
            for attempt in range(retries + 1)]
    times, elapsed = [], 0.0
    for gap in gaps[:-1]:
        elapsed += gap
        times.append(elapsed)
    return times, elapsed + gaps[-1]


def syn_resend_times() -> str:
    """This kernel's schedule in short, e.g. ``~1, 2, 3, 4, 5, 7 s, giving up at ~11 s``."""
    retries, linear = read_sysctl(SYN_RETRIES), read_sysctl(SYN_LINEAR_TIMEOUTS)
    if retries is None or not retries.isdigit():
        return "~1 s and then on the kernel's backoff schedule"
    times, give_up = syn_retry_schedule(int(retries), int(linear) if linear and linear.isdigit() else 0)
    return f"~{', '.join(f'{time:g}' for time in times)} s, giving up at ~{give_up:g} s"


def describe_syn_retries(sysctls: dict[str, str | None]) -> str:
    """One sentence on the SYN resend schedule, from recorded sysctls (the current kernel's when missing)."""
    retries_text = sysctls.get(SYN_RETRIES) if SYN_RETRIES in sysctls else read_sysctl(SYN_RETRIES)
    linear_text = sysctls.get(SYN_LINEAR_TIMEOUTS) if SYN_LINEAR_TIMEOUTS in sysctls else read_sysctl(
        SYN_LINEAR_TIMEOUTS)
    if retries_text is None or not retries_text.isdigit():
        return "an unanswered SYN is resent after about 1 s, then on the kernel's backoff schedule"
    linear = int(linear_text) if linear_text is not None and linear_text.isdigit() else 0
    times, give_up = syn_retry_schedule(int(retries_text), linear)
    shown = ", ".join(f"{time:g}" for time in times)
    setting = (f"tcp_syn_retries {retries_text}, tcp_syn_linear_timeouts {linear}" if linear_text is not None
               else f"tcp_syn_retries {retries_text}, no tcp_syn_linear_timeouts on this kernel")
    return (f"an unanswered SYN is resent ~{shown} s after the first ({setting}), and connect() gives up "
            f"at ~{give_up:g} s")
