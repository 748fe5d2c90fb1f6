"""The user's defaults: ``~/.config/netlab/config.toml`` (or ``$NETLAB_CONFIG``), and ``netlab config show``.

The file may set the default ``address``, ``framing`` and ``token_file`` of
``serve``, ``exec`` and ``shell``::

    address = "unix:///run/user/1000/netlab.sock"
    framing = "line"
    token_file = "~/.config/netlab/token"

Flags override it (``--address``, ``--transport``, ``--framing``,
``--token-file``). A file named by ``$NETLAB_CONFIG`` must exist; the default
one may be absent. A key the file should not have, a wrong type or bad TOML is
one line naming the file. Read with the standard library's ``tomllib``
(``tomli`` on Python 3.10).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from typing import Any

from netlab.cli.parsers import subcommand_parsers
from netlab.errors import UsageError
from netlab.proto.framing import FRAMING_NAMES
from netlab.suggest import did_you_mean

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CONFIG_ENVIRONMENT = "NETLAB_CONFIG"
#: The keys a config file may set, with what they hold.
CONFIG_KEYS = {
    "address": "the default server address, e.g. tcp4://127.0.0.1:7000 or unix:///path.sock",
    "framing": f"the default framing: one of {', '.join(FRAMING_NAMES)}",
    "token_file": "the default --token-file (~ is expanded)",
}


class Configured(str):
    """A string default that came from the config file (a flag given on the command line is a plain str)."""


@dataclass(frozen=True)
class Config:
    """The settings read from the config file, and where from (``path`` is empty when there is none)."""

    path: str = ""
    values: dict[str, str] = field(default_factory=dict)


def config_path() -> tuple[str, bool]:
    """The config file's path, and whether it was named explicitly (by ``$NETLAB_CONFIG``)."""
    named = os.environ.get(CONFIG_ENVIRONMENT)
    if named:
        return named, True
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "netlab", "config.toml"), False


def load_config() -> Config:
    """Read the config file.

    Raises:
        UsageError: ``$NETLAB_CONFIG`` names a missing file, the file is not TOML,
            or it has an unknown key or a value of the wrong type.
    """
    path, named = config_path()
    try:
        with open(path, "rb") as stream:
            document: dict[str, Any] = tomllib.load(stream)
    except FileNotFoundError:
        if named:
            raise UsageError(f"{path}: no such file (named by ${CONFIG_ENVIRONMENT}): create it or unset "
                             f"{CONFIG_ENVIRONMENT}") from None
        return Config()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the config file: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None
    values: dict[str, str] = {}
    for key, value in document.items():
        if key not in CONFIG_KEYS:
            raise UsageError(f"{path}: unknown key {key!r}{did_you_mean(key, CONFIG_KEYS)}; allowed: "
                             f"{', '.join(CONFIG_KEYS)}")
        if not isinstance(value, str) or not value:
            raise UsageError(f"{path}: {key} must be a non-empty string, e.g. {key} = \"...\"")
        if key == "framing" and value not in FRAMING_NAMES:
            raise UsageError(f"{path}: framing must be one of {', '.join(FRAMING_NAMES)}, got {value!r}"
                             f"{did_you_mean(value, FRAMING_NAMES)}")
        values[key] = os.path.expanduser(value) if key == "token_file" else value
    return Config(path, values)


def apply_config(parser: argparse.ArgumentParser, config: Config) -> None:
    """Make the config file's values the defaults of every (sub)command that has those options."""
    for _name, child in subcommand_parsers(parser):
        dests = {action.dest for action in child._actions}
        child.set_defaults(**{key: Configured(value) for key, value in config.values.items() if key in dests})


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("config", help="show the settings from the config file in force",
                                   description="Defaults for serve, exec and shell from ~/.config/netlab/config.toml "
                                               f"(or ${CONFIG_ENVIRONMENT}): {', '.join(CONFIG_KEYS)}. Flags "
                                               "override them.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = actions.add_parser("show", help="print the config file's path and the settings in force",
                              description="Print which config file is read and each setting with where it "
                                          "comes from (the file, or netlab's default).")
    show.set_defaults(handler=run_show)


def run_show(args: argparse.Namespace) -> int:
    path, named = config_path()
    config = load_config()
    if config.path:
        print(f"config file: {config.path}" + (f" (from ${CONFIG_ENVIRONMENT})" if named else ""))
    else:
        print(f"config file: none ({path} does not exist)")
    builtin = {"address": "tcp4://127.0.0.1:6969 (per --transport)", "framing": "length",
               "token_file": "none ($NETLAB_TOKEN if set)"}
    for key in CONFIG_KEYS:
        if key in config.values:
            print(f"{key} = {config.values[key]}  (config file)")
        else:
            print(f"{key} = {builtin[key]}  (default)")
    return 0
