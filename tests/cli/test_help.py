"""Help that answers: every option of every command has help and shows its default; -V; help TOPIC;
short options; an unknown option shows its own command's usage."""

from __future__ import annotations

import argparse
import re

import pytest

from netlab import __version__
from netlab.cli.main import DefaultsShown, build_parser
from netlab.cli.parsers import subcommand_parsers
from netlab.testing import run_netlab

PARSERS = dict(subcommand_parsers(build_parser()))


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [action for action in parser._actions
            if not isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction))
            and action.help != argparse.SUPPRESS]


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_every_option_has_help_and_shows_its_default(name: str) -> None:
    parser = PARSERS[name]
    text = re.sub(r"\s+", " ", parser.format_help())
    formatter = parser._get_formatter()
    for action in _options(parser):
        label = "/".join(action.option_strings) or action.dest
        assert action.help, f"netlab {name} {label} has no help"
        if action.option_strings and action.nargs != 0 and action.default not in (None, [], ""):
            shown = re.sub(r"\s+", " ", formatter._expand_help(action))  # type: ignore[attr-defined]
            assert "default" in shown.lower(), f"netlab {name} {label}: --help does not show its default"
            assert shown in text


def test_the_default_is_shown_where_the_option_did_not_say_it() -> None:
    parser = argparse.ArgumentParser(prog="x", formatter_class=DefaultsShown)
    parser.add_argument("--level", default=3, help="how loud")
    parser.add_argument("--size", default=7, help="how big (default 7)")
    parser.add_argument("--name", default=None, help="who")
    parser.add_argument("--all", action="store_true", help="everything")
    text = re.sub(r"\s+", " ", parser.format_help())
    assert "how loud (default: 3)" in text and "how big (default 7) " in text
    assert "who --all" in text and "everything" in text and text.count("default") == 2


def test_help_of_a_command_with_units_lists_the_accepted_forms() -> None:
    text = re.sub(r"\s+", " ", run_netlab("help", "serve").stdout.decode())
    assert "units: sizes are bytes, or 1000, 10B, 4kB = 4000, 4KiB = 4096, 10MiB, 1GiB; durations are seconds, " \
           "or 2s, 500ms, 250us, 1m" in text


@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_version(flag: str) -> None:
    result = run_netlab(flag)
    assert (result.returncode, result.stdout.decode()) == (0, f"netlab {__version__}\n")


def test_help_topic_is_the_command_help() -> None:
    assert run_netlab("help", "exec").stdout == run_netlab("exec", "--help").stdout
    assert run_netlab("help", "results", "show").stdout == run_netlab("results", "show", "--help").stdout
    assert "percentages are 5% or 5" in run_netlab("help", "units").stdout.decode()


def test_a_mistyped_help_topic_suggests_the_nearest() -> None:
    result = run_netlab("help", "exce")
    assert result.returncode == 2
    assert result.stderr.decode().startswith("netlab: no command or topic 'exce' (did you mean 'exec'?)")


@pytest.mark.parametrize(("argv", "usage", "code"), [
    (["serve", "--bogus"], "usage: netlab serve ", 2),
    (["results", "show", "--bogus", "x.json"], "usage: netlab results show ", 2),
    (["exec", "--bogus", "--", "echo"], "usage: netlab exec ", 255),
])
def test_an_unknown_option_prints_that_commands_usage(argv: list[str], usage: str, code: int) -> None:
    result = run_netlab(*argv)
    stderr = result.stderr.decode()
    assert result.returncode == code and stderr.startswith(usage), stderr
    assert "unrecognized arguments: --bogus" in stderr


def test_a_mistyped_command_suggests_the_nearest() -> None:
    result = run_netlab("serv")
    assert result.returncode == 2 and "(did you mean 'serve'?)" in result.stderr.decode()


@pytest.mark.parametrize(("command", "short", "long"), [
    ("serve", "-q", "--quiet"), ("serve", "-p", "--port"), ("exec", "-t", "--timeout"), ("exec", "-p", "--port"),
    ("shell", "-t", "--timeout"), ("capture", "-c", "--count"), ("capture", "-i", "--interface"),
    ("capture", "-w", "--pcap"), ("capture", "-r", "--read"), ("capture", "-p", "--port"), ("bench", "-c", "--count"),
])
def test_short_options_of_the_usual_tools(command: str, short: str, long: str) -> None:
    parser = PARSERS[command]
    assert any(short in action.option_strings and long in action.option_strings for action in parser._actions)


def test_port_replaces_the_default_port_and_is_refused_for_unix() -> None:
    result = run_netlab("exec", "-p", "9", "-t", "2", "--connect-timeout", "1", "--", "echo", "hi")
    assert result.returncode == 255 and "127.0.0.1:9" in result.stderr.decode()
    result = run_netlab("exec", "--transport", "unix", "-p", "9", "--", "echo", "hi")
    assert result.returncode == 255
    assert "--port applies to tcp4, tcp6, udp and udp6, not unix" in result.stderr.decode()
