"""Per-worker bookkeeping of heap reports: one entry per reporting thread.

A worker may hold several reporting threads (Node.js ``worker_threads``), and for a shell
worker the reporting process is a descendant of the worker's PID. A process's heap figures
on its ``sample`` are the sums over its threads' latest reports.
"""

from __future__ import annotations

from dataclasses import dataclass

from .messages import HeapReport, ThreadHello

# A thread that missed this many reporting intervals is shown as stale (blocked in a
# synchronous loop, say), keeping its last values rather than dropping to zero.
STALE_AFTER_INTERVALS = 3
# Threads that ended are remembered this many at most per worker: a heap-oom for one may follow
# its own end (from the thread that created it), and must be told apart from a made-up one.
ENDED_KEPT = 1024


@dataclass(slots=True)
class ThreadState:
    pid: int
    thread_id: int
    is_main: bool
    runtime: str
    report: HeapReport | None = None
    last_mono: float = 0.0
    stale: bool = False
    ended: bool = False


@dataclass(frozen=True, slots=True)
class HeapTotals:
    used: int
    total: int
    limit: int
    old_used: int | None
    old_limit: int | None


class HeapBook:
    def __init__(self) -> None:
        self.threads: dict[tuple[int, int], ThreadState] = {}
        self.totals: HeapTotals | None = None
        self.advised = False
        self.advised_off_heap = False
        self.refused_unknown_end = False  # said once per worker
        self._ended: dict[tuple[int, int], None] = {}

    def known(self, pid: int, thread_id: int) -> bool:
        """Whether this thread said hello or reported (now or before it ended)."""
        return (pid, thread_id) in self.threads or (pid, thread_id) in self._ended

    def hello(self, msg: ThreadHello, mono: float) -> ThreadState:
        st = ThreadState(msg.pid, msg.thread_id, msg.is_main, msg.kind, last_mono=mono)
        self.threads[(msg.pid, msg.thread_id)] = st
        return st

    def report(self, msg: HeapReport, mono: float) -> ThreadState:
        st = self.threads.get((msg.pid, msg.thread_id))
        if st is None:  # a report without its hello (reconnected reporter): main if thread 0
            st = ThreadState(msg.pid, msg.thread_id, msg.thread_id == 0, "node")
            self.threads[(msg.pid, msg.thread_id)] = st
        st.report = msg
        st.last_mono = mono
        st.stale = False
        self._sum()
        return st

    def end(self, pid: int, thread_id: int) -> ThreadState | None:
        st = self.threads.pop((pid, thread_id), None)
        if st is not None:
            st.ended = True
            self._sum()
            self._ended[(pid, thread_id)] = None
            if len(self._ended) > ENDED_KEPT:
                del self._ended[next(iter(self._ended))]
        return st

    def newly_stale(self, mono: float, interval_s: float) -> list[ThreadState]:
        out = []
        for st in self.threads.values():
            if not st.stale and st.report is not None and \
                    mono - st.last_mono > STALE_AFTER_INTERVALS * interval_s:
                st.stale = True
                out.append(st)
        return out

    def off_heap(self) -> tuple[int, int | None, int | None]:
        """Heap used, ``external`` and ``arrayBuffers`` summed over the threads (None where a
        thread does not report it: Python's reporter has neither)."""
        reports = [st.report for st in self.threads.values() if st.report is not None]
        ext = [r.external for r in reports]
        bufs = [r.array_buffers for r in reports]
        return (sum(r.heap_used for r in reports),
                None if not ext or None in ext else sum(e for e in ext if e is not None),
                None if not bufs or None in bufs else sum(b for b in bufs if b is not None))

    def main_report(self) -> HeapReport | None:
        for st in self.threads.values():
            if st.is_main and st.report is not None:
                return st.report
        return None

    def _sum(self) -> None:
        reports = [st.report for st in self.threads.values() if st.report is not None]
        if not reports:
            self.totals = None
            return
        olds = [r.old_space_used for r in reports]
        old_limits = [r.old_space_limit for r in reports]
        self.totals = HeapTotals(
            used=sum(r.heap_used for r in reports),
            total=sum(r.heap_total for r in reports),
            limit=sum(r.heap_limit for r in reports),
            old_used=None if None in olds else sum(o for o in olds if o is not None),
            old_limit=None if None in old_limits else sum(o for o in old_limits if o is not None),
        )
