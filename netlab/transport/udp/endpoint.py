"""The engine of a UDP endpoint: one socket, the sequencing machines behind it, one loop.

How this works: an :class:`Endpoint` owns one UDP socket and the sans-IO
:class:`~netlab.proto.seq.connection.SequencingConnection` machines behind it
(one for a client; all of a listener's, told apart by connection id). Its
parts:

- *Thread hand-off.* Whoever holds the endpoint's ``reader`` lock waits for
  and reads a batch of datagrams, feeds them to the machines under the state
  ``lock``, runs due timers with ``time.monotonic()`` and sends what the
  machines return. An application thread waiting in ``receive``/``send``
  becomes the reader itself (no hand-off on the hot path) and blocks in
  ``recvmsg`` directly, bounded by SO_RCVTIMEO; when no application thread
  waits, the endpoint's one background thread reads instead, polling the
  socket and a wake-up pipe, so ACKs, retransmissions and keepalives go on
  between calls. It stops once the listener and all its connections are closed.
- *Waiting.* :meth:`Endpoint.wait_for` is the one loop every blocking call
  (connect, accept, send, receive) runs: check, then wait until a change or
  the call's own deadline.
- *Timers.* One endpoint-wide earliest deadline (``timer_due``), so a read
  does not scan every connection; :meth:`Endpoint._run_timers` runs the due ones.
- *Socket I/O and ICMP* are in :mod:`~netlab.transport.udp.sockets`; ICMP
  errors fail the connections they concern and never stop the loop.

An optional seeded :class:`~netlab.transport.impairment.Impairment` sits
between the machines and the socket on the send and/or receive path.
"""

from __future__ import annotations

import errno
import math
import os
import select
import socket
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

from netlab.errors import (
    BrokenError,
    ConnectionRefused,
    NetlabError,
    RemoteProtocolError,
)
from netlab.proto.seq import INITIAL_SIZE, SequencingAcceptor, SequencingConnection
from netlab.proto.seq.wire import HEADER_SIZE, DatagramType
from netlab.transport.impairment import ImpairedLink
from netlab.transport.udp.options import ListenerStatistics, UdpOptions
from netlab.transport.udp.sockets import (
    ICMP_ERRNOS,
    MAX_SEGMENTED_BYTES,
    MAX_SEGMENTS,
    MSG_DONTWAIT,
    SEGMENTATION_REFUSED,
    can_segment,
    enable_coalesced_reads,
    is_loopback,
    read_batch,
    read_error_queue,
    send_datagrams,
    send_segmented,
    set_receive_timeout,
    url_of,
)

_T = TypeVar("_T")

#: After an application thread stops waiting, the background thread waits this
#: long before it polls the socket itself, so a thread that comes straight back
#: to ``receive`` finds the reader role free without waking anyone.
_GRACE = 0.002
#: Longest an application thread blocks in recvmsg before it looks at the
#: timers again (capped at a quarter of the RTO floor): a timer armed
#: meanwhile by another thread is never sooner than one RTO away.
_LONGEST_READ = 0.02
#: Most server connections whose client has not confirmed the handshake yet
#: (Linux's tcp_max_syn_backlog is 1024 by default too); the oldest makes room.
HALF_OPEN_LIMIT = 1024


class Slot:
    """One connection on an endpoint: its machine, its peer, its waiters, its readiness descriptor."""

    __slots__ = (
        "app_closed",
        "changed",
        "close_deadline",
        "half_open",
        "machine",
        "peer",
        "ready",
        "ready_fd",
        "sleepers",
    )

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
        # A server's connection whose client has not yet confirmed our ACCEPT
        # (like TCP's SYN-RECV): not in the accept queue yet.
        self.half_open = False

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


class Endpoint:
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
        self.slots: dict[int, Slot] = {}
        self.stats = ListenerStatistics()
        self.acceptor: SequencingAcceptor | None = None
        self.accept_queue: deque[Slot] = deque()
        self.half_open: OrderedDict[int, Slot] = OrderedDict()  # oldest first
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
        # What we announce in the handshake is what we read; every end also
        # takes a whole INITIAL, whatever its own limit.
        self.receive_size = max(options.payload_size, INITIAL_SIZE)
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
        # UDP GSO/GRO: several datagrams per system call where the kernel allows
        # (never through an impairment, which sees and sends each datagram alone),
        # and where two of our largest datagrams fit one send. Segmented sends
        # go only to a loopback peer: on a lab's links a run would cross a veth,
        # netem and the netlab wire as one packet (one fate for up to 64
        # datagrams, a frame beyond the link's MTU), so there each goes alone.
        offload = (options.segment_offload and impairment is None
                   and 2 * self.receive_size <= MAX_SEGMENTED_BYTES)
        self.segmenting = offload and (is_server or is_loopback(sock.getpeername())) and can_segment(sock)
        self.coalesced = offload and enable_coalesced_reads(sock)
        self._thread = threading.Thread(
            target=self._run_background, name=f"netlab-udp {name}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    # ------------------------------------------------ called with the lock held

    def wait_for(
        self,
        ready: Callable[[], _T | None],
        slot: Slot | None,
        timeout: float | None,
        timed_out: Callable[[float], NetlabError],
    ) -> _T:
        """The one waiting loop of every blocking call (lock held).

        Args:
            ready: called after each change; its result, when not None, is
                returned (it raises to end the wait with an error).
            slot: the connection whose changes matter (None: the accept queue).
            timeout: seconds to wait in all; None waits forever; 0 only looks
                (the socket is still read once).
            timed_out: makes the error raised when ``timeout`` passes, given ``timeout``.
        Returns:
            The first result of ``ready`` that is not None.
        """
        deadline: float | None = None
        while True:
            result = ready()
            if result is not None:
                return result
            if timeout is not None:
                if deadline is None:
                    deadline = time.monotonic() + timeout
                elif time.monotonic() >= deadline:
                    raise timed_out(timeout)
            if slot is None:
                self.wait_for_accept_locked(deadline)
            else:
                self.wait_locked(slot, deadline)

    def wait_locked(self, slot: Slot, deadline: float | None) -> None:
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

    def after_change(self, slot: Slot, now: float) -> None:
        """Send what ``slot``'s machine wants to send; update readiness and timers; forget it when done."""
        machine = slot.machine
        datagrams = machine.datagrams_to_send()
        if datagrams:
            self.send(datagrams, slot.peer, now)
        if slot.half_open:
            if machine.error is not None:
                self.forget(slot)  # the client never confirmed: nobody ever saw it
                return
            if not machine.handshake_pending:
                self._promote(slot)
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

    def after_read(self, slot: Slot) -> None:
        """After the application took a message: send a window update if one is due; update readiness."""
        datagrams = slot.machine.datagrams_to_send()
        if datagrams:
            self.send(datagrams, slot.peer, time.monotonic())
        if slot.ready_fd >= 0:
            self._update_ready(slot)

    def _update_ready(self, slot: Slot) -> None:
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

    def forget(self, slot: Slot) -> None:
        """Drop a connection; stop the endpoint when nothing is left to serve."""
        self.slots.pop(slot.machine.connection_id, None)
        if slot.half_open:
            slot.half_open = False
            self.half_open.pop(slot.machine.connection_id, None)
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
        if self.segmenting and len(datagrams) > 1:
            if not self.is_server:
                self._send_segmented(datagrams, None, now)
                return
            if is_loopback(peer):
                self._send_segmented(datagrams, peer, now)
                return
        try:
            send_datagrams(self.sock, datagrams, peer if self.is_server else None)
        except OSError as exc:
            self._count_send_error(exc, now)

    def _send_segmented(self, datagrams: list[tuple[bytes, bytes | memoryview]], peer: Any, now: float) -> None:
        """Send runs of equal-sized datagrams with one ``sendmsg`` each (UDP_SEGMENT).

        A run ends at a datagram of another size (a shorter one ends it as its
        last segment) or at the kernel's limits. Each datagram stays whole on
        the wire, header and all; only the system calls are fewer. Where the
        kernel or device refuses (SEGMENTATION_REFUSED), the endpoint stops
        segmenting and sends each datagram alone from then on.
        """
        sock = self.sock
        count = len(datagrams)
        first = 0
        while first < count:
            header, payload = datagrams[first]
            size = len(header) + len(payload)
            stop = min(count, first + MAX_SEGMENTS, first + MAX_SEGMENTED_BYTES // size)
            parts: list[bytes | memoryview] = [header, payload]
            end = first + 1
            while end < stop:
                header, payload = datagrams[end]
                length = len(header) + len(payload)
                if length > size:
                    break
                parts.append(header)
                parts.append(payload)
                end += 1
                if length < size:
                    break
            try:
                if end - first > 1:
                    send_segmented(sock, parts, size, peer)
                else:
                    send_datagrams(sock, [parts], peer)
            except OSError as exc:
                if exc.errno in SEGMENTATION_REFUSED and end - first > 1:
                    self.segmenting = False
                    self.stats.segmentation_refused += 1
                    self.send(datagrams[first:], peer, now)
                    return
                self._count_send_error(exc, now)
            first = end

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
                    batch, errors = read_batch(self.sock, self.receive_size, 0, self.stats, self.coalesced)
                else:
                    batch, errors = read_batch(self.sock, self.receive_size, MSG_DONTWAIT, self.stats, self.coalesced)
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
                batch, errors = read_batch(self.sock, self.receive_size, MSG_DONTWAIT, self.stats, self.coalesced)
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
                changed: dict[int, Slot] = {}
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
            set_receive_timeout(self.sock, milliseconds)
            self._receive_timeout_ms = milliseconds

    def _dispatch_now(self, data: bytes, address: Any, now: float) -> None:
        """Feed one datagram to its machine (or the acceptor) and act on the change."""
        slot = self._deliver(data, address, now)
        if slot is not None:
            self.after_change(slot, now)

    def _deliver(self, data: bytes, address: Any, now: float) -> Slot | None:
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
            slot = Slot(machine, address, self.lock)
            slot.half_open = True
            self.slots[machine.connection_id] = slot
            self.half_open[machine.connection_id] = slot
            self._note_deadline(machine.next_deadline())
            if len(self.half_open) > HALF_OPEN_LIMIT:
                # Like a full SYN queue: the oldest unconfirmed handshake makes room.
                _, oldest = self.half_open.popitem(last=False)
                self.stats.half_open_drops += 1
                oldest.machine.reset(now)
                self.after_change(oldest, now)

    def _promote(self, slot: Slot) -> None:
        """The client confirmed the handshake: the connection joins the accept queue."""
        slot.half_open = False
        self.half_open.pop(slot.machine.connection_id, None)
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
        sock, server = self.sock, self.is_server
        for data, peer in self.send_link.release(now):
            try:
                send_datagrams(sock, [(data,)], peer if server else None)
            except OSError as exc:
                self._count_send_error(exc, now)
        self._note_deadline(self.send_link.next_release())

    def _count_send_error(self, exc: OSError, now: float) -> None:
        if isinstance(exc, BlockingIOError) or exc.errno == errno.ENOBUFS:
            self.stats.send_buffer_full += 1  # UDP drops it; retransmission recovers.
        elif exc.errno in ICMP_ERRNOS:
            self._on_socket_error(exc, now)
        else:
            self.stats.send_errors += 1

    def _on_socket_error(self, exc: OSError, now: float) -> None:
        """An ICMP error (or other failure) surfaced on the socket: count it, keep going (lock held)."""
        if exc.errno not in ICMP_ERRNOS:
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
        for address in read_error_queue(self.sock):
            for slot in list(self.slots.values()):
                if slot.peer == address and slot.machine.is_established:
                    slot.machine.fail(
                        BrokenError(
                            f"the client at {url_of(address)} closed its port (ICMP port unreachable)"
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
