"""The SYN resend schedule derived from tcp_syn_retries and tcp_syn_linear_timeouts."""

from __future__ import annotations

import pytest

from netlab.scenario.render import render_markdown
from netlab.transport.sysctl import describe_syn_retries, syn_retry_schedule


@pytest.mark.parametrize("retries, linear, times, give_up", [
    (6, 4, [1, 2, 3, 4, 5, 7], 11),       # Linux 6.5+ defaults: 1 s gaps, then doubling
    (6, 0, [1, 3, 7, 15, 31, 63], 127),   # before tcp_syn_linear_timeouts: doubling from the start
    (2, 4, [1, 2], 3),
])
def test_syn_retry_schedule(retries: int, linear: int, times: list[int], give_up: int) -> None:
    assert syn_retry_schedule(retries, linear) == (times, give_up)


def test_the_sentence_comes_from_the_recorded_sysctls() -> None:
    sentence = describe_syn_retries({"net.ipv4.tcp_syn_retries": "6", "net.ipv4.tcp_syn_linear_timeouts": "4"})
    assert "~1, 2, 3, 4, 5, 7 s" in sentence and "tcp_syn_linear_timeouts 4" in sentence and "~11 s" in sentence
    old = describe_syn_retries({"net.ipv4.tcp_syn_retries": "6", "net.ipv4.tcp_syn_linear_timeouts": None})
    assert "~1, 3, 7, 15, 31, 63 s" in old


def test_result_markdown_states_the_schedule_of_the_recorded_kernel() -> None:
    document = {
        "scenario": {"name": "x", "repeat": 1, "seed": 1, "timeout": 1, "path": "x.yaml"},
        "experiment": {"name": "x", "summary": "x", "method": ""}, "columns": [], "summary": [],
        "started": "2026-01-01T00:00:00+00:00", "completed_runs": 0, "total_runs": 0, "note": "",
        "environment": {"kernel": "Linux 6.18", "machine": "x86_64", "python": "CPython", "netlab": "0",
                        "cpu_count": 2, "sysctls": {"net.ipv4.tcp_syn_retries": "5",
                                                    "net.ipv4.tcp_syn_linear_timeouts": "4"}},
    }
    assert "an unanswered SYN is resent ~1, 2, 3, 4, 5 s after the first" in render_markdown(document)
