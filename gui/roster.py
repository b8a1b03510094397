"""What the window knows about workers and deaths, built from engine events. Qt-free.

The table model, the plot, the timeline and the detail pane all read this one state; the
bridge feeds it events in the engine's order. Keeping it free of Qt lets tests drive it with
plain event objects (qutebrowser's lesson about config objects that need a QApplication).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from oomscope.core.causes import EXIT, HEAP_OOM, KERNEL_OTHER, OOM_KILL, SIGNAL, TERMINATED, UNKNOWN
from oomscope.core.events import (
    CauseUpdated,
    CrashLoop,
    Doctor,
    Heap,
    KernelOom,
    LevelPending,
    Notice,
    Sample,
    Samples,
    Terminate,
    ThreadExited,
    Threshold,
    WorkerAttached,
    WorkerExited,
    WorkerRef,
    WorkerStarted,
)
from oomscope.core.oomlog.records import KillRecord
from oomscope.core.sizes import format_size
from oomscope.core.thresholds import CRITICAL, NORMAL, WARNING, ThresholdConfig

from .history import Series

# Under churn (a pool forking a child per request) every exited worker kept a row, a plot series
# and a timeline marker for ever: 10,000 children, +64 KB each (issue #14). The window keeps the
# latest exits; the rows let go of are counted in the status bar, and a recording keeps them all.
# 500 rows is more than anyone scrolls through, and little memory (a few KB each once trimmed).
EXITED_ROWS_KEPT = 500
# Timeline markers: a death is small, but the timeline redraws every marker at each death.
DEATHS_KEPT = 2_000
KERNEL = KERNEL_OTHER  # timeline lane of kill records that matched no worker
LANES = (OOM_KILL, HEAP_OOM, TERMINATED, SIGNAL, EXIT, KERNEL)
LANE_LABELS = {
    OOM_KILL: "OOM kill",
    HEAP_OOM: "heap OOM",
    TERMINATED: "terminated",
    SIGNAL: "signal",
    EXIT: "exit / unknown",
    KERNEL: "kernel (other)",
}


@dataclass
class WorkerState:
    ref: WorkerRef
    color_index: int
    series: Series
    cgroup: str | None = None
    cgroup_limit: int | None = None
    parent_pid: int | None = None
    level: str = NORMAL
    # A level the value is above but has not held for the sustain time: (level, since, sustain_s).
    pending: tuple[str, float, float] | None = None
    last: Sample | None = None
    last_t: float | None = None  # the time of ``last``
    terminating: str | None = None  # the signal oomscope sent last, while the worker lives
    requested: bool = False  # the user confirmed a terminate the engine has not reported yet
    exit: WorkerExited | None = None
    cause: str | None = None
    oom: KillRecord | None = None
    evidence: tuple[str, ...] = ()
    stderr: deque[str] = field(default_factory=lambda: deque(maxlen=200))
    # Worker threads (Node worker_threads) arrive with per-thread heap reports; until the
    # engine sends those, a worker has no children in the tree.
    threads: list[ThreadState] = field(default_factory=list)
    # This worker's own warning/critical/on-crit, as the engine last confirmed them (None: the
    # global ones). The metric is always the global one: the engine decides that.
    override: ThresholdConfig | None = None
    advice: list[Doctor] = field(default_factory=list)
    thread_deaths: list[Death] = field(default_factory=list)  # heap-oom deaths of its worker threads
    heap_since: float | None = None  # time of its first sample with a heap value
    # Warnings and errors the engine said about this worker (a crash-loop stop, a failed
    # restart): the detail pane keeps them after the message bar has faded.
    notices: list[str] = field(default_factory=list)
    # Each reporting thread's own heap history, (pid, thread_id) -> series (only its heap_used
    # column is filled), in the order threads first reported: the plot draws one curve per
    # thread once a process has worker threads. Keyed by pid too, because a shell worker's
    # descendants each have their own main thread 0.
    heap_threads: dict[tuple[int, int], Series] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.ref.id

    @property
    def alive(self) -> bool:
        return self.exit is None

    def pid_text(self, sep: str = ", ", label: str = "PID ") -> str:
        """``sep`` + "PID N", or nothing for a worker whose PID nobody knows (a fleet's container:
        its exporter publishes none, and "PID 0" would name the kernel's idle task)."""
        return f"{sep}{label}{self.ref.pid}" if self.ref.pid > 0 else ""

    def state_text(self) -> str:
        if self.exit is not None:
            text = f"exited: {self.cause}"
            if self.cause == TERMINATED and self.exit.signal:
                text += f" ({self.exit.signal}, by {self.exit.by})"
            elif self.cause in (SIGNAL, OOM_KILL, HEAP_OOM) and self.exit.signal:
                text += f" ({self.exit.signal})"
            elif self.cause == EXIT and self.exit.exit_code is not None:
                text += f" ({self.exit.exit_code})"
            return text
        if self.terminating is not None:
            return f"terminating… ({self.terminating} sent)"
        if self.requested:
            return "terminating…"
        state = {NORMAL: "running", WARNING: "warning", CRITICAL: "critical"}.get(self.level, self.level)
        if self.pending is not None:
            level, since, sustain_s = self.pending
            # The sample's time, not the clock: a replay and a live window read the same.
            now = self.last_t if self.last_t is not None else since
            held = min(max(0.0, now - since), sustain_s)
            return f"{state} · over {level} {held:.1f} / {sustain_s:g} s"
        return state

    def value(self, metric: str) -> int | None:
        if self.last is None:
            return None
        return {"rss": self.last.rss, "anon": self.last.anon, "heap_used": self.last.heap_used,
                "cgroup_usage": self.last.cgroup_usage}[metric]

    def has_thread_heaps(self) -> bool:
        """Whether any worker thread (not only main threads) ever reported its own heap."""
        return any(tid != 0 for _pid, tid in self.heap_threads)

    def limited_value(self, metric: str) -> int | None:
        """What the limit counts, for ``% of limit``: the heap for the heap's limit; for a cgroup's
        limit the cgroup's usage (page cache included: RSS counts shared file pages the cgroup
        may not be charged for, and read 111-135 % of a hard limit), else anon RSS."""
        if self.last is None:
            return None
        if metric == "heap_used":
            return self.last.heap_used
        if self.last.cgroup_usage is not None:
            return self.last.cgroup_usage
        return self.last.anon

    def limit(self, metric: str) -> int | None:
        """What ``% of limit`` divides by, and the dashed limit line is drawn at: the V8 heap limit
        for heap, else (RSS, anon, the cgroup's own usage) the cgroup limit."""
        if metric == "heap_used":
            return self.last.heap_limit if self.last is not None else None
        return self.cgroup_limit

    def levels_text(self) -> str | None:
        """This worker's own levels in words; None while it uses the global ones."""
        return None if self.override is None else describe_levels(self.override)

    def slot_text(self) -> str | None:
        """``slot 3 · life 2`` for a restarted (or respawned) worker; None for a first life,
        where the slot tells nothing the name does not."""
        if self.ref.slot is None or self.ref.life <= 1:
            return None
        return f"slot {self.ref.slot} · life {self.ref.life}"

    def memory_text(self) -> str:
        if self.last is None:
            return "no sample yet"
        return f"RSS {format_size(self.last.rss)}, anon {format_size(self.last.anon)}"


@dataclass
class ThreadState:
    thread_id: int
    heap_used: int | None = None
    heap_limit: int | None = None
    stale: bool = False  # stopped reporting (blocked in a synchronous loop): last values stand
    cause: str | None = None  # set when the thread ended inside a live process

    def state_text(self) -> str:
        if self.cause is not None:
            return f"exited: {self.cause}"
        return "not reporting" if self.stale else "running"


@dataclass(frozen=True, slots=True)
class Death:
    """One marker on the kill timeline."""

    t: float
    lane: str
    cause: str
    worker_id: str | None
    name: str
    pid: int | None
    by: str | None = None
    signal: str | None = None
    exit_code: int | None = None
    anon_rss_bytes: int | None = None
    record: KillRecord | None = None
    # A worker thread that died inside a process that lives on (Node worker_threads hitting
    # their resourceLimits): the marker is the thread's, the worker is still running.
    thread_id: int | None = None
    message: str | None = None
    # A kill record of an unwatched process that belonged to a watched worker: how
    # ("in the cgroup of worker w1 (sh)"); None for a stranger's.
    concerns: str | None = None

    def summary(self) -> str:
        if self.thread_id is not None:
            text = f"thread {self.thread_id} of PID {self.pid}: {self.cause}"
            return text + (f" ({self.message})" if self.message else "")
        who = f"{self.name} (PID {self.pid})" if self.pid is not None else self.name
        what = {
            OOM_KILL: "killed by the OOM killer",
            HEAP_OOM: "V8 heap out of memory",
            TERMINATED: f"terminated by {self.by or 'oomscope'}",
            SIGNAL: "killed by a signal",
            EXIT: "exited",
            UNKNOWN: "vanished (cause unknown)",
            KERNEL: "OOM-killed (not a watched worker)",
        }.get(self.cause, self.cause)
        extra = []
        if self.signal:
            extra.append(self.signal)
        if self.exit_code is not None:
            extra.append(f"exit code {self.exit_code}")
        if self.anon_rss_bytes is not None:
            extra.append(f"anon RSS at kill {format_size(self.anon_rss_bytes)}")
        return f"{who}: {what}" + (f" ({', '.join(extra)})" if extra else "")


def describe_levels(config: ThresholdConfig) -> str:
    text = f"warning {config.warn or 'none'}, critical {config.crit or 'none'}"
    if config.on_crit == "terminate":
        text += ", terminate at critical"
    return text


def lane_of(cause: str) -> str:
    return EXIT if cause == UNKNOWN else cause


class Roster:
    """Workers in the order the engine reported them, and every death in time order."""

    def __init__(self, history_capacity: int | None = None, *, exited_kept: int = EXITED_ROWS_KEPT,
                 deaths_kept: int = DEATHS_KEPT) -> None:
        self.workers: list[WorkerState] = []
        self.by_id: dict[str, WorkerState] = {}
        self.deaths: list[Death] = []
        self.exited_kept = exited_kept
        self.deaths_kept = deaths_kept
        self._exited: deque[WorkerState] = deque()  # rows of exited workers, oldest exit first
        self.forgotten = 0  # exited workers whose rows were let go of
        self.deaths_forgotten = 0
        # Told the ids of workers let go of (the plot drops its cached views of them).
        self.forget_listeners: list[Callable[[list[str]], None]] = []
        # Deaths per slot and cause, counted from exit events: the engine's Slot keeps the same
        # numbers but lives on the engine thread, and the window only hears events.
        self.slot_deaths: dict[int, dict[str, int]] = {}
        self._capacity = history_capacity
        self._colors = 0
        # A slot's lives share one colour, so on the plot they read as one line broken by
        # each death (the gap is the time from the death to the next life).
        self._slot_colors: dict[int, int] = {}

    def clear(self) -> None:
        """Forget everything (a replay rebuilding the state at another time); colours restart,
        so the same events give every worker its same colour again."""
        self.workers.clear()
        self.by_id.clear()
        self.deaths.clear()
        self.slot_deaths.clear()
        self._slot_colors.clear()
        self._colors = 0
        self._exited.clear()
        self.forgotten = self.deaths_forgotten = 0

    def overflow(self) -> list[WorkerState]:
        """The exited workers beyond ``exited_kept``, oldest exit first: the ones to let go of
        (through :meth:`forget`, which the table model wraps in its row removal)."""
        return [self._exited[i] for i in range(len(self._exited) - self.exited_kept)]

    def forget(self, w: WorkerState) -> None:
        """Let go of an exited worker's row, series and everything else about it."""
        self.workers.remove(w)
        del self.by_id[w.id]
        self._exited.remove(w)
        self.forgotten += 1
        slot = w.ref.slot
        if slot is not None and not any(o.ref.slot == slot for o in self.workers):
            # No life of that slot left in view: its colour and death counts go too (every
            # launched worker without restarts has a slot of its own; 10,000 of them made
            # 10,000 entries). A later life of it starts them again; a recording keeps all.
            self.slot_deaths.pop(slot, None)
            self._slot_colors.pop(slot, None)
        for listener in self.forget_listeners:
            listener([w.id])

    def count_text(self) -> str:
        """``3 workers, 500 exited (+9,500 older)`` for the status bar: short, so a passing
        message beside it in the bar still reads at 1024 px (``count_tip`` says the rest)."""
        alive = sum(1 for w in self.workers if w.alive)
        gone = len(self.workers) - alive
        text = f"{alive} worker{'s' if alive != 1 else ''}" + (f", {gone} exited" if gone else "")
        if self.forgotten:
            text += f" (+{self.forgotten:,} older)"
        return text

    def count_tip(self) -> str:
        tip = "Workers watched now, and how many have exited"
        if self.forgotten:
            tip += (f"; {self.forgotten:,} older exits are not shown (the window keeps the latest "
                    f"{self.exited_kept:,}), a recording keeps them all")
        return tip

    def replace_all(self, workers: Iterable[WorkerState], deaths: Iterable[Death]) -> None:
        """Show these workers and deaths instead (the fleet window's every refresh, built from
        another source's numbers): the workers keep the colours they bring."""
        self.workers[:] = list(workers)
        self.by_id = {w.id: w for w in self.workers}
        self.deaths[:] = sorted(deaths, key=lambda d: d.t)
        self._exited.clear()  # the source bounds what it brings; nothing here to let go of

    def add(self, ev: WorkerStarted | WorkerAttached) -> WorkerState:
        existing = self.by_id.get(ev.worker.id)
        if existing is not None:
            return existing
        series = Series(self._capacity) if self._capacity else Series()
        slot = ev.worker.slot
        color = self._slot_colors.get(slot) if slot is not None else None
        if color is None:
            color = self._colors
            self._colors += 1
            if slot is not None:
                self._slot_colors[slot] = color
        w = WorkerState(ev.worker, color, series, cgroup=ev.cgroup, cgroup_limit=ev.cgroup_limit,
                        parent_pid=ev.parent_pid if isinstance(ev, WorkerAttached) else None)
        self.workers.append(w)
        self.by_id[w.id] = w
        return w

    def on_samples(self, ev: Samples) -> None:
        by_id = self.by_id
        for s in ev.samples:
            w = by_id.get(s.worker.id)
            if w is None:
                continue  # its started event is still in the queue behind this one
            w.last = s
            w.last_t = ev.t
            if s.cgroup_limit is not None:
                w.cgroup_limit = s.cgroup_limit
            if s.heap_used is not None and w.heap_since is None:
                w.heap_since = ev.t
            # Plotted only against a limit (history.plotted_cgroup_usage says why).
            w.series.append(ev.t, s.rss, s.anon, s.heap_used,
                            s.cgroup_usage if s.cgroup_limit is not None else None)

    def on_pending(self, ev: LevelPending) -> WorkerState | None:
        w = self.by_id.get(ev.worker.id)
        if w is not None:
            w.pending = None if ev.level is None or ev.since is None else (ev.level, ev.since, ev.sustain_s)
        return w

    def on_threshold(self, ev: Threshold) -> WorkerState | None:
        w = self.by_id.get(ev.worker.id)
        if w is not None:
            w.level = ev.level
        return w

    def on_terminate(self, ev: Terminate) -> WorkerState | None:
        w = self.by_id.get(ev.worker.id)
        if w is not None and w.alive:
            w.terminating = ev.signal
        return w

    def on_exit(self, ev: WorkerExited) -> tuple[WorkerState | None, Death]:
        w = self.by_id.get(ev.worker.id)
        if ev.worker.slot is not None:
            self._count_slot_death(ev.worker.slot, ev.cause, +1)
        if w is not None:
            if w.exit is None:
                self._exited.append(w)
                w.series.trim()
                for series in w.heap_threads.values():
                    series.trim()
            w.exit = ev
            w.cause = ev.cause
            w.oom = ev.oom
            w.evidence = ev.evidence
            w.terminating = None
            w.requested = False
            for line in ev.stderr_tail:
                if not w.stderr or w.stderr[-1] != line:
                    w.stderr.append(line)
        death = Death(ev.t, lane_of(ev.cause), ev.cause, ev.worker.id, ev.worker.name, ev.worker.pid,
                      by=ev.by, signal=ev.signal, exit_code=ev.exit_code,
                      anon_rss_bytes=_anon_at_kill(ev.oom, w), record=ev.oom)
        self.deaths.append(death)
        self._cap_deaths()
        return w, death

    def _cap_deaths(self) -> None:
        """Past ``deaths_kept`` markers, the oldest plain exit goes first (it explains the least),
        else the oldest death."""
        while len(self.deaths) > self.deaths_kept:
            plain = next((i for i, d in enumerate(self.deaths) if d.lane == EXIT), 0)
            del self.deaths[plain]
            self.deaths_forgotten += 1

    def on_cause_updated(self, ev: CauseUpdated) -> tuple[WorkerState | None, Death | None]:
        w = self.by_id.get(ev.worker.id)
        if w is not None and w.exit is not None and ev.worker.slot is not None and w.cause != ev.cause:
            # A late kernel record turns "signal" into "oom-kill": the slot's count follows.
            if w.cause is not None:
                self._count_slot_death(ev.worker.slot, w.cause, -1)
            self._count_slot_death(ev.worker.slot, ev.cause, +1)
        if w is not None:
            w.cause = ev.cause
            w.oom = ev.oom
            w.evidence = ev.evidence
        for i, d in enumerate(self.deaths):
            if d.worker_id == ev.worker.id and d.thread_id is None:
                new = Death(d.t, lane_of(ev.cause), ev.cause, d.worker_id, d.name, d.pid, by=d.by,
                            signal=d.signal, exit_code=d.exit_code,
                            anon_rss_bytes=_anon_at_kill(ev.oom, w) or d.anon_rss_bytes, record=ev.oom)
                self.deaths[i] = new
                return w, new
        return w, None

    def _count_slot_death(self, slot: int, cause: str, delta: int) -> None:
        counts = self.slot_deaths.setdefault(slot, {})
        n = counts.get(cause, 0) + delta
        if n > 0:
            counts[cause] = n
        else:
            counts.pop(cause, None)

    def slot_deaths_text(self, w: WorkerState) -> str | None:
        """``2 exit, 1 oom-kill``: how the lives of this worker's slot have ended so far."""
        if w.ref.slot is None:
            return None
        counts = self.slot_deaths.get(w.ref.slot)
        if not counts:
            return None
        return ", ".join(f"{n} {cause}" for cause, n in sorted(counts.items()))

    def on_notice(self, ev: Notice) -> WorkerState | None:
        """Keep a warning or error about a worker on it (info notices are status-bar chatter)."""
        if ev.worker is None or ev.level == "info":
            return None
        w = self.by_id.get(ev.worker.id)
        if w is not None and ev.message not in w.notices:
            w.notices.append(ev.message)
        return w

    def on_crash_loop(self, ev: CrashLoop) -> WorkerState | None:
        """The slot's restarts stopped: the life that tripped the guard keeps the message."""
        w = self.by_id.get(ev.worker.id)
        if w is not None and ev.message not in w.notices:
            w.notices.append(ev.message)
        return w

    def on_kernel_oom(self, ev: KernelOom) -> Death | None:
        """A kill record no worker claimed; one replayed from before oomscope started is placed
        at its own wall time (and left off the timeline when the log gave none)."""
        rec = ev.record
        t = ev.t
        if ev.history:
            if rec.wall_time_unix is None:
                return None
            t = rec.wall_time_unix
        concerns = None
        if ev.concerns is not None:
            how = {"cgroup": "in the cgroup of", "child": "a child of"}.get(ev.relation or "", "a descendant of")
            concerns = f"{how} worker {ev.concerns.id} ({ev.concerns.name})"
        death = Death(t, KERNEL, KERNEL, None, rec.comm or "?", rec.pid, signal="SIGKILL",
                      anon_rss_bytes=_anon_at_kill(rec, None), record=rec, concerns=concerns)
        self.deaths.append(death)
        self.deaths.sort(key=lambda d: d.t)
        self._cap_deaths()
        return death

    def on_heap(self, ev: Heap) -> tuple[WorkerState | None, int | None]:
        """A thread's heap report: (worker, row of a thread seen for the first time)."""
        w = self.by_id.get(ev.worker.id)
        if w is None:
            return w, None
        key = (ev.pid, ev.thread_id)
        series = w.heap_threads.get(key)
        if series is None:
            series = w.heap_threads[key] = Series(self._capacity) if self._capacity else Series()
        if not len(series) or ev.t >= float(series.times()[-1]):  # searchsorted needs sorted times
            series.append(ev.t, math.nan, math.nan, ev.heap_used)
        if ev.is_main:
            return w, None  # the main thread's row is the worker's own row
        for th in w.threads:
            if th.thread_id == ev.thread_id:
                th.heap_used, th.heap_limit, th.stale = ev.heap_used, ev.heap_limit, ev.stale
                return w, None
        w.threads.append(ThreadState(ev.thread_id, ev.heap_used, ev.heap_limit, ev.stale))
        return w, len(w.threads) - 1

    def on_thread_exit(self, ev: ThreadExited) -> tuple[WorkerState | None, Death | None]:
        """A worker thread ended: its row says so; a heap-oom death also gets a timeline marker
        (a thread that simply finished its work is no death worth a marker)."""
        w = self.by_id.get(ev.worker.id)
        if w is not None:
            th = next((th for th in w.threads if th.thread_id == ev.thread_id), None)
            if th is None:
                # Died before its first heap report: it still deserves a row saying how it ended.
                th = ThreadState(ev.thread_id)
                w.threads.append(th)
            th.cause = ev.cause
        if ev.cause != HEAP_OOM:
            return w, None
        death = Death(ev.t, HEAP_OOM, HEAP_OOM, ev.worker.id, ev.worker.name, ev.pid,
                      thread_id=ev.thread_id, message=ev.message)
        self.deaths.append(death)
        self.deaths.sort(key=lambda d: d.t)
        self._cap_deaths()
        if w is not None:
            w.thread_deaths.append(death)
        return w, death

    def on_doctor(self, ev: Doctor) -> WorkerState | None:
        w = self.by_id.get(ev.worker.id)
        if w is not None and all(a.advice != ev.advice for a in w.advice):
            w.advice.append(ev)
        return w

    def add_output(self, worker_id: str, stream: str, line: str) -> None:
        w = self.by_id.get(worker_id)
        if w is not None and stream == "stderr":
            w.stderr.append(line)

    def any_heap(self) -> bool:
        return any(w.series.has_heap for w in self.workers)

    def any_cgroup_usage(self) -> bool:
        return any(w.series.has_cgroup_usage for w in self.workers)


def _anon_at_kill(record: KillRecord | None, w: WorkerState | None) -> int | None:
    if record is not None and record.anon_rss_kb is not None:
        return record.anon_rss_kb * 1024
    if w is not None and w.last is not None:
        return w.last.anon
    return None
