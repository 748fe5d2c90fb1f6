"""Runs one command under a policy and streams its output; transport-agnostic.

How this works:

- Built-ins (:mod:`netlab.service.builtins`) run in the calling thread: no
  process, no thread. Anything else must pass the allowlist and runs as a
  literal argv (never through a shell) in a new session, hence its own process
  group, with stdin from /dev/null (or a pipe the client feeds, when the
  request asks) and an environment built only from the
  policy's allowlist. In ``unsafe_shell`` mode the whole line goes to
  ``/bin/sh -c`` instead, built-ins included, exactly like the tutorial server.
- One selector loop watches stdout, stderr, a pidfd (readable when the main
  process exits, without reaping it) and a wake-up pipe that
  :meth:`Executor.terminate_all` writes to. Output reaches ``on_output`` as it
  arrives, in chunks of at most the caller's chunk size (64 KiB by default; a
  process's pipe is read 64 KiB at a time, a built-in writes up to the chunk size);
  stdout is hashed when the caller asks for its digest.
- Output beyond the cap is dropped, the result says ``truncated``, and the
  group is ended at once (SIGTERM, ``kill_grace``, SIGKILL) instead of running
  on to the timeout; what it writes meanwhile is still read, so it never
  blocks on a full pipe.
- Ending: when the main process exits, the group gets ``kill_grace`` seconds to
  close the pipes (a background grandchild may hold them), then the whole
  group is sent SIGKILL, so nothing the command started outlives it. On the
  timeout, on terminate_all, or when ``on_output`` raises, the group gets
  SIGTERM, ``kill_grace`` seconds, then SIGKILL. The main process is reaped
  only after the group is signalled, so its id (the group id) cannot have been
  reused by then. Every wait is bounded by a deadline.
- Escapes: a process that starts its own session (``setsid``) leaves the
  group. Where the kernel allows it (root, cgroup v2 with ``cgroup.kill``)
  each command also runs in its own cgroup (:mod:`netlab.service.cgroup`),
  joined by the child before exec, and every SIGKILL of the group is also a
  ``cgroup.kill``: nothing the command started survives it. Elsewhere such a
  process escapes the kill (docs/security.md).
"""

from __future__ import annotations

import hashlib
import math
import os
import selectors
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence

from netlab.errors import PolicyError, UsageError
from netlab.proto.messages import STDERR, STDOUT, Exit
from netlab.service.builtins import BUILTINS, Builtin, BuiltinCommand, Interruption, ending
from netlab.service.cgroup import CommandCgroup, cgroup_base
from netlab.service.control import CommandControl
from netlab.service.policy import Policy, resolve_command, user_account

__all__ = ["LOOK_UP", "STDERR", "STDOUT", "Executor", "OutputSink"]

READ_CHUNK_SIZE = 64 * 1024
EXIT_CANNOT_EXECUTE = 126  # the shell's codes: found but not runnable
EXIT_NOT_FOUND = 127  # ... and not found
SHELL = "/bin/sh"
#: Stdin bytes queued for a command before the client's sends are left waiting in the socket.
STDIN_HIGH_WATER = 256 * 1024
STDIN_WRITE_SIZE = 64 * 1024
# Without a pidfd (Linux before 5.3, or a sandbox that forbids it) the loop
# polls for the main process's exit this often.
_EXIT_POLL_INTERVAL = 0.05

OutputSink = Callable[[int, bytes], None]


class _LookUp:
    """The type of :data:`LOOK_UP`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "LOOK_UP"


#: ``Executor.run(builtin=LOOK_UP)``: the executor finds out itself whether argv names a built-in.
LOOK_UP = _LookUp()


class _OutputMeter:
    """Counts, caps and (when asked) hashes output on its way to the sink."""

    __slots__ = ("cap", "chunk_size", "hasher", "sink", "stderr_bytes", "stdout_bytes", "truncated")

    def __init__(self, sink: OutputSink, cap: int, digest: bool, chunk_size: int) -> None:
        self.sink = sink
        self.cap = cap
        self.chunk_size = chunk_size
        self.stdout_bytes = 0
        self.stderr_bytes = 0
        self.hasher = hashlib.sha256() if digest else None
        self.truncated = False

    def write_stdout(self, data: bytes) -> bool:
        """Deliver stdout within the cap; return False once the cap is reached."""
        room = self.cap - self.stdout_bytes
        over_cap = len(data) > room
        if over_cap:
            self.truncated = True
            data = data[:room]
        if data:
            if self.hasher is not None:
                self.hasher.update(data)
            self.stdout_bytes += len(data)
            if len(data) <= self.chunk_size:
                self.sink(STDOUT, data)
            else:
                self._send(STDOUT, data)
        return not over_cap

    def write_stderr(self, data: bytes) -> None:
        """Deliver stderr within the cap."""
        room = self.cap - self.stderr_bytes
        if len(data) > room:
            self.truncated = True
            data = data[:room]
        if data:
            self.stderr_bytes += len(data)
            self._send(STDERR, data)

    def _send(self, stream: int, data: bytes) -> None:
        chunk = self.chunk_size
        if len(data) <= chunk:
            self.sink(stream, data)
            return
        view = memoryview(data)
        for start in range(0, len(data), chunk):
            self.sink(stream, bytes(view[start : start + chunk]))


class _Cancellation:
    """A running command's cancel request, set by terminate_all from any thread."""

    __slots__ = ("event", "wake_fd")

    def __init__(self, wake_fd: int | None) -> None:
        self.event = threading.Event()
        self.wake_fd = wake_fd  # write end of the process loop's wake-up pipe

    def cancel(self) -> None:
        self.event.set()
        if self.wake_fd is not None:
            try:
                os.write(self.wake_fd, b"\0")
            except BlockingIOError:
                pass  # the pipe is full: the loop is already woken


_NEVER_INTERRUPTED = Interruption(math.inf, threading.Event())


class Executor:
    """Runs commands under a :class:`Policy`; one instance serves many threads."""

    def __init__(self, policy: Policy) -> None:
        """Prepare the environment and search path commands will get.

        Raises:
            UsageError: the policy's working directory is not a directory.
        """
        if policy.working_directory is not None and not os.path.isdir(policy.working_directory):
            raise UsageError(
                f"working directory {policy.working_directory!r} is not a directory; create it or pick another"
            )
        self._policy = policy
        self._environment = {
            name: os.environ[name] for name in policy.environment_allowlist if name in os.environ
        }
        # Privilege separation: external commands run as policy.run_as (root only).
        self._user: int | None = None
        self._group: int | None = None
        self._extra_groups: list[int] | None = None
        if policy.run_as is not None and os.geteuid() == 0:
            account = user_account(policy.run_as)
            if account.pw_uid != 0:
                self._user, self._group, self._extra_groups = account.pw_uid, account.pw_gid, []
                for name, value in (("HOME", account.pw_dir), ("USER", account.pw_name), ("LOGNAME", account.pw_name)):
                    if name in policy.environment_allowlist:
                        self._environment[name] = value
        search_path = self._environment.get("PATH", os.defpath)
        # Relative PATH entries would make the working directory decide what runs.
        self._search_directories = tuple(
            directory for directory in search_path.split(os.pathsep) if os.path.isabs(directory)
        )
        self._lock = threading.Lock()
        self._count_changed = threading.Condition(self._lock)
        self._running = 0
        self._waiters = 0
        self._cancellations: set[_Cancellation] = set()

    @property
    def policy(self) -> Policy:
        """The policy this executor enforces."""
        return self._policy

    def builtin_for(self, argv: Sequence[str]) -> Builtin | None:
        """The built-in that would run ``argv`` in-process; None for a process (or the shell, in unsafe_shell mode).

        A server looks a request up once with this and hands the answer to
        :meth:`run` (which then looks nothing up) and to its own choices
        (gather the output, run it where it reads).
        """
        if self._policy.unsafe_shell or not argv:
            return None
        return BUILTINS.get(argv[0])

    def run(
        self,
        argv: Sequence[str],
        on_output: OutputSink,
        *,
        line: str | None = None,
        timeout: float | None = None,
        digest: bool = False,
        chunk_size: int = READ_CHUNK_SIZE,
        stdin: bool = False,
        control: CommandControl | None = None,
        request_id: int = 0,
        builtin: Builtin | None | _LookUp = LOOK_UP,
    ) -> Exit:
        """Run one command to completion, streaming its output to ``on_output``.

        Args:
            argv: the split command line (see ``split_command_line``).
            on_output: called as ``on_output(STDOUT or STDERR, chunk)`` with
                chunks of at most ``chunk_size`` bytes, in order per stream. If it raises,
                the command's process group is killed and the error re-raised.
            line: the original line; only ``unsafe_shell`` mode uses it (when
                None, argv is re-quoted into a line).
            timeout: seconds for this request; it can only lower the policy's.
            digest: compute the SHA-256 of stdout (``stdout_sha256``).
            chunk_size: the largest chunk handed to ``on_output``.
            stdin: give the process a stdin pipe fed through ``control``
                (otherwise stdin is /dev/null).
            control: the client's side channel (stdin, signals, hang-up),
                watched while the command runs; None watches nothing.
            request_id: the request the returned Exit answers.
            builtin: what :meth:`builtin_for` said of ``argv`` when the caller
                already asked (None: not a built-in); LOOK_UP asks it here.
        Returns:
            How the command ended and what it wrote, as the :class:`Exit` for
            ``request_id``: the limits that stopped it (``command_timeout``,
            ``output_cap``) are set only when they did, as on the wire.
        Raises:
            PolicyError: the command is refused; nothing ran.
            Exception: whatever ``on_output`` raised, once the command is dead.
        """
        if builtin is LOOK_UP:
            builtin = self.builtin_for(argv)
        if builtin is not None and not builtin.interruptible:  # type: ignore[union-attr]
            return self.run_instant(builtin, argv, on_output, timeout, digest, chunk_size, request_id)  # type: ignore[arg-type]
        started = time.perf_counter()
        policy = self._policy
        limit = self._limit(timeout)
        meter = _OutputMeter(on_output, policy.output_cap, digest, chunk_size)
        if builtin is not None:
            return self._run_interruptible(builtin, argv, meter, started, limit, control, request_id)  # type: ignore[arg-type]
        if policy.unsafe_shell:
            shell_line = line if line is not None else shlex.join(argv)
            if not shell_line.strip() or "\0" in shell_line:
                raise PolicyError("the command line is empty or holds a NUL byte; send a command such as 'echo hi'")
            return self._run_process([SHELL, "-c", shell_line], SHELL, meter, started, limit, request_id, stdin,
                                     control)
        if not argv:
            raise PolicyError("the command is empty; send a command such as 'echo hi'")
        program = resolve_command(argv, policy)
        _check_encodable(argv)
        return self._run_process(list(argv), program, meter, started, limit, request_id, stdin, control)

    def run_instant(self, builtin: Builtin, argv: Sequence[str], on_output: OutputSink, timeout: float | None = None,
                    digest: bool = False, chunk_size: int = READ_CHUNK_SIZE, request_id: int = 0) -> Exit:
        """:meth:`run` for an instant built-in (``builtin_for(argv)``, not interruptible: echo, upper, exit).

        It answers at once, so there is nothing to count, watch or cancel: the
        same checks (the timeout, the output cap, the digest) and the same
        :class:`Exit`, without the per-run bookkeeping of what may wait.

        Raises:
            PolicyError: the timeout is not a positive number, or the built-in refuses its arguments.
        """
        started = time.perf_counter()
        limit = self._limit(timeout)
        meter = _OutputMeter(on_output, self._policy.output_cap, digest, chunk_size)
        return _completed(builtin.run(argv, meter, _NEVER_INTERRUPTED), meter, started, limit, request_id)

    def _limit(self, timeout: float | None) -> float:
        """The command timeout for a request that asked for ``timeout`` (it can only lower the policy's).

        Raises:
            PolicyError: ``timeout`` is not a positive, finite number of seconds.
        """
        limit = self._policy.command_timeout
        if timeout is not None:
            if not (timeout > 0 and math.isfinite(timeout)):
                raise PolicyError(f"the timeout must be a positive number of seconds, not {timeout!r}")
            limit = min(limit, timeout)
        return limit

    def terminate_all(self) -> None:
        """Stop every running command: SIGTERM, ``kill_grace``, then SIGKILL.

        Returns at once; each command's own ``run`` carries out the kill and
        reports how the command ended (usually exit_status None, signal 15, or
        9 if it ignored SIGTERM). Commands started afterwards are unaffected.
        Safe from any thread.
        """
        with self._lock:
            for cancellation in self._cancellations:
                cancellation.cancel()

    def running(self) -> int:
        """The number of commands running now (instant built-ins are never counted)."""
        return self._running

    def wait_running(self, condition: Callable[[int], bool], timeout: float) -> bool:
        """Block until ``condition(running())`` holds or ``timeout`` seconds pass.

        For example ``wait_running(lambda count: count == 0, 5.0)`` after
        :meth:`terminate_all` waits for a graceful shutdown to finish.

        Returns:
            True if the condition held before the timeout.
        """
        with self._lock:
            self._waiters += 1
            try:
                return self._count_changed.wait_for(lambda: condition(self._running), timeout)
            finally:
                self._waiters -= 1

    def _change_running(self, delta: int, cancellation: _Cancellation | None) -> None:
        with self._lock:
            self._running += delta
            if cancellation is not None:
                if delta > 0:
                    self._cancellations.add(cancellation)
                else:
                    self._cancellations.discard(cancellation)
            if self._waiters:
                self._count_changed.notify_all()

    def _run_interruptible(
        self, builtin: Builtin, argv: Sequence[str], meter: _OutputMeter, started: float, limit: float,
        control: CommandControl | None, request_id: int,
    ) -> Exit:
        """A built-in that may run long: counted as running, cancellable, watching its client."""
        cancellation = _Cancellation(None)
        command = BuiltinCommand(cancellation.event)
        interruption = Interruption(time.monotonic() + limit, cancellation.event, control, command)
        self._change_running(1, cancellation)
        try:
            if interruption.control is not None:
                interruption.control.attach(command)
            outcome = builtin.run(argv, meter, interruption)
        finally:
            self._change_running(-1, cancellation)
        return _completed(outcome, meter, started, limit, request_id)

    def _run_process(
        self, argv: list[str], program: str, meter: _OutputMeter, started: float, limit: float,
        request_id: int, stdin: bool = False, control: CommandControl | None = None,
    ) -> Exit:
        executable = program if "/" in program else self._find_on_path(program)
        if executable is None:
            meter.write_stderr(f"{program}: command not found\n".encode())
            return _completed(ending(EXIT_NOT_FOUND), meter, started, limit, request_id)
        deadline = time.monotonic() + limit
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_read, False)
        os.set_blocking(wake_write, False)
        cancellation = _Cancellation(wake_write)
        cgroup = _new_cgroup()
        user, group, extra_groups = self._user, self._group, self._extra_groups
        prepare = None
        if cgroup is not None:  # join the cgroup first, then drop privileges, in the child before exec
            prepare = _join_then_drop(cgroup, user, group)
            user = group = extra_groups = None
        self._change_running(1, cancellation)
        try:
            try:
                process = subprocess.Popen(
                    argv,
                    executable=executable,
                    stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    cwd=self._policy.working_directory,
                    env=self._environment,
                    start_new_session=True,
                    close_fds=True,
                    user=user,
                    group=group,
                    extra_groups=extra_groups,
                    preexec_fn=prepare,
                )
            except ValueError as exc:  # e.g. a NUL byte the policy did not catch: refuse, never crash
                raise PolicyError(f"cannot run {argv[0]!r}: {exc}") from None
            except OSError as exc:
                meter.write_stderr(_describe_start_failure(argv[0], exc, self._policy.working_directory))
                status = EXIT_NOT_FOUND if isinstance(exc, FileNotFoundError) else EXIT_CANNOT_EXECUTE
                return _completed(ending(status), meter, started, limit, request_id)
            supervisor = _ProcessSupervisor(process, meter, wake_read, self._policy.kill_grace, cgroup, control)
            outcome = supervisor.supervise(deadline)
        finally:
            self._change_running(-1, cancellation)  # under the lock: terminate_all sees no closed fd
            os.close(wake_read)
            os.close(wake_write)
            if cgroup is not None:
                cgroup.remove()
        return _completed(outcome, meter, started, limit, request_id)

    def _find_on_path(self, name: str) -> str | None:
        for directory in self._search_directories:
            candidate = os.path.join(directory, name)
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return candidate
        return None


class _ProcessSupervisor:
    """The selector loop of one process: pumps output, watches exit, kills the group."""

    def __init__(self, process: subprocess.Popen[bytes], meter: _OutputMeter, wake_fd: int, kill_grace: float,
                 cgroup: CommandCgroup | None = None, control: CommandControl | None = None) -> None:
        self.process = process
        self.cgroup = cgroup
        self.meter = meter
        self.wake_fd = wake_fd
        self.kill_grace = kill_grace
        self.group_id = process.pid  # a new session makes the process its group's leader
        self.selector = selectors.DefaultSelector()
        self.open_streams: dict[int, int] = {}
        self.exit_fd: int | None = None
        self.leader_exited = False
        self.cancel_requested = False
        self.sink_error: BaseException | None = None
        # The client's side channel: its descriptor while watched, stdin waiting for the pipe.
        self.control = control
        self.control_fd = -1
        self.stdin_fd = -1
        self.stdin_pending = bytearray()
        self.stdin_closing = False
        #: why the client hung up ("" while it did not); the group is then killed
        self.hung_up = ""

    def supervise(self, deadline: float) -> Exit:
        """Pump output until the command ends, then kill the group and reap.

        Raises:
            whatever ``on_output`` raised, after the group is killed.
        """
        try:
            self._register()
            timed_out = self._pump(deadline)
            self._signal_group(signal.SIGKILL)
            returncode = self.process.wait()
            self._drain_after_kill()
        finally:
            self._close()
        if self.sink_error is not None:
            raise self.sink_error
        if returncode < 0:
            return ending(None, -returncode, timed_out)
        return ending(returncode, None, timed_out)

    def _register(self) -> None:
        assert self.process.stdout is not None and self.process.stderr is not None
        for stream, pipe in ((STDOUT, self.process.stdout), (STDERR, self.process.stderr)):
            fd = pipe.fileno()
            os.set_blocking(fd, False)
            self.open_streams[fd] = stream
            self.selector.register(fd, selectors.EVENT_READ)
        self.selector.register(self.wake_fd, selectors.EVENT_READ)
        if self.process.stdin is not None:
            self.stdin_fd = self.process.stdin.fileno()
            os.set_blocking(self.stdin_fd, False)
        if self.control is not None and self.control.fileno() >= 0:
            self.control_fd = self.control.fileno()
            self.selector.register(self.control_fd, selectors.EVENT_READ)
            self.control.attach(self)
        try:
            self.exit_fd = os.pidfd_open(self.process.pid)
        except (AttributeError, OSError):
            self.exit_fd = None  # fall back to polling with waitid(WNOWAIT)
        else:
            self.selector.register(self.exit_fd, selectors.EVENT_READ)

    def _pump(self, deadline: float) -> bool:
        """Run the loop until the command is done; return whether it timed out.

        Two phases: *running* until the deadline, then *ending* for kill_grace
        seconds. Ending starts quietly when the main process exits (leftovers
        may still hold the pipes), or with SIGTERM to the group on the
        deadline, on terminate_all, when the sink failed, or when the output
        cap is reached. The loop stops
        early once the main process has exited and both pipes are at EOF.
        """
        timed_out = False
        ending_deadline: float | None = None
        while not (self.leader_exited and not self.open_streams):
            now = time.monotonic()
            limit = deadline if ending_deadline is None else ending_deadline
            if now >= limit:
                if ending_deadline is not None:
                    break
                timed_out = True
                ending_deadline = self._terminate_group()
                continue
            self._handle_events(limit - now)
            if ending_deadline is None:
                # the output cap reached: the rest would be dropped anyway, so stop the producer now
                if self.cancel_requested or self.sink_error is not None or self.meter.truncated or self.hung_up:
                    ending_deadline = self._terminate_group()
                elif self.leader_exited:
                    ending_deadline = time.monotonic() + self.kill_grace
        return timed_out

    def _handle_events(self, wait: float) -> None:
        if self.exit_fd is None:
            wait = min(wait, _EXIT_POLL_INTERVAL)
        for key, _ in self.selector.select(wait):
            fd = key.fd
            if fd in self.open_streams:
                self._read(fd)
            elif fd == self.exit_fd:
                self.leader_exited = True
                self.selector.unregister(fd)
            elif fd == self.wake_fd:
                _drain_wake_pipe(fd)
                self.cancel_requested = True
            elif fd == self.control_fd:
                self.control.poll(self)  # type: ignore[union-attr]
            elif fd == self.stdin_fd:
                self._write_stdin()
        if self.exit_fd is None and not self.leader_exited:
            self.leader_exited = _has_exited(self.process.pid)

    # -- the client's side channel (RunningCommand) ---------------------------------

    def write_stdin(self, data: bytes) -> None:
        """Queue ``data`` for the command's stdin; stop reading the client while much is queued."""
        if self.stdin_fd < 0 or self.stdin_closing or not data:
            return
        was_empty = not self.stdin_pending
        self.stdin_pending += data
        if was_empty:
            self._write_stdin()
        if self.stdin_pending and was_empty:
            self.selector.register(self.stdin_fd, selectors.EVENT_WRITE)
        if len(self.stdin_pending) >= STDIN_HIGH_WATER:
            self._watch_control(False)  # back-pressure: the client's sends wait in the socket

    def close_stdin(self) -> None:
        """Close the command's stdin once what is queued is written."""
        self.stdin_closing = True
        if not self.stdin_pending:
            self._close_stdin()

    def send_signal(self, signal_number: int) -> None:
        """Deliver a signal to the command's process group."""
        self._signal_group(signal_number)

    def hang_up(self, reason: str) -> None:
        """The client is gone: stop watching it; the loop then kills the group."""
        self.hung_up = reason
        self.stop_watching()

    def stop_watching(self) -> None:
        """Stop calling the control's poll for good (also ends stdin back-pressure)."""
        self._watch_control(False)
        self.control_fd = -1

    def _watch_control(self, watch: bool) -> None:
        """Register or unregister the client's descriptor (while it is watched at all)."""
        if self.control_fd < 0:
            return
        registered = self.control_fd in self.selector.get_map()
        if watch and not registered:
            self.selector.register(self.control_fd, selectors.EVENT_READ)
        elif not watch and registered:
            self.selector.unregister(self.control_fd)

    def _write_stdin(self) -> None:
        try:
            written = os.write(self.stdin_fd, self.stdin_pending[:STDIN_WRITE_SIZE])
        except BlockingIOError:
            return
        except OSError:  # the command closed its stdin (EPIPE): what it did not read is dropped
            written = len(self.stdin_pending)
            self.stdin_closing = True
        del self.stdin_pending[:written]
        if len(self.stdin_pending) < STDIN_HIGH_WATER:
            self._watch_control(True)
        if not self.stdin_pending:
            if self.stdin_fd in self.selector.get_map():
                self.selector.unregister(self.stdin_fd)
            if self.stdin_closing:
                self._close_stdin()

    def _close_stdin(self) -> None:
        if self.stdin_fd >= 0:
            if self.stdin_fd in self.selector.get_map():
                self.selector.unregister(self.stdin_fd)
            assert self.process.stdin is not None
            self.process.stdin.close()
            self.stdin_fd = -1

    def _terminate_group(self) -> float:
        """Send SIGTERM to the group; return when SIGKILL is due."""
        self._signal_group(signal.SIGTERM)
        return time.monotonic() + self.kill_grace

    def _read(self, fd: int) -> None:
        try:
            data = os.read(fd, READ_CHUNK_SIZE)
        except BlockingIOError:
            return
        if not data:
            self.selector.unregister(fd)
            del self.open_streams[fd]
            return
        self._deliver(self.open_streams[fd], data)

    def _deliver(self, stream: int, data: bytes) -> None:
        if self.sink_error is not None:
            return  # the receiver is gone: drain and drop
        try:
            if stream == STDOUT:
                self.meter.write_stdout(data)
            else:
                self.meter.write_stderr(data)
        except BaseException as exc:  # noqa: BLE001 - re-raised by supervise once the group is dead
            self.sink_error = exc

    def _drain_after_kill(self) -> None:
        """Collect what the killed group left in the pipes; bounded by kill_grace."""
        deadline = time.monotonic() + self.kill_grace
        while self.open_streams:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            for key, _ in self.selector.select(remaining):
                if key.fd in self.open_streams:
                    self._read(key.fd)

    def _signal_group(self, signal_number: int) -> None:
        try:
            os.killpg(self.group_id, signal_number)
        except (ProcessLookupError, PermissionError):
            pass  # nothing left in the group that we may signal
        if signal_number == signal.SIGKILL and self.cgroup is not None:
            self.cgroup.kill()  # also what left the group (setsid)

    def _close(self) -> None:
        if self.process.returncode is None:
            # Reached only when something above failed unexpectedly: never leak the group.
            self._signal_group(signal.SIGKILL)
            self.process.wait()
        self.selector.close()
        if self.exit_fd is not None:
            os.close(self.exit_fd)
        assert self.process.stdout is not None and self.process.stderr is not None
        self.process.stdout.close()
        self.process.stderr.close()
        if self.process.stdin is not None:
            self.process.stdin.close()


def _new_cgroup() -> CommandCgroup | None:
    base = cgroup_base()
    if base is None:
        return None
    try:
        return CommandCgroup(base)
    except OSError:
        return None  # the process-group kill still applies


def _join_then_drop(cgroup: CommandCgroup, user: int | None, group: int | None) -> Callable[[], None]:
    """The child's step before exec: join the cgroup (as root), then become ``user``/``group``."""

    def prepare() -> None:
        cgroup.join()
        if group is not None:
            os.setgroups([])
            os.setgid(group)
        if user is not None:
            os.setuid(user)

    return prepare


def _has_exited(pid: int) -> bool:
    """True once ``pid`` (our child) has exited; it stays unreaped (a zombie)."""
    info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    return info is not None


def _drain_wake_pipe(fd: int) -> None:
    try:
        os.read(fd, 4096)
    except BlockingIOError:
        pass


def _completed(ended: Exit, meter: _OutputMeter, started: float, limit: float, request_id: int) -> Exit:
    """The Exit for ``request_id``: how the command ended (``ended``) and what the meter counted."""
    truncated, timed_out = meter.truncated, ended.timed_out
    return Exit(  # positional: a third cheaper than keywords on this per-request path
        request_id,
        ended.exit_status,
        ended.signal,
        time.perf_counter() - started,
        meter.stdout_bytes,
        meter.stderr_bytes,
        b"" if meter.hasher is None else meter.hasher.digest(),
        truncated,
        timed_out,
        limit if timed_out else 0.0,
        meter.cap if truncated else 0,
    )


def _check_encodable(argv: Sequence[str]) -> None:
    for argument in argv:
        try:
            argument.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            raise PolicyError(f"argument {argument!r} is not valid text; send UTF-8") from None


def _describe_start_failure(program: str, exc: OSError, working_directory: str | None) -> bytes:
    if working_directory is not None and exc.filename == working_directory:
        return f"{program}: cannot enter working directory {working_directory}: {exc.strerror}\n".encode()
    return f"{program}: {exc.strerror}\n".encode()
