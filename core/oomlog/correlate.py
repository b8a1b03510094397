"""Matching kernel kill records with worker exits.

The rule that keeps this honest: a record is evidence for a worker only if it names the
worker's PID (and, where both are known, its comm) and lies within a few seconds of the
exit. A cgroup's ``oom_kill`` counter only says *somebody* in that cgroup was killed, so it
decides alone only when no kernel log can be read. A ``kill -9`` from outside while the
kernel kills some other PID therefore stays ``signal``.

The one exception to "same PID" is a shell worker: ``sh -c "a; b"`` waits for ``b``, and
when the kernel kills ``b`` the shell exits with 137. Then a record whose ``task_memcg`` is the
worker's *own* cgroup (made by oomscope for this worker alone) names the real victim.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import KillRecord

if TYPE_CHECKING:
    from ..events import WorkerRef
    from ..restart import Slot

# The kernel prints the kill line and sends SIGKILL in the same call; the exit follows within
# milliseconds, or a few seconds when the oom_reaper has to step in (tests/data/oom-corpus/FORMATS.md 2.9). Journal
# and dmesg sources add their own delay to the record's *arrival*, not to its kernel time.
MATCH_WINDOW_S = 5.0
# How long an exit stays open for a late record to upgrade its cause.
LATE_RECORD_KEEP_S = 30.0
COMM_LEN = 15  # TASK_COMM_LEN - 1: the kernel truncates comm to this


def comm_matches(record_comm: str | None, *names: str | None) -> bool:
    """A record's comm against what we know of the worker's; unknown on either side matches."""
    if record_comm is None:
        return True
    known = [n for n in names if n]
    if not known:
        return True
    return any(n[:COMM_LEN] == record_comm for n in known)


def record_time_s(record: KillRecord, arrival_mono: float) -> float:
    """The record's moment on CLOCK_MONOTONIC.

    printk stamps come from local_clock(), which tracks CLOCK_MONOTONIC to within milliseconds
    on an unsuspended machine (tests/data/oom-corpus/FORMATS.md section 5); without a stamp the arrival time stands in.
    """
    return record.kernel_time_s if record.kernel_time_s is not None else arrival_mono


@dataclass(slots=True)
class ExitNote:
    """An exit that a late record may still upgrade.

    It carries what the upgrade tells (the worker, its slot) itself: the engine keeps only the
    latest exited workers (core/worker.py EXITED_KEPT), and a churn of short-lived workers can
    push one out of the table well within LATE_RECORD_KEEP_S."""

    ref: WorkerRef
    slot: Slot | None
    comm: str | None
    own_cgroup: str | None
    exit_mono: float
    cause: str
    shell_137: bool


class RecentRecords:
    """Kill records seen lately (latest revision of each), searchable by PID or cgroup."""

    def __init__(self, keep_s: float = LATE_RECORD_KEEP_S) -> None:
        self.keep_s = keep_s
        self._items: deque[tuple[float, KillRecord]] = deque()

    def add(self, record: KillRecord, arrival_mono: float) -> None:
        self._items.append((arrival_mono, record))
        self.prune(arrival_mono)

    def prune(self, now_mono: float) -> None:
        while self._items and now_mono - self._items[0][0] > self.keep_s:
            self._items.popleft()

    def for_pid(self, pid: int, comm_names: tuple[str | None, ...], exit_mono: float) -> KillRecord | None:
        for arrival, rec in reversed(self._items):
            if rec.pid == pid and comm_matches(rec.comm, *comm_names) and \
                    abs(record_time_s(rec, arrival) - exit_mono) <= MATCH_WINDOW_S:
                return rec
        return None

    def for_cgroup(self, cgroup_path: str, exit_mono: float) -> KillRecord | None:
        for arrival, rec in reversed(self._items):
            if rec.task_memcg == cgroup_path and \
                    abs(record_time_s(rec, arrival) - exit_mono) <= MATCH_WINDOW_S:
                return rec
        return None


class RecentExits:
    """Exits whose cause a record arriving late may still upgrade to ``oom-kill``."""

    def __init__(self, keep_s: float = LATE_RECORD_KEEP_S) -> None:
        self.keep_s = keep_s
        self._notes: list[ExitNote] = []

    def add(self, note: ExitNote) -> None:
        self._notes.append(note)

    def prune(self, now_mono: float) -> None:
        self._notes = [n for n in self._notes if now_mono - n.exit_mono <= self.keep_s]

    def match(self, record: KillRecord, arrival_mono: float) -> ExitNote | None:
        """The exit this record explains, removed from the open set; None if none does."""
        when = record_time_s(record, arrival_mono)
        for note in self._notes:
            if abs(when - note.exit_mono) > MATCH_WINDOW_S:
                continue
            by_pid = record.pid == note.ref.pid and comm_matches(record.comm, note.comm, note.ref.name)
            by_cgroup = note.shell_137 and note.own_cgroup is not None and record.task_memcg == note.own_cgroup
            if by_pid or by_cgroup:
                self._notes.remove(note)
                return note
        return None


def now_mono() -> float:
    return time.monotonic()
