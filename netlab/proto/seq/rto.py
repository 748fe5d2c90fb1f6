"""The retransmission timeout of RFC 6298, with a configurable floor.

How this works: the first round-trip sample R sets SRTT = R and RTTVAR = R/2;
each later sample R' updates RTTVAR = 3/4 RTTVAR + 1/4 |SRTT - R'| and then
SRTT = 7/8 SRTT + 1/8 R'. The timeout is RTO = max(floor, SRTT + 4 RTTVAR),
capped at ``maximum``. A timeout doubles RTO up to the cap (exponential
backoff); the next valid sample recomputes it from SRTT and RTTVAR. Karn's
rule (never sample a retransmitted datagram) is the caller's job: it only
passes samples from datagrams sent once. The RFC's floor is 1 s; a fast floor
of tens of milliseconds (as KCP uses) recovers losses sooner on short paths.
"""

from __future__ import annotations

RFC_FLOOR = 1.0
FAST_FLOOR = 0.02
DEFAULT_MAXIMUM = 60.0


class RetransmissionTimer:
    """SRTT, RTTVAR and RTO for one connection."""

    __slots__ = ("backoffs", "floor", "maximum", "rto", "rttvar", "srtt")

    def __init__(
        self,
        floor: float = RFC_FLOOR,
        initial: float = RFC_FLOOR,
        maximum: float = DEFAULT_MAXIMUM,
    ) -> None:
        """Args:
        floor: the lowest RTO (RFC 6298 says 1 s).
        initial: the RTO before any sample (RFC 6298 says 1 s).
        maximum: the cap for the RTO and its backoff (at least 60 s per the RFC).
        """
        self.floor = floor
        self.maximum = maximum
        self.srtt: float | None = None
        self.rttvar: float | None = None
        self.rto = min(max(initial, floor), maximum)
        self.backoffs = 0

    def add_sample(self, rtt: float) -> None:
        """Feed one round-trip time measured on a datagram that was sent only once."""
        srtt, rttvar = self.srtt, self.rttvar
        if srtt is None or rttvar is None:
            srtt = rtt
            rttvar = rtt / 2
        else:
            # Conditionals instead of abs/min/max: this runs for most acknowledgements.
            error = srtt - rtt
            rttvar = 0.75 * rttvar + 0.25 * (error if error >= 0 else -error)
            srtt = 0.875 * srtt + 0.125 * rtt
        self.srtt, self.rttvar = srtt, rttvar
        rto = srtt + 4 * rttvar
        if rto < self.floor:
            rto = self.floor
        self.rto = rto if rto < self.maximum else self.maximum
        self.backoffs = 0

    def back_off(self) -> None:
        """A retransmission timer expired: double the RTO, up to the cap."""
        self.rto = min(self.rto * 2, self.maximum)
        self.backoffs += 1
