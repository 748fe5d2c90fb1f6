"""The netem path, checked on a kernel that may lack sch_netem: what can be checked without it running.

The probe's answer (against ``tc`` itself where that exists), the arguments netlab hands pyroute2 for a link
(through pyroute2's own netem encoder), the order of the queue disciplines on a router port, which mechanism
a network gets, and that the result records it. Where this kernel has no sch_netem nothing here claims that
netem delayed a frame: the tests that need it running skip.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.tcmsg import sched_netem
from pyroute2.netlink.rtnl.tcmsg.common import percent2u32, time2tick

from netlab.errors import NetlabError
from netlab.lab.spec import LinkSpec, NetworkSpec, parse_network
from netlab.lab.topology import (
    MECHANISM_NETEM,
    MECHANISM_NONE,
    MECHANISM_WIRE,
    Topology,
    _probe_netem,
    _shape,
    leftovers,
    netem_options,
)
from netlab.testing.lab import needs_namespaces

LINK = LinkSpec(rate=20_000_000, delay=0.02, jitter=0.002, loss=0.01, duplicate=0.005, reorder=0.02, corrupt=0.001)


class ReadKeys(dict):  # type: ignore[type-arg]
    """A dict that remembers which keys were read with ``get``."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)


def test_netem_arguments_are_what_pyroute2s_netem_encoder_reads() -> None:
    options = ReadKeys(netem_options(LINK))
    encoded = sched_netem.get_parameters(options)
    assert set(options) <= options.read  # pyroute2 ignores a key it does not read: none of ours is ignored
    assert encoded["delay"] == time2tick(20_000) and encoded["jitter"] == time2tick(2_000)  # microseconds
    assert encoded["loss"] == percent2u32(1) and encoded["duplicate"] == percent2u32(0.5)
    attributes = dict(encoded["attrs"])
    assert attributes["TCA_NETEM_REORDER"]["prob_reorder"] == percent2u32(2)
    assert attributes["TCA_NETEM_CORRUPT"]["prob_corrupt"] == percent2u32(0.1)


def test_an_unset_impairment_is_left_out_of_the_netem_arguments() -> None:
    assert netem_options(LinkSpec(delay=0.005)) == {"delay": 5000, "jitter": 0}
    encoded = sched_netem.get_parameters(netem_options(LinkSpec(delay=0.005)))
    assert encoded["attrs"] == [] and encoded["loss"] == 0


class RecordingRouter:
    """Stands in for the router namespace's pyroute2 handle: records every tc call."""

    def __init__(self, refuse_netem: bool = False) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.refuse_netem = refuse_netem

    def tc(self, command: str, kind: str = "", **arguments: Any) -> None:
        if self.refuse_netem and kind == "netem":
            raise NetlinkError(2, "Specified qdisc kind is unknown")
        self.calls.append((command, kind, arguments))

    def link_lookup(self, ifname: str) -> list[int]:
        return [1]


def test_with_netem_the_shaper_hangs_below_it_on_the_port_a_direction_leaves_through() -> None:
    router = RecordingRouter()
    _shape(router, 7, LINK, netem=True)
    (netem, tbf) = router.calls
    assert netem == ("add", "netem", {"index": 7, "handle": "1:", **netem_options(LINK)})
    assert tbf[:2] == ("add", "tbf") and tbf[2]["parent"] == "1:1" and tbf[2]["rate"] == 20_000_000 // 8
    assert tbf[2]["limit"] == LINK.queue_bytes() and tbf[2]["burst"] == LINK.burst_bytes()


def test_without_netem_only_the_shaper_is_on_the_port_and_htb_gets_a_byte_fifo() -> None:
    router = RecordingRouter()
    _shape(router, 7, LINK, netem=False)  # the wire applies the impairments: no netem qdisc at all
    assert [(command, kind) for command, kind, _ in router.calls] == [("add", "tbf")]
    assert router.calls[0][2]["root"] is True
    router = RecordingRouter()
    _shape(router, 7, LinkSpec(rate=10_000_000, qdisc="htb", delay=0.01), netem=True)
    assert [(command, kind, arguments.get("parent")) for command, kind, arguments in router.calls] == [
        ("add", "netem", None), ("add", "htb", "1:1"), ("add-class", "htb", "2:0"), ("add", "bfifo", "2:10")]


def test_an_unimpaired_direction_gets_no_netem_even_where_netem_is_used() -> None:
    router = RecordingRouter()
    _shape(router, 7, LinkSpec(rate=10_000_000), netem=True)
    assert [kind for _, kind, _ in router.calls] == ["tbf"]


def test_the_probe_says_no_when_the_kernel_refuses_netem_and_yes_and_cleans_up_when_it_accepts() -> None:
    assert _probe_netem(RecordingRouter(refuse_netem=True)) is False
    router = RecordingRouter()
    assert _probe_netem(router) is True
    assert [(command, kind) for command, kind, _ in router.calls] == [("add", "netem"), ("del", "")]


@pytest.mark.parametrize(("impairment", "available", "impaired", "expected"), [
    ("auto", False, True, MECHANISM_WIRE),
    ("auto", True, True, MECHANISM_NETEM),
    ("auto", True, False, MECHANISM_NONE),
    ("auto", False, False, MECHANISM_NONE),
    ("wire", True, True, MECHANISM_WIRE),
    ("wire", False, False, MECHANISM_WIRE),
    ("netem", True, True, MECHANISM_NETEM),
    ("netem", True, False, MECHANISM_NETEM),
])
def test_the_mechanism_follows_the_setting_and_the_probe(impairment: str, available: bool, impaired: bool,
                                                         expected: str) -> None:
    link = LinkSpec(delay=0.01) if impaired else LinkSpec()
    topology = Topology(run_id="000000", spec=NetworkSpec("namespaces", impairment, link, link),
                        netem_available=available)
    assert topology._choose_mechanism() == expected


def test_netem_asked_for_on_a_kernel_without_it_is_refused_in_one_line() -> None:
    topology = Topology(run_id="000000", spec=NetworkSpec("namespaces", "netem"), netem_available=False)
    with pytest.raises(NetlabError, match=r"^impairment: netem was asked for, but this kernel has no sch_netem: "
                                          r"use impairment: auto or wire") as refused:
        topology._choose_mechanism()
    assert refused.value.exit_code == 2  # what the command asks for is not here, as for a missing capability


def tc_accepts_netem(router_namespace: str) -> bool:
    """Ask ``tc`` itself (not pyroute2) whether a netem qdisc can be added in the router's namespace."""
    tc = shutil.which("tc")
    assert tc is not None
    added = subprocess.run(["ip", "netns", "exec", router_namespace, tc, "qdisc", "add", "dev", "lo", "root",
                            "netem", "delay", "1ms"], capture_output=True, timeout=10, check=False)
    if added.returncode == 0:
        subprocess.run(["ip", "netns", "exec", router_namespace, tc, "qdisc", "del", "dev", "lo", "root"],
                       capture_output=True, timeout=10, check=True)
    return added.returncode == 0


@needs_namespaces
@pytest.mark.skipif(shutil.which("tc") is None or shutil.which("ip") is None, reason="needs tc and ip (iproute2)")
def test_the_probe_agrees_with_tc_and_the_record_says_which_mechanism_delayed_the_frames() -> None:
    topology = Topology.up(parse_network({"kind": "namespaces", "link": {"delay": "5ms", "rate": "50mbit"}}, "t"))
    try:
        assert topology.netem_available == tc_accepts_netem(topology.namespaces["router"])
        expected = MECHANISM_NETEM if topology.netem_available else MECHANISM_WIRE
        assert topology.mechanism == expected
        record = topology.as_dict()
        assert record["mechanism"] == expected and record["netem_available"] is topology.netem_available
        shown = subprocess.run(["ip", "netns", "exec", topology.namespaces["router"], "tc", "qdisc", "show"],
                               capture_output=True, text=True, timeout=10, check=True).stdout
        assert ("qdisc netem 1:" in shown) is topology.netem_available  # netem on the ports only where it is used
        assert shown.count("qdisc tbf 2:") == 2  # one shaper per direction either way
        if not topology.netem_available:
            assert topology.wire_pid is not None  # the wire carries the delay instead
    finally:
        topology.down()
    assert [item for item in leftovers() if topology.run_id in item] == []
