"""Tutorial compatibility: the raw framing talks to plain-socket tutorial code, bugs included.

The classic tutorial client sends a command with one ``send`` and takes one
``recv(1024)`` as the whole reply; the classic server does the mirror image.
Our raw framing must interoperate with both, and must show the bug the lab
exists to explain: an output longer than 1024 bytes does not fit one receive,
and its rest arrives as the "reply" to the next command.
"""

from __future__ import annotations

import shlex
import socket
import subprocess
import threading

from netlab.service.builtins import BLOB_BLOCK
from netlab.service.client import Client
from netlab.testing import serve_in_thread
from netlab.transport import connect

TUTORIAL_BUFFER = 1024
SOCKET_TIMEOUT = 10.0


def tutorial_client_connect(address: str) -> socket.socket:
    host, port = address.removeprefix("tcp4://").rsplit(":", 1)
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.settimeout(SOCKET_TIMEOUT)
    client.connect((host, int(port)))
    return client


def test_a_tutorial_client_gets_a_short_reply() -> None:
    with serve_in_thread("tcp4://127.0.0.1:0", framing="raw") as running:
        with tutorial_client_connect(running.address) as client:
            client.send(b"echo hello tutorial")
            assert client.recv(TUTORIAL_BUFFER) == b"hello tutorial\n"
            client.send(b"upper again")
            assert client.recv(TUTORIAL_BUFFER) == b"AGAIN\n"


def test_a_long_reply_spills_into_the_next_commands_reply() -> None:
    with serve_in_thread("tcp4://127.0.0.1:0", framing="raw") as running:
        with tutorial_client_connect(running.address) as client:
            client.send(b"blob 3000")
            first = client.recv(TUTORIAL_BUFFER)
            assert 0 < len(first) <= TUTORIAL_BUFFER
            assert first == BLOB_BLOCK[: len(first)]
            client.send(b"echo hi")
            second = client.recv(TUTORIAL_BUFFER)
            # The "reply" to echo is the next slice of the blob, not b"hi\n".
            assert second == BLOB_BLOCK[len(first): len(first) + len(second)]
            assert not second.startswith(b"hi")
            received = first + second
            for _ in range(10):  # drain: the blob's rest, then echo's real answer
                if len(received) >= 3000 + len(b"hi\n"):
                    break
                received += client.recv(TUTORIAL_BUFFER)
            assert received == BLOB_BLOCK[:3000] + b"hi\n"


def _tutorial_server(listening: socket.socket, served: threading.Event) -> None:
    """The tutorial's server: recv(1024), run the line, send all its output."""
    connection, _ = listening.accept()
    with connection:
        connection.settimeout(SOCKET_TIMEOUT)
        while True:
            line = connection.recv(TUTORIAL_BUFFER).decode()
            if not line:
                break
            result = subprocess.run(shlex.split(line), capture_output=True, timeout=SOCKET_TIMEOUT, check=False)
            connection.send(result.stdout + result.stderr)
    served.set()


def test_our_raw_client_drives_a_tutorial_server() -> None:
    served = threading.Event()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(1)
        listening.settimeout(SOCKET_TIMEOUT)
        port = listening.getsockname()[1]
        thread = threading.Thread(target=_tutorial_server, args=(listening, served), daemon=True)
        thread.start()
        with Client(f"tcp4://127.0.0.1:{port}", framing="raw", read_timeout=SOCKET_TIMEOUT,
                    connection=connect(f"tcp4://127.0.0.1:{port}")) as client:
            first = client.run("echo from the tutorial")
            second = client.run(["echo", "a b"])
        assert served.wait(SOCKET_TIMEOUT)
        thread.join(SOCKET_TIMEOUT)
    assert first.stdout == b"from the tutorial\n"
    assert first.exit.exit_status is None  # raw carries no status
    assert second.stdout == b"a b\n"
