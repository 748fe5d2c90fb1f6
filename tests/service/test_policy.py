"""Policy: command-line splitting, the allowlist and settings validation."""

from __future__ import annotations

import shlex

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netlab.errors import PolicyError, UsageError
from netlab.service.commandline import split_command_line
from netlab.service.policy import (
    BUILTIN_COMMANDS,
    DEFAULT_ALLOWED_PROGRAMS,
    Policy,
    check_command,
    resolve_allowed_program,
)

SPLIT_TABLE = [
    ("echo hi", ["echo", "hi"]),
    ("  echo   hi  ", ["echo", "hi"]),
    ("echo 'a b' c", ["echo", "a b", "c"]),
    ('echo "a b"', ["echo", "a b"]),
    (r"echo a\ b", ["echo", "a b"]),
    ("echo hi; id", ["echo", "hi;", "id"]),
    ("echo $(id)", ["echo", "$(id)"]),
    ("echo `id`", ["echo", "`id`"]),
    ("ls | id", ["ls", "|", "id"]),
    ("ls\nid", ["ls", "id"]),
    ("ls\tid\r", ["ls", "id"]),
    ("echo # not a comment", ["echo", "#", "not", "a", "comment"]),
    ("echo ''", ["echo", ""]),
    ("echo héllo", ["echo", "héllo"]),
]


@pytest.mark.parametrize(("line", "argv"), SPLIT_TABLE)
def test_split_command_line_gives_literal_argv(line: str, argv: list[str]) -> None:
    assert split_command_line(line) == argv


@pytest.mark.parametrize("line", ["", "   ", "\n\t \r"])
def test_split_refuses_an_empty_line(line: str) -> None:
    with pytest.raises(PolicyError, match="empty"):
        split_command_line(line)


@pytest.mark.parametrize("line", ["echo 'open", 'echo "open', "echo 'a' 'b", "echo \\"])
def test_split_refuses_an_unclosed_quote(line: str) -> None:
    with pytest.raises(PolicyError, match="cannot split"):
        split_command_line(line)


def test_split_refuses_nul() -> None:
    with pytest.raises(PolicyError, match="NUL"):
        split_command_line("echo a\0b")


@given(st.text(alphabet=st.characters(blacklist_characters="\0"), max_size=40))
def test_split_agrees_with_shlex(line: str) -> None:
    """The fast path for plain lines must never disagree with shlex."""
    try:
        expected = shlex.split(line)
    except ValueError:
        with pytest.raises(PolicyError):
            split_command_line(line)
        return
    if not expected:
        with pytest.raises(PolicyError):
            split_command_line(line)
    else:
        assert split_command_line(line) == expected


@pytest.mark.parametrize("name", BUILTIN_COMMANDS)
def test_builtins_are_always_allowed(name: str) -> None:
    check_command([name, "x"], Policy(allowed_programs=()))


@pytest.mark.parametrize("name", DEFAULT_ALLOWED_PROGRAMS)
def test_default_programs_are_allowed(name: str) -> None:
    check_command([name], Policy())


def test_refusal_names_the_program_and_the_way_out() -> None:
    with pytest.raises(PolicyError) as caught:
        check_command(["rm", "-rf", "/"], Policy())
    message = str(caught.value)
    assert message.startswith("'rm' is not allowed; allowed: ls, pwd")
    assert "echo" in message and "--allow PROG" in message


@pytest.mark.parametrize("program", ["/bin/ls", "./ls", "../bin/ls", "bin/ls", ""])
def test_a_path_must_match_an_allowed_path_exactly(program: str) -> None:
    with pytest.raises(PolicyError, match="not allowed"):
        check_command([program], Policy())


def test_an_allowed_absolute_path_runs_by_path_or_by_name() -> None:
    policy = Policy(allowed_programs=("/usr/bin/env",))
    assert resolve_allowed_program("/usr/bin/env", policy) == "/usr/bin/env"
    assert resolve_allowed_program("env", policy) == "/usr/bin/env"
    with pytest.raises(PolicyError):
        resolve_allowed_program("/bin/env", policy)


def test_a_bare_allowed_name_stays_bare_for_the_path_lookup() -> None:
    assert resolve_allowed_program("ls", Policy()) == "ls"


def test_unsafe_shell_allows_everything() -> None:
    check_command(["rm", "-rf", "x"], Policy(unsafe_shell=True))


def test_an_empty_argv_is_refused() -> None:
    with pytest.raises(PolicyError, match="empty"):
        check_command([], Policy())


def test_with_allowed_adds_programs_once() -> None:
    policy = Policy().with_allowed("sh", "ls", "/usr/bin/env")
    assert policy.allowed_programs == DEFAULT_ALLOWED_PROGRAMS + ("sh", "/usr/bin/env")
    check_command(["sh"], policy)


@pytest.mark.parametrize(
    "settings",
    [
        {"command_timeout": 0},
        {"command_timeout": float("nan")},
        {"command_timeout": float("inf")},
        {"kill_grace": -1},
        {"output_cap": -1},
        {"allowed_programs": ("bin/ls",)},
        {"allowed_programs": ("",)},
        {"allowed_programs": ("/usr/bin/",)},
    ],
)
def test_invalid_settings_are_usage_errors(settings: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        Policy(**settings)  # type: ignore[arg-type]
