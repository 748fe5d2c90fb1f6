"""``netlab serve``: run the command service on one transport until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import os
import sys

from netlab.cli.common import (
    add_address_options,
    add_udp_options,
    non_negative_int,
    positive_float,
    resolve_address,
    resolve_token,
    udp_options,
)
from netlab.errors import UsageError
from netlab.lab.namespace import isolated_lab_namespace
from netlab.proto.framing import FRAMERS
from netlab.service.admission import StartupLimit
from netlab.service.handler import ServiceConfig
from netlab.service.launch import build_server
from netlab.service.log import LOG_FORMATS, ServerLog
from netlab.service.policy import (
    DEFAULT_ALLOWED_PROGRAMS,
    DEFAULT_OUTPUT_CAP,
    DEFAULT_RUN_AS,
    Policy,
    command_directory,
    default_run_as,
)
from netlab.service.server import MODELS
from netlab.transport import listen
from netlab.units import size_argument


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="run the command service",
                                   description="Run the command service until SIGTERM or Ctrl-C.")
    add_address_options(parser)
    add_udp_options(parser)
    parser.add_argument("--model", choices=MODELS, default="threaded", help="concurrency model (default threaded)")
    parser.add_argument("--backlog", type=non_negative_int, default=128, help="listen backlog (default 128)")
    parser.add_argument("--allow", metavar="PROG", action="append", default=[],
                        help=f"also allow this program (default allowlist: {' '.join(DEFAULT_ALLOWED_PROGRAMS)})")
    parser.add_argument("--command-timeout", type=positive_float, default=30.0, metavar="S",
                        help="kill a command (its whole process group) after S seconds (default 30); "
                             "a request may only lower it")
    parser.add_argument("--idle-timeout", type=positive_float, default=300.0, metavar="S",
                        help="close a connection that sends no request for S seconds (default 300)")
    parser.add_argument("--request-deadline", type=positive_float, default=10.0, metavar="S",
                        help="a request must arrive whole within S seconds of its first byte (default 10)")
    parser.add_argument("--max-connections", type=non_negative_int, default=64, metavar="N",
                        help="refuse (server-busy) connections beyond N at once (default 64)")
    parser.add_argument("--max-startups", type=StartupLimit.parse, default=StartupLimit(10, 30, 40),
                        metavar="START:RATE:FULL",
                        help="with START connections not yet authenticated (or without a first request), drop new "
                             "ones with RATE %% chance, rising to 100 %% at FULL (default 10:30:40)")
    parser.add_argument("--max-per-peer", type=non_negative_int, default=8, metavar="N",
                        help="connections one peer host may hold before they authenticate or send a first "
                             "request (default 8; 0: no limit)")
    parser.add_argument("--login-grace", type=positive_float, default=10.0, metavar="S",
                        help="with a token, a connection must authenticate within S seconds (default 10)")
    parser.add_argument("--first-request-timeout", type=positive_float, default=10.0, metavar="S",
                        help="a connection that never sent a request is closed after S idle seconds (default 10)")
    parser.add_argument("--run-as", metavar="USER", default=None,
                        help=f"run external commands as USER (default {DEFAULT_RUN_AS} when started as root; "
                             "root keeps root, loudly)")
    parser.add_argument("--shutdown-grace", type=positive_float, default=5.0, metavar="S",
                        help="on SIGTERM/Ctrl-C, let running commands finish for S seconds, then kill them "
                             "(default 5)")
    parser.add_argument("--output-cap", type=size_argument(minimum=1), default=DEFAULT_OUTPUT_CAP, metavar="SIZE",
                        help=f"deliver at most SIZE of stdout and of stderr per command (e.g. 1KiB, 10MiB; at "
                             f"least 1 B); the rest is dropped and the client told (default {DEFAULT_OUTPUT_CAP} "
                             f"= {DEFAULT_OUTPUT_CAP >> 20} MiB)")
    parser.add_argument("--cwd", default=None,
                        help="working directory for commands (default: the server's own; with --run-as, one that "
                             "user can list: the server's own, else the user's home, else /)")
    parser.add_argument("--unsafe-shell", action="store_true",
                        help="run each line through /bin/sh like the tutorials do (loopback/UNIX only)")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    parser.add_argument("--log-format", choices=LOG_FORMATS, default="text",
                        help="text lines for people or one JSON object per line for tools (default text)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    address = resolve_address(args)
    token = resolve_token(args, for_server=True)
    capabilities = FRAMERS[args.framing].capabilities
    if token is not None and not capabilities.authentication:
        raise UsageError(f"the {args.framing} framing cannot authenticate: use --framing length with --token-file")
    lab_namespace = None
    if not address.is_loopback:
        lab_namespace = isolated_lab_namespace() if token is None else None
        if token is None and lab_namespace is None:
            raise UsageError(f"refusing to serve {address} without a token: anyone who can reach it could run "
                             "commands; pass --token-file PATH (made by `netlab token new PATH`) or set "
                             "NETLAB_TOKEN, or listen on loopback (or inside a netlab lab's host)")
        if args.unsafe_shell:
            raise UsageError("--unsafe-shell is only allowed on loopback or UNIX addresses")
    run_as = default_run_as(args.run_as, os.geteuid())
    policy = Policy(
        allowed_programs=tuple(DEFAULT_ALLOWED_PROGRAMS) + tuple(args.allow),
        unsafe_shell=args.unsafe_shell,
        command_timeout=args.command_timeout,
        output_cap=args.output_cap,
        working_directory=command_directory(args.cwd, run_as, os.getcwd()),
        run_as=run_as,
    )
    config = ServiceConfig(framing=args.framing, token=token, idle_timeout=args.idle_timeout,
                           request_deadline=args.request_deadline, login_grace=args.login_grace,
                           first_request_timeout=args.first_request_timeout)
    log = ServerLog(log_format=args.log_format, quiet=args.quiet)
    listener = listen(address, args.backlog, **udp_options(args, address))
    server = build_server(listener, model=args.model, policy=policy, config=config, log=log,
                          max_connections=args.max_connections or 1, shutdown_grace=args.shutdown_grace,
                          max_startups=args.max_startups, max_per_peer=args.max_per_peer or None,
                          stop_on_signals=True)
    print(f"netlab: serving on {listener.address} (framing {args.framing}, model {args.model}, "
          f"backlog {args.backlog}){', token required' if token else ''}"
          f"{f', no token: in {lab_namespace}, which only its lab reaches' if lab_namespace else ''}"
          f"{f', commands run as {policy.run_as}' if policy.run_as else ''}", file=sys.stderr, flush=True)
    if os.geteuid() == 0 and policy.run_as is None:
        log.warning("COMMANDS RUN AS ROOT (--run-as root): anyone who passes the allowlist runs programs with "
                    f"every privilege; drop --run-as to run them as {DEFAULT_RUN_AS}")
    if args.unsafe_shell:
        log.warning("UNSAFE SHELL MODE: every command line runs through /bin/sh with no allowlist; "
                    "anyone who can connect can run anything as this user")
    server.serve_forever()
    print("netlab: server stopped", file=sys.stderr, flush=True)
    return 0
