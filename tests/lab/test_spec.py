"""The network: section: units, defaults, per-direction overrides and one-line errors."""

from __future__ import annotations

import dataclasses
import glob
from pathlib import Path

import pytest

from netlab.errors import ScenarioError
from netlab.lab.spec import (
    LINK_KEYS,
    LOOPBACK,
    LinkSpec,
    parse_network,
    parse_rate,
    parse_share,
    parse_size,
    parse_time,
)
from netlab.scenario.schema import load_scenario, validate_scenario


@pytest.mark.parametrize(("text", "expected"), [("20mbit", 20_000_000), ("1.5gbit", 1_500_000_000),
                                                 ("500kbit", 500_000), (64000, 64_000), ("20mb", None), ("x", None)])
def test_rates(text: object, expected: int | None) -> None:
    assert parse_rate(text) == expected


@pytest.mark.parametrize(("text", "expected"), [("20ms", 0.02), ("1s", 1.0), ("500us", 0.0005), (40, 0.04),
                                                ("ms", None), (True, None)])
def test_times(text: object, expected: float | None) -> None:
    assert parse_time(text) == (pytest.approx(expected) if expected is not None else None)


def test_shares_and_sizes() -> None:
    assert parse_share("1%") == pytest.approx(0.01)
    assert parse_share(0.5) == pytest.approx(0.005)
    assert parse_size("64KiB") == 65536 and parse_size("64kb") == 64000 and parse_size(1500) == 1500
    assert parse_size("1tb") is None and parse_size("1.5B") is None


def test_loopback_is_the_default_and_every_shipped_scenario_keeps_it() -> None:
    assert parse_network(None, "f") is LOOPBACK
    assert parse_network("loopback", "f") is LOOPBACK
    for path in glob.glob("scenarios/*.yaml"):
        scenario = load_scenario(path)
        # bottleneck.yaml measures a shaped link's queue: on loopback it would measure nothing
        expected = "namespaces" if path.endswith(("namespaces.yaml", "bottleneck.yaml")) else "loopback"
        assert scenario.network.kind == expected, path


def test_a_link_applies_both_ways_and_a_direction_can_override_it() -> None:
    spec = parse_network({"kind": "namespaces", "link": {"rate": "20mbit", "delay": "20ms", "loss": "1%"},
                          "to_client": {"rate": "50mbit"}}, "f")
    assert spec.to_server == LinkSpec(rate=20_000_000, delay=0.02, loss=0.01)
    assert spec.to_client == LinkSpec(rate=50_000_000, delay=0.02, loss=0.01)
    assert spec.to_server.impaired and not LinkSpec(rate=1_000_000).impaired
    assert spec.as_dict()["to_client"]["rate"] == 50_000_000


def test_a_link_is_recorded_with_every_setting_in_the_order_people_read_them() -> None:
    link = LinkSpec(rate=20_000_000, delay=0.02, loss=0.01)
    assert list(link.as_dict()) == list(LINK_KEYS)
    assert set(LINK_KEYS) == {item.name for item in dataclasses.fields(LinkSpec)}
    assert LinkSpec(**link.as_dict()) == link


def test_queue_and_burst_follow_the_rate_unless_set() -> None:
    assert LinkSpec(rate=20_000_000).queue_bytes() == 250_000  # 100 ms at the rate
    assert LinkSpec(rate=20_000_000, queue=65536).queue_bytes() == 65536
    assert LinkSpec(rate=100_000).queue_bytes() == 4 * 1514  # never below four full frames
    assert LinkSpec(rate=100_000).burst_bytes() == 2 * 1514


@pytest.mark.parametrize(("value", "message"), [
    ("wan", 'network: expected loopback or namespaces, or a mapping with kind: and link:, got "wan"'),
    ({"kind": "mesh"}, 'network.kind: expected one of loopback, namespaces, got "mesh"'),
    ({"links": {}}, "network.links: unknown key; allowed: kind, impairment, link, to_server, to_client"),
    ({"link": {"rate": "fast"}}, 'network.link.rate: expected a rate such as 20mbit (from 8000 to 1e+11), got "fast"'),
    ({"link": {"loss": "150%"}}, 'network.link.loss: expected a share such as 1% (from 0 to 1), got "150%"'),
    ({"link": {"mtu": 100}}, "network.link.mtu: expected an integer from 576 to 65535, got 100"),
    ({"link": {"qdisc": "fq"}}, 'network.link.qdisc: expected one of tbf, htb, got "fq"'),
    ({"link": {"latency": 3}}, "network.link.latency: unknown key; allowed: mtu, rate, qdisc, queue, delay, jitter"),
    ({"impairment": "tc"}, 'network.impairment: expected one of auto, netem, wire, got "tc"'),
    ({"to_server": {"mtu": 1400}}, "network: to_server and to_client must have the same mtu"),
    ({"kind": "loopback", "link": {}}, "network: loopback has no link to describe"),
])
def test_bad_network_sections_are_named_in_one_line(value: object, message: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_network(value, "s.yaml")
    assert str(caught.value).startswith(f"s.yaml: {message}")
    assert "\n" not in str(caught.value)


def test_every_experiment_accepts_network_namespaces() -> None:
    from netlab.scenario.experiments import EXPERIMENT_NAMES

    for name in EXPERIMENT_NAMES:
        scenario = validate_scenario({"experiment": name, "network": "namespaces"}, "s.yaml")
        assert scenario.as_dict()["network"]["kind"] == "namespaces"


def test_network_override_replaces_the_files_network_and_renames_the_result() -> None:
    from netlab.scenario.schema import override_network

    scenario = load_scenario("scenarios/backlog.yaml")
    over = override_network(scenario, "{link: {rate: 20mbit, delay: 20ms, loss: 1%}}")
    assert over.name == "backlog-netns" and over.network.namespaced
    assert over.network.to_client.rate == 20_000_000 and over.network.to_server.loss == 0.01
    assert over.as_dict()["network_override"] == "{link: {rate: 20mbit, delay: 20ms, loss: 1%}}"
    assert over.matrix == scenario.matrix and over.parameters == scenario.parameters
    back = override_network(load_scenario("scenarios/namespaces.yaml"), "loopback")
    assert back.name == "namespaces-loopback" and not back.network.namespaced
    assert "network_override" not in scenario.as_dict()


@pytest.mark.parametrize(("value", "message"), [
    ("{link: [", "--network: line 1, column 9: YAML syntax error"),
    ("moon", 'scenarios/backlog.yaml: --network: expected loopback or namespaces, or a mapping'),
    ("{link: {rate: fast}}", "scenarios/backlog.yaml: --network.link.rate: expected a rate such as 20mbit"),
])
def test_a_bad_network_override_is_one_line_exit_2_before_anything_runs(value: str, message: str,
                                                                        tmp_path) -> None:
    from netlab.testing.servers import run_netlab_text

    scenario = Path("scenarios/backlog.yaml").resolve()
    completed = run_netlab_text("run", str(scenario), "--network", value, "--out", str(tmp_path / "out"))
    assert completed.returncode == 2
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0].replace(str(scenario), "scenarios/backlog.yaml")
    assert "Traceback" not in completed.stderr
    assert not (tmp_path / "out").exists()


def test_check_shows_the_network_without_building_it(tmp_path, capsys) -> None:
    from netlab.cli.main import main

    path = tmp_path / "s.yaml"
    path.write_text("experiment: link\nnetwork: {kind: namespaces, link: {rate: 20mbit, delay: 20ms, loss: 1%}}\n")
    assert main(["run", str(path), "--check"]) == 0
    out = capsys.readouterr().out
    assert ("network: namespaces (needs root), impairment auto; to server: 20 Mbit/s (tbf, queue "
            "250000 B), 20 ms, 1 % loss, MTU 1500; to client: 20 Mbit/s") in out
    assert main(["run", "scenarios/timeouts.yaml", "--check"]) == 0
    assert "network: loopback" in capsys.readouterr().out
    assert main(["run", "scenarios/timeouts.yaml", "--check", "--network", "{link: {delay: 20ms}}"]) == 0
    assert "network: namespaces (needs root), impairment auto; to server: 20 ms" in \
        capsys.readouterr().out


def test_the_link_experiment_judges_a_measurement_against_its_setting() -> None:
    from netlab.scenario.experiments.link import compare

    assert compare(40.0, 40.8, 0.10) == "agrees, +2.0 %"
    assert compare(20.0, 17.9, 0.10) == "disagrees, -10.5 %"
    assert compare(1.0, 0.84, 0.10) == "disagrees, -16.0 %"
    assert compare(40.0, 44.0, 0.10) == "agrees, +10.0 %"  # the bound itself agrees
    assert compare(None, 3.0, 0.10) == "" and compare(0.0, 0.2, 0.10) == "" and compare(40.0, None, 0.10) == ""
