"""A handle on one process: signals can never (or, without pidfd, almost never) reach a reused PID.

A pidfd refers to one process, not to a number. Once that process has exited, signalling
the pidfd fails with ESRCH even if the kernel has given the PID to somebody else, and the
pidfd becomes readable the moment the process exits.

Where there is no pidfd (Linux before 5.3, a container whose seccomp filter blocks it, or
``OOMSCOPE_NO_PIDFD=1``), the handle keeps ``/proc/PID/stat`` open instead: that descriptor
stays bound to the process it was opened for, so reading it before each signal tells whether
the process is still there. ``kill()`` then goes by number, which leaves a window between the
check and the signal (see :meth:`ProcessHandle.send_signal`), and an exit is noticed only when
somebody asks (:meth:`ProcessHandle.exited`), not the moment it happens.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import os
import select
import signal
import struct
import time
from dataclasses import dataclass

from . import procfs
from .errors import NotPermitted, Refused, WorkerGone

NO_PIDFD_ENV = "OOMSCOPE_NO_PIDFD"
# include/uapi/linux/pidfd.h: PIDFD_GET_INFO is _IOWR(0xFF, 11, struct pidfd_info). Asked with
# the first published size (PIDFD_INFO_SIZE_VER0, 64 bytes): the kernel copies what fits, and
# exit_code, the last field of that version, is a wait status (the low 7 bits a signal).
_INFO_SIZE = 64
PIDFD_GET_INFO = (3 << 30) | (_INFO_SIZE << 16) | (0xFF << 8) | 11
_PIDFD_INFO_EXIT = 1 << 3
_MASK_AT, _EXIT_CODE_AT = 0, 60
_POLL_S = 0.02  # how often wait_exited() looks without a pidfd: there is nothing to wait on


def unavailable_reason() -> str | None:
    """Why oomscope cannot use pidfds here (for a message), or None where it can.

    The one place that reads ``OOMSCOPE_NO_PIDFD``: the fallback is forced for the whole
    process, as an old kernel would take pidfd away from all of it (the engine, the heap
    inspector's own handles, and a ``watch`` or GUI started as a subprocess by a test).
    """
    if os.environ.get(NO_PIDFD_ENV, "") not in ("", "0"):
        return f"{NO_PIDFD_ENV}={os.environ[NO_PIDFD_ENV]} is set; kernel {os.uname().release}"
    return _kernel_reason()


@functools.cache
def _kernel_reason() -> str | None:
    release = os.uname().release
    if not hasattr(os, "pidfd_open") or not hasattr(signal, "pidfd_send_signal"):
        return f"this Python has no os.pidfd_open; kernel {release}"
    try:
        fd = os.pidfd_open(os.getpid())
    except OSError as e:
        return _syscall_problem("pidfd_open", e, release)
    try:
        signal.pidfd_send_signal(fd, 0)
    except OSError as e:
        return _syscall_problem("pidfd_send_signal", e, release)
    finally:
        os.close(fd)
    return None


def _syscall_problem(call: str, e: OSError, release: str) -> str:
    if e.errno == errno.ENOSYS:
        return f"kernel {release} has no {call}: it needs Linux 5.3 or newer"
    if e.errno == errno.EPERM:
        # pidfd_open on our own PID needs no privilege: EPERM means a seccomp filter said no.
        return f"{call} is blocked, most likely by the container's seccomp profile; kernel {release}"
    return f"{call} failed: {e.strerror}; kernel {release}"


@dataclass(frozen=True, slots=True)
class ExitStatus:
    """What a pidfd tells about an ended process that is not our child.

    ``returncode`` as Popen has it (negative: killed by that signal), or None: then ``waiting``
    (it has exited, but its parent has not collected it yet: the kernel hands the status to
    other holders only then; ask again) or ``reason`` (why it cannot be known).
    """

    returncode: int | None
    waiting: bool = False
    reason: str | None = None


class ProcessHandle:
    """``(pid, start_ticks)`` plus what holds exactly that process: a pidfd (``fd``), or
    without one (``fd`` is -1) a descriptor on its /proc/PID/stat (``stat_fd``)."""

    __slots__ = ("pid", "start_ticks", "fd", "stat_fd", "child", "closed")

    def __init__(self, pid: int, start_ticks: int, fd: int, *, stat_fd: int = -1,
                 child: bool = False) -> None:
        self.pid = pid
        self.start_ticks = start_ticks
        self.fd = fd
        self.stat_fd = stat_fd
        # Our own child: its PID cannot be handed out again before we collect its exit status.
        self.child = child
        self.closed = False

    @property
    def has_pidfd(self) -> bool:
        """False: exits are seen only through :meth:`exited`, and signals carry a small risk."""
        return self.fd >= 0

    @classmethod
    def open(cls, pid: int, expected_start_ticks: int | None = None, *,
             use_pidfd: bool | None = None, reaped_ok: bool = False) -> ProcessHandle:
        """Open a handle for PID; with ``expected_start_ticks``, only for that very process.

        The start time is read after the pidfd (or the stat descriptor) is open: if it still
        matches, the handle holds the process we meant (a process cannot change its start
        time). ``use_pidfd`` None: wherever :func:`unavailable_reason` allows.

        ``reaped_ok``: a pidfd whose process was reaped before that second read is kept (its
        exit is then told by the pidfd). For a child the kernel has just announced, living a
        few milliseconds: that it is another process would take its PID being reaped, handed
        out again and that one reaped too, all between two reads microseconds apart.
        """
        if pid <= 0:
            raise Refused(f"invalid PID {pid}: a PID is a positive number")
        before = procfs.start_ticks(pid)
        if before is None:
            raise WorkerGone(f"no process with PID {pid}: check the number (ps -p {pid})")
        expected = before if expected_start_ticks is None else expected_start_ticks
        if use_pidfd is None:
            use_pidfd = unavailable_reason() is None
        if not use_pidfd:
            return cls._without_pidfd(pid, expected, child=False)
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            raise WorkerGone(f"process {pid} exited before oomscope could attach") from None
        except PermissionError:
            raise NotPermitted(f"not permitted to open a pidfd for PID {pid}") from None
        after = procfs.start_ticks(pid)
        if after != expected and not (reaped_ok and after is None):
            os.close(fd)
            raise _replaced(pid)
        return cls(pid, expected, fd)

    @classmethod
    def for_child(cls, pid: int, *, use_pidfd: bool | None = None) -> ProcessHandle:
        """A handle for a child we have just started and not yet waited for: nobody else can
        reap it, so its PID is certainly still it."""
        if use_pidfd is None:
            use_pidfd = unavailable_reason() is None
        ticks = procfs.start_ticks(pid) or 0
        if not use_pidfd:
            return cls._without_pidfd(pid, ticks, child=True)
        return cls(pid, ticks, os.pidfd_open(pid), child=True)

    @classmethod
    def _without_pidfd(cls, pid: int, expected: int, *, child: bool) -> ProcessHandle:
        stat_fd = procfs.open_stat(pid)
        if stat_fd is None:
            raise WorkerGone(f"process {pid} exited before oomscope could attach")
        fields = procfs.stat_fields_at(stat_fd)
        if fields is None or int(fields[19]) != expected:
            os.close(stat_fd)
            raise _replaced(pid)
        return cls(pid, expected, -1, stat_fd=stat_fd, child=child)

    def send_signal(self, sig: int) -> None:
        """Signal exactly this process: :class:`WorkerGone` if it has exited."""
        if self.closed:
            raise WorkerGone(f"process {self.pid} has exited")
        try:
            if self.fd >= 0:
                signal.pidfd_send_signal(self.fd, sig)
            else:
                self._check_then_kill(sig)
        except ProcessLookupError:
            raise WorkerGone(f"process {self.pid} has exited; nothing was signalled") from None
        except PermissionError:
            uid = procfs.owner_uid(self.pid)
            owner = f" (owned by uid {uid})" if uid is not None else ""
            raise NotPermitted(
                f"not permitted to signal PID {self.pid}{owner}: run oomscope as that user "
                "or as root"
            ) from None

    def _check_then_kill(self, sig: int) -> None:
        fields = procfs.stat_fields_at(self.stat_fd)
        # A zombie counts as gone: its exit is not seen until the next look (see exited()), and
        # a signal it cannot receive would be taken for the cause of its death.
        if fields is None or int(fields[19]) != self.start_ticks or fields[0] in ("Z", "X"):
            now = procfs.start_ticks(self.pid)
            taken = (f" (PID {self.pid} now belongs to another process)"
                     if now is not None and now != self.start_ticks else "")
            raise WorkerGone(f"process {self.pid} has exited{taken}; nothing was signalled")
        # The remaining risk, stated plainly: between the read above and kill() below, the
        # process can exit, its parent reap it, and the kernel give its PID to a new process,
        # which then gets this signal. The window is microseconds wide and needs the PID
        # counter to come round to this very number in it, but it is real. Not for our own
        # child: its PID stays reserved until we wait for it, and the engine waits for its
        # children on the same thread that signals them.
        os.kill(self.pid, sig)

    def can_signal(self) -> bool:
        """Whether signals would be delivered (signal 0 checks without sending)."""
        try:
            self.send_signal(0)
        except NotPermitted:
            return False
        return True

    def is_alive(self) -> bool:
        """Not yet reaped (a zombie counts as alive here, as it does for ``kill(pid, 0)``)."""
        if self.closed:
            return False
        if self.fd < 0:
            return procfs.stat_fields_at(self.stat_fd) is not None
        try:
            signal.pidfd_send_signal(self.fd, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def exited(self) -> bool:
        """Whether the process has ended (a zombie has), without waiting: what a readable
        pidfd says. Without a pidfd this is a look, to be repeated by whoever needs to know."""
        if self.closed:
            return True
        if self.fd >= 0:
            return _readable(self.fd, 0.0)
        if self.child:
            # WNOWAIT: the status stays for the engine's Popen.wait() to collect.
            try:
                return os.waitid(os.P_PID, self.pid,
                                 os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
            except ChildProcessError:
                return True  # already collected
        fields = procfs.stat_fields_at(self.stat_fd)
        return fields is None or fields[0] in ("Z", "X")

    def wait_exited(self, timeout_s: float) -> bool:
        """Whether the process ends within ``timeout_s``."""
        if self.closed:
            return True
        if self.fd >= 0:
            return _readable(self.fd, timeout_s)
        deadline = time.monotonic() + timeout_s
        while not self.exited():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(_POLL_S, left))  # no pidfd: nothing to wait on but the clock
        return True

    def exit_status(self) -> ExitStatus:
        """The exit status of an ended process, for any holder of its pidfd (Linux 6.15+:
        ``PIDFD_GET_INFO`` with ``PIDFD_INFO_EXIT``, once its parent has collected it)."""
        if self.fd < 0:
            return ExitStatus(None, reason="no pidfd to read it from")
        info = bytearray(_INFO_SIZE)
        struct.pack_into("=Q", info, _MASK_AT, _PIDFD_INFO_EXIT)
        try:
            fcntl.ioctl(self.fd, PIDFD_GET_INFO, info, True)
        except OSError as e:
            # ESRCH: reaped, and the kernel kept no status (before 6.15); ENOTTY or EINVAL:
            # no PIDFD_GET_INFO at all (before 6.13).
            if e.errno in (errno.ESRCH, errno.ENOTTY, errno.EINVAL, errno.EOPNOTSUPP):
                return ExitStatus(None, reason=f"kernel {os.uname().release} gives no exit status "
                                               "through a pidfd (PIDFD_INFO_EXIT needs Linux 6.15)")
            return ExitStatus(None, reason=f"PIDFD_GET_INFO failed: {e.strerror}")
        (mask,) = struct.unpack_from("=Q", info, _MASK_AT)
        if not mask & _PIDFD_INFO_EXIT:
            return ExitStatus(None, waiting=True)
        (status,) = struct.unpack_from("=i", info, _EXIT_CODE_AT)
        try:
            return ExitStatus(os.waitstatus_to_exitcode(status))
        except ValueError:  # not an exit or a death by signal: nothing a process ends with
            return ExitStatus(None, reason=f"the kernel gave an unexpected status {status:#x}")

    def close(self) -> None:
        for fd in (self.fd, self.stat_fd):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError as e:  # pragma: no cover - double close is a bug, not a user case
                    if e.errno != errno.EBADF:
                        raise
        self.fd = self.stat_fd = -1
        self.closed = True

    def __repr__(self) -> str:
        how = f"fd={self.fd}" if self.fd >= 0 else f"stat_fd={self.stat_fd}"
        return f"ProcessHandle(pid={self.pid}, start_ticks={self.start_ticks}, {how})"


def _readable(fd: int, timeout_s: float) -> bool:
    # poll, not select: a pidfd of a busy engine can be numbered beyond select's 1024.
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(max(0.0, timeout_s) * 1000.0))


def _replaced(pid: int) -> WorkerGone:
    return WorkerGone(
        f"PID {pid} now belongs to a different process than the one meant; "
        "the worker has exited"
    )
