"""The server models: iterative, threaded and selector, a separate axis from transports.

How this works: every model accepts connections from one :class:`Listener` and
gives each to a :class:`ConnectionHandler`; they differ only in who waits:

- ``iterative`` serves one connection at a time, as the socket tutorial does;
  the others wait in the kernel's accept queue, which makes the backlog visible.
- ``threaded`` gives each connection a thread, up to ``max_connections``.
- ``selector`` waits on every connection with one ``selectors`` loop (epoll);
  instant built-ins run in the loop, anything else on a worker pool with a
  thread for each connection it may hold (``max_connections``: a connection
  runs one request at a time, so no command ever queues behind another
  connection's slow one). The loop never blocks on a write: replies made in
  the loop are queued on the handler and flushed when the socket takes them,
  and a connection with unflushed output is not read (it pushes back on
  itself only).

All share the limits (``max_connections``, idle timeout, request deadline,
the admission rules of :mod:`netlab.service.admission`) and graceful
shutdown: :meth:`Server.request_shutdown` (safe from a signal handler) stops
accepting; a watchdog thread gives running commands ``shutdown_grace``
seconds from that moment and then kills them (also in the iterative model,
whose only thread may be busy running one); then every connection and the
listener close (which removes a UNIX socket file). Waits are bounded by
``POLL_INTERVAL`` so shutdown is prompt.

One connection never stops a server: any error escaping a handler ends that
connection with one log line. Out of file descriptors (EMFILE/ENFILE), the
server stops accepting for a while (doubling from :data:`ACCEPT_PAUSE_FIRST`
to :data:`ACCEPT_PAUSE_MAX`), logs one line per interval, keeps serving the
open connections and resumes when an accept succeeds again.
"""

from __future__ import annotations

import errno
import os
import queue
import random
import selectors
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from netlab.errors import AuthError, ReadTimeout, TransportError, UsageError
from netlab.proto.messages import ErrorCode, Request
from netlab.service.admission import AuthThrottle, StartupLimit, peer_host
from netlab.service.executor import Executor
from netlab.service.handler import ConnectionHandler, ServiceConfig
from netlab.service.log import ServerLog
from netlab.transport.base import Connection, Listener

MODELS = ("iterative", "threaded", "selector")
POLL_INTERVAL = 0.2
#: The selector loop looks at every waiting connection's deadline at most this often (seconds): the
#: deadlines are seconds long, and a look at each of thousands of idle connections on every request
#: would cost more than the request. A new connection's deadline brings the next look forward.
DEADLINE_SCAN_INTERVAL = 0.05
ACCEPT_PAUSE_FIRST = 0.05
ACCEPT_PAUSE_MAX = 1.0
_OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


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
        max_startups: StartupLimit | None = None,
        max_per_peer: int | None = None,
    ) -> None:
        """Serve ``listener`` with ``executor``.

        Args:
            max_connections: connections served at once; more are told server-busy.
            shutdown_grace: seconds running commands get after a shutdown request.
            max_startups: random early drop while many connections start up (None: off).
            max_per_peer: connections one peer host may hold while they start up
                (before authenticating, or before a first request; None: no limit).
        """
        self.listener = listener
        self.executor = executor
        self.config = config
        self.log = log
        self.max_connections = max_connections
        self.shutdown_grace = shutdown_grace
        self.max_startups = max_startups
        self.max_per_peer = max_per_peer
        self.throttle = AuthThrottle()
        self.stopping = threading.Event()
        self.stopped = threading.Event()
        self.handlers: set[ConnectionHandler] = set()
        # The handlers that may still be starting up (a superset, pruned at each
        # admission): the start-up limits count these, not every connection.
        self._starting: set[ConnectionHandler] = set()
        self._handlers_lock = threading.Lock()
        self._chance = random.Random()
        #: monotonic time before which accepting is paused (out of descriptors)
        self.accept_paused_until = 0.0
        self._accept_pause = ACCEPT_PAUSE_FIRST

    def request_shutdown(self) -> None:
        """Ask the server to drain and stop; returns at once (signal-safe)."""
        self.stopping.set()

    def serve_forever(self) -> None:
        """Serve until :meth:`request_shutdown`, then drain and close everything."""
        watchdog = threading.Thread(target=self._enforce_grace, name="netlab-shutdown-grace", daemon=True)
        watchdog.start()
        try:
            self._serve()
        finally:
            self.stopping.set()
            self.listener.close()
            watchdog.join(self.shutdown_grace + 1.0)
            self._drain()
            self.stopped.set()

    def _enforce_grace(self) -> None:
        """From the shutdown request on, give running commands ``shutdown_grace`` seconds, then kill them."""
        self.stopping.wait()
        if not self.executor.wait_running(lambda running: running == 0, self.shutdown_grace):
            self.log.warning(f"killing {self.executor.running()} command(s) still running after the "
                             f"{self.shutdown_grace:g} s grace period")
            self.executor.terminate_all()

    def _serve(self) -> None:
        raise NotImplementedError

    def _accept(self, timeout: float | None) -> ConnectionHandler | None:
        """Accept one connection, admit it and greet it; None on timeout, refusal or error."""
        try:
            connection = self.listener.accept(timeout)
        except ReadTimeout:
            return None
        except AuthError as exc:
            self.log.warning(f"rejected a peer: {exc}")
            return None
        except TransportError as exc:
            if not self.stopping.is_set():
                self._accept_failed(exc)
            return None
        self._accept_pause = ACCEPT_PAUSE_FIRST
        handler = ConnectionHandler(connection, self.executor, self.config, self.log, self.throttle)
        with self._handlers_lock:
            refusal = self._admission_refusal(handler)
            if refusal is None:
                self.handlers.add(handler)
                self._starting.add(handler)
        if refusal is not None:
            rule, text = refusal
            handler.refuse(ErrorCode.SERVER_BUSY, text)
            self.log.throttled_warning(f"refused:{rule}", f"turned away {connection.peer_address}: {text}")
            return None
        try:
            handler.start()
        except Exception as exc:  # noqa: BLE001 - one connection's failure never ends the server
            handler.close(f"failed: internal error: {type(exc).__name__}: {exc}")
        if handler.closed:  # the peer left before the greeting
            self._forget(handler)
            return None
        return handler

    def _admission_refusal(self, handler: ConnectionHandler) -> tuple[str, str] | None:
        """Which rule turns a new connection away and why (called under the handlers lock), or None."""
        if len(self.handlers) >= self.max_connections:
            return "max-connections", (f"the server is at its limit of {self.max_connections} connections; "
                                       "try again later")
        # A connection never starts up again: prune those that did, so holding many idle ones costs nothing here.
        starting_up = self._starting = {other for other in self._starting if other.starting_up}
        if self.max_per_peer is not None:
            host = peer_host(handler.connection.peer_address)
            held = sum(1 for other in starting_up if peer_host(other.connection.peer_address) == host)
            if held >= self.max_per_peer:
                return "max-per-peer", (f"{host} already holds {held} connections that have not authenticated "
                                        "(or sent a request) yet, the most one peer may; try again in a moment")
        if self.max_startups is not None:
            starting = len(starting_up)
            if self.max_startups.drops(starting, self._chance):
                return "max-startups", (f"{starting} connections are still starting up (limit {self.max_startups}); "
                                        "try again in a moment")
        return None

    def _accept_failed(self, exc: TransportError) -> None:
        """Log a failed accept (rate-limited); out of descriptors, pause accepting for a while."""
        cause = exc.__cause__
        if isinstance(cause, OSError) and cause.errno in _OUT_OF_DESCRIPTORS:
            self.accept_paused_until = time.monotonic() + self._accept_pause
            self.log.throttled_warning("accept", f"{exc}; pausing accepts for {self._accept_pause:g} s, "
                                                 "open connections are still served")
            self._accept_pause = min(ACCEPT_PAUSE_MAX, self._accept_pause * 2)
        else:
            self.log.throttled_warning("accept", f"accept failed: {exc}")

    def _accept_pause_left(self) -> float:
        """Seconds accepting stays paused (0: accept now)."""
        return max(0.0, self.accept_paused_until - time.monotonic())

    def _forget(self, handler: ConnectionHandler) -> None:
        with self._handlers_lock:
            self.handlers.discard(handler)
            self._starting.discard(handler)

    def _serve_blocking(self, handler: ConnectionHandler) -> None:
        """Serve one connection from the calling thread until it closes."""
        connection: Connection = handler.connection
        # bound once: the per-request calls
        stopping, take_request, run_request = self.stopping.is_set, handler.take_request, handler.run_request
        deadline, receive, feed, size = handler.deadline, connection.receive, handler.feed, handler.receive_size
        monotonic = time.monotonic
        try:
            while not handler.closed:
                if stopping():
                    handler.fail(ErrorCode.SHUTTING_DOWN, "the server is shutting down")
                    break
                request = take_request()
                if request is not None:
                    run_request(request)
                    continue
                remaining = deadline() - monotonic()
                if remaining <= 0:
                    handler.expire()
                    break
                try:
                    # a constant timeout lets the transport skip settimeout() on every call
                    data = receive(size, POLL_INTERVAL if remaining > POLL_INTERVAL else remaining)
                except ReadTimeout:
                    continue
                except TransportError as exc:
                    handler.close(f"failed: {exc}")
                    break
                feed(data)
        except Exception as exc:  # noqa: BLE001 - one connection's failure never ends the server
            handler.close(f"failed: internal error: {type(exc).__name__}: {exc}")
        finally:
            handler.close("closed")
            self._forget(handler)

    def _drain(self) -> None:
        """After the grace watchdog: wait (bounded) for killed commands and workers, close what is left."""
        kill_grace = self.executor.policy.kill_grace
        if not self.executor.wait_running(lambda running: running == 0, kill_grace + 2.0):
            self.executor.terminate_all()
        self._join_workers(kill_grace + 2.0)
        with self._handlers_lock:
            remaining = list(self.handlers)
        for handler in remaining:
            handler.close("closed at shutdown")

    def _join_workers(self, timeout: float) -> None:
        """Wait (bounded) for model-specific threads to finish."""

    def _wait_out_accept_pause(self) -> bool:
        """Sleep (bounded, woken by shutdown) while accepting is paused; True if it was."""
        pause = self._accept_pause_left()
        if pause <= 0:
            return False
        self.stopping.wait(min(pause, POLL_INTERVAL))
        return True


class IterativeServer(Server):
    """One connection at a time; the rest wait in the accept queue."""

    model = "iterative"

    def _serve(self) -> None:
        while not self.stopping.is_set():
            if self._wait_out_accept_pause():
                continue
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
            if self._wait_out_accept_pause():
                continue
            handler = self._accept(POLL_INTERVAL)
            if handler is None:
                continue
            thread = threading.Thread(
                target=self._serve_blocking, args=(handler,), name=f"netlab-{handler.connection.peer_address}",
                daemon=True,
            )
            try:
                thread.start()
            except RuntimeError as exc:  # out of threads (memory, pids limit): this connection only
                handler.fail(ErrorCode.SERVER_BUSY, "the server cannot start a thread for this connection now; "
                                                    "try again later")
                self._forget(handler)
                self.log.throttled_warning("thread", f"cannot start a connection thread: {exc}")
                continue
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
        # A connection holds at most one worker at a time, so max_connections
        # workers means no command ever waits for another connection's one;
        # threads are only started as commands need them.
        self._pool = ThreadPoolExecutor(max_workers=workers or self.max_connections,
                                        thread_name_prefix="netlab-worker")
        self._finished: queue.SimpleQueue[ConnectionHandler] = queue.SimpleQueue()
        self._wake_reader, self._wake_writer = os.pipe()
        os.set_blocking(self._wake_reader, False)
        os.set_blocking(self._wake_writer, False)
        # The descriptor each waiting handler was registered under: a handler may
        # close its connection (fileno() -1) before the loop unregisters it.
        self._registered: dict[ConnectionHandler, int] = {}
        # The registered connections waiting to write (EVENT_WRITE) rather than to read.
        self._writing: set[ConnectionHandler] = set()
        self._listening = False
        # When the loop next looks at the deadlines (monotonic time).
        self._next_scan = 0.0

    def _serve(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._wake_reader, selectors.EVENT_READ, "wake")
        self._listen(selector, True)
        try:
            while not self.stopping.is_set():
                if not self._listening and self._accept_pause_left() <= 0:
                    self._listen(selector, True)
                timeout = self._next_timeout()
                for key, events in selector.select(timeout):
                    if key.data is None:
                        self._on_accept(selector)
                    elif key.data == "wake":
                        self._on_wake(selector)
                    else:
                        self._guarded(selector, key.data, self._on_ready, events)
                now = time.monotonic()
                if now >= self._next_scan:
                    self._expire_idle(selector, now)
        finally:
            selector.close()

    def _listen(self, selector: selectors.BaseSelector, listening: bool) -> None:
        """Start or stop waiting for new connections (stopped while out of descriptors)."""
        if listening and not self._listening:
            selector.register(self.listener.fileno(), selectors.EVENT_READ, None)
        elif not listening and self._listening:
            selector.unregister(self.listener.fileno())
        self._listening = listening

    def _next_timeout(self) -> float:
        """Seconds the loop may wait: until the next look at the deadlines (or the end of an accept pause)."""
        nearest = self._next_scan
        if not self._listening and self.accept_paused_until < nearest:
            nearest = self.accept_paused_until
        return max(0.0, min(nearest - time.monotonic(), POLL_INTERVAL))

    def _on_accept(self, selector: selectors.BaseSelector) -> None:
        handler = self._accept(0)
        if handler is None:
            if self._accept_pause_left() > 0:
                self._listen(selector, False)  # level-triggered: a queued connection would spin the loop
            return
        if handler.connection.fileno() < 0:
            handler.fail(ErrorCode.INTERNAL, "this transport cannot be served by the selector model")
            self._forget(handler)
            return
        handler.write_buffer = bytearray()
        self._guarded(selector, handler, self._register)

    def _guarded(self, selector: selectors.BaseSelector, handler: ConnectionHandler, step: object,
                 *arguments: object) -> None:
        """Run one step for ``handler``; an unexpected error ends that connection only, with one log line."""
        try:
            step(selector, handler, *arguments)  # type: ignore[operator]
        except Exception as exc:  # noqa: BLE001 - one connection's failure never ends the loop
            handler.close(f"failed: internal error: {type(exc).__name__}: {exc}")
            self._unregister(selector, handler)

    def _on_ready(self, selector: selectors.BaseSelector, handler: ConnectionHandler, events: int) -> None:
        if events & selectors.EVENT_WRITE:
            self._after_io(selector, handler)  # flush, then the requests that waited behind the output
            return
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
        """Run or dispatch whole requests while the output is flushed; unregister closed connections."""
        while not handler.closed:
            if not self._flush(selector, handler):
                return  # the peer is not reading: stop reading its requests until it does
            request = handler.take_request()
            if request is None:
                break
            if handler.runs_at_once:  # an instant built-in, as take_request looked it up
                handler.run_request(request)
                continue
            selector.unregister(self._registered.pop(handler))
            handler.write_buffer = None  # a worker may block on writes: it is this connection's own thread
            self._pool.submit(self._run_in_worker, handler, request)
            return
        if handler.closed:
            self._unregister(selector, handler)

    def _flush(self, selector: selectors.BaseSelector, handler: ConnectionHandler) -> bool:
        """Write queued output; wait for writability (and stop reading) while some is left. True once empty."""
        try:
            flushed = handler.flush_available()
        except TransportError as exc:
            handler.close(f"failed: {exc}")
            self._unregister(selector, handler)
            return False
        descriptor = self._registered.get(handler)
        if descriptor is not None and flushed == (handler in self._writing):  # what it waits for changes
            if flushed:
                self._writing.discard(handler)
                selector.modify(descriptor, selectors.EVENT_READ, handler)
            else:
                self._writing.add(handler)
                selector.modify(descriptor, selectors.EVENT_WRITE, handler)
        return flushed

    def _run_in_worker(self, handler: ConnectionHandler, request: Request) -> None:
        try:
            handler.run_request(request)
        except Exception as exc:  # noqa: BLE001 - ends this connection only
            handler.close(f"failed: internal error: {type(exc).__name__}: {exc}")
        finally:
            self._finished.put(handler)
            try:
                os.write(self._wake_writer, b"w")
            except BlockingIOError:
                pass  # the pipe is full: the loop is awake anyway

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
            handler.write_buffer = bytearray()
            self._guarded(selector, handler, self._resume)

    def _resume(self, selector: selectors.BaseSelector, handler: ConnectionHandler) -> None:
        self._register(selector, handler)
        self._after_io(selector, handler)

    def _expire_idle(self, selector: selectors.BaseSelector, now: float) -> None:
        """Close the connections whose deadline passed; schedule the next look.

        Only the connections the loop waits on: one whose command runs on a
        worker may be past its idle deadline and would make the loop spin.
        """
        nearest = now + POLL_INTERVAL
        expired = []
        for handler in self._registered:
            deadline = handler.deadline()
            if deadline <= now:
                expired.append(handler)
            elif deadline < nearest:
                nearest = deadline
        self._next_scan = max(nearest, now + DEADLINE_SCAN_INTERVAL)
        for handler in expired:
            self._guarded(selector, handler, self._expire)

    def _expire(self, selector: selectors.BaseSelector, handler: ConnectionHandler) -> None:
        handler.expire()  # its error goes out with the close if the socket takes it now
        self._unregister(selector, handler)

    def _register(self, selector: selectors.BaseSelector, handler: ConnectionHandler) -> None:
        descriptor = handler.connection.fileno()
        selector.register(descriptor, selectors.EVENT_READ, handler)
        self._registered[handler] = descriptor
        self._writing.discard(handler)
        self._next_scan = min(self._next_scan, handler.deadline())

    def _unregister(self, selector: selectors.BaseSelector, handler: ConnectionHandler) -> None:
        descriptor = self._registered.pop(handler, None)
        self._writing.discard(handler)
        if descriptor is not None:
            selector.unregister(descriptor)
        handler.close("closed")
        self._forget(handler)

    def _join_workers(self, timeout: float) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        os.close(self._wake_reader)
        os.close(self._wake_writer)


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

