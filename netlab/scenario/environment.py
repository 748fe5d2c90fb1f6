"""The machine a scenario ran on: kernel, Python, netlab, CPUs and the network sysctls.

How this works: sysctls are read straight from ``/proc/sys`` (no ``sysctl``
binary needed); one that does not exist on this kernel is recorded as None.
The snapshot goes into every result file so a table can be read against the
limits that shaped it (somaxconn caps the backlog, rmem_max caps SO_RCVBUF,
tcp_syn_retries and tcp_syn_linear_timeouts give the SYN resend schedule...).
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

from netlab import __version__
from netlab.transport.sysctl import read_sysctl

#: Sysctls that decide what the experiments see, by their dotted name.
RELEVANT_SYSCTLS: tuple[str, ...] = (
    "net.core.somaxconn",
    "net.ipv4.tcp_max_syn_backlog",
    "net.ipv4.tcp_syn_retries",
    "net.ipv4.tcp_syn_linear_timeouts",
    "net.ipv4.tcp_synack_retries",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.tcp_abort_on_overflow",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
    "net.core.rmem_max",
    "net.core.rmem_default",
    "net.core.wmem_max",
    "net.core.wmem_default",
    "net.ipv4.udp_rmem_min",
    "net.unix.max_dgram_qlen",
    "net.ipv4.ip_local_port_range",
    "net.ipv6.conf.lo.disable_ipv6",
)
def capture_environment() -> dict[str, Any]:
    """Return the environment snapshot stored in result files."""
    uname = platform.uname()
    return {
        "kernel": f"{uname.system} {uname.release}",
        "kernel_version": uname.version,
        "machine": uname.machine,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "python_executable_bits": 64 if sys.maxsize > 2**32 else 32,
        "netlab": __version__,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "sysctls": {name: read_sysctl(name) for name in RELEVANT_SYSCTLS},
    }
