"""A handle on one process through a pidfd: signals can never reach a reused PID.

A pidfd refers to one process, not to a number. Once that process has exited, signalling
the pidfd fails with ESRCH even if the kernel has given the PID to somebody else.
"""

from __future__ import annotations

import errno
import os
import signal

from . import procfs
from .errors import NotPermitted, Refused, WorkerGone


class ProcessHandle:
    """``(pid, start_ticks)`` plus a pidfd opened for exactly that process."""

    __slots__ = ("pid", "start_ticks", "fd")

    def __init__(self, pid: int, start_ticks: int, fd: int) -> None:
        self.pid = pid
        self.start_ticks = start_ticks
        self.fd = fd

    @classmethod
    def open(cls, pid: int, expected_start_ticks: int | None = None) -> ProcessHandle:
        """Open a pidfd for PID; with ``expected_start_ticks``, only for that very process.

        The start time is read after the pidfd is open: if it still matches, the pidfd
        holds the process we meant (a process cannot change its start time).
        """
        if pid <= 0:
            raise Refused(f"invalid PID {pid}: a PID is a positive number")
        before = procfs.start_ticks(pid)
        if before is None:
            raise WorkerGone(f"no process with PID {pid}: check the number (ps -p {pid})")
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            raise WorkerGone(f"process {pid} exited before oomscope could attach") from None
        except PermissionError:
            raise NotPermitted(f"not permitted to open a pidfd for PID {pid}") from None
        after = procfs.start_ticks(pid)
        expected = before if expected_start_ticks is None else expected_start_ticks
        if after != expected:
            os.close(fd)
            raise WorkerGone(
                f"PID {pid} now belongs to a different process than the one meant; "
                "the worker has exited"
            )
        return cls(pid, expected, fd)

    def send_signal(self, sig: int) -> None:
        """Signal through the pidfd: :class:`WorkerGone` if the process has exited."""
        if self.fd < 0:
            raise WorkerGone(f"process {self.pid} has exited")
        try:
            signal.pidfd_send_signal(self.fd, sig)
        except ProcessLookupError:
            raise WorkerGone(f"process {self.pid} has exited; nothing was signalled") from None
        except PermissionError:
            uid = procfs.owner_uid(self.pid)
            owner = f" (owned by uid {uid})" if uid is not None else ""
            raise NotPermitted(
                f"not permitted to signal PID {self.pid}{owner}: run oomscope as that user "
                "or as root"
            ) from None

    def can_signal(self) -> bool:
        """Whether signals would be delivered (signal 0 checks without sending)."""
        try:
            self.send_signal(0)
        except NotPermitted:
            return False
        return True

    def is_alive(self) -> bool:
        try:
            signal.pidfd_send_signal(self.fd, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def close(self) -> None:
        if self.fd >= 0:
            try:
                os.close(self.fd)
            except OSError as e:  # pragma: no cover - double close is a bug, not a user case
                if e.errno != errno.EBADF:
                    raise
            self.fd = -1

    def __repr__(self) -> str:
        return f"ProcessHandle(pid={self.pid}, start_ticks={self.start_ticks}, fd={self.fd})"
