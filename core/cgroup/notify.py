"""Crossings the kernel reports itself: a memory cgroup's usage passing a level, its limit hit.

Sampling once a second cannot beat a leak of hundreds of MB/s: the kernel's limit is reached
between two samples. The memory controller can wake us instead, and a wake-up is one fd the
engine's ``selectors`` loop waits on, like a pidfd:

* cgroup v1: memory thresholds (Documentation/admin-guide/cgroup-v1/memory.rst, "Memory
  thresholds"). ``"<eventfd> <fd of memory.usage_in_bytes> <bytes>"`` written to
  ``cgroup.event_control`` makes the kernel signal the eventfd each time usage crosses
  ``<bytes>``, in either direction. One eventfd serves every level of a cgroup: a wake-up says
  "some level was crossed", and the usage read right after says which. A registration lives as
  long as its eventfd, so new levels mean a new eventfd.
* cgroup v2: ``memory.events`` (``high``, ``max``, ``oom``, ``oom_kill`` counters) changes with
  a "file modified" notification (cgroup-v2.rst), which inotify delivers on kernfs as on any
  file; and a PSI trigger on ``memory.pressure`` (Documentation/accounting/psi.rst) wakes with
  EPOLLPRI when stall time passes a bound within a window. A PSI file always reads as ready
  (EPOLLIN), so its fd waits in an epoll of its own, registered for EPOLLPRI only, whose fd is
  what the engine's loop sees.

Every watch returns ``None`` from :meth:`CgroupWatch.read` once its cgroup is gone, and never
raises on the engine's path: a cgroup that vanishes with its worker is an ordinary case.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import select
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from ..errors import Error

__all__ = [
    "CgroupWatch",
    "Crossing",
    "PressureTrigger",
    "V1Thresholds",
    "V2Events",
    "WatchUnavailable",
    "watch_cgroup",
]

# PSI: "some" stall of 150 ms within any 2 s window: a cgroup near its limit, reclaiming. The
# window is a multiple of 2 s because without CAP_SYS_RESOURCE (root in a container) the kernel
# refuses any other; 150 ms of 2 s is still a worker losing 7 % of its time to reclaim.
DEFAULT_PSI_TRIGGER = "some 150000 2000000"


class WatchUnavailable(Error):
    """The kernel cannot notify for this cgroup (no event_control, no inotify, no PSI)."""


@dataclass(frozen=True, slots=True)
class Crossing:
    """What a wake-up said. ``usage_bytes`` is read right after it; ``count`` is how many
    notifications it folds (v1: crossings since the last read); ``events`` holds the v2
    ``memory.events`` counters that rose since the last read (``{"max": 2, "oom_kill": 1}``);
    ``pressure`` marks a PSI trigger."""

    directory: str
    usage_bytes: int | None
    count: int = 1
    events: Mapping[str, int] = field(default_factory=dict)
    pressure: bool = False


class CgroupWatch(Protocol):
    """One cgroup's notifications: wait on :meth:`fileno`, then :meth:`read`."""

    directory: str
    levels: tuple[int, ...]  # the levels asked for (registered with the kernel on v1)

    def fileno(self) -> int: ...

    def read(self) -> Crossing | None: ...

    def close(self) -> None: ...


def _close_fds(owner: object, *names: str) -> None:
    """Close the descriptors held in these attributes (-1: none); idempotent."""
    for name in names:
        fd = getattr(owner, name, -1)
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass
            setattr(owner, name, -1)


def _pread_int(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 64, 0).split()[0])
    except (OSError, ValueError, IndexError):
        return None


class V1Thresholds:
    """cgroup v1 memory thresholds on ``memory.usage_in_bytes``, all levels on one eventfd."""

    def __init__(self, directory: str, levels_bytes: Iterable[int]) -> None:
        self.directory = directory
        self.levels: tuple[int, ...] = ()
        self._efd = -1
        try:
            self._usage_fd = os.open(os.path.join(directory, "memory.usage_in_bytes"), os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise WatchUnavailable(f"cannot watch {directory}: {e.strerror or e}") from e
        try:
            self.set_levels(levels_bytes)
        except BaseException:
            self.close()
            raise

    def set_levels(self, levels_bytes: Iterable[int]) -> None:
        """Register these levels (bytes), replacing the ones before (a new eventfd)."""
        levels = tuple(sorted({int(b) for b in levels_bytes if b > 0}))
        efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        try:
            control = os.open(os.path.join(self.directory, "cgroup.event_control"), os.O_WRONLY | os.O_CLOEXEC)
            try:
                for level in levels:
                    # One write per registration: the kernel parses one triple per write.
                    os.write(control, f"{efd} {self._usage_fd} {level}".encode())
            finally:
                os.close(control)
        except OSError as e:
            os.close(efd)
            raise WatchUnavailable(
                f"cannot register memory thresholds on {self.directory}: {e.strerror or e}") from e
        old, self._efd, self.levels = self._efd, efd, levels
        if old >= 0:
            # Closing the eventfd is what unregisters the old levels.
            os.close(old)

    def fileno(self) -> int:
        return self._efd

    def read(self) -> Crossing | None:
        if self._efd < 0:
            return None
        try:
            count = os.eventfd_read(self._efd)
        except BlockingIOError:
            count = 0  # read before a wake-up: still report the usage
        except OSError:
            return None
        usage = _pread_int(self._usage_fd)
        if usage is None:
            return None
        return Crossing(self.directory, usage, count)

    def close(self) -> None:
        _close_fds(self, "_efd", "_usage_fd")


# --- inotify, through libc (the standard library has no binding) ----------------------------

_IN_MODIFY = 0x00000002
_IN_IGNORED = 0x00008000
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
_EVENT_HEADER = struct.Struct("iIII")
_libc: ctypes.CDLL | None = None


def _inotify_libc() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _libc


class V2Events:
    """cgroup v2 ``memory.events`` changes (inotify), optionally with a PSI trigger.

    ``memory.high`` is the v2 throttle: with ``--mem-high`` core/cgroup/limited.py puts it under
    the hard limit, so a leaking worker is slowed down (reclaim, not killed) and ``high`` events
    arrive before ``max``.
    """

    def __init__(self, directory: str, levels_bytes: Iterable[int] = (), *,
                 psi_trigger: str | None = None) -> None:
        self.directory = directory
        # v2 has no usage thresholds: the levels are kept only so the owner can tell whether a
        # watch is still the one it asked for; they are checked at each wake-up and sample.
        self.levels: tuple[int, ...] = tuple(sorted({int(b) for b in levels_bytes if b > 0}))
        self._ino = -1
        self._events_fd = -1
        self._usage_fd = -1
        self._epoll: select.epoll | None = None
        self.pressure: PressureTrigger | None = None
        self.pressure_refused: str | None = None
        libc = _inotify_libc()
        try:
            self._events_fd = os.open(os.path.join(directory, "memory.events"), os.O_RDONLY | os.O_CLOEXEC)
            self._usage_fd = os.open(os.path.join(directory, "memory.current"), os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            self.close()
            raise WatchUnavailable(f"cannot watch {directory}: {e.strerror or e}") from e
        self._counts = self._read_events() or {}
        ino = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if ino < 0:
            err = ctypes.get_errno()
            self.close()
            raise WatchUnavailable(f"inotify is not available: {os.strerror(err)}")
        self._ino = ino
        path = os.path.join(directory, "memory.events").encode()
        if libc.inotify_add_watch(ino, path, _IN_MODIFY) < 0:
            err = ctypes.get_errno()
            self.close()
            raise WatchUnavailable(f"cannot watch {directory}/memory.events: {os.strerror(err)}")
        if psi_trigger is not None:
            try:
                self.pressure = PressureTrigger(os.path.join(directory, "memory.pressure"), psi_trigger)
            except WatchUnavailable as e:
                # No PSI (a kernel without it, psi=0): memory.events still says high and max.
                self.pressure_refused = str(e)
                return
            # One fd for the loop: an epoll over the inotify fd and the PSI trigger's epoll.
            self._epoll = select.epoll(2)
            self._epoll.register(ino, select.EPOLLIN)
            self._epoll.register(self.pressure.fileno(), select.EPOLLIN)

    def _read_events(self) -> dict[str, int] | None:
        try:
            text = os.pread(self._events_fd, 4096, 0).decode("ascii", "replace")
        except OSError:
            return None
        counts: dict[str, int] = {}
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            try:
                counts[key] = int(value)
            except ValueError:
                continue
        return counts

    def fileno(self) -> int:
        return self._epoll.fileno() if self._epoll is not None else self._ino

    def read(self) -> Crossing | None:
        if self._ino < 0:
            return None
        changed, gone = self._drain_inotify()
        pressure = False
        if self.pressure is not None:
            # Woken, and not by memory.events: the PSI trigger it was (PressureTrigger says why
            # its firing cannot be read back).
            pressure = not changed
            self.pressure.drain()
        counts = self._read_events()
        if counts is None or gone:
            return None
        risen = {k: v - self._counts.get(k, 0) for k, v in counts.items() if v > self._counts.get(k, 0)}
        self._counts = counts
        return Crossing(self.directory, _pread_int(self._usage_fd), events=risen, pressure=pressure)

    def _drain_inotify(self) -> tuple[bool, bool]:
        """Read every queued inotify event: (any change seen, the watch was removed)."""
        changed = gone = False
        while True:
            try:
                buf = os.read(self._ino, 4096)
            except BlockingIOError:
                return changed, gone
            except OSError:
                return changed, True
            changed = changed or bool(buf)
            pos = 0
            while pos + _EVENT_HEADER.size <= len(buf):
                _wd, mask, _cookie, length = _EVENT_HEADER.unpack_from(buf, pos)
                gone = gone or bool(mask & _IN_IGNORED)
                pos += _EVENT_HEADER.size + length

    def close(self) -> None:
        if self.pressure is not None:
            self.pressure.close()
            self.pressure = None
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None
        _close_fds(self, "_ino", "_events_fd", "_usage_fd")


class PressureTrigger:
    """A PSI trigger (``"some 150000 2000000"``: 150 ms stalled within 2 s) on a pressure file.

    The trigger lives as long as its fd. The file polls readable all the time, so the fd waits
    in an epoll of its own for EPOLLPRI only, and :meth:`fileno` is that epoll's fd: the epoll is
    readable exactly when the trigger fired. The kernel hands EPOLLPRI out once (the poll that
    sees it consumes it), and the loop that woke on our fd has already polled it through the
    nesting, so a wake-up on :meth:`fileno` *is* the firing; :meth:`drain` only empties it.
    """

    def __init__(self, path: str, trigger: str = DEFAULT_PSI_TRIGGER) -> None:
        self.path = path
        self.trigger = trigger
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            raise WatchUnavailable(f"cannot open {path}: {e.strerror or e}") from e
        try:
            # The kernel ends the string at the last byte written: the NUL keeps the window whole.
            os.write(self._fd, trigger.encode() + b"\0")
        except OSError as e:
            os.close(self._fd)
            hint = (" (without CAP_SYS_RESOURCE the window must be a multiple of 2 s, from 2 to 10 s)"
                    if e.errno == errno.EINVAL else "")
            raise WatchUnavailable(f"cannot set the PSI trigger {trigger!r} on {path}: {e.strerror or e}{hint}") from e
        self._epoll = select.epoll(1)
        try:
            self._epoll.register(self._fd, select.EPOLLPRI)
        except OSError as e:  # EPERM: not a pollable PSI file (a plain file, an old kernel)
            self._epoll.close()
            os.close(self._fd)
            raise WatchUnavailable(f"cannot wait on {path}: {e.strerror or e}") from e

    def fileno(self) -> int:
        return self._epoll.fileno()

    def drain(self) -> None:
        try:
            self._epoll.poll(0)
        except (OSError, ValueError):
            pass

    def close(self) -> None:
        if self._fd >= 0:
            self._epoll.close()
            os.close(self._fd)
            self._fd = -1


def watch_cgroup(version: int, directory: str, levels_bytes: Iterable[int], *,
                 psi_trigger: str | None = None) -> CgroupWatch:
    """The kernel's notifications for one memory cgroup: v1 thresholds at ``levels_bytes``,
    or v2 ``memory.events`` (levels are then checked on each wake-up and sample)."""
    if version == 1:
        return V1Thresholds(directory, levels_bytes)
    if version == 2:
        return V2Events(directory, levels_bytes, psi_trigger=psi_trigger)
    raise ValueError(f"cgroup version must be 1 or 2, not {version!r}")
