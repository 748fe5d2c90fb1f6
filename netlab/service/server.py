"""The server models: iterative, threaded and selector, a separate axis from transports.

How this works: every model accepts connections from one :class:`Listener` and
gives each to a :class:`ConnectionHandler`; they differ only in who waits:

- ``iterative`` serves one connection at a time, as the socket tutorial does;
  the others wait in the kernel's accept queue, which makes the backlog visible.
- ``threaded`` gives each connection a thread, up to ``max_connections``.
- ``selector`` waits on every connection with one ``selectors`` loop (epoll);
  instant built-ins run in the loop, anything else on a small worker pool so a
  slow command never stalls the other connections.

All share the limits (``max_connections``, idle timeout, request deadline) and
graceful shutdown: :meth:`Server.request_shutdown` (safe from a signal handler)
stops accepting, lets running commands finish within ``shutdown_grace``, kills
the rest, closes every connection and the listener (which removes a UNIX
socket file). Waits are bounded by ``POLL_INTERVAL`` so shutdown is prompt.
"""

from __future__ import annotations

import os
import queue
import selectors
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from netlab.errors import AuthError, ReadTimeout, TransportError, UsageError
from netlab.proto.messages import ErrorCode, Request
from netlab.service.builtins import INSTANT_BUILTINS
from netlab.service.executor import Executor
from netlab.service.handler import ConnectionHandler, ServiceConfig
from netlab.service.log import ServerLog
from netlab.transport.base import Connection, Listener

MODELS = ("iterative", "threaded", "selector")
POLL_INTERVAL = 0.2


class Server:
    """Base of the models: the shared accept, limit and shutdown logic."""

    model = ""

    def __init__(
        self,
        listener: Listener,
        executor: Executor,
        config: ServiceConfig,
        log: ServerLog,
        *,
        max_connections: int = 64,
        shutdown_grace: float = 5.0,
    ) -> None:
        self.listener = listener
        self.executor = executor
        self.config = config
        self.log = log
        self.max_connections = max_connections
        self.shutdown_grace = shutdown_grace
        self.stopping = threading.Event()
        self.stopped = threading.Event()
        self.handlers: set[ConnectionHandler] = set()
        self._handlers_lock = threading.Lock()

    def request_shutdown(self) -> None:
        """Ask the server to drain and stop; returns at once (signal-safe)."""
        self.stopping.set()

    def serve_forever(self) -> None:
        """Serve until :meth:`request_shutdown`, then drain and close everything."""
        try:
            self._serve()
        finally:
            self.listener.close()
            self._drain()
            self.stopped.set()

    def _serve(self) -> None:
        raise NotImplementedError

    def _accept(self, timeout: float | None) -> ConnectionHandler | None:
        """Accept one connection and greet it; None on timeout or refusal."""
        try:
            connection = self.listener.accept(timeout)
        except ReadTimeout:
            return None
        except AuthError as exc:
            self.log.warning(f"rejected a peer: {exc}")
            return None
        except TransportError as exc:
            if not self.stopping.is_set():
                self.log.warning(f"accept failed: {exc}")
            return None
        handler = ConnectionHandler(connection, self.executor, self.config, self.log)
        with self._handlers_lock:
            full = len(self.handlers) >= self.max_connections
            if not full:
                self.handlers.add(handler)
        handler.start()
        if full:
            handler.fail(ErrorCode.SERVER_BUSY, f"the server is at its limit of {self.max_connections} connections")
            return None
        if handler.closed:  # the peer left before the greeting
            self._forget(handler)
            return None
        return handler

    def _forget(self, handler: ConnectionHandler) -> None:
        with self._handlers_lock:
            self.handlers.discard(handler)

    def _serve_blocking(self, handler: ConnectionHandler) -> None:
        """Serve one connection from the calling thread until it closes."""
        connection: Connection = handler.connection
        try:
            while not handler.closed:
                request = handler.take_request()
                if request is not None:
                    handler.run_request(request)
                    continue
                if self.stopping.is_set():
                    handler.fail(ErrorCode.SHUTTING_DOWN, "the server is shutting down")
                    break
                remaining = handler.deadline() - time.monotonic()
                if remaining <= 0:
                    handler.expire()
                    break
                try:
                    # a constant timeout lets the transport skip settimeout() on every call
                    timeout = POLL_INTERVAL if remaining > POLL_INTERVAL else remaining
                    data = connection.receive(handler.receive_size, timeout)
                except ReadTimeout:
                    continue
                except TransportError as exc:
                    handler.close(f"failed: {exc}")
                    break
                handler.feed(data)
        finally:
            handler.close("closed")
            self._forget(handler)

    def _drain(self) -> None:
        """Let running commands finish within the grace period, then kill the rest."""
        deadline = time.monotonic() + self.shutdown_grace
        if not self.executor.wait_running(lambda running: running == 0, self.shutdown_grace):
            self.log.warning(f"killing {self.executor.running()} command(s) still running after the grace period")
            self.executor.terminate_all()
        self._join_workers(max(0.0, deadline - time.monotonic()) + 2.0)
        with self._handlers_lock:
            remaining = list(self.handlers)
        for handler in remaining:
            handler.close("closed at shutdown")

    def _join_workers(self, timeout: float) -> None:
        """Wait (bounded) for model-specific threads to finish."""


class IterativeServer(Server):
    """One connection at a time; the rest wait in the accept queue."""

    model = "iterative"

    def _serve(self) -> None:
        while not self.stopping.is_set():
            handler = self._accept(POLL_INTERVAL)
            if handler is not None:
                self._serve_blocking(handler)


class ThreadedServer(Server):
    """A thread per connection, capped at ``max_connections``."""

    model = "threaded"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._threads: list[threading.Thread] = []

    def _serve(self) -> None:
        while not self.stopping.is_set():
            handler = self._accept(POLL_INTERVAL)
            if handler is None:
                continue
            thread = threading.Thread(
                target=self._serve_blocking, args=(handler,), name=f"netlab-{handler.connection.peer_address}",
                daemon=True,
            )
            thread.start()
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)

    def _join_workers(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))


class SelectorServer(Server):
    """One event loop over every connection; slow commands on a worker pool."""

    model = "selector"

    def __init__(self, *args: object, workers: int | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._pool = ThreadPoolExecutor(max_workers=workers or max(4, 2 * (os.cpu_count() or 1)),
                                        thread_name_prefix="netlab-worker")
        self._finished: queue.SimpleQueue[ConnectionHandler] = queue.SimpleQueue()
        self._wake_reader, self._wake_writer = os.pipe()
        os.set_blocking(self._wake_reader, False)
        # The descriptor each waiting handler was registered under: a handler may
        # close its connection (fileno() -1) before the loop unregisters it.
        self._registered: dict[ConnectionHandler, int] = {}

    def _serve(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self.listener.fileno(), selectors.EVENT_READ, None)
        selector.register(self._wake_reader, selectors.EVENT_READ, "wake")
        try:
            while not self.stopping.is_set():
                timeout = self._next_timeout()
                for key, _ in selector.select(timeout):
                    if key.data is None:
                        self._on_accept(selector)
                    elif key.data == "wake":
                        self._on_wake(selector)
                    else:
                        self._on_readable(selector, key.data)
                self._expire_idle(selector)
        finally:
            selector.close()

    def _next_timeout(self) -> float:
        # Only the connections the loop waits on: one whose command runs on a
        # worker may be past its idle deadline and would make the loop spin.
        now = time.monotonic()
        nearest = min((handler.deadline() for handler in self._registered), default=now + POLL_INTERVAL)
        return max(0.0, min(nearest - now, POLL_INTERVAL))

    def _on_accept(self, selector: selectors.BaseSelector) -> None:
        handler = self._accept(0)
        if handler is None:
            return
        if handler.connection.fileno() < 0:
            handler.fail(ErrorCode.INTERNAL, "this transport cannot be served by the selector model")
            self._forget(handler)
            return
        self._register(selector, handler)

    def _on_readable(self, selector: selectors.BaseSelector, handler: ConnectionHandler) -> None:
        try:
            data = handler.connection.receive(handler.receive_size, 0)
        except ReadTimeout:
            return
        except TransportError as exc:
            data = b""
            handler.close(f"failed: {exc}")
        if not handler.closed:
            handler.feed(data)
        self._after_io(selector, handler)

    def _after_io(self, selector: selectors.BaseSelector, handler: ConnectionHandler) -> None:
        """Run or dispatch a whole request; unregister closed connections."""
        while not handler.closed:
            request = handler.take_request()
            if request is None:
                return
            if _is_instant(request) and not self.executor.policy.unsafe_shell:
                handler.run_request(request)
                continue
            selector.unregister(self._registered.pop(handler))
            self._pool.submit(self._run_in_worker, handler, request)
            return
        self._unregister(selector, handler)

    def _run_in_worker(self, handler: ConnectionHandler, request: Request) -> None:
        try:
            handler.run_request(request)
        finally:
            self._finished.put(handler)
            os.write(self._wake_writer, b"w")

    def _on_wake(self, selector: selectors.BaseSelector) -> None:
        try:
            os.read(self._wake_reader, 4096)
        except BlockingIOError:
            pass
        while True:
            try:
                handler = self._finished.get_nowait()
            except queue.Empty:
                return
            if handler.closed:
                self._forget(handler)
                continue
            self._register(selector, handler)
            self._after_io(selector, handler)

    def _expire_idle(self, selector: selectors.BaseSelector) -> None:
        now = time.monotonic()
        # registered only: never a connection whose command runs on a worker
        expired = [handler for handler in self._registered if handler.deadline() <= now]
        for handler in expired:
            handler.expire()
            self._unregister(selector, handler)

    def _register(self, selector: selectors.BaseSelector, handler: ConnectionHandler) -> None:
        descriptor = handler.connection.fileno()
        selector.register(descriptor, selectors.EVENT_READ, handler)
        self._registered[handler] = descriptor

    def _unregister(self, selector: selectors.BaseSelector, handler: ConnectionHandler) -> None:
        descriptor = self._registered.pop(handler, None)
        if descriptor is not None:
            selector.unregister(descriptor)
        handler.close("closed")
        self._forget(handler)

    def _join_workers(self, timeout: float) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        os.close(self._wake_reader)
        os.close(self._wake_writer)


def _is_instant(request: Request) -> bool:
    first = request.argv[0] if request.argv else request.line.split(None, 1)[0] if request.line.strip() else ""
    return first in INSTANT_BUILTINS


SERVER_MODELS: dict[str, type[Server]] = {
    "iterative": IterativeServer,
    "threaded": ThreadedServer,
    "selector": SelectorServer,
}


def make_server(model: str, listener: Listener, executor: Executor, config: ServiceConfig, log: ServerLog,
                **limits: object) -> Server:
    """Return a server of the named model.

    Raises:
        UsageError: the model is not iterative, threaded or selector.
    """
    try:
        server_class = SERVER_MODELS[model]
    except KeyError:
        raise UsageError(f"unknown server model {model!r}: choose one of {', '.join(MODELS)}") from None
    return server_class(listener, executor, config, log, **limits)  # type: ignore[arg-type]

