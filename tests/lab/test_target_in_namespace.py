"""``netlab run --target`` against a ``netlab serve`` in a network namespace standing in for another host.

The lab's server namespace plays the remote host: ``netlab serve`` runs there with a token file, listening on
10.77.0.1 (off loopback, so the token is required), and ``netlab run --target`` runs from the client
namespace across a delayed link. Nothing here leaves the namespaces netlab made, and every test takes them
down. Needs root or CAP_NET_ADMIN; skips with that reason otherwise.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netlab.errors import EXIT_NETLAB
from netlab.lab.namespace import entered, namespace_inode, processes_in
from netlab.lab.spec import parse_network
from netlab.lab.topology import Topology, leftovers
from netlab.testing import ChildServer, run_netlab
from netlab.testing.lab import needs_namespaces
from netlab.testing.targets import ScenarioRun, run_scenario_text, token_files

pytestmark = needs_namespaces
DELAY_MS = 10
LINK = """\
experiment: link
timeout: 40
parameters: {transport: tcp4, round_trips: 10, bulk_bytes: 262144}
"""
CONCURRENCY = """\
experiment: concurrency
timeout: 30
parameters: {transport: tcp4, requests: 20, duration: 2.0}
matrix:
  model: [threaded, selector]
  clients: [1, 10]
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[Topology]:
    spec = parse_network({"kind": "namespaces", "impairment": "wire", "link": {"delay": f"{DELAY_MS}ms"}}, "t")
    topology = Topology.up(spec, seed=5)
    try:
        yield topology
    finally:
        topology.down()
    assert [item for item in leftovers() if topology.run_id in item] == []


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return token_files(tmp_path_factory.mktemp("tokens"))


@pytest.fixture(scope="module")
def remote(lab: Topology, tokens: tuple[Path, Path]) -> Iterator[ChildServer]:
    """``netlab serve`` on the server host's address, started inside its namespace (its child inherits it)."""
    with entered(lab.namespaces["server"]):
        server = ChildServer("--address", f"tcp4://{lab.server_address}:0", "--token-file", str(tokens[0]),
                             "--quiet", "--max-per-peer", "0")
    with server:
        assert server.url.startswith(f"tcp4://{lab.server_address}:")
        yield server
    assert server.process.poll() is not None  # the remote host's server is gone too


def run_from_client(lab: Topology, tmp_path: Path, text: str, *options: str) -> ScenarioRun:
    """``netlab run`` inside the client namespace; its exit code, stdout, stderr and results directory."""
    with entered(lab.namespaces["client"]):
        return run_scenario_text(tmp_path, text, *options)


def test_link_against_a_serve_in_another_namespace_crosses_the_link(
        lab: Topology, remote: ChildServer, tokens: tuple[Path, Path], tmp_path: Path) -> None:
    code, stdout, stderr, out = run_from_client(lab, tmp_path, LINK, "--target", remote.url,
                                                "--token-file", str(tokens[0]))
    assert code == 0, stderr
    document = json.loads(stdout)
    assert document["network"]["kind"] == "target" and document["network"]["url"] == remote.url
    assert tokens[0].read_text().strip() not in "".join(path.read_text() for path in out.iterdir())
    rows = {row["measure"]: row for row in document["summary"][0]["rows"]}
    assert rows["round trip p50"]["measured"] >= 2 * DELAY_MS  # the link's delay, both ways: it crossed the lab
    assert rows["kernel srtt"]["measured"] >= 2 * DELAY_MS * 0.9
    assert rows["bulk goodput"]["measured"] > 0 and rows["bulk goodput"]["configured"] is None
    for measure in ("segment size", "retransmissions", "udp rate", "udp loss"):
        assert rows[measure]["measured"] is None and rows[measure]["note"].startswith("not measured against the target: ")


def test_concurrency_against_a_serve_in_another_namespace(
        lab: Topology, remote: ChildServer, tokens: tuple[Path, Path], tmp_path: Path) -> None:
    code, stdout, stderr, _ = run_from_client(lab, tmp_path, CONCURRENCY, "--target", remote.url,
                                              "--token-file", str(tokens[0]))
    assert code == 0, stderr
    summary = json.loads(stdout)["summary"]
    assert [cell["status"] for cell in summary] == ["ok", "ok", "skipped", "skipped"]
    for cell in summary[:2]:
        (row,) = cell["rows"]
        assert row["errors"] == 0 and row["served_clients"] == row["clients"]
        assert row["p50_us"] >= 2 * DELAY_MS * 1000


def test_a_wrong_token_from_the_client_namespace_is_one_line(
        lab: Topology, remote: ChildServer, tokens: tuple[Path, Path], tmp_path: Path) -> None:
    code, stdout, stderr, out = run_from_client(lab, tmp_path, LINK, "--target", remote.url,
                                                "--token-file", str(tokens[1]))
    assert code == EXIT_NETLAB and stdout == "" and not list(out.glob("*"))
    assert stderr.splitlines() == [f"netlab: the target {remote.url} refused the token (server: auth-failed: wrong "
                                   "token): pass the --token-file its netlab serve uses"]


def test_an_unreachable_target_is_one_line_in_bounded_time(
        lab: Topology, tokens: tuple[Path, Path], tmp_path: Path) -> None:
    nobody = "tcp4://10.77.0.3:6969"  # in the lab's /24, but no host answers ARP for it
    started = time.monotonic()
    code, stdout, stderr, out = run_from_client(lab, tmp_path, LINK, "--target", nobody,
                                                "--token-file", str(tokens[0]))
    assert time.monotonic() - started < 60  # one connect with a 5 s timeout, plus the interpreter's start
    lines = stderr.splitlines()
    assert code == EXIT_NETLAB and len(lines) == 1 and lines[0].startswith(f"netlab: cannot reach the target {nobody}")
    assert stdout == "" and not list(out.glob("*"))


def test_a_child_serve_in_the_server_namespace_uses_a_private_token_where_the_framing_can(tmp_path: Path) -> None:
    scenario = tmp_path / "concurrency.yaml"
    scenario.write_text("""\
experiment: concurrency
timeout: 30
network: {kind: namespaces, link: {delay: 5ms}}
parameters: {transport: tcp4, requests: 20, duration: 2.0, placement: process}
matrix:
  clients: [1, 10]
  framing: [length, line]
""")
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    completed = run_netlab("run", str(scenario), "--format", "json", "--out", str(tmp_path / "results"), timeout=120,
                           environment={"TMPDIR": str(private_tmp)})
    assert completed.returncode == 0, completed.stderr
    summary = json.loads(completed.stdout)["summary"]
    by_cell = {(cell["varied"]["clients"], cell["varied"]["framing"]): cell for cell in summary}
    for clients in (1, 10):
        cell = by_cell[(clients, "length")]
        (row,) = cell["rows"]
        assert cell["status"] == "ok" and row["errors"] == 0 and row["served_clients"] == clients
        assert row["p50_us"] >= 10_000  # 5 ms each way: the child served from the server's namespace
        line = by_cell[(clients, "line")]  # line cannot carry a token: its child serves the isolated lab without one
        (row,) = line["rows"]
        assert line["status"] == "ok" and row["errors"] == 0 and row["served_clients"] == clients
        assert row["p50_us"] >= 10_000
    assert list(private_tmp.iterdir()) == []  # the private token directories (and all else) are gone
    run_id = json.loads(completed.stdout)["network"]["run_id"]
    assert [item for item in leftovers() if run_id in item] == []


def test_the_remote_serve_is_the_only_process_left_in_the_server_namespace(lab: Topology,
                                                                            remote: ChildServer) -> None:
    inode = namespace_inode(lab.namespaces["server"])
    assert inode is not None and processes_in(inode) == [remote.process.pid]
