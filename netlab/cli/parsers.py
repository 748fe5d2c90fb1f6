"""Walking the command-line parser tree: every subcommand's parser, with its full name."""

from __future__ import annotations

import argparse
from collections.abc import Iterator


def subcommand_parsers(parser: argparse.ArgumentParser,
                       prefix: str = "") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every (sub)subcommand parser under ``parser``, with its name (``results show``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                full = f"{prefix} {name}".strip()
                yield full, child
                yield from subcommand_parsers(child, full)
