"""The kernel log inside the engine: the live source, its kill records, and which worker each
record is about — a live worker (its exit, a moment away, carries the record), an exit already
told (a late record upgrades its cause), or nobody we watch.

It runs on the engine thread only and reaches the engine through what it is given: the loop's
selector, the event queue, and the worker table.
"""

from __future__ import annotations

import selectors
import time
from collections.abc import Callable

from .. import procfs
from ..causes import OOM_KILL
from .correlate import RecentExits, RecentRecords, comm_matches
from ..events import CauseUpdated, Event, KernelLineRead, KernelOom, Notice, SourceChanged
from .feed import KernelFeed
from . import KillRecord
from . import SourceState as SourceState_
from ..worker import Worker, WorkerTable

KernelFeedFactory = Callable[[], tuple[KernelFeed | None, list[SourceState_]]]


class KernelDesk:
    def __init__(
        self,
        *,
        selector: selectors.BaseSelector,
        emit: Callable[[Event], None],
        table: WorkerTable,
        feed_factory: KernelFeedFactory,
    ) -> None:
        self._selector = selector
        self._emit = emit
        self._table = table
        self._feed_factory = feed_factory
        self._kernel: KernelFeed | None = None
        self._kernel_dirty = False
        self.records = RecentRecords()
        self.exits = RecentExits()
        # A process the engine holds but has not made a worker yet (a child just forked): the
        # engine attaches it when a record names its PID (core/intake.py Intake.claim).
        self.claim: Callable[[int], Worker | None] = lambda _pid: None

    @property
    def ok(self) -> bool:
        return self._kernel is not None

    def open(self) -> None:
        feed, states = self._feed_factory()
        now = time.time()
        for st in states:
            self._emit(SourceChanged(now, st))
        if feed is not None:
            self._kernel = feed
            self._selector.register(feed.fileno(), selectors.EVENT_READ, self.read)
            self.read()

    def close(self) -> None:
        if self._kernel is not None:
            self._kernel.close()
            self._kernel = None

    def read(self) -> None:
        feed = self._kernel
        if feed is None:
            return
        lines, records, ended = feed.read()
        now = time.time()
        for fl in lines:
            self._emit(KernelLineRead(now, fl.line, fl.oom))
        if lines:
            self._kernel_dirty = True
        for rec in records:
            self.on_record(rec)
        if ended:
            self._selector.unregister(feed.fileno())
            feed.close()
            self._kernel = None
            self._emit(SourceChanged(now, SourceState_(
                feed.source.name, False, "the kernel log source ended; OOM kills are now told by cgroup counters only")))

    def flush(self) -> None:
        """A report cut short (summary line, no kill line) is complete once the log goes quiet."""
        if self._kernel is not None and self._kernel_dirty:
            self._kernel_dirty = False
            for rec in self._kernel.flush():
                self.on_record(rec)

    def prune(self, mono: float) -> None:
        self.records.prune(mono)
        self.exits.prune(mono)

    def on_record(self, rec: KillRecord) -> None:
        if rec.history:
            if rec.revision == 0:
                self._emit(KernelOom(time.time(), rec, history=True))
            return
        arrival = time.monotonic()
        self.records.add(rec, arrival)
        if rec.revision > 0:
            return  # a later line of a kill already handled (reaper, unit result)
        w = self._table.live_by_pid.get(rec.pid) if rec.pid is not None else None
        if w is None and rec.pid is not None:
            w = self.claim(rec.pid)
        if w is not None:
            # A launched worker may have exec'd its program since we last read its comm (the
            # cgroup wrapper shell); it is not reaped yet, so its comm is still readable.
            w.comm = procfs.comm(w.ref.pid) or w.comm
            if comm_matches(rec.comm, w.comm, w.ref.name):
                w.oom_record = rec  # the exit, a moment away, will carry it
                return
        note = self.exits.match(rec, arrival)
        if note is not None:
            self._emit(CauseUpdated(time.time(), note.ref, OOM_KILL, note.cause, rec,
                                    ("kernel: " + kill_line(rec),)))
            if note.slot is not None:
                # The guard counts what the worker died of, also when that was learnt late.
                loop = note.slot.cause_changed(note.cause, OOM_KILL, note.exit_mono)
                if loop is not None:
                    self._emit(note.slot.crash_loop(time.time(), note.ref, loop))
            return
        concerned = self._concerned(rec)
        if concerned is None:
            self._emit(KernelOom(time.time(), rec))
        else:
            self._emit(KernelOom(time.time(), rec, concerns=concerned[0].ref, relation=concerned[1]))

    def _concerned(self, rec: KillRecord) -> tuple[Worker, str] | None:
        """The watched worker a victim that is no worker belonged to, and how; None for a
        stranger (a host process oomscope never watched)."""
        # A cgroup oomscope made for one worker holds only what that worker started; this is
        # known for certain, so it comes first.
        paths = {p for p in (rec.task_memcg, rec.oom_memcg) if p}
        for w in reversed(self._table.by_id.values()):
            if w.limited is not None and w.cgroup is not None and w.cgroup.path in paths:
                return w, "cgroup"
        if rec.pid is not None:
            # The victim stays a zombie until its parent reaps it, so its parent can often be
            # read still (an attached worker's child, in a cgroup shared with the host).
            fields = procfs.stat_fields(rec.pid)
            if fields is not None and comm_matches(rec.comm, procfs.comm(rec.pid)):
                parent = int(fields[1])
                owner = self._table.owner_of(parent)
                if owner is not None and owner.ref.pid != rec.pid:
                    return owner, "child" if owner.ref.pid == parent else "descendant"
        return None


def kill_line(record: KillRecord) -> str:
    """The line of a record that says who was killed (for evidence and one-line displays)."""
    return record.kill_line()
