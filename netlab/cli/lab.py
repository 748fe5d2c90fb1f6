"""``netlab lab``: keep a namespaced network up for interactive use, run commands in its hosts, clean up.

``lab up FILE`` builds the ``network:`` section of a scenario file and leaves
it up (the wire, if any, keeps running); ``lab exec HOST -- CMD`` runs a
command inside a host the way ``ip netns exec`` does; ``lab down`` takes it
away; ``lab clean`` removes leftovers of any netlab run (only names with
netlab's prefix); ``lab status`` lists what is up. All but ``status`` need
root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and say so in one line (exit 2) otherwise.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import yaml

from netlab.cli.signals import sigterm_as_interrupt
from netlab.errors import NetlabError, ScenarioError, UsageError
from netlab.lab.namespace import NAMESPACE_PATTERN, list_namespaces, require_namespaces
from netlab.lab.spec import NetworkSpec, parse_network
from netlab.lab.state import (
    STATE_DIRECTORY,
    find_state,
    forget_stale_states,
    forget_state,
    load_states,
    owner,
    save_state,
)
from netlab.lab.topology import HOSTS, Topology, clean, leftovers

EXIT_COMMAND_NOT_FOUND = 127


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "lab", help="bring a namespaced network up or down, run commands inside its hosts",
        description="Hosts in network namespaces joined by a shaped, impaired link, kept up between commands.",
    )
    actions = parser.add_subparsers(dest="lab_action", metavar="ACTION", required=True)
    up = actions.add_parser("up", help="build a scenario file's network: section and leave it up")
    up.add_argument("file", help="a scenario file with network: namespaces (e.g. scenarios/namespaces.yaml)")
    up.add_argument("--seed", type=int, default=None, help="seed for the wire's random choices (default: the file's)")
    up.set_defaults(handler=run_up)
    down = actions.add_parser("down", help="take a lab down (the only one up, or --lab RUN_ID)")
    down.add_argument("--lab", metavar="RUN_ID", help="which lab, when several are up")
    down.set_defaults(handler=run_down)
    execute = actions.add_parser("exec", help="run a command inside a host: server, client or router")
    execute.add_argument("host", help=f"one of {', '.join(HOSTS)}")
    execute.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD ...", help="the command and arguments")
    execute.add_argument("--lab", metavar="RUN_ID", help="which lab, when several are up")
    execute.set_defaults(handler=run_exec)
    cleaner = actions.add_parser("clean", help="remove netlab namespaces and interfaces left by any run")
    cleaner.add_argument("--all", action="store_true", help="also take down labs brought up with lab up")
    cleaner.set_defaults(handler=run_clean)
    status = actions.add_parser("status", help="list the labs that are up and any leftovers")
    status.set_defaults(handler=run_status)


def run_up(args: argparse.Namespace) -> int:
    require_namespaces()
    spec, seed = _read_network(args.file)
    if args.seed is not None:
        seed = args.seed
    os.makedirs(STATE_DIRECTORY, mode=0o700, exist_ok=True)
    with sigterm_as_interrupt():
        topology = Topology.up(spec, seed=seed, detach=True, state_directory=STATE_DIRECTORY)
        try:
            save_state(topology.state())
        except BaseException:
            topology.down()
            raise
    names = topology.namespaces
    print(f"lab {topology.run_id} up: server {names['server']} ({topology.server_address}, "
          f"{topology.server_address6}), client {names['client']} ({topology.client_address}, "
          f"{topology.client_address6}), router {names['router']}")
    print(f"link: to server {spec.to_server.describe()}; to client {spec.to_client.describe()}")
    print(f"impairments by: {topology.mechanism}; offloads off on every veth")
    print("try: netlab lab exec client -- python3 -c 'print(1)'; take it down with: netlab lab down")
    return 0


def run_down(args: argparse.Namespace) -> int:
    require_namespaces()
    state = find_state(args.lab)
    topology = Topology.from_state(state)
    with sigterm_as_interrupt():
        removed = topology.down()
    counters = topology.wire_counters()
    forget_state(topology.run_id)
    for path in (topology.stats_path, os.path.join(STATE_DIRECTORY, f"wire-{topology.run_id}.log")):
        if path and os.path.exists(path):
            os.unlink(path)
    print(f"lab {topology.run_id} down: removed {', '.join(removed) or 'nothing (already gone)'}")
    if counters:
        for direction, values in counters.items():
            if values:
                shown = ", ".join(f"{name} {value}" for name, value in values.items())
                print(f"wire {direction}: {shown}")
    return 0


def run_exec(args: argparse.Namespace) -> int:
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        raise UsageError("no command given: netlab lab exec HOST -- CMD [ARGS...]")
    require_namespaces()
    state = find_state(args.lab)
    namespaces = state["namespaces"]
    if args.host in namespaces:
        namespace = namespaces[args.host]
    elif args.host in namespaces.values():
        namespace = args.host
    else:
        raise UsageError(f"no host {args.host!r} in lab {state['run_id']}: name one of {', '.join(namespaces)}")
    from netlab.lab.namespace import enter_for_good

    try:
        completed = subprocess.run(argv, preexec_fn=lambda: enter_for_good(namespace), check=False)
    except FileNotFoundError:
        print(f"netlab: {argv[0]}: command not found in {namespace}", file=sys.stderr)
        return EXIT_COMMAND_NOT_FOUND
    except subprocess.SubprocessError as exc:
        raise NetlabError(f"cannot run {argv[0]} in {namespace}: {exc}") from None
    return completed.returncode if completed.returncode >= 0 else 128 - completed.returncode


def run_clean(args: argparse.Namespace) -> int:
    require_namespaces()
    with sigterm_as_interrupt():
        removed, kept = clean(include_labs=args.all)
    forgotten = forget_stale_states()
    if not removed and not forgotten:
        print("nothing of netlab's to remove")
    for item in removed:
        print(f"removed {item}")
    for item in kept:
        print(f"kept {item}")
    for run_id in forgotten:
        print(f"forgot lab {run_id} (its namespaces were gone)")
    return 0


def run_status(args: argparse.Namespace) -> int:
    states = load_states()
    known = {name for state in states for name in state["namespaces"].values()}
    for state in states:
        names = state["namespaces"]
        print(f"lab {state['run_id']}: {', '.join(names.values())}; impairments by {state.get('mechanism', '?')}")
    strays = [item for item in leftovers() if item.removeprefix("namespace ") not in known]
    for item in strays:
        match = NAMESPACE_PATTERN.match(item.removeprefix("namespace "))
        running = owner(match.group(1)) if match else None
        print(f"run {match.group(1) if match else ''} going: {item} (pid {running})" if running is not None else
              f"leftover {item} (netlab lab clean removes it)")
    if not states and not strays:
        others = len(list_namespaces())
        print("no lab is up" + (f" ({others} namespaces of other programs left alone)" if others else ""))
    return 0


def _read_network(path: str) -> tuple[NetworkSpec, int]:
    try:
        with open(path, encoding="utf-8") as stream:
            document = yaml.safe_load(stream)
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such file: give a scenario with a network: section") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ScenarioError(f"{path}: cannot read it as YAML: {exc}") from None
    if not isinstance(document, dict):
        raise ScenarioError(f"{path}: expected a scenario (a mapping) with a network: section")
    spec = parse_network(document.get("network"), path)
    if not spec.namespaced:
        raise ScenarioError(f"{path}: network: is loopback: nothing to bring up (set network: namespaces)")
    seed = document.get("seed", 0)
    return spec, seed if isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0 else 0
