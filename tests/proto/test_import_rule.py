"""The layer rule for netlab.proto: pure code, no I/O, no clocks, no threads.

Every module under netlab/proto (nested packages included) is parsed with
``ast`` and each ``import x`` / ``from x import y`` (and ``__import__("x")`` or
``importlib.import_module("x")`` with a literal name) is checked by its
top-level package name, wherever it appears (module level, functions, try blocks).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import netlab.proto

FORBIDDEN = {"socket", "select", "selectors", "threading", "asyncio", "time", "subprocess"}
PROTO_ROOT = Path(netlab.proto.__file__).resolve().parent
PROTO_MODULES = sorted(PROTO_ROOT.rglob("*.py"))


def forbidden_imports(source: str, filename: str = "<source>") -> list[str]:
    """Return ``"line N: name"`` for each import of a forbidden module in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and _is_dynamic_import(node.func) and node.args:
            first = node.args[0]
            names = [first.value] if isinstance(first, ast.Constant) and isinstance(first.value, str) else []
        else:
            continue
        found += [f"line {node.lineno}: {name}" for name in names if name.split(".")[0] in FORBIDDEN]
    return found


def _is_dynamic_import(function: ast.expr) -> bool:
    if isinstance(function, ast.Name):
        return function.id in ("__import__", "import_module")
    return isinstance(function, ast.Attribute) and function.attr == "import_module"


def test_the_walk_finds_the_nested_framing_package() -> None:
    relative = {path.relative_to(PROTO_ROOT).as_posix() for path in PROTO_MODULES}
    assert {"__init__.py", "codec.py", "session.py", "framing/__init__.py", "framing/length.py"} <= relative
    assert {"seq/wire.py", "seq/receiver.py", "seq/recovery.py", "seq/connection.py", "seq/acceptor.py"} <= relative


@pytest.mark.parametrize("path", PROTO_MODULES, ids=lambda path: path.relative_to(PROTO_ROOT).as_posix())
def test_proto_module_imports_no_io_clock_or_thread_module(path: Path) -> None:
    assert forbidden_imports(path.read_text(encoding="utf-8"), str(path)) == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import socket", ["line 1: socket"]),
        ("import os, time", ["line 1: time"]),
        ("import asyncio.events as events", ["line 1: asyncio.events"]),
        ("from threading import Lock", ["line 1: threading"]),
        ("from concurrent import futures\nfrom selectors import DefaultSelector", ["line 2: selectors"]),
        ("def later():\n    import subprocess", ["line 2: subprocess"]),
        ("try:\n    import select\nexcept ImportError:\n    pass", ["line 2: select"]),
        ("importlib.import_module('socket')", ["line 1: socket"]),
        ("clock = __import__('time')", ["line 1: time"]),
        ("import timeit, sockets, selectorsx", []),
        ("from . import time", []),  # a sibling module that happens to be named time
        ("from netlab.proto import session", []),
    ],
)
def test_the_checker_catches_both_import_forms(source: str, expected: list[str]) -> None:
    assert forbidden_imports(source) == expected
