"""The kernel's process events: the proc connector over netlink (``CONFIG_PROC_EVENTS``).

A multicast netlink socket that the kernel writes one message to for every fork, exec and exit
on the machine, as it happens. ``--children-of`` attaches a new child on its fork event (its
pidfd opened at once, so a child living 30 ms is still seen and its exit recorded); ``--match``
looks at a process again when it execs. Listening needs CAP_NET_ADMIN: without it (or on a
kernel without the connector) :meth:`ProcEvents.open` raises :class:`Unavailable` with the
reason, and the engine falls back to rescanning /proc.

The kernel's structures (include/uapi/linux/netlink.h, connector.h, cn_proc.h), in host byte
order:

* ``struct nlmsghdr``: u32 len, u16 type, u16 flags, u32 seq, u32 pid (16 bytes);
* ``struct cn_msg``: u32 idx, u32 val (the cb_id), u32 seq, u32 ack, u16 len, u16 flags
  (20 bytes), then ``len`` bytes of data;
* ``struct proc_event``: u32 what, u32 cpu, u64 timestamp_ns (aligned to 8: 16 bytes), then
  the ``event_data`` union, whose member ``what`` names: fork (parent pid, parent tgid, child
  pid, child tgid), exec (pid, tgid), exit (pid, tgid, exit code, exit signal, and on newer
  kernels parent pid and tgid), comm (pid, tgid, comm[16]); each field an i32.

A message that is short, of another connector or of an event not listed is skipped, never an
error: the socket carries whatever the kernel sends.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from dataclasses import dataclass

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
PROC_CN_MCAST_IGNORE = 2

NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSG_OVERRUN = 4

PROC_EVENT_FORK = 0x00000001
PROC_EVENT_EXEC = 0x00000002
PROC_EVENT_COMM = 0x00000200
PROC_EVENT_EXIT = 0x80000000

_NLMSGHDR = struct.Struct("=IHHII")
_CN_MSG = struct.Struct("=IIIIHH")
_PROC_EVENT = struct.Struct("=IIQ")
_TWO_PIDS = struct.Struct("=ii")
_FORK = struct.Struct("=iiii")
_NLMSG_ALIGN = 4
# Bursts of forks on a busy machine (a test suite, a build) arrive faster than a loop round
# now and then; a large buffer makes an overrun (ENOBUFS, a rescan) rare. SO_RCVBUFFORCE
# passes the rmem_max cap (root), SO_RCVBUF is the fallback.
_RCVBUF = 8 << 20
_READ_SIZE = 1 << 16
# Datagrams taken per call: a fork storm elsewhere on the machine must not hold the engine's
# loop; the rest waits for the next round (the socket stays readable).
_READS_PER_CALL = 1024


class Unavailable(Exception):
    """The connector cannot be opened here; the message says why."""


@dataclass(frozen=True, slots=True)
class ProcEvent:
    """One process event. ``pid`` is the process (thread group) it is about; for a fork,
    ``parent`` is the process that forked. ``thread``: a thread was created or ended, not a
    process (the engine follows processes only)."""

    what: str  # "fork", "exec", "exit" or "comm"
    pid: int
    parent: int | None = None
    thread: bool = False


def parse(data: bytes) -> list[ProcEvent]:
    """The process events in one datagram (netlink may pack several messages into one)."""
    events: list[ProcEvent] = []
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, msg_type, _flags, _seq, _port = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            break  # a header that does not fit: nothing after it can be trusted
        if msg_type not in (NLMSG_NOOP, NLMSG_ERROR, NLMSG_OVERRUN):
            event = _event(data[offset + _NLMSGHDR.size:offset + length])
            if event is not None:
                events.append(event)
        offset += (length + _NLMSG_ALIGN - 1) & ~(_NLMSG_ALIGN - 1)
    return events


def _event(payload: bytes) -> ProcEvent | None:
    if len(payload) < _CN_MSG.size:
        return None
    idx, val, _seq, _ack, data_len, _flags = _CN_MSG.unpack_from(payload)
    if (idx, val) != (CN_IDX_PROC, CN_VAL_PROC):
        return None
    body = payload[_CN_MSG.size:_CN_MSG.size + data_len]
    if len(body) < _PROC_EVENT.size:
        return None
    what, _cpu, _ts = _PROC_EVENT.unpack_from(body)
    union = body[_PROC_EVENT.size:]
    if what == PROC_EVENT_FORK and len(union) >= _FORK.size:
        _ppid, parent_tgid, child_pid, child_tgid = _FORK.unpack_from(union)
        return ProcEvent("fork", child_tgid, parent_tgid, thread=child_pid != child_tgid)
    names = {PROC_EVENT_EXEC: "exec", PROC_EVENT_EXIT: "exit", PROC_EVENT_COMM: "comm"}
    if what in names and len(union) >= _TWO_PIDS.size:
        pid, tgid = _TWO_PIDS.unpack_from(union)
        return ProcEvent(names[what], tgid, thread=pid != tgid)
    return None


class ProcEvents:
    """A listening proc-connector socket, non-blocking, for the engine's selector."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    @classmethod
    def open(cls) -> ProcEvents:
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
        except OSError as e:
            raise Unavailable(f"no netlink connector socket ({os.strerror(e.errno or 0)}: "
                              "a kernel without CONFIG_CONNECTOR?)") from None
        try:
            sock.bind((0, CN_IDX_PROC))  # port 0: the kernel picks one (several engines may listen)
            cls._send_op(sock, PROC_CN_MCAST_LISTEN)
            for option in (getattr(socket, "SO_RCVBUFFORCE", 33), socket.SO_RCVBUF):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, option, _RCVBUF)
                    break
                except OSError:
                    continue
            sock.setblocking(False)
        except OSError as e:
            sock.close()
            if e.errno in (errno.EPERM, errno.EACCES):
                raise Unavailable("listening to process events needs CAP_NET_ADMIN (root)") from None
            raise Unavailable(f"the proc connector refused to listen ({os.strerror(e.errno or 0)}: "
                              "a kernel without CONFIG_PROC_EVENTS?)") from None
        return cls(sock)

    @staticmethod
    def _send_op(sock: socket.socket, op: int) -> None:
        op_bytes = struct.pack("=I", op)
        cn = _CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(op_bytes), 0) + op_bytes
        header = _NLMSGHDR.pack(_NLMSGHDR.size + len(cn), NLMSG_DONE, 0, 0, 0)
        sock.send(header + cn)

    def fileno(self) -> int:
        return self._sock.fileno()

    def read(self) -> tuple[list[ProcEvent], bool]:
        """The events waiting now, and whether some were lost (the socket overran: the caller
        rescans once to find what it missed). ``OSError`` other than an overrun: the socket
        is broken."""
        events: list[ProcEvent] = []
        lost = False
        for _ in range(_READS_PER_CALL):
            try:
                data = self._sock.recv(_READ_SIZE)
            except BlockingIOError:
                return events, lost
            except InterruptedError:
                continue
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    lost = True  # the kernel dropped messages; the queue is readable again
                    continue
                raise
            if not data:
                return events, lost
            events.extend(parse(data))
        return events, lost

    def close(self) -> None:
        if self._sock.fileno() < 0:
            return
        try:
            # Each LISTEN counts a listener in the kernel; say we are gone so that it stops
            # building events for nobody once the last one leaves.
            self._send_op(self._sock, PROC_CN_MCAST_IGNORE)
        except OSError:
            pass
        self._sock.close()
