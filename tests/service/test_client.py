"""The client against in-process servers: authentication, verification, replies."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netlab.errors import AuthError, PolicyError
from netlab.proto.messages import STDERR, STDOUT
from netlab.service.client import Client, quoted_line
from netlab.service.server import MODELS
from netlab.testing import listen_url, serve_in_thread
from netlab.transport.address import STREAM_SCHEMES

TOKEN = b"correct horse"


@pytest.mark.parametrize("model", MODELS)
def test_the_right_token_authenticates(model: str) -> None:
    with serve_in_thread("tcp4://127.0.0.1:0", model=model, token=TOKEN) as running:
        with Client(running.address, token=TOKEN, read_timeout=10) as client:
            assert client.run("echo in").stdout == b"in\n"
            assert client.run("echo again").stdout == b"again\n"


@pytest.mark.parametrize("model", MODELS)
def test_a_wrong_token_is_an_auth_error(model: str) -> None:
    with serve_in_thread("tcp4://127.0.0.1:0", model=model, token=TOKEN) as running:
        with pytest.raises(AuthError, match="auth-failed"):
            Client(running.address, token=b"wrong", read_timeout=10)
        with Client(running.address, token=TOKEN, read_timeout=10) as client:
            assert client.run("echo server survives").stdout == b"server survives\n"


@pytest.mark.parametrize("model", MODELS)
def test_a_missing_token_is_an_auth_error(model: str) -> None:
    with serve_in_thread("tcp4://127.0.0.1:0", model=model, token=TOKEN) as running:
        with Client(running.address, read_timeout=10) as client:
            with pytest.raises(AuthError, match="requires a token"):
                client.run("echo sneaky")


def test_a_token_against_a_server_without_auth_is_an_auth_error() -> None:
    with serve_in_thread("tcp4://127.0.0.1:0") as running:
        with Client(running.address, read_timeout=10) as client:
            assert client.run("echo open").stdout == b"open\n"
        with pytest.raises(AuthError, match="sent no challenge"):
            Client(running.address, token=TOKEN, read_timeout=0.3)


@pytest.mark.parametrize("transport", STREAM_SCHEMES)
def test_a_large_reply_verifies_on_every_transport(transport: str, short_tmp: Path) -> None:
    size = 3 * 2**20 + 17
    with serve_in_thread(listen_url(transport, short_tmp), model="selector") as running:
        with Client(running.address, read_timeout=30) as client:
            reply = client.run(["blob", str(size)], keep_output=False, verify=True)
            unchecked = client.run(["blob", "1000"])
    assert (reply.stdout_bytes, reply.exit.stdout_bytes, reply.stdout) == (size, size, b"")
    assert reply.verified is True
    assert unchecked.exit.stdout_sha256 == b"" and unchecked.verified is None


def test_on_output_sees_each_stream_in_order_and_the_reply_keeps_them_apart() -> None:
    seen: list[tuple[int, bytes]] = []
    with serve_in_thread("tcp4://127.0.0.1:0") as running:
        with Client(running.address, read_timeout=10) as client:
            reply = client.run("blob 1x", on_output=lambda stream, data: seen.append((stream, data)))
    assert reply.exit.exit_status == 2 and reply.stdout == b"" and reply.stderr
    assert {stream for stream, _ in seen} == {STDERR}
    assert b"".join(data for _, data in seen) == reply.stderr
    assert STDOUT not in {stream for stream, _ in seen}


def test_argv_and_line_forms_run_the_same_command() -> None:
    with serve_in_thread("tcp4://127.0.0.1:0") as running:
        with Client(running.address, read_timeout=10) as client:
            as_line = client.run("echo 'a b' c")
            as_argv = client.run(["echo", "a b", "c"])
            with pytest.raises(PolicyError):
                client.run(["not-allowed-program"])
    assert as_line.stdout == as_argv.stdout == b"a b c\n"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=8), max_size=5).map(tuple))
def test_an_argv_is_sent_as_the_line_shlex_join_makes(argv: tuple[str, ...]) -> None:
    assert quoted_line(argv) == shlex.join(argv)
    assert quoted_line(("echo", "x" * 15, "ä", "a b", "")) == shlex.join(("echo", "x" * 15, "ä", "a b", ""))
