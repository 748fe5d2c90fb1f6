"""The whole netlab exception tree.

Every error a user can meet carries a one-line message that says what happened
and what to do, and the process exit code it maps to (``exit_code``)::

    NetlabError                      exit 255 (like ssh: netlab's own failure)
    ├── ProtocolError                a peer broke the wire protocol
    │   ├── LocalProtocolError       we were about to send something invalid
    │   └── RemoteProtocolError      the peer sent something invalid
    ├── TransportError               the socket layer failed
    │   ├── AddressError             a malformed or unusable address URL (exit 2)
    │   ├── BindError                cannot listen: in use, permission, path (exit 2)
    │   ├── ConnectError             cannot connect
    │   │   ├── ConnectionRefused    nothing listens there (or a full UNIX queue)
    │   │   └── ConnectTimeout       no answer within the connect timeout
    │   ├── ReadError                receiving failed
    │   │   └── ReadTimeout          nothing arrived within the read timeout
    │   ├── WriteError               sending failed
    │   │   └── WriteTimeout         the peer did not drain within the timeout
    │   ├── ClosedError              we closed this resource already
    │   └── BrokenError              the peer reset or vanished mid-exchange
    ├── PolicyError                  the service refused a command
    ├── ServerError                  the server ended a reply with an error
    ├── AuthError                    authentication failed or was missing
    ├── ScenarioError                a scenario file is invalid (exit 2)
    ├── UsageError                   bad command-line input (exit 2)
    └── PrivilegeError               needs root / CAP_NET_RAW (exit 2)

Timeouts also derive from the builtin :class:`TimeoutError` so generic code can
catch them. Expected errors are printed as one line by the CLI, never with a
traceback.
"""

from __future__ import annotations

EXIT_USAGE = 2
EXIT_NETLAB = 255


class NetlabError(Exception):
    """Base of every netlab error: a one-line message and an exit code."""

    exit_code: int = EXIT_NETLAB

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class ProtocolError(NetlabError):
    """The wire protocol was violated (malformed frame, wrong state, bad size)."""


class LocalProtocolError(ProtocolError):
    """We were about to send something the protocol forbids (a bug or misuse)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol forbids."""


class TransportError(NetlabError):
    """A socket-level failure, mapped from an OSError at the transport boundary."""


class AddressError(TransportError):
    """An address URL is malformed or names something unusable."""

    exit_code = EXIT_USAGE


class BindError(TransportError):
    """Listening failed: address in use, permission denied, bad socket path."""

    exit_code = EXIT_USAGE


class ConnectError(TransportError):
    """Connecting failed."""


class ConnectionRefused(ConnectError):
    """Nothing accepts connections at the address (or its queue is full)."""


class ConnectTimeout(ConnectError, TimeoutError):
    """The connection was not established within the connect timeout."""


class ReadError(TransportError):
    """Receiving failed."""


class ReadTimeout(ReadError, TimeoutError):
    """Nothing arrived within the read timeout."""


class WriteError(TransportError):
    """Sending failed."""


class WriteTimeout(WriteError, TimeoutError):
    """The peer did not accept our data within the write timeout."""


class ClosedError(TransportError):
    """The resource was already closed by us (trio's ClosedResourceError)."""


class BrokenError(TransportError):
    """The peer reset the connection or went away (trio's BrokenResourceError)."""


class PolicyError(NetlabError):
    """The command service refused a command (not allowed, malformed line)."""


class ServerError(NetlabError):
    """The server answered with an error: busy, shutting down, idle timeout, internal."""


class AuthError(NetlabError):
    """Authentication was required and failed or was not attempted."""


class ScenarioError(NetlabError):
    """A scenario file is invalid; raised before anything runs."""

    exit_code = EXIT_USAGE


class UsageError(NetlabError):
    """Bad command-line input."""

    exit_code = EXIT_USAGE


class PrivilegeError(NetlabError):
    """The feature needs root or a capability (CAP_NET_RAW, CAP_NET_ADMIN)."""

    exit_code = EXIT_USAGE
