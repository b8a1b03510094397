"""Reading /proc cheaply and without surprises.

Every function here treats a vanished process as an ordinary answer (``None`` or
:class:`WorkerGone`), never as a traceback.
"""

from __future__ import annotations

import errno
import os
import time

from .errors import WorkerGone

PAGE_SIZE: int = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS: int = os.sysconf("SC_CLK_TCK")
_GONE_ERRNOS = (errno.ESRCH, errno.ENOENT)


def boot_time() -> float:
    """Wall-clock time of boot, from the clocks (no /proc/stat parse, sub-second precise)."""
    return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)


def _read_text(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError as e:
        if e.errno in _GONE_ERRNOS:
            return None
        raise


def stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the comm (``state`` is index 0); None if gone.

    The comm may hold spaces and parentheses, so split after the *last* ``)``.
    """
    text = _read_text(f"/proc/{pid}/stat")
    if text is None:
        return None
    return _after_comm(text)


def _after_comm(text: str) -> list[str]:
    return text[text.rfind(")") + 2 :].split()


def open_stat(pid: int) -> int | None:
    """A descriptor on /proc/PID/stat; None if there is no such process.

    The descriptor stays bound to the process it was opened for, not to the number: once that
    process has been reaped, reads fail with ESRCH even if the PID now names another process.
    """
    try:
        return os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        if e.errno in _GONE_ERRNOS:
            return None
        raise


def stat_fields_at(fd: int) -> list[str] | None:
    """:func:`stat_fields` through a descriptor from :func:`open_stat`; None once reaped."""
    try:
        data = os.pread(fd, 4096, 0)
    except OSError as e:
        if e.errno in _GONE_ERRNOS:
            return None
        raise
    return _after_comm(data.decode("utf-8", "replace")) if data else None


def start_ticks(pid: int) -> int | None:
    """Process start time in clock ticks since boot: with the PID, the process's identity."""
    fields = stat_fields(pid)
    if fields is None:
        return None
    return int(fields[19])


def start_mono(start_ticks: int) -> float:
    """A process's start (``start_ticks`` from its stat) on the monotonic clock.

    Both clocks count from boot; BOOTTIME also counts suspend, which monotonic does not, so the
    age is taken on BOOTTIME and subtracted from now on monotonic."""
    age = time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / CLOCK_TICKS
    return time.monotonic() - max(0.0, age)


_PF_EXITING = 0x4  # include/linux/sched.h: set when the task starts do_exit()


def exiting(pid: int) -> bool:
    """True once the process has begun to exit (or is gone). A process leaves its cgroups early
    in its exit, before it is a zombie: /proc/PID/cgroup then names the root."""
    fields = stat_fields(pid)
    return fields is None or fields[0] in ("Z", "X") or bool(int(fields[6]) & _PF_EXITING)


def state_of(pid: int) -> str | None:
    """One-letter state (``R``, ``S``, ``Z`` …); None if gone."""
    fields = stat_fields(pid)
    return None if fields is None else fields[0]


def ticks_to_wall(ticks: int) -> float:
    return boot_time() + ticks / CLOCK_TICKS


def comm(pid: int) -> str | None:
    text = _read_text(f"/proc/{pid}/comm")
    return None if text is None else text.rstrip("\n")


def cmdline(pid: int) -> tuple[str, ...] | None:
    """argv of the process; ``()`` for kernel threads and zombies; None if gone."""
    text = _read_text(f"/proc/{pid}/cmdline")
    if text is None:
        return None
    return tuple(part for part in text.split("\0") if part)


def owner_uid(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except (FileNotFoundError, ProcessLookupError):
        return None


def children(pid: int) -> set[int]:
    """Direct children of every thread of PID (a pool may fork from a helper thread)."""
    found: set[int] = set()
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError):
        return found
    for tid in tids:
        text = _read_text(f"/proc/{pid}/task/{tid}/children")
        if text:
            found.update(int(c) for c in text.split())
    return found


def swap_total_bytes() -> int:
    text = _read_text("/proc/meminfo") or ""
    for line in text.splitlines():
        if line.startswith("SwapTotal:"):
            return int(line.split()[1]) * 1024
    return 0


class StatmReader:
    """``/proc/PID/statm`` through one descriptor kept open, read with ``pread`` at offset 0.

    The kernel regenerates the file on every read, so a kept fd gives fresh numbers at a
    fraction of the cost of open/read/close; once the process is gone, reads fail with ESRCH.
    """

    __slots__ = ("fd", "pid", "_status_fd")

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._status_fd = -1
        try:
            self.fd = os.open(f"/proc/{pid}/statm", os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, ProcessLookupError):
            raise WorkerGone(f"process {pid} has exited") from None

    def read_swap(self) -> int | None:
        """VmSwap in bytes (status is costlier than statm: call it at a lower rate)."""
        try:
            if self._status_fd < 0:
                self._status_fd = os.open(f"/proc/{self.pid}/status", os.O_RDONLY | os.O_CLOEXEC)
            data = os.pread(self._status_fd, 4096, 0)
        except OSError as e:
            if e.errno in _GONE_ERRNOS:
                return None
            raise
        at = data.find(b"VmSwap:")
        if at < 0:
            return 0  # kernel threads and zombies have no VmSwap line
        return int(data[at + 7 : data.index(b"kB", at)]) * 1024

    def close(self) -> None:
        for fd in (self.fd, self._status_fd):
            if fd >= 0:
                os.close(fd)
        self.fd = self._status_fd = -1
