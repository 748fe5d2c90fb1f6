"""Sequenced UDP (``udp://`` and ``udp6://``): reliable, ordered messages over datagrams.

How this works: an :class:`_Endpoint` owns one UDP socket and the sans-IO
:class:`~netlab.proto.seq.SequencingConnection` state machines behind it
(one for a client; all of a listener's, told apart by connection id). Whoever
holds the endpoint's *reader* lock waits for and reads a batch of datagrams,
feeds them to the machines under the state lock, runs due timers with
``time.monotonic()`` and sends what the machines return. An application thread
waiting in ``receive``/``send`` becomes the reader itself (no thread hand-off
on the hot path) and blocks in ``recvmsg`` directly, bounded by SO_RCVTIMEO
(no poll before the read); when no application thread waits, the endpoint's
one background thread reads instead, polling the socket and a wake-up pipe,
so ACKs, retransmissions and keepalives go on between calls. Timers are
tracked as one endpoint-wide earliest deadline, so a read does not scan every
connection. The background thread stops once the listener and all its
connections are closed (a client: once its connection closed and lingered).

Sending is done by the calling thread, one ``sendmsg`` per datagram (header and
payload as two buffers, no copy). Garbage, oversized datagrams (MSG_TRUNC) and
ICMP errors are counted in :class:`ListenerStatistics` and never stop the loop.
An optional seeded :class:`~netlab.transport.impairment.Impairment` sits
between the machines and the socket on the send and/or receive path.
"""

from __future__ import annotations

import errno
import math
import os
import select
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field, fields, replace
from typing import Any

from netlab.errors import (
    AddressError,
    BrokenError,
    ClosedError,
    ConnectError,
    ConnectionRefused,
    ConnectTimeout,
    LocalProtocolError,
    NetlabError,
    ReadTimeout,
    RemoteProtocolError,
    UsageError,
    WriteTimeout,
)
from netlab.proto.seq import (
    RFC_FLOOR,
    HandshakeStatistics,
    SequencingAcceptor,
    SequencingConfig,
    SequencingConnection,
    SequencingStatistics,
)
from netlab.proto.seq.wire import HEADER_SIZE, DatagramType
from netlab.transport.address import UDP_SCHEMES, Address, parse_address
from netlab.transport.base import DEFAULT_RECEIVE_SIZE, Connection, Listener
from netlab.transport.impairment import ImpairedLink, Impairment
from netlab.transport.registry import (
    DEFAULT_BACKLOG,
    DEFAULT_CONNECT_TIMEOUT,
    register_transport,
)
from netlab.transport.socket_connection import ip_bind_error

#: Linux socket option numbers the socket module does not export.
_IP_RECVERR = 11
_IPV6_RECVERR = 25
_SO_SNDBUFFORCE = 32
#: Bytes the kernel charges a socket buffer per datagram beyond its payload (skb truesize).
_KERNEL_OVERHEAD = 1024
_SO_RCVBUFFORCE = 33
#: Most datagrams, and bytes, read before the state machines get to run (small
#: batches of large datagrams let ACKs leave sooner).
_BATCH = 64
_BATCH_BYTES = 128 * 1024
#: After an application thread stops waiting, the background thread waits this
#: long before it polls the socket itself, so a thread that comes straight back
#: to ``receive`` finds the reader role free without waking anyone.
_GRACE = 0.002
#: Plain ints: socket's flags are IntFlags, whose ``&`` and ``|`` run Python code per datagram.
_MSG_TRUNC = int(socket.MSG_TRUNC)
_MSG_DONTWAIT = int(socket.MSG_DONTWAIT)
#: Longest an application thread blocks in recvmsg before it looks at the
#: timers again (capped at a quarter of the RTO floor): a timer armed
#: meanwhile by another thread is never sooner than one RTO away.
_LONGEST_READ = 0.02
_TIMEVAL = struct.Struct("@ll")
_ICMP_ERRNOS = frozenset(
    {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EMSGSIZE}
)


@dataclass(frozen=True)
class UdpOptions:
    """Settings of a UDP endpoint (listener or client).

    Attributes:
        payload_size: largest datagram in bytes, header included (1200 by
            default as QUIC; up to 65507 on loopback).
        rto_floor: lowest retransmission timeout (RFC 6298: 1 s; 0.02 for a
            fast, KCP-like recovery).
        initial_rto: retransmission timeout before the first RTT sample.
        retry_limit: retransmissions of one datagram before the connection fails.
        window: receive window in datagrams.
        impairment: seeded loss/duplication/reordering/delay/corruption, or None.
        socket_buffer_size: SO_RCVBUF and SO_SNDBUF in bytes.
        send_buffer_size: message bytes queued or in flight before ``send`` blocks.
        linger: seconds a closed connection keeps delivering its last data.
        idle_timeout: fail a connection that heard nothing for this long.
        keepalive_interval: PING after this long without sending.
    """

    payload_size: int = 1200
    rto_floor: float = RFC_FLOOR
    initial_rto: float = RFC_FLOOR
    retry_limit: int = 10
    window: int = 256
    impairment: Impairment | None = None
    socket_buffer_size: int = 4 * 1024 * 1024
    send_buffer_size: int = 4 * 1024 * 1024
    linger: float = 10.0
    idle_timeout: float = 60.0
    keepalive_interval: float = 15.0

    def sequencing_config(self) -> SequencingConfig:
        """The state-machine settings these options imply."""
        return SequencingConfig(
            max_datagram_size=self.payload_size,
            # never advertise more than the socket buffer can hold, or the
            # kernel drops what the window allowed (each datagram costs its
            # size plus the kernel's per-packet overhead)
            receive_window=max(8, min(self.window, self.socket_buffer_size // (self.payload_size + _KERNEL_OVERHEAD))),
            rto_floor=self.rto_floor,
            initial_rto=max(self.initial_rto, self.rto_floor),
            retry_limit=self.retry_limit,
            idle_timeout=self.idle_timeout,
            keepalive_interval=self.keepalive_interval,
        )

    @classmethod
    def build(cls, options: UdpOptions | None = None, **changes: Any) -> UdpOptions:
        """``options`` (or the defaults) with keyword changes; UsageError for unknown names."""
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise UsageError(
                f"unknown udp option(s) {', '.join(unknown)}: use {', '.join(sorted(known))}"
            )
        result = replace(options or cls(), **changes)
        result.sequencing_config()  # validates
        return result


@dataclass
class ListenerStatistics:
    """What a UDP endpoint's socket loop saw, besides the connections' own counters."""

    datagrams_received: int = 0
    bytes_received: int = 0
    oversized: int = 0
    icmp_errors: int = 0
    receive_errors: int = 0
    send_errors: int = 0
    send_buffer_full: int = 0
    address_mismatches: int = 0
    unknown_connection: int = 0
    accept_queue_drops: int = 0
    connections_accepted: int = 0
    handshake: HandshakeStatistics = field(default_factory=HandshakeStatistics)

    @property
    def garbage(self) -> int:
        """Datagrams for no connection that were not ours at all."""
        return self.handshake.malformed

    @property
    def checksum_failures(self) -> int:
        """Damaged datagrams for no known connection (connections count their own)."""
        return self.handshake.checksum_failures


class _Slot:
    """One connection on an endpoint: its machine, its peer, its waiters, its readiness descriptor."""

    __slots__ = ("app_closed", "changed", "close_deadline", "machine", "peer", "ready", "ready_fd", "sleepers")

    def __init__(self, machine: SequencingConnection, peer: Any, lock: threading.Lock) -> None:
        self.machine = machine
        self.peer = peer
        # Threads asleep in receive/send/connect on this connection (not the one
        # reading the socket); only a change to this machine wakes them.
        self.changed = threading.Condition(lock)
        self.sleepers = 0
        self.ready_fd = -1  # Made on the first fileno() call: most users never select.
        self.ready = False
        self.app_closed = False
        self.close_deadline = math.inf

    def open_ready_fd(self) -> int:
        if self.ready_fd < 0 and not self.app_closed:
            self.ready_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            machine = self.machine
            self.ready = (
                machine.has_message or machine.at_end or machine.error is not None
            )
            if self.ready:
                os.eventfd_write(self.ready_fd, 1)
        return self.ready_fd

    def close_ready_fd(self) -> None:
        if self.ready_fd >= 0:
            os.close(self.ready_fd)
            self.ready_fd = -1


class _Endpoint:
    """One UDP socket, the machines behind it, and the loop that drives them."""

    def __init__(
        self, sock: socket.socket, options: UdpOptions, name: str, *, is_server: bool
    ) -> None:
        self.sock = sock
        self.options = options
        self.name = name
        self.is_server = is_server
        self.lock = threading.Lock()
        self.accept_changed = threading.Condition(self.lock)
        self.background_wakeup = threading.Condition(self.lock)
        self.reader = threading.Lock()
        self.slots: dict[int, _Slot] = {}
        self.stats = ListenerStatistics()
        self.acceptor: SequencingAcceptor | None = None
        self.accept_queue: deque[_Slot] = deque()
        self.accept_ready_fd = -1
        self.backlog = 0
        self.listening = False
        self.app_waiting = 0
        self.last_app_wait = 0.0
        self.background_reading = False
        # Earliest time a machine (or an impairment link) may have timer work:
        # never later than the truth, sometimes earlier (then a scan finds
        # nothing due and recomputes it). Saves a scan of every connection per read.
        self.timer_due = math.inf
        # While the reader sleeps in poll: until when (-inf: nobody sleeps).
        self.sleeping_until = -math.inf
        self.stopping = False
        self.stopped = threading.Event()
        self.longest_read = max(0.001, min(_LONGEST_READ, options.rto_floor / 4))
        self._receive_timeout_ms = 0  # SO_RCVTIMEO as set on the socket (0: none)
        self._wake_read, self._wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._poller = select.poll()
        self._poller.register(sock.fileno(), select.POLLIN)
        self._poller.register(self._wake_read, select.POLLIN)
        impairment = options.impairment
        self.send_link = (
            ImpairedLink(impairment)
            if impairment is not None and impairment.impairs_send
            else None
        )
        self.receive_link = (
            ImpairedLink(replace(impairment, seed=impairment.seed + 1))
            if impairment is not None and impairment.impairs_receive
            else None
        )
        self._thread = threading.Thread(
            target=self._run_background, name=f"netlab-udp {name}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    # ------------------------------------------------ called with the lock held

    def wait_locked(self, slot: _Slot, deadline: float | None) -> None:
        """Let time pass until ``slot`` changes or ``deadline``; drive the socket if free.

        Called and returns with ``self.lock`` held.
        """
        self.app_waiting += 1
        try:
            if self.reader.acquire(blocking=False):
                try:
                    self._pump_locked(deadline)
                finally:
                    self.reader.release()
                    if self.app_waiting > 1:
                        self._hand_over_reading()
            else:
                if self.background_reading:
                    self._wake()
                timeout = (
                    None if deadline is None else max(0.0, deadline - time.monotonic())
                )
                slot.sleepers += 1
                try:
                    slot.changed.wait(timeout)
                finally:
                    slot.sleepers -= 1
        finally:
            self.app_waiting -= 1
            self.last_app_wait = time.monotonic()

    def wait_for_accept_locked(self, deadline: float | None) -> None:
        """Wait until the accept queue changes or ``deadline`` (lock held).

        An accept never drives the socket itself: the reader would then be a
        thread that rarely wants what it reads, and every datagram would cost
        a hand-off to the connection's thread. The background thread reads
        while no connection waits.
        """
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        self.accept_changed.wait(timeout)

    def _hand_over_reading(self) -> None:
        """The reader role is free: wake the threads waiting on connections so one takes it."""
        for slot in self.slots.values():
            if slot.sleepers:
                slot.changed.notify_all()

    def _notify_everyone(self) -> None:
        for slot in self.slots.values():
            if slot.sleepers:
                slot.changed.notify_all()
        self.accept_changed.notify_all()

    def after_change(self, slot: _Slot, now: float) -> None:
        """Send what ``slot``'s machine wants to send; update readiness and timers; forget it when done."""
        machine = slot.machine
        datagrams = machine.datagrams_to_send()
        if datagrams:
            self.send(datagrams, slot.peer, now)
        if slot.sleepers:
            slot.changed.notify_all()
        if slot.ready_fd >= 0:
            self._update_ready(slot)
        deadline = machine.next_deadline()
        if slot.app_closed:
            if machine.is_done() or machine.error is not None or now >= slot.close_deadline:
                self.forget(slot)
                return
            if deadline is None or slot.close_deadline < deadline:
                deadline = slot.close_deadline
        if deadline is not None and deadline < self.timer_due:
            self._note_deadline(deadline)

    def after_read(self, slot: _Slot) -> None:
        """After the application took a message: send a window update if one is due; update readiness."""
        datagrams = slot.machine.datagrams_to_send()
        if datagrams:
            self.send(datagrams, slot.peer, time.monotonic())
        if slot.ready_fd >= 0:
            self._update_ready(slot)

    def _update_ready(self, slot: _Slot) -> None:
        machine = slot.machine
        ready = machine.has_message or machine.at_end or machine.error is not None
        if ready != slot.ready:
            if ready:
                os.eventfd_write(slot.ready_fd, 1)
            else:
                try:
                    os.eventfd_read(slot.ready_fd)
                except BlockingIOError:
                    pass
            slot.ready = ready

    def forget(self, slot: _Slot) -> None:
        """Drop a connection; stop the endpoint when nothing is left to serve."""
        self.slots.pop(slot.machine.connection_id, None)
        slot.close_ready_fd()
        if not self.slots and not self.listening:
            self.request_stop()

    def request_stop(self) -> None:
        """Make the background thread close the socket and end."""
        if not self.stopping:
            self.stopping = True
            self._wake()
            self._notify_everyone()
            self.background_wakeup.notify_all()

    def send(
        self, datagrams: list[tuple[bytes, bytes | memoryview]], peer: Any, now: float
    ) -> None:
        """Send datagrams to ``peer`` (through the send impairment if any)."""
        link = self.send_link
        if link is not None:
            for header, payload in datagrams:
                link.submit(header + bytes(payload), now, peer)
            self._send_released(now)
            return
        sock = self.sock
        try:
            if self.is_server:
                for datagram in datagrams:
                    sock.sendmsg(datagram, (), _MSG_DONTWAIT, peer)
            else:
                for datagram in datagrams:
                    sock.sendmsg(datagram, (), _MSG_DONTWAIT)
        except OSError as exc:
            self._count_send_error(exc, now)

    # --------------------------------------------------------------- the loop

    def _pump_locked(self, deadline: float | None) -> None:
        """As the reader: wait for datagrams or a timer, then process them.

        Called and returns with ``self.lock`` held; releases it only while
        waiting and reading. An application thread blocks in recvmsg itself
        (one system call per datagram, no poll) for at most ``longest_read``;
        the background thread, which an application thread may need to wake,
        polls the socket and the wake-up pipe.
        """
        wake_at = self.timer_due
        if deadline is not None and deadline < wake_at:
            wake_at = deadline
        polls = (
            self.background_reading
            or self.send_link is not None
            or self.receive_link is not None
        )
        if polls:
            self.sleeping_until = wake_at
        self.lock.release()
        try:
            wait = wake_at - time.monotonic()
            if not polls:
                if wait > 0:
                    self._set_receive_timeout(wait)
                    batch, errors = self._read_batch(0)
                else:
                    batch, errors = self._read_batch(_MSG_DONTWAIT)
            else:
                if wake_at == math.inf:
                    events = self._poller.poll()
                else:
                    events = self._poller.poll(math.ceil(wait * 1000)) if wait > 0 else []
                if len(events) > 1 or (events and events[0][0] == self._wake_read):
                    try:
                        os.read(self._wake_read, 4096)
                    except BlockingIOError:
                        pass
                batch, errors = self._read_batch(_MSG_DONTWAIT)
        finally:
            self.lock.acquire()
        now = time.monotonic()
        self.sleeping_until = -math.inf
        for error in errors:
            self._on_socket_error(error, now)
        receive_link = self.receive_link
        if receive_link is None:
            if len(batch) == 1:
                self._dispatch_now(*batch[0], now)
            elif batch:
                # Feed the whole batch first, then send (one ACK, not one per
                # datagram) and notify once per connection that changed.
                changed: dict[int, _Slot] = {}
                for data, address in batch:
                    slot = self._deliver(data, address, now)
                    if slot is not None:
                        changed[id(slot)] = slot
                for slot in changed.values():
                    self.after_change(slot, now)
        else:
            for data, address in batch:
                receive_link.submit(data, now, address)
            for data, address in receive_link.release(now):
                self._dispatch_now(data, address, now)
            self._note_deadline(receive_link.next_release())
        if self.send_link is not None:
            self._send_released(now)
        if now >= self.timer_due:
            self._run_timers(now)

    def _set_receive_timeout(self, wait: float) -> None:
        """Make a blocking recvmsg return after about ``wait`` seconds, at most ``longest_read``.

        Whole milliseconds, and only when that changes: most reads need no setsockopt.
        """
        if wait > self.longest_read:
            wait = self.longest_read
        milliseconds = int(wait * 1000) or 1  # 0 would mean "forever"
        if milliseconds != self._receive_timeout_ms:
            self.sock.setsockopt(
                socket.SOL_SOCKET,
                socket.SO_RCVTIMEO,
                _TIMEVAL.pack(milliseconds // 1000, milliseconds % 1000 * 1000),
            )
            self._receive_timeout_ms = milliseconds

    def _read_batch(self, first_flags: int) -> tuple[list[tuple[bytes, Any]], list[OSError]]:
        """Read up to a batch of datagrams; the first read uses ``first_flags`` (0 blocks), the rest never block."""
        batch: list[tuple[bytes, Any]] = []
        errors: list[OSError] = []
        recvmsg, stats = self.sock.recvmsg, self.stats
        size_limit = self.options.payload_size
        batch_bytes = 0
        flags_in = first_flags
        for _ in range(_BATCH):
            try:
                data, _, flags, address = recvmsg(size_limit, 0, flags_in)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            except OSError as exc:
                errors.append(exc)
                if len(errors) > 1:
                    break
                flags_in = _MSG_DONTWAIT
                continue
            flags_in = _MSG_DONTWAIT
            size = len(data)
            stats.datagrams_received += 1
            stats.bytes_received += size
            if flags & _MSG_TRUNC:
                stats.oversized += 1
                continue
            batch.append((data, address))
            batch_bytes += size
            if size < size_limit or batch_bytes >= _BATCH_BYTES:
                # Not a full fragment, so probably not part of a burst: skip the
                # extra recvmsg that would only say EAGAIN (the next wait catches more).
                break
        return batch, errors

    def _dispatch_now(self, data: bytes, address: Any, now: float) -> None:
        """Feed one datagram to its machine (or the acceptor) and act on the change."""
        slot = self._deliver(data, address, now)
        if slot is not None:
            self.after_change(slot, now)

    def _deliver(self, data: bytes, address: Any, now: float) -> _Slot | None:
        """Feed one datagram; return the connection it changed (the caller runs after_change)."""
        slot = (
            self.slots.get(int.from_bytes(data[4:12], "big"))
            if len(data) >= HEADER_SIZE
            else None
        )
        if slot is not None:
            if self.is_server and address != slot.peer:
                self.stats.address_mismatches += 1
                return None
            try:
                slot.machine.receive_datagram(data, now)
            except RemoteProtocolError:
                pass  # The machine failed itself; the application meets the error.
            return slot
        self._handshake(data, address, now)
        return None

    def _handshake(self, data: bytes, address: Any, now: float) -> None:
        """A datagram for no known connection: the stateless acceptor answers it."""
        acceptor = self.acceptor
        if acceptor is None or not self.listening:
            self.stats.unknown_connection += 1
            return
        if (
            data[:1] == bytes((DatagramType.COOKIE_ECHO,))
            and len(self.accept_queue) > self.backlog
        ):
            self.stats.accept_queue_drops += (
                1  # Like a full TCP accept queue: no answer.
            )
            return
        replies, machine = acceptor.handle_datagram(data, address, now)
        if replies:
            self.send(replies, address, now)
        if machine is not None:
            slot = _Slot(machine, address, self.lock)
            self.slots[machine.connection_id] = slot
            self._note_deadline(machine.next_deadline())
            self.accept_queue.append(slot)
            self.stats.connections_accepted += 1
            self.accept_changed.notify()
            self._set_accept_ready()

    def _run_timers(self, now: float) -> None:
        """Run every due timer, then recompute the endpoint's earliest deadline (lock held)."""
        self.timer_due = math.inf
        for slot in list(self.slots.values()):
            machine = slot.machine
            deadline = machine.next_deadline()
            if deadline is not None and deadline <= now:
                machine.handle_timeout(now)
                self.after_change(slot, now)
                continue
            if slot.app_closed:
                if now >= slot.close_deadline:
                    self.forget(slot)
                    continue
                if deadline is None or slot.close_deadline < deadline:
                    deadline = slot.close_deadline
            if deadline is not None and deadline < self.timer_due:
                self.timer_due = deadline
        for link in (self.send_link, self.receive_link):
            if link is not None:
                self._note_deadline(link.next_release())

    def _note_deadline(self, deadline: float | None) -> None:
        """Make sure the reader wakes by ``deadline`` (lock held)."""
        if deadline is not None and deadline < self.timer_due:
            self.timer_due = deadline
            if deadline < self.sleeping_until:
                self.sleeping_until = -math.inf
                self._wake()

    def _send_released(self, now: float) -> None:
        assert self.send_link is not None
        sock = self.sock
        for data, peer in self.send_link.release(now):
            try:
                if self.is_server:
                    sock.sendto(data, _MSG_DONTWAIT, peer)  # type: ignore[call-overload]
                else:
                    sock.send(data, _MSG_DONTWAIT)
            except OSError as exc:
                self._count_send_error(exc, now)
        self._note_deadline(self.send_link.next_release())

    def _count_send_error(self, exc: OSError, now: float) -> None:
        if isinstance(exc, BlockingIOError) or exc.errno == errno.ENOBUFS:
            self.stats.send_buffer_full += 1  # UDP drops it; retransmission recovers.
        elif exc.errno in _ICMP_ERRNOS:
            self._on_socket_error(exc, now)
        else:
            self.stats.send_errors += 1

    def _on_socket_error(self, exc: OSError, now: float) -> None:
        """An ICMP error (or other failure) surfaced on the socket: count it, keep going (lock held)."""
        if exc.errno not in _ICMP_ERRNOS:
            self.stats.receive_errors += 1
            return
        self.stats.icmp_errors += 1
        if self.is_server:
            self._drain_error_queue(now)
            return
        if exc.errno != errno.ECONNREFUSED:
            return
        for slot in list(self.slots.values()):
            machine = slot.machine
            if machine.is_established:
                error: NetlabError = BrokenError(
                    f"the peer's port at {self.name} is closed (ICMP port unreachable)"
                )
            else:
                error = ConnectionRefused(
                    f"nothing listens on {self.name} (ICMP port unreachable): is the server running?"
                )
            machine.fail(error, now)
            self.after_change(slot, now)

    def _drain_error_queue(self, now: float) -> None:
        """Read queued ICMP reports (IP_RECVERR); fail connections whose client port is closed."""
        for _ in range(_BATCH):
            try:
                _, _, _, address = self.sock.recvmsg(1, 512, socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT)
            except OSError:
                return
            for slot in list(self.slots.values()):
                if slot.peer == address and slot.machine.is_established:
                    slot.machine.fail(
                        BrokenError(
                            f"the client at {_url_of(address)} closed its port (ICMP port unreachable)"
                        ),
                        now,
                    )
                    self.after_change(slot, now)

    def _set_accept_ready(self) -> None:
        if self.accept_ready_fd >= 0:
            os.eventfd_write(self.accept_ready_fd, 1)

    def _wake(self) -> None:
        try:
            os.write(self._wake_write, b"!")
        except BlockingIOError:
            pass  # The pipe is full: the reader wakes anyway.

    def _run_background(self) -> None:
        """Drive the socket whenever no application thread does; end on request."""
        try:
            with self.lock:
                while not self.stopping:
                    # Naps instead of notifications: waking this thread on every
                    # change would cost the hot path a thread switch each time.
                    if (
                        self.app_waiting
                        or time.monotonic() - self.last_app_wait < _GRACE
                        or not self.reader.acquire(blocking=False)
                    ):
                        self.background_wakeup.wait(_GRACE)
                        continue
                    self.background_reading = True
                    try:
                        self._pump_locked(None)
                    finally:
                        self.background_reading = False
                        self.reader.release()
                        if self.app_waiting:
                            self._hand_over_reading()
        finally:
            self._teardown()

    def _teardown(self) -> None:
        acquired = self.reader.acquire(timeout=5.0)
        try:
            with self.lock:
                self._notify_everyone()
                for slot in list(self.slots.values()):
                    slot.close_ready_fd()
                self.slots.clear()
                if self.accept_ready_fd >= 0:
                    os.close(self.accept_ready_fd)
                    self.accept_ready_fd = -1
                self.sock.close()
                os.close(self._wake_read)
                os.close(self._wake_write)
        finally:
            if acquired:
                self.reader.release()
            self.stopped.set()


def _fresh(error: NetlabError) -> NetlabError:
    """A new exception like ``error`` (one stored error is raised in many threads)."""
    return type(error)(error.message)


class UdpConnection(Connection):
    """A sequenced UDP connection: each ``send`` arrives as exactly one ``receive``."""

    preserves_boundaries = True

    def __init__(
        self, endpoint: _Endpoint, slot: _Slot, local_address: str, peer_address: str
    ) -> None:
        """Made by :func:`connect_udp` and :meth:`UdpListener.accept`."""
        self._endpoint = endpoint
        self._slot = slot
        self._machine = slot.machine
        self._closed = False
        self.local_address = local_address
        self.peer_address = peer_address
        self.max_message_size = slot.machine.config.max_message_size
        self.message_fragment_size = slot.machine.config.fragment_size

    def send(self, data: bytes, timeout: float | None = None) -> None:
        """Queue ``data`` as one message; it is delivered whole, in order, exactly once.

        Args:
            data: the message (at least one byte; a message may be larger than a datagram).
            timeout: seconds to wait while the send buffer is full; None waits forever.
        Raises:
            LocalProtocolError (empty message), WriteTimeout (the peer does not
            take our data), BrokenError (peer reset or vanished), ClosedError (we
            closed or shut down writing).
        """
        if not data:
            raise LocalProtocolError(
                "an empty udp message reads as end of stream: send at least one byte"
            )
        endpoint, machine = self._endpoint, self._machine
        limit = endpoint.options.send_buffer_size
        deadline: float | None = None
        with endpoint.lock:
            while True:
                if self._closed:
                    raise ClosedError(
                        f"send on the closed connection to {self.peer_address}: open a new one"
                    )
                if machine.error is not None:
                    raise _fresh(machine.error)
                if machine.send_backlog < limit:
                    now = time.monotonic()
                    try:
                        machine.send_message(data, now)
                    except ClosedError:
                        raise ClosedError(
                            f"sending to {self.peer_address} was shut down: open a new connection"
                        ) from None
                    endpoint.after_change(self._slot, now)
                    return
                if timeout is not None:
                    if deadline is None:
                        deadline = time.monotonic() + timeout
                    elif time.monotonic() >= deadline:
                        raise WriteTimeout(
                            f"{self.peer_address} did not take {machine.send_backlog} queued bytes within "
                            f"{timeout:g} s: the peer is not reading or the path is lossy"
                        )
                endpoint.wait_locked(self._slot, deadline)

    def receive(
        self, max_bytes: int = DEFAULT_RECEIVE_SIZE, timeout: float | None = None
    ) -> bytes:
        """Return the next whole message (never cut: ``max_bytes`` does not apply); ``b""`` at end.

        Args:
            max_bytes: ignored; a message is returned whole whatever its size.
            timeout: seconds to wait; None waits forever; 0 only looks.
        Raises:
            ReadTimeout, BrokenError (peer reset or vanished), WriteTimeout (our
            data went unacknowledged past the retry limit), RemoteProtocolError,
            ClosedError (we closed).
        """
        endpoint, machine = self._endpoint, self._machine
        deadline: float | None = None
        with endpoint.lock:
            while True:
                if self._closed:
                    raise ClosedError(
                        f"receive on the closed connection to {self.peer_address}: open a new one"
                    )
                message = machine.next_message()
                if message is not None:
                    endpoint.after_read(self._slot)
                    return message
                if machine.error is not None:
                    raise _fresh(machine.error)
                if machine.at_end:
                    return b""
                if timeout is not None:
                    if deadline is None:
                        deadline = time.monotonic() + timeout
                    elif time.monotonic() >= deadline:
                        raise ReadTimeout(
                            f"no message from {self.peer_address} within {timeout:g} s"
                        )
                endpoint.wait_locked(self._slot, deadline)

    def shutdown_write(self) -> None:
        """Send FIN after the queued messages: the peer reads ``b""``; we can still receive.

        Raises:
            ClosedError (we closed), the connection's error after a failure.
        """
        endpoint = self._endpoint
        with endpoint.lock:
            if self._closed:
                raise ClosedError(
                    f"shutdown of the closed connection to {self.peer_address}"
                )
            now = time.monotonic()
            self._machine.shutdown_write(now)
            endpoint.after_change(self._slot, now)

    def close(self) -> None:
        """Close both directions; queued messages are still delivered (up to ``linger``). Idempotent."""
        self._close(abort=False)

    def abort(self) -> None:
        """Reset the connection at once: the peer gets BrokenError."""
        self._close(abort=True)

    def _close(self, abort: bool) -> None:
        endpoint, slot = self._endpoint, self._slot
        with endpoint.lock:
            if self._closed:
                return
            self._closed = True
            now = time.monotonic()
            if abort:
                self._machine.reset(now)
            elif self._machine.error is None:
                self._machine.close(now)
            slot.app_closed = True
            slot.close_deadline = now + endpoint.options.linger
            slot.close_ready_fd()
            if slot.machine.connection_id in endpoint.slots:
                endpoint.after_change(slot, now)
            elif not endpoint.slots and not endpoint.listening:
                endpoint.request_stop()
            slot.changed.notify_all()
            endpoint._wake()

    def fileno(self) -> int:
        """A descriptor that is readable while a message, end of stream or an error is ready (-1 after close)."""
        with self._endpoint.lock:
            return self._slot.open_ready_fd()

    def statistics(self) -> SequencingStatistics:
        """Counters, SRTT/RTTVAR/RTO and goodput of this connection end."""
        with self._endpoint.lock:
            return self._machine.statistics(time.monotonic())

    def endpoint_statistics(self) -> ListenerStatistics:
        """The socket loop's counters (shared by all connections of a listener)."""
        with self._endpoint.lock:
            return replace(
                self._endpoint.stats, handshake=replace(self._endpoint.stats.handshake)
            )


class UdpListener(Listener):
    """A UDP socket serving many sequenced connections, told apart by connection id."""

    def __init__(self, endpoint: _Endpoint, address: Address) -> None:
        """Made by :func:`listen_udp`."""
        self._endpoint = endpoint
        self._closed = False
        self.address = address

    def accept(self, timeout: float | None = None) -> UdpConnection:
        """Wait for a client that completed the cookie handshake.

        Args:
            timeout: seconds to wait; None waits forever; 0 only looks.
        Returns:
            The established connection.
        Raises:
            ReadTimeout when none arrives in time, ClosedError after close().
        """
        endpoint = self._endpoint
        deadline: float | None = None
        with endpoint.lock:
            while True:
                if self._closed:
                    raise ClosedError(f"accept on the closed listener {self.address}")
                if endpoint.accept_queue:
                    slot = endpoint.accept_queue.popleft()
                    if not endpoint.accept_queue:
                        try:
                            os.eventfd_read(endpoint.accept_ready_fd)
                        except BlockingIOError:
                            pass
                    return UdpConnection(
                        endpoint,
                        slot,
                        str(self.address),
                        _url_of(slot.peer, self.address.scheme),
                    )
                if timeout is not None:
                    if deadline is None:
                        deadline = time.monotonic() + timeout
                    elif time.monotonic() >= deadline:
                        raise ReadTimeout(
                            f"no connection arrived at {self.address} within {timeout:g} s"
                        )
                endpoint.wait_for_accept_locked(deadline)

    def close(self) -> None:
        """Stop accepting; accepted connections live on until they close. Idempotent."""
        endpoint = self._endpoint
        with endpoint.lock:
            if self._closed:
                return
            self._closed = True
            endpoint.listening = False
            now = time.monotonic()
            while endpoint.accept_queue:
                slot = endpoint.accept_queue.popleft()
                slot.machine.reset(now)  # Never accepted: like TCP, reset it.
                slot.app_closed = True
                endpoint.after_change(slot, now)
                endpoint.forget(slot)
            if not endpoint.slots:
                endpoint.request_stop()
            endpoint.accept_changed.notify_all()
            endpoint._wake()

    def fileno(self) -> int:
        """A descriptor that is readable while a connection waits in the accept queue."""
        return self._endpoint.accept_ready_fd

    def statistics(self) -> ListenerStatistics:
        """Counters of the socket loop and of the stateless handshake."""
        endpoint = self._endpoint
        with endpoint.lock:
            return replace(endpoint.stats, handshake=replace(endpoint.stats.handshake))

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Wait until the background thread ended and the socket is closed (after close)."""
        return self._endpoint.stopped.wait(timeout)


def listen_udp(
    address: Address | str,
    backlog: int = DEFAULT_BACKLOG,
    *,
    options: UdpOptions | None = None,
    **changes: Any,
) -> UdpListener:
    """Bind a UDP socket and serve sequenced connections on it.

    Args:
        address: a ``udp`` or ``udp6`` address (or its URL); port 0 picks a free port.
        backlog: established connections waiting for accept() beyond which new
            handshakes are ignored (like a full TCP queue: backlog + 1 admitted).
        options: :class:`UdpOptions`; keyword arguments override single fields.
    Returns:
        The listener; ``listener.address`` carries the bound port.
    Raises:
        AddressError, BindError, UsageError (bad options).
    """
    settings = UdpOptions.build(options, **changes)
    address = _check_scheme(address)
    sockaddr = _resolve(address, passive=True)
    sock = _make_socket(address, settings)
    try:
        sock.bind(sockaddr)
        level, option = (
            (socket.IPPROTO_IPV6, _IPV6_RECVERR)
            if address.family == socket.AF_INET6
            else (socket.IPPROTO_IP, _IP_RECVERR)
        )
        sock.setsockopt(level, option, 1)
    except OSError as exc:
        sock.close()
        raise ip_bind_error(address, exc) from exc
    bound = Address(
        scheme=address.scheme, host=address.host, port=sock.getsockname()[1]
    )
    endpoint = _Endpoint(sock, settings, str(bound), is_server=True)
    endpoint.acceptor = SequencingAcceptor(settings.sequencing_config())
    endpoint.stats.handshake = endpoint.acceptor.stats
    endpoint.accept_ready_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    endpoint.backlog = backlog
    endpoint.listening = True
    endpoint.start()
    return UdpListener(endpoint, bound)


def connect_udp(
    address: Address | str,
    timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
    *,
    options: UdpOptions | None = None,
    **changes: Any,
) -> UdpConnection:
    """Connect to a sequenced UDP server: cookie handshake within ``timeout``.

    Args:
        address: a ``udp`` or ``udp6`` address (or its URL).
        timeout: seconds for the whole handshake; None waits until the retry limit.
        options: :class:`UdpOptions`; keyword arguments override single fields.
    Returns:
        The established connection.
    Raises:
        ConnectionRefused (ICMP port unreachable or a RESET), ConnectTimeout,
        AddressError, ConnectError.
    """
    settings = UdpOptions.build(options, **changes)
    address = _check_scheme(address)
    sockaddr = _resolve(address, passive=False)
    sock = _make_socket(address, settings)
    try:
        sock.connect(sockaddr)
    except OSError as exc:
        sock.close()
        raise ConnectError(
            f"cannot connect to {address}: {exc.strerror or exc}"
        ) from exc
    local = _url_of(sock.getsockname(), address.scheme)
    endpoint = _Endpoint(sock, settings, str(address), is_server=False)
    now = time.monotonic()
    machine = SequencingConnection.connect(settings.sequencing_config(), now)
    slot = _Slot(machine, sockaddr, endpoint.lock)
    endpoint.slots[machine.connection_id] = slot
    connection = UdpConnection(endpoint, slot, local, str(address))
    endpoint.start()
    deadline = None if timeout is None else now + timeout
    with endpoint.lock:
        endpoint.after_change(slot, now)
        while not machine.is_established:
            error = machine.error
            if error is None and deadline is not None and time.monotonic() >= deadline:
                error = ConnectTimeout(
                    f"no handshake answer from {address} within {timeout:g} s: is a netlab udp server listening there?"
                )
            if error is not None:
                slot.app_closed = True
                endpoint.forget(slot)
                raise _fresh(error)
            endpoint.wait_locked(slot, deadline)
    return connection


def _make_socket(address: Address, options: UdpOptions) -> socket.socket:
    try:
        sock = socket.socket(address.family, socket.SOCK_DGRAM)
    except OSError as exc:
        raise AddressError(
            f"cannot open a UDP socket for {address}: {exc.strerror or exc}"
            + (" (is IPv6 enabled on this machine?)" if address.family == socket.AF_INET6 else "")
        ) from exc
    try:
        if address.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        for forced, plain in (
            (_SO_RCVBUFFORCE, socket.SO_RCVBUF),
            (_SO_SNDBUFFORCE, socket.SO_SNDBUF),
        ):
            try:
                sock.setsockopt(socket.SOL_SOCKET, forced, options.socket_buffer_size)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, plain, options.socket_buffer_size)
        # Blocking, so a reader waits in recvmsg itself (SO_RCVTIMEO bounds it);
        # every other call passes MSG_DONTWAIT.
        sock.setblocking(True)
    except OSError as exc:
        sock.close()
        raise AddressError(f"cannot set up a UDP socket for {address}: {exc.strerror or exc}") from exc
    return sock


def _check_scheme(address: Address | str) -> Address:
    parsed = parse_address(address) if isinstance(address, str) else address
    if parsed.scheme not in UDP_SCHEMES:
        raise AddressError(
            f"{parsed} is not a UDP address: use udp://host:port or udp6://[host]:port"
        )
    return parsed


def _resolve(address: Address, passive: bool) -> tuple[Any, ...]:
    flags = socket.AI_NUMERICSERV | (socket.AI_PASSIVE if passive else 0)
    try:
        infos = socket.getaddrinfo(
            address.host, address.port, address.family, socket.SOCK_DGRAM, 0, flags
        )
    except socket.gaierror as exc:
        raise AddressError(
            f"cannot resolve {address.host!r} for {address.scheme} ({exc.strerror}): use an IP address "
            "such as 127.0.0.1 or ::1"
        ) from exc
    return tuple(infos[0][4])


def _url_of(sockaddr: Any, scheme: str = "udp") -> str:
    host, port = sockaddr[0], sockaddr[1]
    if ":" in host and scheme == "udp":
        scheme = "udp6"
    return str(Address(scheme=scheme, host=host, port=port))


for _scheme in UDP_SCHEMES:
    register_transport(_scheme, listen_udp, connect_udp)
