"""Namespaced networks for real: links that delay and drop, teardown on every path, the lab CLI.

These need root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and a kernel with network namespaces; they
skip with that reason otherwise. Every namespace here is netlab's own and is
removed before the test ends.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from netlab.errors import NetlabError
from netlab.lab.namespace import entered, list_namespaces, new_run_id
from netlab.lab.spec import parse_network
from netlab.lab.topology import (
    HOST_ADDRESSES,
    HOST_MACS,
    MECHANISM_NETEM,
    MECHANISM_NONE,
    MECHANISM_WIRE,
    NUD_PERMANENT,
    Topology,
    leftovers,
)
from netlab.testing import ChildProcess, start_child
from netlab.testing.lab import needs_namespaces
from netlab.testing.servers import run_netlab_text

pytestmark = needs_namespaces
REPOSITORY = Path(__file__).resolve().parents[2]
LINK_SCENARIO = """\
experiment: link
seed: 3
timeout: 40
network:
  kind: namespaces
  impairment: wire
  link: {mtu: 1500, rate: 20mbit, delay: 15ms, loss: 2%}
parameters: {round_trips: 10, bulk_bytes: 1048576, datagrams: 500}
"""


def netlab(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``netlab ARGV...`` to completion, through the one launcher."""
    return run_netlab_text(*argv, timeout=timeout)


def ours(run_id: str) -> list[str]:
    return [item for item in leftovers() if run_id in item]


def tcp_connect_time(topology: Topology) -> float:
    """Seconds for a TCP handshake from the client namespace to a listener in the server namespace."""
    with entered(topology.namespaces["server"]):
        listener = socket.create_server((topology.server_address, 0))
    with listener:
        with entered(topology.namespaces["client"]):
            client = socket.socket()
        with client:
            client.settimeout(10)
            started = time.monotonic()
            client.connect(listener.getsockname())
            return time.monotonic() - started


def test_a_delayed_link_delays_a_real_tcp_handshake_and_teardown_leaves_nothing() -> None:
    spec = parse_network({"kind": "namespaces", "impairment": "wire", "link": {"delay": "25ms"}}, "t")
    topology = Topology.up(spec, seed=1)
    try:
        assert topology.mechanism == MECHANISM_WIRE
        assert all(name in list_namespaces() for name in topology.namespaces.values())
        assert tcp_connect_time(topology) >= 0.050  # SYN out and SYN-ACK back: 25 ms each way at least
    finally:
        removed = topology.down()
    assert sorted(removed) == sorted(topology.namespaces.values())
    assert ours(topology.run_id) == []
    counters = topology.wire_counters()
    assert counters is not None and counters["to_server"]["received"] >= 2  # SYN and ACK went through the wire


def test_an_unimpaired_link_is_a_kernel_bridge_and_connects() -> None:
    topology = Topology.up(parse_network({"kind": "namespaces", "link": {"mtu": 1400}}, "t"))
    try:
        assert topology.mechanism == MECHANISM_NONE
        tcp_connect_time(topology)  # the path works: a handshake completes (bounded by the socket's 10 s timeout)
        from pyroute2 import IPRoute

        with entered(topology.namespaces["server"]), IPRoute() as server_ns:
            (link,) = server_ns.get_links(ifname=topology.interfaces["s"])
        assert link.get_attr("IFLA_MTU") == 1400
    finally:
        topology.down()
    assert ours(topology.run_id) == []


def test_each_host_knows_the_others_link_layer_address_so_no_connect_waits_for_arp() -> None:
    """A permanent neighbour entry per peer address, matching the peer's veth: the first connect is one round trip."""
    from pyroute2 import IPRoute

    topology = Topology.up(parse_network({"kind": "namespaces", "impairment": "wire", "link": {"delay": "5ms"}}, "t"))
    try:
        seen = {}
        for role, side in (("server", "s"), ("client", "c")):
            with entered(topology.namespaces[role]), IPRoute() as host_ns:
                (link,) = host_ns.get_links(ifname=topology.interfaces[side])
                entries = host_ns.get_neighbours(ifindex=link["index"])
                seen[role] = (link.get_attr("IFLA_ADDRESS"),
                              {(entry.get_attr("NDA_DST"), entry.get_attr("NDA_LLADDR"), entry["state"])
                               for entry in entries})
        for role, peer in (("server", "client"), ("client", "server")):
            peer_mac = seen[peer][0]
            assert peer_mac == HOST_MACS[peer]
            assert (HOST_ADDRESSES[peer], peer_mac, NUD_PERMANENT) in seen[role][1]
        tcp_connect_time(topology)  # the static entries carry a real handshake across the link
    finally:
        topology.down()
    assert ours(topology.run_id) == []


def test_impairment_netem_is_refused_clearly_where_the_kernel_lacks_it() -> None:
    spec = parse_network({"kind": "namespaces", "impairment": "netem", "link": {"delay": "5ms"}}, "t")
    run_id = new_run_id()
    try:
        topology = Topology.up(spec, run_id=run_id)
    except NetlabError as exc:  # this kernel has no sch_netem: a clear error, after the namespaces were made
        assert str(exc).startswith("impairment: netem was asked for, but this kernel has no sch_netem")
        assert exc.exit_code == 2
        assert ours(run_id) == []  # what was built before the refusal came down again
        return
    try:
        assert topology.mechanism == MECHANISM_NETEM and topology.netem_available
    finally:
        topology.down()
    assert ours(run_id) == []


def test_netlab_run_over_namespaces_measures_what_the_link_does(tmp_path: Path) -> None:
    scenario = tmp_path / "link.yaml"
    scenario.write_text(LINK_SCENARIO)
    completed = netlab("run", str(scenario), "--format", "json", "--out", str(tmp_path / "results"), timeout=90)
    assert completed.returncode == 0, completed.stderr
    import json

    document = json.loads(completed.stdout)
    assert document["network"]["mechanism"] == "wire"
    assert document["network"]["wire"]["to_server"]["received"] > 0
    rows = {row["measure"]: row for row in document["runs"][0]["rows"]}
    assert rows["round trip p50"]["configured"] == 30.0
    assert rows["round trip p50"]["measured"] >= 30.0  # never faster than the configured delay
    assert rows["kernel srtt"]["measured"] >= 30.0
    assert rows["bulk goodput"]["measured"] <= 20 * 1.05  # the shaper holds it to its rate
    assert 1300 < rows["segment size"]["measured"] <= 1448  # MTU 1500: segments of at most one MSS
    assert rows["udp loss"]["measured"] > 0  # 2 % of 500 datagrams: the seeded wire drops some
    assert rows["round trip p50"]["verdict"].startswith(("agrees, ", "disagrees, "))  # judged against 30 ms
    assert rows["round trip p99"]["verdict"] == "" and rows["retransmissions"]["verdict"] == ""
    assert rows["ping rtt"]["configured"] == 30.0
    assert rows["ping rtt"]["measured"] is None or rows["ping rtt"]["measured"] >= 30.0  # None: no ping here
    assert ours(document["network"]["run_id"]) == []


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_signal_during_a_run_takes_the_namespaces_down(tmp_path: Path, signal_number: int) -> None:
    scenario = tmp_path / "slow.yaml"
    scenario.write_text(LINK_SCENARIO.replace("round_trips: 10", "round_trips: 100000"))
    with start_child(("run", str(scenario), "--out", str(tmp_path)), stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE) as child:
        run_id = wait_for_run_namespaces(child)
        child.send_signal(signal_number)
        _, stderr = child.communicate(timeout=30)
    assert child.process.returncode == 130, stderr
    assert b"interrupted" in stderr
    assert ours(run_id) == []
    assert not [pid for pid in os.listdir("/proc") if pid.isdigit() and wire_of(pid, run_id)]  # no wire outlives it


def wire_of(pid: str, run_id: str) -> bool:
    """True when process ``pid`` is a netlab wire of run ``run_id``."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"netlab.lab.wire" in command and f"netlab-{run_id}-router".encode() in command


def test_a_run_that_breaks_takes_its_namespaces_down_and_exits_1(tmp_path: Path) -> None:
    scenario = tmp_path / "slow.yaml"  # past its 2 s timeout: the experiment broke, the run failed
    scenario.write_text(LINK_SCENARIO.replace("round_trips: 10", "round_trips: 100000").replace("timeout: 40",
                                                                                                 "timeout: 2"))
    completed = netlab("run", str(scenario), "--format", "json", "--out", str(tmp_path / "results"), timeout=120)
    assert completed.returncode == 1, completed.stderr
    import json

    document = json.loads(completed.stdout)
    assert [run["status"] for run in document["runs"]] == ["failed"]
    assert ours(document["network"]["run_id"]) == []


def test_every_name_carries_its_runs_own_id_and_a_taken_id_is_refused() -> None:
    from netlab.lab.namespace import INTERFACE_PATTERN, NAMESPACE_PATTERN

    spec = parse_network({"kind": "namespaces"}, "t")
    first, second = Topology.up(spec), Topology.up(spec)
    try:
        assert first.run_id != second.run_id
        for topology in (first, second):
            for name in topology.namespaces.values():
                match = NAMESPACE_PATTERN.match(name)
                assert match is not None and match.group(1) == topology.run_id
            for name in topology.interfaces.values():
                match = INTERFACE_PATTERN.match(name)
                assert match is not None and match.group(1) == topology.run_id and len(name) <= 15
        assert not set(first.namespaces.values()) & set(second.namespaces.values())
        taken = f"^namespace netlab-{first.run_id}-[a-z]+ exists already: run id {first.run_id} is taken"
        with pytest.raises(NetlabError, match=taken):
            Topology.up(spec, run_id=first.run_id)
        assert all(name in list_namespaces() for name in first.namespaces.values())  # the refusal took nothing
        from netlab.lab.state import owner

        assert owner(first.run_id) == os.getpid()  # nor the first run's claim, which keeps lab clean off it
    finally:
        first.down()
        second.down()
    assert ours(first.run_id) == [] and ours(second.run_id) == []


def test_after_sigkill_lab_clean_removes_the_leftovers_and_nothing_else(tmp_path: Path) -> None:
    scenario = tmp_path / "slow.yaml"
    scenario.write_text(LINK_SCENARIO.replace("round_trips: 10", "round_trips: 100000"))
    bystander = f"other-{os.getpid()}"  # not netlab's: clean must leave it alone
    subprocess.run(["ip", "netns", "add", bystander], check=True)
    try:
        with start_child(("run", str(scenario), "--out", str(tmp_path))) as child:
            run_id = wait_for_run_namespaces(child)
            going = netlab("lab", "status").stdout
            assert f"run {run_id} going: namespace netlab-{run_id}-router (pid {child.pid})" in going
            assert f"leftover namespace netlab-{run_id}" not in going
            child.end(kill=True)
            assert ours(run_id)  # SIGKILL leaves them behind
        assert f"leftover namespace netlab-{run_id}-router (netlab lab clean removes it)" in netlab(
            "lab", "status").stdout
        cleaned = netlab("lab", "clean")
        assert cleaned.returncode == 0, cleaned.stderr
        assert f"removed namespace netlab-{run_id}-router" in cleaned.stdout
        assert ours(run_id) == []
        assert bystander in list_namespaces()
        assert not [line for line in Path("/proc/self/mounts").read_text().splitlines() if run_id in line]
    finally:
        subprocess.run(["ip", "netns", "del", bystander], check=False)


def wait_for_run_namespaces(child: ChildProcess) -> str:
    """The run id of the namespaces ``child`` made, once all three exist (bounded)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and child.process.poll() is None:
        from netlab.lab.state import owner

        for name in list_namespaces():
            if name.startswith("netlab-") and name.endswith("-router"):
                run_id = name.split("-")[1]
                if owner(run_id) == child.pid:
                    time.sleep(0.5)  # let the first run start
                    return run_id
        time.sleep(0.05)
    raise AssertionError("the run never brought its namespaces up")


def test_lab_up_exec_down_through_the_cli(tmp_path: Path) -> None:
    scenario = tmp_path / "lab.yaml"
    scenario.write_text(LINK_SCENARIO)
    up = netlab("lab", "up", str(scenario))
    assert up.returncode == 0, up.stderr
    run_id = up.stdout.split()[1]
    try:
        assert "impairments by: wire" in up.stdout
        shown = netlab("lab", "exec", "--lab", run_id, "server", "--", "cat", "/proc/thread-self/net/dev")
        assert shown.returncode == 0 and f"nl{run_id}-s" in shown.stdout and f"nl{run_id}-c" not in shown.stdout
        failed = netlab("lab", "exec", "--lab", run_id, "client", "--", sys.executable, "-c", "raise SystemExit(7)")
        assert failed.returncode == 7
        missing = netlab("lab", "exec", "--lab", run_id, "client", "--", "no-such-command-here")
        assert missing.returncode == 127 and "command not found" in missing.stderr
        bad_host = netlab("lab", "exec", "--lab", run_id, "switch", "--", "true")
        assert bad_host.returncode == 2 and "no host 'switch'" in bad_host.stderr
        kept = netlab("lab", "clean")
        assert kept.returncode == 0 and f"kept namespace netlab-{run_id}-server (lab {run_id} is up" in kept.stdout
        status = netlab("lab", "status")
        assert f"lab {run_id}:" in status.stdout
    finally:
        down = netlab("lab", "down", "--lab", run_id)
    assert down.returncode == 0, down.stderr
    assert f"lab {run_id} down" in down.stdout and "wire to_server: received" in down.stdout
    assert ours(run_id) == []
    again = netlab("lab", "down", "--lab", run_id)
    assert again.returncode == 2 and again.stderr.strip() == (
        f"netlab: no lab {run_id} is up: `netlab lab status` lists the labs that are")


def test_lab_up_of_a_loopback_scenario_says_there_is_nothing_to_bring_up() -> None:
    path = REPOSITORY / "scenarios" / "timeouts.yaml"
    completed = netlab("lab", "up", str(path))
    assert completed.returncode == 2
    assert completed.stderr.strip() == (f"netlab: {path}: network: is loopback: nothing to bring up "
                                        "(set network: namespaces)")


def run_as_nobody(argv: tuple[str, ...]) -> tuple[int, str]:
    """Fork, become uid 65534 (no capabilities), run the netlab CLI's main(argv); return (exit code, stderr)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 99
        try:
            os.close(read_end)
            sys.stderr = open(write_end, "w", encoding="utf-8")  # pytest's capture replaced sys.stderr
            sys.stdout = open(os.devnull, "w", encoding="utf-8")
            os.setgid(65534)
            os.setuid(65534)
            from netlab.cli.main import main

            code = main(list(argv))
        except BaseException as exc:
            print(f"child: {type(exc).__name__}: {exc}", file=sys.stderr)
        finally:
            sys.stderr.flush()
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, encoding="utf-8", errors="replace") as stream:
        stderr = stream.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run netlab as another user")
def test_without_privilege_every_lab_command_says_so_in_one_line() -> None:
    import encodings.ascii  # noqa: F401

    import netlab.cli.lab
    import netlab.cli.run
    import netlab.scenario.experiments.link  # noqa: F401  (imported before the fork: nobody cannot read site-packages)

    with tempfile.TemporaryDirectory() as directory:
        os.chmod(directory, 0o777)
        scenario = Path(directory, "lab.yaml")
        scenario.write_text(LINK_SCENARIO)
        os.chmod(scenario, 0o644)
        for argv in (("lab", "up", str(scenario)), ("lab", "clean"), ("lab", "down"),
                     ("lab", "exec", "server", "--", "true"), ("run", str(scenario), "--out", directory)):
            check_refused(argv)


def check_refused(argv: tuple[str, ...]) -> None:
    code, stderr = run_as_nobody(argv)
    assert code == 2, (argv, stderr)
    assert stderr.strip() == ("netlab: network namespaces need root (CAP_SYS_ADMIN and CAP_NET_ADMIN): run as root "
                              "(e.g. with sudo), or use network: loopback"), argv


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv (util-linux)")
def test_root_without_the_capabilities_is_told_in_one_line_through_the_real_command(tmp_path: Path) -> None:
    """Root in a container started without CAP_SYS_ADMIN and CAP_NET_ADMIN, stood in for by ``setpriv``
    dropping them from the bounding set before ``python -m netlab`` starts: every lab command and a namespaced
    run refuse in one line, exit 2, and build nothing."""
    from netlab.service.launch import child_environment, netlab_argv

    scenario = tmp_path / "lab.yaml"
    scenario.write_text(LINK_SCENARIO)
    before = leftovers()
    for argv in (("lab", "up", str(scenario)), ("lab", "clean"), ("lab", "down"),
                 ("lab", "exec", "server", "--", "true"), ("run", str(scenario), "--out", str(tmp_path / "out"))):
        completed = subprocess.run(["setpriv", "--bounding-set=-sys_admin,-net_admin", *netlab_argv(*argv)],
                                   capture_output=True, text=True, timeout=60, cwd=tmp_path,
                                   env=child_environment(config_home=str(tmp_path)), check=False)
        assert completed.returncode == 2, (argv, completed.stderr)
        assert completed.stderr.splitlines() == [
            "netlab: network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN, which this root process lacks (a "
            "container started without them?): grant them (e.g. docker run --cap-add SYS_ADMIN --cap-add "
            "NET_ADMIN), or use network: loopback"], argv
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    assert [item for item in leftovers() if item not in before] == []



def test_capture_inside_a_host_sees_both_directions_on_its_veth() -> None:
    import json

    topology = Topology.up(parse_network({"kind": "namespaces", "link": {"mtu": 1500}}, "t"))
    try:
        with entered(topology.namespaces["server"]):
            listener = socket.create_server((topology.server_address, 0))
        port = listener.getsockname()[1]
        with start_child(
            ("capture", "--netns", topology.namespaces["server"], "--interface", topology.interfaces["s"],
             "--port", str(port), "--count", "3", "--duration", "20", "--format", "json"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        ) as capture:
            started = capture.read_line(capture.process.stderr, timeout=30)
            assert started is not None and "capturing on" in started  # the packet socket is open
            with listener, entered(topology.namespaces["client"]):
                client = socket.create_connection((topology.server_address, port), timeout=10)
            client.close()
            stdout, _ = capture.communicate(timeout=30)
        assert capture.process.returncode == 0
        sources = {packet["source"].rsplit(":", 1)[0] for packet in json.loads(stdout)["packets"]}
        assert sources == {topology.server_address, topology.client_address}  # SYN one way, SYN-ACK the other
    finally:
        topology.down()


def test_timeouts_over_a_delayed_link_pay_the_round_trip(tmp_path: Path) -> None:
    import json

    scenario = tmp_path / "timeouts.yaml"
    scenario.write_text("experiment: timeouts\ntimeout: 30\n"
                        "network: {kind: namespaces, link: {delay: 30ms}}\nmatrix: {transport: [tcp4, udp]}\n")
    completed = netlab("run", str(scenario), "--format", "json", "--out", str(tmp_path / "results"), timeout=90)
    assert completed.returncode == 0, completed.stderr
    document = json.loads(completed.stdout)
    rows = {(row["transport"], row["case"]): row for run in document["runs"] for row in run["rows"]}
    refused = rows[("tcp4", "nothing listening")]
    assert refused["outcome"] == "ConnectionRefused (ECONNREFUSED)" and "10.77.0.1" in refused["note"]
    assert refused["after_ms"] >= 60  # SYN there, RST back: one 60 ms round trip at least
    assert rows[("udp", "nothing listening")]["after_ms"] >= 60  # the ICMP unreachable comes back over the link too
    assert rows[("tcp4", "slow command")]["outcome"].startswith("ReadTimeout")
    assert document["network"]["mechanism"] == "wire" or document["network"]["netem_available"]


def test_the_wire_restarts_with_each_run_seed_and_its_counters_add_up() -> None:
    spec = parse_network({"kind": "namespaces", "impairment": "wire", "link": {"delay": "5ms"}}, "t")
    topology = Topology.up(spec, seed=1)
    try:
        first = topology.wire_pid
        tcp_connect_time(topology)
        topology.reseed_wire(2)
        assert topology.wire_pid not in (None, first)
        tcp_connect_time(topology)  # the restarted wire forwards too
    finally:
        topology.down()
    counters = topology.wire_counters()
    assert counters is not None and counters["to_server"]["received"] >= 4  # two handshakes: SYN and ACK each


def test_the_mtu_walkthrough_shows_mss_sized_segments_on_the_veth_and_huge_ones_on_loopback() -> None:
    from netlab.inspect.walkthroughs import run_walkthrough

    walkthrough = run_walkthrough("mtu-and-segmentation", None)
    loopback, _, offloads_off = walkthrough.sections

    def server_data(section: object) -> list[int]:
        rows = section.packets  # type: ignore[attr-defined]
        return [row.length for row in rows if row.source == rows[0].destination and row.length]

    assert "MSS=1460" in offloads_off.packets[0].content
    assert max(server_data(offloads_off)) <= 1448 and sum(server_data(offloads_off)) > 65_536
    assert max(server_data(loopback)) > 1448


def test_clean_forgets_the_claim_of_a_run_whose_process_died() -> None:
    from netlab.lab.state import CLAIM_DIRECTORY, claim

    run_id = new_run_id()
    claim(run_id)
    path = Path(CLAIM_DIRECTORY, run_id)
    path.write_text("999999999 0\n")  # a pid that cannot be alive
    cleaned = netlab("lab", "clean")
    assert cleaned.returncode == 0, cleaned.stderr
    assert not path.exists()


def run_json(tmp_path: Path, scenario: str, *network: str, timeout: float = 120) -> dict:
    import json

    path = tmp_path / "scenario.yaml"
    path.write_text(scenario)
    completed = netlab("run", str(path), "--format", "json", "--out", str(tmp_path / "results"), *network,
                       timeout=timeout)
    assert completed.returncode == 0, completed.stderr
    document: dict = json.loads(completed.stdout)
    assert ours(document["network"]["run_id"]) == []
    return document


def test_backlog_over_namespaces_reads_the_queue_inside_the_servers_namespace(tmp_path: Path) -> None:
    document = run_json(tmp_path, "experiment: backlog\ntimeout: 30\nmatrix: {transport: [tcp4, tcp6, unix], backlog: [1]}\n"
                                  "include: [{transport: udp, backlog: null}]\n",
                        "--network", "{link: {delay: 25ms}}")
    assert document["scenario"]["name"] == "scenario-netns"
    rows = {row["transport"]: row for run in document["runs"] for row in run["rows"]}
    tcp = rows["tcp4"]
    assert (tcp["connected"], tcp["served"], tcp["timed_out"]) == (2, 2, 2)  # backlog 1 admits 2; 2 SYNs dropped
    assert (tcp["kernel_queued"], tcp["kernel_backlog"]) == (2, 1)  # ss ran inside the server's namespace
    assert tcp["overflows"] == 2  # the server namespace's own ListenOverflows: nothing else adds to it
    assert tcp["wait_p50_ms"] >= 50  # a connect is the link's round trip: 25 ms each way
    assert "across the link" in tcp["note"]
    tcp6 = rows["tcp6"]  # over the lab's IPv6 addresses, across the same link
    assert (tcp6["connected"], tcp6["kernel_queued"], tcp6["timed_out"]) == (2, 2, 2)
    assert tcp6["wait_p50_ms"] >= 50
    assert (rows["unix"]["connected"], rows["unix"]["refused"]) == (2, 2)
    udp = rows["udp"]
    assert udp["connected"] + udp["dropped"] == 64 and udp["dropped"] > 0
    assert udp["overflows"] == udp["dropped"]  # an unimpaired link loses nothing: the full buffer dropped them all


def test_throughput_over_namespaces_puts_both_servers_across_the_link(tmp_path: Path) -> None:
    document = run_json(tmp_path, "experiment: throughput\ntimeout: 60\nparameters: {round_trips: 20, duration: 2, "
                                  "bulk_bytes: 200000, verify: true}\n"
                                  "matrix: {transport: [tcp4], framing: [length, raw], placement: [process, thread]}\n",
                        "--network", "{link: {delay: 10ms}}")
    outcomes = {(run["parameters"]["framing"], run["parameters"]["placement"]): run for run in document["runs"]}
    # raw cannot carry a token: its netlab serve child serves the isolated lab namespace without one
    for key in (("length", "process"), ("length", "thread"), ("raw", "process"), ("raw", "thread")):
        assert outcomes[key]["status"] == "ok", outcomes[key]["message"]
        row = outcomes[key]["rows"][0]
        assert row["p50_us"] >= 20_000 and row["baseline_p50_us"] >= 20_000  # both cross the 20 ms round trip
    for key in (("length", "process"), ("length", "thread")):
        assert outcomes[key]["rows"][0]["verified"] is True


def test_clean_removes_a_veth_pair_left_in_the_root_namespace_by_a_kill_mid_build() -> None:
    # SIGKILL between creating a veth pair and moving its ends leaves both in the root namespace;
    # deleting one takes its peer along, and clean must not trip over the second (ENODEV)
    run_id = new_run_id()
    subprocess.run(["ip", "link", "add", f"nl{run_id}-s", "type", "veth", "peer", "name", f"nl{run_id}-rs"],
                   check=True)
    try:
        cleaned = netlab("lab", "clean")
        assert cleaned.returncode == 0, cleaned.stderr
        assert "Traceback" not in cleaned.stderr
        assert f"removed interface nl{run_id}-" in cleaned.stdout
        assert ours(run_id) == []
    finally:
        subprocess.run(["ip", "link", "del", f"nl{run_id}-s"], check=False, capture_output=True)


def test_the_delay_and_loss_walkthrough_shows_tcp_and_udp_resending_what_the_link_lost(tmp_path: Path) -> None:
    from netlab.inspect.lab_walkthroughs import resent
    from netlab.inspect.quiz import questions
    from netlab.inspect.walkthroughs import run_walkthrough

    walkthrough = run_walkthrough("delay-and-loss", str(tmp_path))
    tcp, udp = walkthrough.sections
    assert "SHA-256 verified" in tcp.text and "SHA-256 verified" in udp.text  # every byte arrived in the end
    assert tcp.pcap_path and udp.pcap_path and os.path.getsize(tcp.pcap_path) > 0
    assert tcp.packets[0].source.startswith("10.77.0.2:")  # captured at the server's veth, across the link
    dropped = int(walkthrough.findings[0].split("the wire dropped ")[1].split()[0]) \
        if "the wire dropped" in walkthrough.findings[0] else None
    assert dropped is None or dropped > 0  # the seeded wire drops some of what goes toward the client
    assert resent(tcp.packets) or resent(udp.packets)  # what the link lost was sent again, and the capture shows it
    for resend in resent(tcp.packets) + resent(udp.packets):
        assert resend.again - resend.first >= 0.035  # no resend before a round trip (40 ms) could tell of the loss
    assert any(finding.startswith("TCP, by the server namespace's own counters") for finding in walkthrough.findings)
    assert len(questions(walkthrough)) >= 2


def test_sequenced_udp_over_ipv6_crosses_the_lab_link() -> None:
    from netlab.scenario.experiments.common import running_service
    from netlab.service.client import Client

    topology = Topology.up(parse_network({"kind": "namespaces", "link": {"delay": "10ms"}}, "t"))
    try:
        placement = topology.placement()
        with placement.server():
            serving = running_service(placement.server_url("udp6"))
            server = serving.__enter__()
        try:
            assert server.address.startswith("udp6://[fd00:6e6c::1]:")
            with placement.client():
                client = Client(server.address, connect_timeout=10, read_timeout=10)
            with client:
                reply = client.run(("echo", "hi"))
            assert reply.stdout == b"hi\n"
            assert reply.total >= 0.020  # one round trip of the 10 ms each-way link
        finally:
            serving.__exit__(None, None, None)
    finally:
        topology.down()
    assert ours(topology.run_id) == []


def test_serve_without_a_token_is_allowed_only_inside_an_isolated_lab_host() -> None:
    """Off loopback ``netlab serve`` needs a token, except in a lab namespace nothing outside the lab reaches."""
    from pyroute2 import NetNS

    from netlab.lab.namespace import isolated_lab_namespace
    from netlab.service.client import Client
    from netlab.testing import ChildServer, run_netlab

    topology = Topology.up(parse_network({"kind": "namespaces"}, "test"))
    try:
        server_namespace = topology.namespaces["server"]
        assert isolated_lab_namespace() is None  # the root namespace reaches the world
        with entered(server_namespace):
            assert isolated_lab_namespace() == server_namespace
            with ChildServer("--address", f"tcp4://{topology.server_address}:0", "--framing", "line",
                             "--quiet") as server:
                with entered(topology.namespaces["client"]):
                    client = Client(server.url, framing="line", read_timeout=10)
                with client:
                    assert client.run(["echo", "across"]).stdout == b"across\n"
        with NetNS(server_namespace) as host:  # an interface of someone else's: the namespace is no longer isolated
            host.link("add", ifname="foreign0", kind="veth", peer={"ifname": "foreign1"})
        with entered(server_namespace):
            assert isolated_lab_namespace() is None
            completed = run_netlab("serve", "--address", f"tcp4://{topology.server_address}:0", "--framing", "line")
        lines = completed.stderr.decode().splitlines()
        assert completed.returncode == 2 and len(lines) == 1
        assert lines[0].startswith(f"netlab: refusing to serve tcp4://{topology.server_address}:0 without a token")
    finally:
        topology.down()
    assert ours(topology.run_id) == []
