"""``netlab token new PATH``: make a random shared secret in an owner-only file."""

from __future__ import annotations

import argparse
import sys

from netlab.service.token import new_token, write_token_file


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("token", help="make a token for the auth step",
                                   description="Make a random token for `netlab serve/exec/shell --token-file`.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    new = actions.add_parser("new", help="write a new random token to PATH (mode 0600)",
                             description="Write 32 random bytes (base64, 43 characters) to PATH, mode 0600; "
                                         "an existing file is never overwritten.")
    new.add_argument("path", metavar="PATH", help="the file to create (mode 0600)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    write_token_file(args.path, new_token())
    print(f"netlab: wrote a new token to {args.path} (mode 0600); pass --token-file {args.path} "
          "to netlab serve and to its clients", file=sys.stderr)
    return 0
