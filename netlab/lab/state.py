"""Labs kept up between commands (``netlab lab up`` ... ``netlab lab down``): one JSON file each.

How this works: ``lab up`` writes ``/run/netlab/labs/<run id>.json`` (the
topology's names, addresses and the wire's pid) through a temporary file and
``os.replace``; ``lab down`` and ``lab exec`` read it back. ``/run`` is a
tmpfs, so a reboot forgets labs together with their namespaces.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from netlab.errors import NetlabError, UsageError
from netlab.lab.namespace import check_run_id, namespace_path

STATE_DIRECTORY = "/run/netlab/labs"
_RUN_ID_PATTERN = re.compile(r"^[0-9a-f]{6}$")


def state_path(run_id: str) -> str:
    """Where a lab's state file lives."""
    return os.path.join(STATE_DIRECTORY, f"{check_run_id(run_id)}.json")


def save_state(state: dict[str, Any]) -> str:
    """Write a lab's state atomically; return the path."""
    os.makedirs(STATE_DIRECTORY, mode=0o700, exist_ok=True)
    path = state_path(state["run_id"])
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as stream:
        json.dump(state, stream, indent=1)
    os.replace(temporary, path)
    return path


def load_states() -> list[dict[str, Any]]:
    """Every lab recorded as up whose namespaces still exist, oldest first."""
    try:
        names = sorted(os.listdir(STATE_DIRECTORY), key=lambda name: os.path.getmtime(
            os.path.join(STATE_DIRECTORY, name)))
    except FileNotFoundError:
        return []
    states = []
    for name in names:
        if not name.endswith(".json"):
            continue
        try:
            with open(os.path.join(STATE_DIRECTORY, name), encoding="utf-8") as stream:
                state = json.load(stream)
        except (OSError, ValueError):
            continue
        if any(os.path.exists(namespace_path(namespace)) for namespace in state.get("namespaces", {}).values()):
            states.append(state)
    return states


def find_state(run_id: str | None) -> dict[str, Any]:
    """The lab called ``run_id``, or the only lab up when None.

    Raises:
        UsageError: no lab is up, the id is unknown, or several are up and none was named.
    """
    states = load_states()
    if run_id is not None:
        check_run_id(run_id)
        for state in states:
            if state["run_id"] == run_id:
                return state
        raise UsageError(f"no lab {run_id} is up: `netlab lab status` lists the labs that are")
    if not states:
        raise UsageError("no lab is up: start one with `netlab lab up FILE`")
    if len(states) > 1:
        raise UsageError(f"{len(states)} labs are up ({', '.join(s['run_id'] for s in states)}): "
                         "name one with --lab RUN_ID")
    return states[0]


def forget_state(run_id: str) -> None:
    """Delete a lab's state file (no error when it is gone)."""
    try:
        os.unlink(state_path(run_id))
    except FileNotFoundError:
        pass


def forget_stale_states() -> list[str]:
    """Delete state files whose namespaces are all gone; return their run ids."""
    live = {state["run_id"] for state in load_states()}
    stale = []
    try:
        names = os.listdir(STATE_DIRECTORY)
    except FileNotFoundError:
        return []
    for name in names:
        run_id = name.removesuffix(".json").removesuffix(".json.tmp")
        if run_id not in live:
            try:
                os.unlink(os.path.join(STATE_DIRECTORY, name))
                stale.append(run_id)
            except OSError as exc:
                raise NetlabError(f"cannot remove {name} from {STATE_DIRECTORY}: {exc.strerror}") from None
    return stale


CLAIM_DIRECTORY = "/run/netlab/runs"


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stream:
            return stream.read().rsplit(")", 1)[1].split()[19]  # field 22: start time in clock ticks
    except (OSError, IndexError):
        return None


def claim(run_id: str) -> None:
    """Record that this process owns the run's namespaces (so ``lab clean`` leaves a live run alone)."""
    os.makedirs(CLAIM_DIRECTORY, mode=0o700, exist_ok=True)
    with open(os.path.join(CLAIM_DIRECTORY, check_run_id(run_id)), "w", encoding="ascii") as stream:
        stream.write(f"{os.getpid()} {_start_time(os.getpid())}\n")


def release(run_id: str) -> None:
    """Drop the claim written by :func:`claim` (no error when it is gone)."""
    try:
        os.unlink(os.path.join(CLAIM_DIRECTORY, check_run_id(run_id)))
    except FileNotFoundError:
        pass


def owner(run_id: str) -> int | None:
    """The pid of the live process that owns the run, or None (no claim, or its process is gone)."""
    try:
        with open(os.path.join(CLAIM_DIRECTORY, check_run_id(run_id)), encoding="ascii") as stream:
            pid_text, started = stream.read().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    return pid if _start_time(pid) == started else None


def forget_dead_claims(live_run_ids: set[str]) -> list[str]:
    """Delete the claims of runs whose process is gone and whose namespaces are gone too; return their ids."""
    try:
        names = os.listdir(CLAIM_DIRECTORY)
    except FileNotFoundError:
        return []
    forgotten = []
    for run_id in names:
        if _RUN_ID_PATTERN.match(run_id) and run_id not in live_run_ids and owner(run_id) is None:
            release(run_id)
            forgotten.append(run_id)
    return forgotten
