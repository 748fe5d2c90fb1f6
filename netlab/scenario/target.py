"""A remote target: a ``netlab serve`` on another host that ``netlab run --target URL`` measures against.

How this works: :func:`reach_target` checks, before any run, that the target
answers: it connects (at most :data:`TARGET_CONNECT_TIMEOUT` seconds),
authenticates with the token when one is given and runs one ``echo``; a
target that cannot be reached, asks for a token or refuses it stops the
scenario there with one line (a :class:`~netlab.errors.NetlabError`, exit 255
as with ``netlab exec``). ``Experiment.refusal_against`` decides, per cell,
whether it can run against the target and otherwise why not: the experiment must measure
from the client side (``Experiment.local_only`` is empty), the cell's
transport must be the target's, its framing the one a target speaks
(``length``, the one that carries a token), and a cell that differs from an
earlier one only in the settings of a server netlab would start itself
(``Experiment.server_settings``: model, placement) would measure the same
server again. Refused cells are reported as skipped, with the reason.

A target run sends traffic to the target's address only; the kernel facts in
the result (environment, sysctls, TCP_INFO) are this host's, the client's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from netlab.errors import AuthError, ConnectError, NetlabError, ReadTimeout, TransportError
from netlab.transport.address import parse_address

#: The one framing a target is spoken to in: the one that carries a token.
TARGET_FRAMING = "length"
#: How long reaching the target may take before the run gives up (connect, then the first reply).
TARGET_CONNECT_TIMEOUT = 5.0
TARGET_REPLY_TIMEOUT = 10.0
#: How a row's note begins when the row could not be measured against a target (the summary line counts them).
NOT_ON_TARGET = "not measured against the target"
#: What a result says about whose kernel its facts come from.
KERNEL_FACTS = ("this host's (the client's): the environment, the sysctls and the TCP_INFO figures; "
                "the target's kernel was not read")


@dataclass(frozen=True)
class Target:
    """A ``netlab serve`` elsewhere, as the experiments reach it.

    Attributes:
        url: its address (``tcp4://host:port``, ...).
        token: the shared secret for the auth step, or None (never written anywhere).
    """

    url: str
    token: bytes | None = field(default=None, repr=False)

    @property
    def scheme(self) -> str:
        """The target's transport (``tcp4``, ``udp``, ...)."""
        return parse_address(self.url).scheme

    def as_dict(self) -> dict[str, Any]:
        """What the result file records: the URL and whose kernel facts it holds, never the token."""
        return {"kind": "target", "url": self.url, "framing": TARGET_FRAMING,
                "token": "given" if self.token is not None else "none", "kernel_facts": KERNEL_FACTS}


def not_on_target(reason: str) -> str:
    """The note of a row that could not be measured against a target, e.g. ``not measured against the target: ...``."""
    return f"{NOT_ON_TARGET}: {reason}"


def reach_target(target: Target) -> None:
    """Connect to the target, authenticate, run one ``echo``; raise one clear line when that fails.

    Raises:
        NetlabError: it cannot be reached in time, wants a token, refuses the token, or is not a netlab server.
    """
    from netlab.service.client import Client

    try:
        with Client(target.url, framing=TARGET_FRAMING, connect_timeout=TARGET_CONNECT_TIMEOUT,
                    read_timeout=TARGET_REPLY_TIMEOUT, token=target.token) as client:
            reply = client.run(("echo", "netlab-target-check"))
    except AuthError as exc:
        if target.token is None:
            raise AuthError(f"the target {target.url} wants a token: pass --token-file PATH, the file its netlab "
                            "serve uses (or set NETLAB_TOKEN)") from None
        raise AuthError(f"the target {target.url} refused the token ({exc}): pass the --token-file its netlab "
                        "serve uses") from None
    except ConnectError as exc:
        raise type(exc)(f"cannot reach the target {target.url}: {exc}") from None
    except ReadTimeout:
        raise ReadTimeout(f"the target {target.url} sent nothing within {TARGET_REPLY_TIMEOUT:g} s: is it a "
                          f"netlab serve speaking the {TARGET_FRAMING} framing?") from None
    except TransportError as exc:
        raise type(exc)(f"the target {target.url} could not be reached: {exc}") from None
    except NetlabError as exc:
        raise type(exc)(f"the target {target.url} did not answer as a netlab server should: {exc}") from None
    if reply.stdout != b"netlab-target-check\n":
        raise NetlabError(f"the target {target.url} answered echo with {reply.stdout[:60]!r}: not a netlab server?")
