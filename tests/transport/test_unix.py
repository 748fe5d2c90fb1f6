"""AF_UNIX specifics: file safety, permissions, peer credentials, the full-queue connect, seqpacket limits."""

from __future__ import annotations

import errno
import os
import socket
import stat

import pytest

from netlab.errors import (
    AuthError,
    BindError,
    ConnectError,
    ConnectionRefused,
    ConnectTimeout,
    ReadError,
    WriteError,
)
from netlab.transport import Address, connect, default_address, listen
from netlab.transport.unix import SeqpacketConnection, UnixConnection, UnixListener, listen_unix

UNIX_SCHEMES = ["unix", "unix-seqpacket"]
SOCKET_TYPES = {"unix": socket.SOCK_STREAM, "unix-seqpacket": socket.SOCK_SEQPACKET}


def mode_of(path: str) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def leave_stale_socket(path: str, socket_type: int) -> None:
    """Bind a socket at ``path`` and close it without removing the file, as a crashed server does."""
    sock = socket.socket(socket.AF_UNIX, socket_type)
    sock.bind(path)
    sock.listen(1)
    sock.close()


@pytest.mark.parametrize("scheme", UNIX_SCHEMES)
def test_created_directory_is_0700_and_socket_0600(scheme: str, short_tmp: str) -> None:
    path = os.path.join(short_tmp, "private", "s.sock")
    with listen(f"{scheme}://{path}"):
        assert mode_of(os.path.dirname(path)) == 0o700
        assert mode_of(path) == 0o600
        assert stat.S_ISSOCK(os.lstat(path).st_mode)


def test_an_existing_directory_keeps_its_mode(short_tmp: str) -> None:
    os.chmod(short_tmp, 0o755)
    with listen(f"unix://{short_tmp}/s.sock"):
        assert mode_of(short_tmp) == 0o755


def test_a_missing_grandparent_directory_is_a_bind_error(short_tmp: str) -> None:
    with pytest.raises(BindError, match="does not exist"):
        listen(f"unix://{short_tmp}/a/b/s.sock")


@pytest.mark.parametrize("scheme", UNIX_SCHEMES)
def test_socket_file_is_removed_on_close(scheme: str, short_tmp: str) -> None:
    path = os.path.join(short_tmp, "s.sock")
    bound = listen(f"{scheme}://{path}")
    assert os.path.exists(path)
    bound.close()
    assert not os.path.exists(path)


def test_close_leaves_a_file_that_replaced_ours(short_tmp: str) -> None:
    path = os.path.join(short_tmp, "s.sock")
    bound = listen(f"unix://{path}")
    os.unlink(path)
    with open(path, "w") as replacement:
        replacement.write("someone else's")
    bound.close()
    with open(path) as replacement:
        assert replacement.read() == "someone else's"


@pytest.mark.parametrize("scheme", UNIX_SCHEMES)
def test_stale_socket_is_removed(scheme: str, short_tmp: str) -> None:
    path = os.path.join(short_tmp, "s.sock")
    leave_stale_socket(path, SOCKET_TYPES[scheme])
    with pytest.raises(ConnectionRefused, match="nothing listens on it"):
        connect(f"{scheme}://{path}", timeout=1.0)
    with (
        listen(f"{scheme}://{path}") as bound,
        connect(bound.address, timeout=5.0) as client,
        bound.accept(timeout=5.0) as server,
    ):
        client.send(b"fresh")
        assert server.receive(timeout=5.0) == b"fresh"


@pytest.mark.parametrize("scheme", UNIX_SCHEMES)
@pytest.mark.parametrize("backlog_filled", [False, True])
def test_a_live_server_is_never_clobbered(scheme: str, backlog_filled: bool, short_tmp: str) -> None:
    """Both probe answers mean "alive": a connection, and EAGAIN from a full queue."""
    url = f"{scheme}://{short_tmp}/s.sock"
    with listen(url, backlog=0) as live:
        queued = connect(live.address, timeout=5.0) if backlog_filled else None
        with pytest.raises(BindError, match="is in use — is another netlab server running"):
            listen(url)
        live.accept(timeout=5.0).close()  # the queued client, or else the probe that connected and left
        if queued is not None:
            queued.close()
        with connect(live.address, timeout=5.0) as client, live.accept(timeout=5.0) as server:
            client.send(b"still here")
            assert server.receive(timeout=5.0) == b"still here"


def test_a_server_of_the_other_socket_type_counts_as_live(short_tmp: str) -> None:
    path = os.path.join(short_tmp, "s.sock")
    with listen(f"unix-seqpacket://{path}"):
        with pytest.raises(BindError, match="in use"):
            listen(f"unix://{path}")
        with pytest.raises(ConnectError, match="try unix-seqpacket://"):
            connect(f"unix://{path}", timeout=1.0)


@pytest.mark.parametrize("kind", ["regular file", "directory"])
def test_a_non_socket_at_the_path_is_never_clobbered(kind: str, short_tmp: str) -> None:
    path = os.path.join(short_tmp, "s.sock")
    if kind == "directory":
        os.mkdir(path)
    else:
        with open(path, "w") as regular:
            regular.write("precious")
    with pytest.raises(BindError, match=f"a {kind} is at {path}, not a socket"):
        listen(f"unix://{path}")
    if kind == "directory":
        assert os.path.isdir(path)
    else:
        with open(path) as regular:
            assert regular.read() == "precious"


def test_missing_socket_file_is_refused(short_tmp: str) -> None:
    path = os.path.join(short_tmp, "absent.sock")
    with pytest.raises(ConnectionRefused, match=f"no socket file at {path} — is the server running"):
        connect(f"unix://{path}", timeout=1.0)


@pytest.mark.parametrize("scheme", UNIX_SCHEMES)
def test_peer_credentials_on_both_ends(scheme: str, short_tmp: str) -> None:
    with listen(f"{scheme}://{short_tmp}/s.sock") as bound:
        assert isinstance(bound, UnixListener)
        with connect(bound.address, timeout=5.0) as client, bound.accept(timeout=5.0) as server:
            assert isinstance(client, UnixConnection) and isinstance(server, UnixConnection)
            me = (os.getpid(), os.getuid(), os.getgid())
            assert tuple(server.peer_credentials) == me
            assert tuple(client.peer_credentials) == me
            assert server.peer_address == f"{scheme}:pid={os.getpid()}"


def test_a_peer_with_another_uid_is_rejected_and_the_listener_goes_on(short_tmp: str) -> None:
    with listen_unix(Address("unix", path=f"{short_tmp}/s.sock"), allowed_uids={12345}) as bound:
        with connect(bound.address, timeout=5.0) as client:
            with pytest.raises(AuthError, match=f"uid {os.getuid()}"):
                bound.accept(timeout=5.0)
            assert client.receive(timeout=5.0) == b""
        bound.allowed_uids = frozenset({os.getuid()})
        with connect(bound.address, timeout=5.0) as client, bound.accept(timeout=5.0) as server:
            assert server.peer_credentials.uid == os.getuid()


def connect_as_another_user(path: str, uid: int) -> int:
    """Fork a child that drops to ``uid`` and connects; exit 0 means it then read end of stream."""
    pid = os.fork()
    if pid == 0:  # the child: only plain system calls, then _exit
        code = 2
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(10.0)
                sock.connect(path)
                code = 0 if sock.recv(1) == b"" else 1
        finally:
            os._exit(code)
    return pid


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a client as another user")
def test_a_real_client_of_another_user_is_rejected_by_default(short_tmp: str) -> None:
    path = os.path.join(short_tmp, "s.sock")
    nobody = 65534
    with listen(f"unix://{path}") as bound:
        os.chmod(short_tmp, 0o755)
        os.chmod(path, 0o666)  # let the other user reach the socket, so SO_PEERCRED is what stops it
        child = connect_as_another_user(path, nobody)
        with pytest.raises(AuthError, match=f"uid {nobody}"):
            bound.accept(timeout=10.0)
        _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0  # the rejected client read end of stream


@pytest.mark.parametrize("scheme", UNIX_SCHEMES)
def test_timeout_zero_on_a_full_queue_is_eagain_at_once(scheme: str, short_tmp: str) -> None:
    with listen(f"{scheme}://{short_tmp}/s.sock", backlog=0) as full:
        admitted = connect(full.address, timeout=0)
        with pytest.raises(ConnectionRefused, match="accept queue .* is full") as caught:
            connect(full.address, timeout=0)
        assert isinstance(caught.value.__cause__, OSError)
        assert caught.value.__cause__.errno == errno.EAGAIN
        admitted.close()


def test_settimeout_connect_would_not_wait(short_tmp: str) -> None:
    """The kernel/Python trap this transport works around: settimeout() + connect() fails at once."""
    path = f"{short_tmp}/s.sock"
    with listen(f"unix://{path}", backlog=0) as full:
        admitted = connect(full.address, timeout=5.0)
        with socket.socket(socket.AF_UNIX) as naive:
            naive.settimeout(5.0)
            with pytest.raises(BlockingIOError):  # EAGAIN at once; a real wait would end in TimeoutError
                naive.connect(path)
        with pytest.raises(ConnectTimeout, match="stayed full for 0.3 s"):
            connect(full.address, timeout=0.3)
        admitted.close()


def test_connection_socket_has_no_send_timeout_left_over(short_tmp: str) -> None:
    """SO_SNDTIMEO bounds only the connect; sends then follow the per-call timeout."""
    with (
        listen(f"unix://{short_tmp}/s.sock") as bound,
        connect(bound.address, timeout=0.5) as client,
        bound.accept(timeout=5.0),
        socket.socket(fileno=os.dup(client.fileno())) as duplicate,
    ):
        assert duplicate.getsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, 16) == bytes(16)


def test_seqpacket_message_limits(short_tmp: str) -> None:
    with (
        listen(f"unix-seqpacket://{short_tmp}/s.sock") as bound,
        connect(bound.address, timeout=5.0) as client,
        bound.accept(timeout=5.0) as server,
    ):
        assert isinstance(client, SeqpacketConnection)
        with socket.socket(fileno=os.dup(client.fileno())) as duplicate:
            assert client.max_message_size == duplicate.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) - 32
        largest = b"m" * client.max_message_size
        client.send(largest, timeout=5.0)
        assert server.receive(client.max_message_size, timeout=5.0) == largest
        with pytest.raises(WriteError, match=f"limited to {client.max_message_size} bytes"):
            client.send(largest + b"!", timeout=5.0)
        client.send(b"")  # sends nothing: the next receive sees the next message, not an end of stream
        client.send(b"0123456789")
        with pytest.raises(ReadError, match="longer than max_bytes=4"):
            server.receive(4, timeout=5.0)
        client.send(b"0123456789")
        with pytest.raises(ReadError, match="longer than max_bytes=4"):
            server.receive_into(memoryview(bytearray(4)), timeout=5.0)


def test_default_address_listens_in_a_private_runtime_directory(
    monkeypatch: pytest.MonkeyPatch, short_tmp: str
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", short_tmp)
    address = default_address("unix")
    with listen(address) as bound:
        assert mode_of(os.path.dirname(address.path)) == 0o700
        with connect(bound.address, timeout=5.0), bound.accept(timeout=5.0):
            pass
    assert not os.path.exists(address.path)


def test_an_unsafe_runtime_directory_is_refused(monkeypatch: pytest.MonkeyPatch, short_tmp: str) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", short_tmp)
    os.mkdir(os.path.join(short_tmp, "netlab"), 0o700)
    os.chmod(os.path.join(short_tmp, "netlab"), 0o777)
    with pytest.raises(BindError, match="refusing the runtime directory"):
        listen(default_address("unix"))
