"""``netlab run``: validate a scenario file, run its matrix, print the table, save the results."""

from __future__ import annotations

import argparse
import sys

from netlab.cli.common import add_format_option, add_table_options, add_token_options, resolve_token, table_options
from netlab.cli.progress import Progress
from netlab.cli.signals import sigterm_as_interrupt
from netlab.errors import UsageError
from netlab.scenario.environment import capture_environment
from netlab.scenario.matrix import PlannedRun, expand_cells, plan_runs
from netlab.scenario.render import FORMATS, render, render_markdown
from netlab.scenario.results import build_document, prepare_directory, row_columns, save_document
from netlab.scenario.runner import run_scenario, target_refusals
from netlab.scenario.schema import Scenario, load_scenario, override_network
from netlab.scenario.target import Target, reach_target
from netlab.tables import TableOptions, column_indexes, show_table

DEFAULT_RESULTS_DIRECTORY = "results"
EXIT_RUNS_FAILED = 1
EXIT_INTERRUPTED = 130
OUTCOMES_HELP = """\
outcomes and exit codes:
  A cell whose measured system did not finish within its bound (0 of 30 commands
  through a 20 % lossy link, say) is a result: its row says "did not complete:
  done/total in N s" with the cause, the line under the table counts such cells,
  and the exit code stays 0. A run in which the experiment itself broke (an
  unexpected error, a thread that died, or a run past the scenario's timeout) is
  a failure: its note says why, and the exit code is 1. Skipped cells (IPv6 off, say) are neither.
  Ctrl-C (SIGINT) or SIGTERM stops the scenario, keeps the runs that finished in
  the result files, and exits 130.

remote targets:
  --target URL measures a `netlab serve` on another host instead of servers netlab
  starts itself (token: --token-file PATH or $NETLAB_TOKEN). Cells that need the
  server's own kernel or a server netlab starts (backlog's accept queue, server-side
  counters, another transport or framing than the target's) are skipped, each with
  its reason; when no cell can run, nothing runs (exit 2). A target that cannot be
  reached within 5 s, wants a token or refuses it stops the run before it starts:
  one line, exit 255 (as netlab exec). The result records the target's URL (never
  the token) and that the kernel facts in it are this host's, the client's.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run", help="run a scenario file and tabulate the results",
        description="Validate a scenario, run every cell of its matrix, print a table and save "
                    "results/<name>-<UTC time>.json and .md.",
        epilog=OUTCOMES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", nargs="?", help="the scenario, e.g. scenarios/backlog.yaml")
    parser.add_argument("--list", action="store_true",
                        help="list the experiments and the scenario files in scenarios/, one line each; run nothing")
    parser.add_argument("--describe", metavar="EXPERIMENT",
                        help="print an experiment's parameters: type, default, unit, what is allowed; run nothing")
    add_format_option(parser, FORMATS, "the results")
    parser.add_argument("--out", metavar="DIR", default=DEFAULT_RESULTS_DIRECTORY,
                        help=f"where result files go (default {DEFAULT_RESULTS_DIRECTORY}/)")
    parser.add_argument("--report", action="store_true",
                        help="also write the self-contained HTML report beside the JSON (<result>.html)")
    parser.add_argument("--tag", metavar="TEXT", default="",
                        help="a label kept in the result file and shown by 'netlab results list' (default none)")
    parser.add_argument("--network", metavar="VALUE",
                        help="run over this network instead of the file's network: section: loopback, namespaces, "
                             "or a YAML mapping such as '{link: {rate: 20mbit, delay: 20ms, loss: 1%%}}' "
                             "(namespaces need root); the result's name gains -netns or -loopback")
    parser.add_argument("--check", action="store_true", help="validate and print the expanded matrix; run nothing")
    parser.add_argument("--target", metavar="URL", default=None,
                        help="measure against the netlab serve at URL (e.g. tcp4://192.0.2.7:6969) instead of "
                             "servers started here; cells that need the server's own kernel are skipped "
                             "(default: none)")
    add_token_options(parser)
    add_table_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.list or args.describe:
        from netlab.scenario.describe import describe_experiment, list_lines

        print("\n".join(list_lines()) if args.list else describe_experiment(args.describe, table_options(args)))
        return 0
    if not args.file:
        raise UsageError("name a scenario file, e.g. netlab run scenarios/backlog.yaml (netlab run --list shows them)")
    scenario = load_scenario(args.file)
    if args.network is not None:
        scenario = override_network(scenario, args.network)
    options = table_options(args)
    _check_columns(scenario, options)  # a misspelt --columns costs no measurements
    target = _target(args, scenario)
    if args.check:
        print(describe_plan(scenario, TableOptions(wide=options.wide), target))
        return 0
    prepare_directory(args.out)  # before the runs, so a bad --out costs no measurements
    if target is not None:
        reach_target(target)  # one line and no result file when it cannot be reached or refuses the token
    progress = Progress(len(plan_runs(scenario)))  # silent unless stderr is a terminal

    def show(done: int, total: int, run: PlannedRun) -> None:
        progress.update(done, run.cell.label() + (f" (repeat {run.repeat + 1})" if run.repeat else ""))

    try:
        with sigterm_as_interrupt():  # SIGTERM stops like Ctrl-C: namespaces come down, finished runs are saved
            scenario_run = run_scenario(scenario, show if progress.active else None, target)
    finally:
        progress.finish()
    document = build_document(scenario_run, capture_environment(), args.tag)
    print(render(document, args.format, options), flush=True)  # shown even if saving fails
    path = save_document(document, args.out, render_markdown)
    print(f"netlab: results written to {path} and {path[:-len('.json')]}.md", file=sys.stderr)
    if args.report:
        from netlab.scenario.report import write_report

        print(f"netlab: report written to {write_report(document, path)}", file=sys.stderr)
    if scenario_run.interrupted:
        print(f"netlab: {document['note']}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if target is not None and scenario_run.skipped:
        print(f"netlab: {scenario_run.skipped} of {scenario_run.total_runs} runs could not run against the target "
              f"{target.url} (see the note column)", file=sys.stderr)
    if scenario_run.failed:
        print(f"netlab: {scenario_run.failed} of {scenario_run.total_runs} runs failed: the experiment broke "
              "(see the note column)", file=sys.stderr)
        return EXIT_RUNS_FAILED
    return 0


def _target(args: argparse.Namespace, scenario: Scenario) -> Target | None:
    """The remote target named by --target (with its token), checked against the scenario; None without one.

    Raises:
        UsageError: a token without --target, a bad URL, a namespaced scenario, or no cell that can run remotely.
    """
    if args.target is None:
        if args.token_file is not None or args.token is not None:
            raise UsageError("--token-file is for --target URL: a scenario without a target starts its own servers")
        return None
    if scenario.network.namespaced:
        raise UsageError(_namespaces_and_target(args, scenario))
    from netlab.transport.address import parse_address

    target = Target(str(parse_address(args.target)), resolve_token(args))
    refusals = target_refusals(scenario, target)
    if len(refusals) == len(expand_cells(scenario)):
        reasons = "; ".join(dict.fromkeys(refusals.values()))
        raise UsageError(f"no cell of {scenario.path} can run against {target.url}: {reasons}")
    return target


def _namespaces_and_target(args: argparse.Namespace, scenario: Scenario) -> str:
    """Why a namespaced run and --target exclude each other, and which flag to change."""
    if args.network is not None:
        return (f"--network {args.network} builds hosts of its own and --target measures a server on another host: "
                f"drop --network to measure {args.target}, or drop --target to run over namespaces")
    return (f"{scenario.path} has network: namespaces, which builds hosts of its own, and --target measures a server "
            f"on another host: add --network loopback to measure {args.target} with this file, or drop --target")


def describe_plan(scenario: Scenario, options: TableOptions | None = None, target: Target | None = None) -> str:
    """The ``--check`` output: the scenario's settings and every run it would make (and, with a target,
    which cells it would skip and why)."""
    runs = plan_runs(scenario)
    fixed = {parameter.name: parameter.default for parameter in scenario.experiment.parameters}
    fixed.update(scenario.parameters)
    varied = list(dict.fromkeys(key for run in runs for key in run.cell.varied))
    header = (f"{scenario.path}: valid. experiment {scenario.experiment.name}, {len(runs)} runs "
              f"({len(runs) // scenario.repeat} cells x repeat {scenario.repeat}), seed {scenario.seed}, "
              f"run timeout {scenario.timeout:g} s")
    fixed_text = "fixed: " + ", ".join(f"{key}={value}" for key, value in fixed.items() if key not in varied)
    network = scenario.network
    network_text = ("network: loopback" if not network.namespaced else
                    f"network: namespaces (needs root), impairment {network.impairment}; "
                    f"to server: {network.to_server.describe()}; to client: {network.to_client.describe()}")
    refusals = target_refusals(scenario, target) if target is not None else {}
    if target is not None:
        network_text = (f"target: {target.url} ({len(runs) - sum(run.cell.index in refusals for run in runs)} of "
                        f"{len(runs)} runs against it; the others are skipped, the column says why)")
    rows = [[run.index + 1, run.repeat + 1, *(run.cell.parameters.get(key) for key in varied),
             *([refusals.get(run.cell.index, "runs")] if target is not None else [])] for run in runs]
    cells = [["" if cell is None else str(cell) for cell in row] for row in rows]
    table = show_table(["run", "repeat", *varied, *(["against the target"] if target is not None else [])], cells,
                       options)
    return "\n".join([header, fixed_text, network_text, "", table])


def _check_columns(scenario: Scenario, options: TableOptions) -> None:
    """Raise UsageError now when --columns names a column the experiment's rows do not have."""
    if not options.columns:
        return
    columns = row_columns(scenario.experiment.row_type)
    try:
        column_indexes([column["heading"] for column in columns], options.columns,
                       [column["name"] for column in columns])
    except ValueError as exc:
        raise UsageError(f"--columns: {exc}") from None

