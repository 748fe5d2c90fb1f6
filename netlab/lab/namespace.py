"""Network namespaces: names, privilege check, create/remove, and entering one from a thread.

How this works: namespaces are made with pyroute2 (``netns.create``), which
bind-mounts them under ``/run/netns`` exactly as ``ip netns add`` does, so
``ip netns list`` and ``ip netns exec`` see them too. Every name netlab gives
starts with :data:`NAMESPACE_PREFIX` and carries the run id; interfaces (15
characters at most) start with :data:`INTERFACE_PREFIX` plus the run id.

A network namespace belongs to a thread, not to a process: :func:`entered`
switches only the calling thread (``setns(2)``), and a socket keeps the
namespace it was created in for its whole life. So one process can hold a
server socket in one namespace and a client socket in another, which is how
the experiments run over a link without spawning helpers.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from netlab.errors import NetlabError, PrivilegeError

NAMESPACE_PREFIX = "netlab-"
INTERFACE_PREFIX = "nl"
RUN_ID_LENGTH = 6
NETNS_DIRECTORY = "/run/netns"
CLONE_NEWNET = 0x40000000
CAP_NET_ADMIN = 12
_RUN_ID = re.compile(r"^[0-9a-f]{6}$")
#: netlab's namespaces: netlab-<run id>-<role>.
NAMESPACE_PATTERN = re.compile(r"^netlab-([0-9a-f]{6})-[a-z0-9]+$")
#: netlab's interfaces: nl<run id>-<side>.
INTERFACE_PATTERN = re.compile(r"^nl([0-9a-f]{6})-[a-z0-9]{1,6}$")
CAP_SYS_ADMIN = 21
NEED_PRIVILEGE = ("network namespaces need root (CAP_SYS_ADMIN and CAP_NET_ADMIN): run as root (e.g. with sudo), "
                  "or use network: loopback")
ROOT_WITHOUT_CAPABILITIES = ("network namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN, which this root process "
                             "lacks (a container started without them?): grant them (e.g. docker run --cap-add "
                             "SYS_ADMIN --cap-add NET_ADMIN), or use network: loopback")


def new_run_id() -> str:
    """A fresh run id: six hex digits, so every name stays within 15 characters."""
    return secrets.token_hex(RUN_ID_LENGTH // 2)


def check_run_id(run_id: str) -> str:
    """Return ``run_id`` if it is six hex digits; raise NetlabError otherwise."""
    if not _RUN_ID.match(run_id):
        raise NetlabError(f"bad run id {run_id!r}: expected six hex digits such as 3fa09c", exit_code=2)
    return run_id


def namespace_name(run_id: str, role: str) -> str:
    """``netlab-<run id>-<role>``, e.g. ``netlab-3fa09c-server``."""
    return f"{NAMESPACE_PREFIX}{run_id}-{role}"


def interface_name(run_id: str, side: str) -> str:
    """``nl<run id>-<side>``, e.g. ``nl3fa09c-rs`` (at most 15 characters)."""
    name = f"{INTERFACE_PREFIX}{run_id}-{side}"
    if len(name) > 15:
        raise ValueError(f"interface name {name} is longer than 15 characters")
    return name


def can_make_namespaces() -> bool:
    """True when this process may create namespaces and links: CAP_SYS_ADMIN (to make and mount a
    namespace) and CAP_NET_ADMIN (links, addresses, queue disciplines) are both effective.

    Root usually has both; root in a container started without them has neither, and is told so.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as stream:
            for line in stream:
                if line.startswith("CapEff:"):
                    effective = int(line.split()[1], 16)
                    return bool(effective >> CAP_SYS_ADMIN & 1 and effective >> CAP_NET_ADMIN & 1)
    except (OSError, ValueError, IndexError):
        return os.geteuid() == 0
    return os.geteuid() == 0


def require_namespaces() -> None:
    """Raise PrivilegeError (exit 2) when namespaces cannot be made here; say why in one line."""
    if not can_make_namespaces():
        raise PrivilegeError(ROOT_WITHOUT_CAPABILITIES if os.geteuid() == 0 else NEED_PRIVILEGE)
    if not os.path.exists("/proc/self/ns/net"):
        raise PrivilegeError("this kernel has no network namespaces (no /proc/self/ns/net): use network: loopback")


def namespace_path(name: str) -> str:
    """Where the namespace's bind mount lives (``/run/netns/NAME``)."""
    return os.path.join(NETNS_DIRECTORY, name)


def list_namespaces() -> list[str]:
    """Every named namespace (``ip netns list``), netlab's or not."""
    try:
        return sorted(os.listdir(NETNS_DIRECTORY))
    except FileNotFoundError:
        return []


def create_namespace(name: str) -> None:
    """Create the named namespace; raise NetlabError if it exists or cannot be made."""
    from pyroute2 import netns

    if name in list_namespaces():
        raise NetlabError(f"namespace {name} exists already: run `netlab lab clean` to remove netlab's leftovers")
    try:
        netns.create(name)
    except OSError as exc:
        raise NetlabError(f"cannot create namespace {name}: {exc.strerror or exc}") from None


def remove_namespace(name: str) -> bool:
    """Remove the named namespace (unmount and unlink); False when it was not there."""
    path = namespace_path(name)
    if not os.path.exists(path):
        return False
    libc = _libc()
    libc.umount2(path.encode(), 2)  # MNT_DETACH; fails harmlessly when not mounted
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def namespace_inode(name: str) -> int | None:
    """The inode that identifies the namespace (as in /proc/PID/ns/net), or None."""
    try:
        return os.stat(namespace_path(name)).st_ino
    except OSError:
        return None


def processes_in(inode: int) -> list[int]:
    """The pids of every process whose network namespace has this inode."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/net").st_ino == inode:
                pids.append(int(entry))
        except OSError:
            continue
    return pids


def isolated_lab_namespace() -> str | None:
    """The netlab namespace the calling thread is in, when nothing outside its lab can reach it; else None.

    That is: the namespace is one netlab made (``netlab-<id>-<role>``) and every
    interface in it is loopback or a veth of the same run (``nl<id>-...``). An
    address there is then reachable only from the lab's own namespaces, which
    only root (or CAP_NET_ADMIN) can enter: as private as loopback. An interface
    of anyone else moved in (``ip link set ... netns``) makes it None.
    """
    try:
        here = os.stat("/proc/thread-self/ns/net").st_ino
    except OSError:
        return None
    for name in list_namespaces():
        match = NAMESPACE_PATTERN.match(name)
        if match is None or namespace_inode(name) != here:
            continue
        for _, interface in socket.if_nameindex():
            found = INTERFACE_PATTERN.match(interface)
            if interface != "lo" and (found is None or found.group(1) != match.group(1)):
                return None
        return name
    return None


def set_namespace(fd: int) -> None:
    """``setns(fd, CLONE_NEWNET)`` for the calling thread only."""
    if _libc().setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


@contextmanager
def entered(name: str) -> Iterator[None]:
    """Run the ``with`` block's code in namespace ``name`` (this thread only), then come back.

    Sockets created inside stay in ``name`` after the block ends.

    Raises:
        NetlabError: the namespace does not exist or cannot be entered.
    """
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        try:
            target = os.open(namespace_path(name), os.O_RDONLY)
        except FileNotFoundError:
            raise NetlabError(f"no namespace called {name}: is the lab up? (netlab lab up FILE)") from None
        try:
            set_namespace(target)
        except OSError as exc:
            raise NetlabError(f"cannot enter namespace {name}: {exc.strerror}") from None
        finally:
            os.close(target)
        try:
            yield
        finally:
            set_namespace(home)
    finally:
        os.close(home)


def enter_for_good(name: str) -> None:
    """Move the calling (single-threaded) process into namespace ``name``; used before exec."""
    fd = os.open(namespace_path(name), os.O_RDONLY)
    try:
        set_namespace(fd)
    finally:
        os.close(fd)


_LIBC: ctypes.CDLL | None = None


def _libc() -> ctypes.CDLL:
    global _LIBC
    if _LIBC is None:
        _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _LIBC
