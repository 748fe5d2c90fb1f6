"""Bring a namespaced network up and take it down again: hosts, router, veth links, shapers, the wire.

How this works (one server, one client, one router between them)::

    [server ns]                  [router ns]                     [client ns]
    nl<id>-s 10.77.0.1 ==veth== nl<id>-rs   bridge / netem /   nl<id>-rc ==veth== nl<id>-c 10.77.0.2
             fd00:6e6c::1                  the netlab wire                              fd00:6e6c::2
                                            the netlab wire

Both hosts are on one /24 (and one IPv6 /64, its addresses added without
duplicate address detection so they work at once), so the router passes Ethernet frames through
unchanged: a kernel bridge when the link is not impaired, a bridge plus netem
on each router port when the kernel has ``sch_netem``, otherwise the netlab
wire process (:mod:`netlab.lab.wire`). Rate and queue limits are a TBF (or an
HTB class with a byte FIFO) on the router port a direction leaves through, so
the shaper sees the wire's output like any other frame.

Offloads (checksum, TSO/GSO, GRO) are turned off on every veth before it is
moved into its namespace: each frame is then one real packet of at most one
MTU with a finished checksum, which the wire needs (a frame copied through an
AF_PACKET socket loses "checksum to be done" marks) and which a capture on the
veth shows the way a real link would.

Everything is named ``netlab-<id>-<role>`` / ``nl<id>-<side>`` and
:meth:`Topology.down` removes it; if construction fails half way, what was
made is removed before the error is raised. :func:`clean` removes leftovers of
any run (after SIGKILL), recognising them by netlab's prefix only.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from netlab.errors import NetlabError, UsageError
from netlab.lab.namespace import (
    INTERFACE_PATTERN,
    NAMESPACE_PATTERN,
    create_namespace,
    interface_name,
    list_namespaces,
    namespace_inode,
    namespace_name,
    new_run_id,
    processes_in,
    remove_namespace,
    require_namespaces,
)
from netlab.lab.placement import Placement
from netlab.lab.spec import LinkSpec, NetworkSpec
from netlab.lab.state import claim, forget_dead_claims, owner, release

SERVER_ADDRESS = "10.77.0.1"
CLIENT_ADDRESS = "10.77.0.2"
PREFIX_LENGTH = 24
SERVER_ADDRESS6 = "fd00:6e6c::1"
CLIENT_ADDRESS6 = "fd00:6e6c::2"
PREFIX_LENGTH6 = 64
HOST_ADDRESSES = {"server": SERVER_ADDRESS, "client": CLIENT_ADDRESS}
HOST_ADDRESSES6 = {"server": SERVER_ADDRESS6, "client": CLIENT_ADDRESS6}
#: The hosts' veth addresses (locally administered), each entered in the other's neighbour table at build
#: time, so that the first connection across the link is one round trip like every other, not two (ARP or
#: neighbour discovery first). Every lab is its own Ethernet segment: labs side by side never meet.
HOST_MACS = {"server": "02:6e:6c:00:00:01", "client": "02:6e:6c:00:00:02"}
#: The neighbour state of a static entry (<linux/neighbour.h> NUD_PERMANENT).
NUD_PERMANENT = 0x80
IFA_F_NODAD = 0x02
HOSTS = ("server", "client", "router")
WIRE_READY_TIMEOUT = 10.0
WIRE_STOP_TIMEOUT = 3.0
_OFFLOAD_PREFIXES = ("tx-checksum", "tx-tcp", "tx-udp", "tx-gso", "generic-segmentation", "generic-receive",
                     "rx-gro", "tx-scatter-gather")

MECHANISM_NONE = "none (kernel bridge, link not impaired)"
MECHANISM_NETEM = "netem"
MECHANISM_WIRE = "wire"


@dataclass
class Topology:
    """A namespaced network that is up.

    Attributes:
        run_id: six hex digits in every name.
        spec: what was asked for.
        mechanism: ``netem``, ``wire`` or none (how delay and loss are applied).
        namespaces: role (server, client, router) -> namespace name.
        interfaces: side -> interface name.
        wire_pid: the wire process, when there is one.
        stats_path: where the wire writes its counters when it stops.
        netem_available: what the probe found.
    """

    run_id: str
    spec: NetworkSpec
    mechanism: str = ""
    namespaces: dict[str, str] = field(default_factory=dict)
    interfaces: dict[str, str] = field(default_factory=dict)
    wire_pid: int | None = None
    stats_path: str | None = None
    netem_available: bool | None = None
    offloads_on: bool = False
    _wire: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _counters: dict[str, Any] | None = field(default=None, repr=False)
    _owned_directory: str | None = field(default=None, repr=False)

    server_address: str = SERVER_ADDRESS
    client_address: str = CLIENT_ADDRESS
    server_address6: str = SERVER_ADDRESS6
    client_address6: str = CLIENT_ADDRESS6

    @classmethod
    def up(cls, spec: NetworkSpec, *, run_id: str | None = None, seed: int = 0, detach: bool = False,
           state_directory: str | None = None, offloads: bool = False) -> Topology:
        """Create the namespaces, links, shapers and (if needed) the wire.

        Args:
            spec: a namespaced network spec.
            run_id: the id in every name (fresh when None).
            seed: seeds the wire's random choices.
            detach: the wire outlives this process (``netlab lab up``); otherwise it
                dies with the thread that started it.
            state_directory: where the wire's counters go (a temp dir when None).
            offloads: leave the veths' offloads on (only to show what they do to a
                capture; the wire needs them off, so an impaired link refuses it).
        Returns:
            The topology, up.
        Raises:
            PrivilegeError: not root (no CAP_SYS_ADMIN and CAP_NET_ADMIN).
            UsageError: netem asked for but missing (exit 2, as for a missing capability).
            NetlabError: the kernel refused a step.
        """
        require_namespaces()
        topology = cls(run_id=run_id or new_run_id(), spec=spec)
        taken = [name for name in list_namespaces() if name.startswith(namespace_name(topology.run_id, ""))]
        if taken:  # another run's: refused before anything (its claim, its namespaces) is touched
            raise NetlabError(f"namespace {taken[0]} exists already: run id {topology.run_id} is taken "
                              "(`netlab lab clean` removes netlab's leftovers)")
        try:
            if not detach:
                claim(topology.run_id)
            if offloads and (spec.to_server.impaired or spec.to_client.impaired):
                raise NetlabError("offloads can stay on only over an unimpaired link: the wire needs them off")
            topology._build(seed, detach, state_directory, offloads)
        except BaseException:
            topology.down()
            raise
        return topology

    def _build(self, seed: int, detach: bool, state_directory: str | None, offloads: bool = False) -> None:
        from pyroute2 import IPRoute, NetNS
        from pyroute2.netlink.exceptions import NetlinkError

        run = self.run_id
        self.offloads_on = offloads
        self.interfaces = {side: interface_name(run, side) for side in ("s", "rs", "c", "rc", "br")}
        for role in HOSTS:  # recorded once made, so a failure takes down only what this run made
            create_namespace(namespace_name(run, role))
            self.namespaces[role] = namespace_name(run, role)
        mtu = self.spec.to_server.mtu
        try:
            with IPRoute() as root:
                for host_side, router_side, role in (("s", "rs", "server"), ("c", "rc", "client")):
                    host, router = self.interfaces[host_side], self.interfaces[router_side]
                    root.link("add", ifname=host, kind="veth", peer={"ifname": router})
                    if not offloads:
                        _offloads_off(host)
                        _offloads_off(router)
                    root.link("set", index=root.link_lookup(ifname=host)[0], net_ns_fd=self.namespaces[role])
                    root.link("set", index=root.link_lookup(ifname=router)[0], net_ns_fd=self.namespaces["router"])
            ipv6 = _ipv6_enabled()
            for role, side, peer in (("server", "s", "client"), ("client", "c", "server")):
                with NetNS(self.namespaces[role]) as host_ns:
                    index = host_ns.link_lookup(ifname=self.interfaces[side])[0]
                    host_ns.link("set", index=index, mtu=mtu, address=HOST_MACS[role])
                    host_ns.addr("add", index=index, address=HOST_ADDRESSES[role], prefixlen=PREFIX_LENGTH)
                    if ipv6:
                        host_ns.addr("add", index=index, address=HOST_ADDRESSES6[role], prefixlen=PREFIX_LENGTH6,
                                     flags=IFA_F_NODAD)
                    # the peer's link-layer address is known: no connect waits for ARP or neighbour discovery
                    for address in (HOST_ADDRESSES[peer], HOST_ADDRESSES6[peer]) if ipv6 else (HOST_ADDRESSES[peer],):
                        host_ns.neigh("add", dst=address, lladdr=HOST_MACS[peer], ifindex=index,
                                      state=NUD_PERMANENT)
                    host_ns.link("set", index=index, state="up")
                    host_ns.link("set", index=host_ns.link_lookup(ifname="lo")[0], state="up")
            with NetNS(self.namespaces["router"]) as router_ns:
                self.netem_available = _probe_netem(router_ns)
                self.mechanism = self._choose_mechanism()
                ports = {}
                for side in ("rs", "rc"):
                    index = router_ns.link_lookup(ifname=self.interfaces[side])[0]
                    router_ns.link("set", index=index, mtu=mtu, state="up")
                    ports[side] = index
                router_ns.link("set", index=router_ns.link_lookup(ifname="lo")[0], state="up")
                if self.mechanism != MECHANISM_WIRE:
                    router_ns.link("add", ifname=self.interfaces["br"], kind="bridge")
                    bridge = router_ns.link_lookup(ifname=self.interfaces["br"])[0]
                    for index in ports.values():
                        router_ns.link("set", index=index, master=bridge)
                    router_ns.link("set", index=bridge, state="up")
                # a direction is shaped where it leaves the router: to the server through rs, to the client through rc
                for side, link in (("rs", self.spec.to_server), ("rc", self.spec.to_client)):
                    _shape(router_ns, ports[side], link, netem=self.mechanism == MECHANISM_NETEM)
        except NetlinkError as exc:
            raise NetlabError(f"the kernel refused to build the lab network: {exc}") from None
        if self.mechanism == MECHANISM_WIRE:
            self._start_wire(seed, detach, state_directory)

    def _choose_mechanism(self) -> str:
        impaired = self.spec.to_server.impaired or self.spec.to_client.impaired
        if self.spec.impairment == "wire":
            return MECHANISM_WIRE
        if self.spec.impairment == "netem":
            if not self.netem_available:
                raise UsageError("impairment: netem was asked for, but this kernel has no sch_netem: "
                                  "use impairment: auto or wire (netlab's own wire applies the same impairments)")
            return MECHANISM_NETEM
        if not impaired:
            return MECHANISM_NONE
        return MECHANISM_NETEM if self.netem_available else MECHANISM_WIRE

    def _start_wire(self, seed: int, detach: bool, state_directory: str | None) -> None:
        directory = state_directory or tempfile.mkdtemp(prefix=f"netlab-{self.run_id}-")
        if state_directory is None:
            self._owned_directory = directory
        self.stats_path = os.path.join(directory, f"wire-{self.run_id}.json")
        config = {
            "namespace": self.namespaces["router"],
            "left": self.interfaces["rs"],
            "right": self.interfaces["rc"],
            "left_to_right": _impairment(self.spec.to_client, seed * 2 + 1),
            "right_to_left": _impairment(self.spec.to_server, seed * 2 + 2),
            "stats": self.stats_path,
            "parent": None if detach else os.getpid(),
        }
        log_path = os.path.join(directory, f"wire-{self.run_id}.log")
        with open(log_path, "wb") as log:
            self._wire = subprocess.Popen(
                [sys.executable, "-m", "netlab.lab.wire", json.dumps(config)],
                stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, start_new_session=detach,
            )
        self.wire_pid = self._wire.pid
        line = _read_line(self._wire, WIRE_READY_TIMEOUT)
        if line != "ready":
            with open(log_path, encoding="utf-8", errors="replace") as log_text:
                problem = log_text.read().strip().splitlines()
            raise NetlabError(f"the netlab wire did not start: {problem[-1] if problem else 'no ready line'} "
                              f"(log: {log_path})")

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Topology:
        """A topology that another process brought up (``netlab lab up``), from its state file."""
        from netlab.lab.spec import LOOPBACK

        return cls(run_id=state["run_id"], spec=LOOPBACK, mechanism=state.get("mechanism", ""),
                   namespaces=dict(state["namespaces"]), interfaces=dict(state.get("interfaces", {})),
                   wire_pid=state.get("wire_pid"), stats_path=state.get("stats_path"))

    def placement(self) -> Placement:
        """Who is where (namespaces, addresses, the link per direction), for experiments.

        On a kernel with IPv6 off the IPv6 addresses are loopback's (``::1``): tcp6 and udp6 then skip.
        """
        ipv6 = _ipv6_enabled()
        return Placement(server_namespace=self.namespaces["server"], client_namespace=self.namespaces["client"],
                         server_address=self.server_address, client_address=self.client_address,
                         server_address6=self.server_address6 if ipv6 else "::1",
                         client_address6=self.client_address6 if ipv6 else "::1",
                         link={"to_server": self.spec.to_server.as_dict(), "to_client": self.spec.to_client.as_dict()},
                         router_namespace=self.namespaces["router"],
                         shaper_interfaces={"to_server": self.interfaces["rs"], "to_client": self.interfaces["rc"]})

    def as_dict(self) -> dict[str, Any]:
        """What a result file records about the network (with the wire's counters once it stopped)."""
        record: dict[str, Any] = {"run_id": self.run_id, "mechanism": self.mechanism,
                                  "netem_available": self.netem_available, "namespaces": dict(self.namespaces),
                                  "offloads": "left on (as the kernel sets them)" if self.offloads_on else
                                  "off on every veth (checksum, TSO/GSO, GRO, scatter-gather)",
                                  **self.spec.as_dict()}
        counters = self.wire_counters()
        if counters is not None:
            record["wire"] = counters
        return record

    def wire_counters(self) -> dict[str, Any] | None:
        """The wire's counters (to_client, to_server), summed over every wire this topology ran, or None."""
        return self._counters

    def _collect_counters(self) -> None:
        """Add the stopped wire's counters (its stats file) to the totals and remove the file."""
        if not self.stats_path:
            return
        try:
            with open(self.stats_path, encoding="utf-8") as stream:
                stats = json.load(stream)
            os.unlink(self.stats_path)
        except (OSError, ValueError):
            return
        totals = self._counters or {"to_client": {}, "to_server": {}}
        for direction, key in (("to_client", "left_to_right"), ("to_server", "right_to_left")):
            for name, value in (stats.get(key) or {}).items():
                totals[direction][name] = totals[direction].get(name, 0) + value
        self._counters = totals

    def stop_wire(self) -> None:
        """Stop the wire (SIGTERM, then SIGKILL) so it writes its counters; harmless when none runs."""
        if self.wire_pid is None:
            return
        pid, self.wire_pid = self.wire_pid, None
        if self._wire is None:  # started by another netlab process: only if it is still in our router
            inode = namespace_inode(self.namespaces.get("router", ""))
            try:
                if inode is None or os.stat(f"/proc/{pid}/ns/net").st_ino != inode:
                    return
            except OSError:
                return
        stop_process(pid, self._wire)
        self._collect_counters()

    def reseed_wire(self, seed: int) -> None:
        """Restart the wire with a new seed (between runs, so each run's frames meet its own seeded choices)."""
        if self.mechanism != MECHANISM_WIRE or self.wire_pid is None or self.stats_path is None:
            return
        self.stop_wire()
        self._start_wire(seed, detach=False, state_directory=os.path.dirname(self.stats_path))

    def down(self) -> list[str]:
        """Remove everything this topology made; return the names removed. Safe to call twice."""
        self.stop_wire()
        removed = []
        for name in self.namespaces.values():
            if _remove_with_processes(name):
                removed.append(name)
        if self._owned_directory is not None:
            shutil.rmtree(self._owned_directory, ignore_errors=True)
            self._owned_directory = None
        release(self.run_id)
        return removed

    def state(self) -> dict[str, Any]:
        """What ``netlab lab down`` needs to find this topology again."""
        return {"run_id": self.run_id, "namespaces": self.namespaces, "interfaces": self.interfaces,
                "wire_pid": self.wire_pid, "stats_path": self.stats_path, "mechanism": self.mechanism,
                "network": self.spec.as_dict(), "server_address": self.server_address,
                "client_address": self.client_address, "server_address6": self.server_address6,
                "client_address6": self.client_address6}


def stop_process(pid: int, popen: subprocess.Popen[bytes] | None = None) -> None:
    """SIGTERM ``pid``, wait up to WIRE_STOP_TIMEOUT, then SIGKILL; reap it when it is our child."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + WIRE_STOP_TIMEOUT
    while time.monotonic() < deadline:
        if popen is not None:
            if popen.poll() is not None:
                return
        elif not _alive(pid):
            return
        time.sleep(0.02)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    if popen is not None:
        popen.wait(WIRE_STOP_TIMEOUT)


def clean(*, include_labs: bool = False) -> tuple[list[str], list[str]]:
    """Remove netlab namespaces and interfaces left behind by runs; return (removed, kept with why).

    Only names that match netlab's own patterns are touched (``netlab-<6 hex>-<role>``
    namespaces, ``nl<6 hex>-<side>`` interfaces); processes still inside such a
    namespace (a wire whose run was killed) are stopped first. The namespaces
    of a run whose netlab process is still alive are kept, and so are labs
    brought up with ``netlab lab up`` unless ``include_labs``.
    """
    from netlab.lab.state import load_states

    require_namespaces()
    removed, kept = [], []
    labs = {state["run_id"] for state in load_states()}
    for name in list_namespaces():
        match = NAMESPACE_PATTERN.match(name)
        if not match:
            continue
        run_id = match.group(1)
        running = owner(run_id)
        if running is not None and running != os.getpid():
            kept.append(f"namespace {name} (its run is still going: pid {running})")
        elif run_id in labs and not include_labs:
            kept.append(f"namespace {name} (lab {run_id} is up: netlab lab down, or lab clean --all)")
        elif _remove_with_processes(name):
            removed.append(f"namespace {name}")
            release(run_id)
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as root:
        for link in root.get_links():
            name = link.get_attr("IFLA_IFNAME")
            if name and INTERFACE_PATTERN.match(name):
                try:
                    root.link("del", index=link["index"])
                    removed.append(f"interface {name}")
                except (OSError, NetlinkError):
                    continue  # its veth peer's removal took it along (ENODEV)
    remaining = {match.group(1) for name in list_namespaces() if (match := NAMESPACE_PATTERN.match(name))}
    forget_dead_claims(remaining)
    return removed, kept


def leftovers() -> list[str]:
    """netlab's namespaces and root-namespace interfaces that exist now (for tests and ``lab status``)."""
    found = [f"namespace {name}" for name in list_namespaces() if NAMESPACE_PATTERN.match(name)]
    try:
        names = os.listdir("/sys/class/net")
    except OSError:
        names = []
    found += [f"interface {name}" for name in names if INTERFACE_PATTERN.match(name)]
    return found


def _remove_with_processes(name: str) -> bool:
    inode = namespace_inode(name)
    if inode is not None:
        for pid in processes_in(inode):
            if pid != os.getpid():
                stop_process(pid)
    return remove_namespace(name)


def _ipv6_enabled() -> bool:
    """False when this kernel has IPv6 off (no /proc/sys/net/ipv6): the lab is then IPv4 only."""
    return os.path.exists("/proc/sys/net/ipv6")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stream:
            return stream.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _read_line(process: subprocess.Popen[bytes], timeout: float) -> str:
    import selectors

    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            return ""
    return process.stdout.readline().decode(errors="replace").strip()


def _offloads_off(interface: str) -> None:
    """Turn off checksum, segmentation and receive offloads (``ethtool -K IF tx off gso off gro off ...``)."""
    from pyroute2 import Ethtool

    ethtool = Ethtool()
    try:
        features = ethtool.get_features(interface)
        for name, feature in features.features.items():
            if name.startswith(_OFFLOAD_PREFIXES) and feature.available:
                feature.enable = False
        ethtool.set_features(interface, features)
    finally:
        ethtool.close()


def _probe_netem(router_ns: Any) -> bool:
    """True when the kernel accepts a netem qdisc (tried on the router's loopback and removed)."""
    from pyroute2.netlink.exceptions import NetlinkError

    index = router_ns.link_lookup(ifname="lo")[0]
    try:
        router_ns.tc("add", "netem", index=index, handle="1:", delay=1000)
    except NetlinkError:
        return False
    router_ns.tc("del", index=index, handle="1:", root=True)
    return True


def _shape(router_ns: Any, index: int, link: LinkSpec, *, netem: bool) -> None:
    """Put the direction's netem (if used) and shaper on the router port it leaves through."""
    parent = "root"
    if netem and link.impaired:
        router_ns.tc("add", "netem", index=index, handle="1:", **netem_options(link))
        parent = "1:1"
    if not link.rate:
        return
    where: dict[str, Any] = {"root": True} if parent == "root" else {"parent": parent}
    if link.qdisc == "tbf":
        router_ns.tc("add", "tbf", index=index, handle="2:", rate=link.rate // 8, burst=link.burst_bytes(),
                     limit=link.queue_bytes(), **where)
    else:
        router_ns.tc("add", "htb", index=index, handle="2:", default=0x10, **where)
        router_ns.tc("add-class", "htb", index=index, handle="2:10", parent="2:0", rate=link.rate // 8,
                     ceil=link.rate // 8)
        router_ns.tc("add", "bfifo", index=index, handle="10:", parent="2:10", limit=link.queue_bytes())


def netem_options(link: LinkSpec) -> dict[str, Any]:
    """pyroute2's netem arguments for one direction (``tc qdisc ... netem delay D J loss L% ...``).

    Times in microseconds, shares in percent. pyroute2 names reorder and corrupt
    ``prob_reorder`` and ``prob_corrupt`` and silently ignores any other
    spelling. With no distribution table netem varies the delay uniformly within
    ``± jitter``, as the wire does; a reordered frame skips the delay, as on the wire.
    """
    options: dict[str, Any] = {"delay": round(link.delay * 1e6), "jitter": round(link.jitter * 1e6)}
    for name, key in (("loss", "loss"), ("duplicate", "duplicate"), ("reorder", "prob_reorder"),
                      ("corrupt", "prob_corrupt")):
        if getattr(link, name):
            options[key] = getattr(link, name) * 100
    return options


def _impairment(link: LinkSpec, seed: int) -> dict[str, Any]:
    return {"link": link.as_dict(), "seed": seed}
