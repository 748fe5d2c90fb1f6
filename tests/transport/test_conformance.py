"""The conformance suite (netlab.testing.conformance) over every transport and every wrapper.

tcp4, tcp6, unix, unix-seqpacket, udp, udp6 and memory bare; the tap over
tcp4, unix-seqpacket and udp; the slicer over tcp4 and unix; sequenced UDP
under a seeded impairment. tcp6 and udp6 skip, saying why, without IPv6.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator

import pytest

from netlab.testing.conformance import CHECKS, ConformanceKit, kit_unavailable_reason, standard_kits

KIT_NAMES = [kit.name for kit in standard_kits("/tmp")]

#: Known failures, each a real bug with its owner: (kit, check) -> reason.
KNOWN_FAILURES: dict[tuple[str, str], str] = {}


@pytest.fixture(params=KIT_NAMES)
def kit(request: pytest.FixtureRequest) -> Iterator[ConformanceKit]:
    """Each kit in turn, with a private short directory for socket files."""
    directory = tempfile.mkdtemp(prefix="nl-")
    try:
        chosen = next(kit for kit in standard_kits(directory) if kit.name == request.param)
        reason = kit_unavailable_reason(chosen)
        if reason is not None:
            pytest.skip(reason)
        yield chosen
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.parametrize("check", CHECKS, ids=[check.__name__.removeprefix("check_") for check in CHECKS])
def test_conformance(kit: ConformanceKit, check: Callable[[ConformanceKit], None],
                     request: pytest.FixtureRequest) -> None:
    reason = KNOWN_FAILURES.get((kit.name, check.__name__))
    if reason is not None:
        request.applymarker(pytest.mark.xfail(reason=reason, strict=True))
    check(kit)


def test_the_suite_covers_every_transport_and_wrapper() -> None:
    assert {"tcp4", "tcp6", "unix", "unix-seqpacket", "udp", "udp6", "memory"} <= set(KIT_NAMES)
    assert {name.split("/")[0] for name in KIT_NAMES if "/" in name} == {"tap", "slicer", "impairment"}
    assert len(CHECKS) >= 18
