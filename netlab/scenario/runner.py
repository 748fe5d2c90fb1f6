"""Run every planned run of a scenario, each in a worker thread under a time bound.

How this works: runs go one after another (measurements must not disturb each
other). Each run gets a :class:`RunContext` (seed, deadline, cancel event,
private temp directory) and runs in a daemon thread while the calling thread
waits for it, so that:

- a run past its ``timeout`` is reported as failed and the scenario goes on
  (the run's cancel event is set; experiments check it in their loops and
  bound every socket wait, so the thread ends soon after);
- Ctrl-C in the calling thread cancels the current run and stops the
  scenario; the runs that finished are kept and the result says
  "interrupted after N of M runs".

A run that raises :class:`RunSkipped` is reported as skipped with its reason;
one that raises :class:`RunIncomplete` keeps its rows and is reported as
incomplete (the measured system did not finish: a result); any other
exception is a failed run with a one-line message (the experiment broke).
While the scenario runs, an exception that escapes any thread (a server's,
a reader's) is kept as one line and fails the run it happened in, instead of
Python printing its traceback into the table's output.

With ``network: namespaces`` the topology (namespaces, links, the wire) is
brought up once, in the calling thread, before the first run and taken down
after the last, also when a run fails or Ctrl-C stops the scenario; every run
gets its placement in ``context.network``, and netlab's wire (where it stands
in for netem) is restarted with the run's seed, so runs that share a seed
meet the same choices on the link as they do in socket impairments.

With a remote target (``netlab run --target``) nothing is started here for
the server: every run gets the target in ``context.target``, and a cell that
cannot run against it (see ``Experiment.refusal_against``) is
reported as skipped with the reason, without running.
"""

from __future__ import annotations

import dataclasses
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from netlab.errors import NetlabError, UsageError
from netlab.lab.placement import LOOPBACK, Placement
from netlab.scenario.experiments.base import RunCancelled, RunContext, RunIncomplete, RunSkipped
from netlab.scenario.matrix import PlannedRun, expand_cells, plan_runs
from netlab.scenario.schema import Scenario
from netlab.scenario.target import Target

STATUS_OK = "ok"
STATUS_FAILED = "failed"
STATUS_SKIPPED = "skipped"
STATUS_INCOMPLETE = "incomplete"
#: How long a cancelled run may take to notice before the runner moves on without it.
CANCEL_GRACE = 2.0
_WAIT_STEP = 0.25

ProgressCallback = Callable[[int, int, PlannedRun], None]


@dataclass
class RunOutcome:
    """What one run gave.

    Attributes:
        run: the planned run (cell, repeat, seed).
        status: ``ok``, ``incomplete``, ``failed`` or ``skipped``.
        message: why it did not complete, failed or was skipped ('' when ok).
        duration: seconds the run took.
        rows: the experiment's row dataclasses, as dicts.
    """

    run: PlannedRun
    status: str
    message: str
    duration: float
    rows: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ScenarioRun:
    """A scenario's runs so far; complete unless ``interrupted``."""

    scenario: Scenario
    started: datetime
    finished: datetime
    total_runs: int
    outcomes: list[RunOutcome]
    interrupted: bool = False
    network: dict[str, Any] = field(default_factory=lambda: {"kind": "loopback"})

    @property
    def failed(self) -> int:
        """How many runs failed."""
        return sum(outcome.status == STATUS_FAILED for outcome in self.outcomes)

    @property
    def skipped(self) -> int:
        """How many runs were skipped (they could not take place here, or against the target)."""
        return sum(outcome.status == STATUS_SKIPPED for outcome in self.outcomes)

    @property
    def incomplete(self) -> int:
        """How many runs measured a system that did not finish within the bound (a result, not a failure)."""
        return sum(outcome.status == STATUS_INCOMPLETE for outcome in self.outcomes)


def run_scenario(scenario: Scenario, progress: ProgressCallback | None = None,
                 target: Target | None = None) -> ScenarioRun:
    """Run all of a scenario's runs in order.

    Args:
        scenario: a validated scenario.
        progress: called before each run with (runs done, total, the run).
        target: measure against this remote ``netlab serve`` (reached already) instead of servers started here.
    Returns:
        Every outcome; ``interrupted`` is True when Ctrl-C stopped it early.
    """
    planned = plan_runs(scenario)
    refusals = target_refusals(scenario, target) if target is not None else {}
    started = datetime.now(timezone.utc)
    outcomes: list[RunOutcome] = []
    interrupted = False
    topology = None
    placement = LOOPBACK
    if scenario.network.namespaced:
        from netlab.lab.topology import Topology

        topology = Topology.up(scenario.network, seed=scenario.seed)
        placement = topology.placement()
    thread_failures: list[str] = []
    previous_hook = threading.excepthook
    threading.excepthook = _recorder_of(thread_failures)
    try:
        for run in planned:
            cancelled = threading.Event()
            try:
                if progress is not None:
                    progress(len(outcomes), len(planned), run)
                if topology is not None:
                    topology.reseed_wire(run.seed)  # the run's frames meet the run's own seeded choices
                seen = len(thread_failures)
                if run.cell.index in refusals:
                    outcome = RunOutcome(run, STATUS_SKIPPED, f"not run against the target: {refusals[run.cell.index]}",
                                         0.0)
                else:
                    outcome = _with_thread_failures(_run_one(scenario, run, cancelled, placement, target),
                                                    thread_failures[seen:])
            except KeyboardInterrupt:
                cancelled.set()
                interrupted = True
                break
            outcomes.append(outcome)
    finally:
        threading.excepthook = previous_hook
        if topology is not None:
            topology.down()
    if target is not None:
        network = target.as_dict()
    else:
        network = topology.as_dict() if topology is not None else scenario.network.as_dict()
    return ScenarioRun(scenario, started, datetime.now(timezone.utc), len(planned), outcomes, interrupted, network)


def target_refusals(scenario: Scenario, target: Target) -> dict[int, str]:
    """Cell index -> why that cell cannot run against ``target``; the cells not named run against it.

    Raises:
        UsageError: the scenario builds its own hosts (``network: namespaces``).
    """
    if scenario.network.namespaced:
        raise UsageError(f"{scenario.path}: network: namespaces builds its own hosts, --target measures a server "
                         "on another host: drop one of them")
    refusals: dict[int, str] = {}
    running: list[dict[str, Any]] = []
    for cell in expand_cells(scenario):
        reason = scenario.experiment.refusal_against(target, cell.parameters, running)
        if reason is None:
            running.append(cell.parameters)
        else:
            refusals[cell.index] = reason
    return refusals


def _recorder_of(failures: list[str]) -> Callable[[threading.ExceptHookArgs], None]:
    """A ``threading.excepthook`` that keeps a thread's uncaught exception as one line instead of a traceback."""

    def record(arguments: threading.ExceptHookArgs) -> None:
        if arguments.exc_type is SystemExit:
            return
        name = arguments.thread.name if arguments.thread is not None else "a thread"
        failures.append(f"thread {name} died of {arguments.exc_type.__name__}: {arguments.exc_value}")

    return record


def _with_thread_failures(outcome: RunOutcome, failures: list[str]) -> RunOutcome:
    """A run during which a thread died of an uncaught exception failed: the experiment broke."""
    if not failures:
        return outcome
    text = "; ".join(dict.fromkeys(failures))
    if outcome.status in (STATUS_OK, STATUS_INCOMPLETE):
        return dataclasses.replace(outcome, status=STATUS_FAILED, message=text)
    return dataclasses.replace(outcome, message=f"{outcome.message}; {text}")


def _run_one(scenario: Scenario, run: PlannedRun, cancelled: threading.Event,
             placement: Placement = LOOPBACK, remote: Target | None = None) -> RunOutcome:
    """Run one cell once in a worker thread; KeyboardInterrupt propagates after cancelling it."""
    holder: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="netlab-run-", ignore_cleanup_errors=True) as work_directory:
        started = time.monotonic()
        context = RunContext(
            seed=run.seed,
            deadline=started + scenario.timeout,
            cancelled=cancelled,
            work_directory=work_directory,
            network=placement,
            target=remote,
        )

        def target() -> None:
            try:
                holder["rows"] = list(scenario.experiment.run(dict(run.cell.parameters), context))
            except BaseException as exc:  # reported as the run's outcome, never lost
                holder["error"] = exc

        worker = threading.Thread(target=target, name=f"netlab-run-{run.index}", daemon=True)
        worker.start()
        try:
            while worker.is_alive() and time.monotonic() < context.deadline:
                worker.join(min(_WAIT_STEP, context.remaining()) or 0.01)
        except KeyboardInterrupt:
            cancelled.set()
            worker.join(CANCEL_GRACE)
            raise
        if worker.is_alive():
            cancelled.set()
            worker.join(CANCEL_GRACE)
            note = "" if not worker.is_alive() else "; it did not stop when asked and was left behind"
            return RunOutcome(run, STATUS_FAILED, f"took longer than the run timeout of {scenario.timeout:g} s{note}",
                              time.monotonic() - started)
        duration = time.monotonic() - started
    error = holder.get("error")
    if error is None:
        return RunOutcome(run, STATUS_OK, "", duration, [_row_dict(row) for row in holder["rows"]])
    if isinstance(error, RunIncomplete):
        return RunOutcome(run, STATUS_INCOMPLETE, error.reason, duration, [_row_dict(row) for row in error.rows])
    if isinstance(error, RunSkipped):
        return RunOutcome(run, STATUS_SKIPPED, str(error), duration)
    if isinstance(error, RunCancelled):
        return RunOutcome(run, STATUS_FAILED, f"took longer than the run timeout of {scenario.timeout:g} s", duration)
    if isinstance(error, NetlabError):
        return RunOutcome(run, STATUS_FAILED, f"{type(error).__name__}: {error}", duration)
    return RunOutcome(run, STATUS_FAILED, f"internal error {type(error).__name__}: {error}", duration)


def _row_dict(row: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(row) and not isinstance(row, type):
        return dataclasses.asdict(row)
    raise TypeError(f"an experiment returned {type(row).__name__}, not a row dataclass")
