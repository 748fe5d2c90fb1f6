"""Matrix expansion: cartesian product in file order, includes last, defaults filled, repeats, seeds."""

from __future__ import annotations

from netlab.scenario.matrix import expand_cells, plan_runs
from netlab.scenario.schema import load_scenario


def test_product_order_first_key_slowest_then_includes(write_scenario) -> None:
    scenario = load_scenario(str(write_scenario(
        "experiment: backlog\nparameters:\n  extra_clients: 1\nmatrix:\n  transport: [unix, tcp4]\n"
        "  backlog: [0, 1, 3]\ninclude:\n  - {transport: udp, backlog: null}\n")))
    cells = expand_cells(scenario)
    assert [(cell.parameters["transport"], cell.parameters["backlog"]) for cell in cells] == [
        ("unix", 0), ("unix", 1), ("unix", 3), ("tcp4", 0), ("tcp4", 1), ("tcp4", 3), ("udp", None)]
    assert all(cell.parameters["extra_clients"] == 1 for cell in cells)
    assert cells[0].parameters["connect_timeout"] == 0.4  # the experiment's default
    assert cells[-1].varied == {"transport": "udp", "backlog": None}


def test_repeats_are_consecutive_and_seeds_reproducible(write_scenario) -> None:
    text = "experiment: backlog\nrepeat: 3\nseed: 9\nmatrix:\n  backlog: [0, 1]\n"
    runs = plan_runs(load_scenario(str(write_scenario(text))))
    assert [(run.cell.index, run.repeat) for run in runs] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert len({run.seed for run in runs}) == 6
    again = plan_runs(load_scenario(str(write_scenario(text, "again.yaml"))))
    assert [run.seed for run in runs] == [run.seed for run in again]
    other_seed = plan_runs(load_scenario(str(write_scenario(text.replace("seed: 9", "seed: 10"), "o.yaml"))))
    assert [run.seed for run in runs] != [run.seed for run in other_seed]


def test_no_matrix_is_one_cell(write_scenario) -> None:
    scenario = load_scenario(str(write_scenario("experiment: timeouts\n")))
    assert [cell.label() for cell in expand_cells(scenario)] == ["defaults"]
