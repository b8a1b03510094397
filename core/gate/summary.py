"""What happened to each worker, built by consuming the engine's events (never by reading /proc
again): peaks against limits, time above the levels, the death and its kernel lines, advice."""

from __future__ import annotations

import heapq
import signal as signals
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..causes import TERMINATED
from ..dispatch import Dispatcher
from ..events import (
    CauseUpdated,
    CrashLoop,
    Doctor,
    Event,
    Heap,
    KernelLineRead,
    KernelOom,
    LevelPending,
    LevelsChanged,
    Notice,
    Output,
    Samples,
    SourceChanged,
    Stopped,
    Terminate,
    ThreadExited,
    Threshold,
    WorkerAttached,
    WorkerExited,
    WorkerRef,
    WorkerStarted,
)
from ..oomlog.lines import readable_line
from ..oomlog.records import KillRecord
from ..sizes import format_size

PEAK_KEYS = ("rss", "anon", "heap", "cgroup")
WARNING, CRITICAL = "warning", "critical"

# Under churn (a pool forking a child per request) a summary of every worker ever seen grows
# without end (issue #14). Kept in full: every live worker, every failed one, and the KEPT_PASSING
# passing ones with the highest peaks (those with a note — advice, a crash loop, a thread's or a
# child's death — first): the ones a reader of a CI report looks at, and the ones a baseline
# compares. 50 is a page of text summary and a JUnit file that still opens at a glance; a fleet
# of up to 50 workers is listed whole, as before. The other passing ones are added up in
# ``Others``. A worker's verdict is settled only LATE_WINDOW exits after its own: a kernel record
# arriving late (``cause_updated``) may still turn an exit into an OOM kill meanwhile.
KEPT_PASSING = 50
LATE_WINDOW = 500


@dataclass(slots=True)
class Death:
    cause: str
    exit_code: int | None
    signal: str | None
    by: str | None
    evidence: tuple[str, ...]
    kill_line: str | None
    kernel_lines: tuple[str, ...]
    stderr_tail: tuple[str, ...]
    t: float

    def to_json(self) -> dict[str, Any]:
        return {"cause": self.cause, "exit_code": self.exit_code, "signal": self.signal, "by": self.by,
                "evidence": list(self.evidence), "kill_line": self.kill_line,
                "kernel_lines": list(self.kernel_lines), "stderr_tail": list(self.stderr_tail)}

    def how(self) -> str:
        """``oom-kill (SIGKILL)``, ``exit (exit code 3)``, ``terminated (SIGTERM, by policy)``."""
        detail = ", ".join(x for x in (self.signal, None if self.exit_code is None else f"exit code {self.exit_code}",
                                       None if self.by is None else f"by {self.by}") if x)
        return self.cause + (f" ({detail})" if detail else "")

    @property
    def by_oomscope_exit(self) -> bool:
        """Stopped by watch itself at its end (``--duration``, Ctrl-C): what the user asked for."""
        return self.cause == TERMINATED and self.by == "oomscope-exit"

    def shell_status(self) -> int:
        """The status a shell would report for this death: the exit code, or 128+N for signal N."""
        if self.exit_code is not None:
            return self.exit_code
        if self.signal is not None:
            try:
                return 128 + int(signals.Signals[self.signal])
            except KeyError:
                digits = self.signal.removeprefix("SIG")
                return 128 + int(digits) if digits.isdigit() else 1
        return 1  # an attached process without a status: nothing better to say


@dataclass(slots=True)
class WorkerSummary:
    """One worker (one life of a launched command's slot)."""

    ref: WorkerRef
    started: float
    cgroup_limit: int | None = None
    heap_limit: int | None = None
    peaks: dict[str, int] = field(default_factory=dict)
    alert_peak: int | None = None  # peak on the metric the levels use
    level: str = "normal"
    level_since: float = 0.0
    above_s: dict[str, float] = field(default_factory=lambda: {WARNING: 0.0, CRITICAL: 0.0})
    reached: set[str] = field(default_factory=set)
    death: Death | None = None
    thread_deaths: list[dict[str, Any]] = field(default_factory=list)
    advice: list[dict[str, Any]] = field(default_factory=list)
    crash_loop: str | None = None
    cgroup: str | None = None
    # OOM kills of other processes in the worker's own cgroup (what a test runner forks) or among
    # its children: the worker may live on, or exit with a status of its own, but it lost memory.
    cgroup_kills: list[dict[str, Any]] = field(default_factory=list)

    @property
    def key(self) -> str:
        """How a baseline finds this worker again: its name, command line and slot."""
        slot = f"slot {self.ref.slot}" if self.ref.slot is not None else "attached"
        return f"{self.ref.name} | {' '.join(self.ref.cmd)} | {slot}"

    def limit_peak(self, metric: str) -> tuple[str, int | None]:
        """The peak a memory limit judges, as a percent level does: for a worker with a cgroup
        limit, the cgroup's usage (what the kernel counts, a shell's children included) unless
        the metric is the heap; otherwise the metric's own peak. Returns (peak key, value)."""
        if metric != "heap" and self.cgroup_limit and "cgroup" in self.peaks:
            return "cgroup", self.peaks["cgroup"]
        return metric, self.alert_peak

    def close_level(self, t: float) -> None:
        spent = max(0.0, t - self.level_since)
        if self.level in (WARNING, CRITICAL):
            self.above_s[WARNING] += spent
        if self.level == CRITICAL:
            self.above_s[CRITICAL] += spent
        self.level_since = t

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "worker": self.ref.to_json(),
            "cgroup_limit": self.cgroup_limit,
            "heap_limit": self.heap_limit,
            "peak": {k: self.peaks.get(k) for k in PEAK_KEYS},
            "alert_peak": self.alert_peak,
            "time_above_s": {k: round(v, 3) for k, v in self.above_s.items()},
            "levels_reached": sorted(self.reached),
            "exit": None if self.death is None else self.death.to_json(),
            "thread_deaths": self.thread_deaths,
            "doctor": self.advice,
            "crash_loop": self.crash_loop,
            "cgroup_kills": self.cgroup_kills,
        }


def where(kill: dict[str, Any]) -> str:
    """Where a process in ``cgroup_kills`` was, as seen from its worker: ``in its cgroup``..."""
    return {"child": "a child of it", "descendant": "a descendant of it"}.get(kill["relation"], "in its cgroup")


def _kernel_lines(record: KillRecord | None) -> tuple[str, ...]:
    if record is None:
        return ()
    return tuple(readable_line(line.strip()) for line in (record.key_lines() or record.lines))


@dataclass(slots=True)
class Others:
    """The passing exited workers beyond the kept ones, added up: how many, how they ended, the
    highest of each peak, the total and highest alert peak, the time above the levels."""

    workers: int = 0
    causes: dict[str, int] = field(default_factory=dict)
    peaks: dict[str, int] = field(default_factory=dict)
    alert_peak_max: int | None = None
    alert_peak_total: int = 0
    measured: int = 0  # how many of them have an alert peak (the total's count)
    above_s: dict[str, float] = field(default_factory=lambda: {WARNING: 0.0, CRITICAL: 0.0})
    doctor: int = 0  # pieces of the doctor's advice among them (not listed)

    def add(self, w: WorkerSummary) -> None:
        self.workers += 1
        cause = w.death.cause if w.death is not None else "running"
        self.causes[cause] = self.causes.get(cause, 0) + 1
        for k, v in w.peaks.items():
            self.peaks[k] = max(v, self.peaks.get(k, v))
        if w.alert_peak is not None:
            self.alert_peak_total += w.alert_peak
            self.measured += 1
            self.alert_peak_max = max(w.alert_peak, self.alert_peak_max or w.alert_peak)
        for level in (WARNING, CRITICAL):
            self.above_s[level] += w.above_s[level]
        self.doctor += len(w.advice)

    def take_back(self, cause: str) -> None:
        """One of them is listed again (a late kernel record failed it): its count goes; its
        peaks stay in the maxima and the total, which cannot be taken apart again."""
        self.workers -= 1
        if self.causes.get(cause, 0) > 0:
            self.causes[cause] -= 1
            if not self.causes[cause]:
                del self.causes[cause]

    def line(self) -> str:
        """One line of the text summary, and the JUnit report's aggregate test case."""
        peak = self.alert_peak_max
        causes = ", ".join(f"{n} {cause}" for cause, n in sorted(self.causes.items()))
        mean = format_size(self.alert_peak_total // self.measured) if self.measured else None
        return (f"{self.workers} other worker(s) passed, not listed ({causes}): highest alert peak "
                f"{format_size(peak) if peak is not None else 'not measured'}"
                + (f", mean {mean}" if mean else "")
                + f"; only every failure and the {KEPT_PASSING} highest passing peaks are listed")

    def to_json(self) -> dict[str, Any]:
        return {"workers": self.workers, "failed": 0, "causes": dict(sorted(self.causes.items())),
                "peak": {k: self.peaks.get(k) for k in PEAK_KEYS}, "alert_peak_max": self.alert_peak_max,
                "alert_peak_total": self.alert_peak_total, "measured": self.measured,
                "time_above_s": {k: round(v, 3) for k, v in self.above_s.items()}, "doctor": self.doctor}


def _rank(w: WorkerSummary) -> tuple[bool, int]:
    noted = bool(w.advice or w.crash_loop or w.thread_deaths or w.cgroup_kills)
    return noted, (w.alert_peak if w.alert_peak is not None else -1)


class SummaryBuilder:
    """Consumes every engine event; ``workers`` is the summary so far, in order of appearance:
    the kept workers (see KEPT_PASSING); ``others`` adds up the rest. ``failed`` judges a worker
    as the gate will (a failed one is never added up); ``peak_by_key`` (when asked for, for a
    baseline) keeps the highest limit peak of every key, added-up workers' included."""

    def __init__(self, metric: str, failed: Callable[[WorkerSummary], bool] | None = None,
                 keep: int = KEPT_PASSING, late_window: int = LATE_WINDOW, peaks_by_key: bool = False) -> None:
        self.metric = metric
        self.workers: dict[str, WorkerSummary] = {}
        self.others = Others()
        self._failed = failed or (lambda w: False)
        self._keep = keep
        self._late_window = late_window
        self._settling: OrderedDict[str, WorkerSummary] = OrderedDict()  # exited, verdict not final
        self._passing: list[tuple[tuple[bool, int], int, str]] = []  # min-heap of kept passing ones
        self._order = 0
        self.peak_by_key: dict[str, tuple[str, int]] | None = {} if peaks_by_key else None
        # The latest launched worker's end (the one command's own status), kept or added up.
        self.last_launched: Death | None = None
        self.kernel_source: str | None = None
        # Kills of host processes that concern no worker: only counted, they are not this run's.
        self.unwatched_kills = 0
        self.dispatch: Dispatcher[None] = Dispatcher({
            WorkerStarted: self._started,
            WorkerAttached: self._started,
            Samples: self._samples,
            Threshold: self._threshold,
            WorkerExited: self._exited,
            CauseUpdated: self._cause_updated,
            ThreadExited: self._thread_exited,
            Doctor: self._doctor,
            CrashLoop: self._crash_loop,
            SourceChanged: self._source,
            KernelOom: self._kernel_oom,
        }, ignore=(Heap, KernelLineRead, LevelPending, LevelsChanged, Notice, Output, Stopped, Terminate),
            name="watch gate summary")

    def __call__(self, event: Event) -> None:
        self.dispatch(event)

    def _worker(self, ref: WorkerRef, t: float) -> WorkerSummary:
        w = self.workers.get(ref.id)
        if w is None:
            w = self.workers[ref.id] = WorkerSummary(ref, started=t, level_since=t)
        return w

    def _started(self, ev: WorkerStarted | WorkerAttached) -> None:
        w = self._worker(ev.worker, ev.t)
        w.cgroup_limit = ev.cgroup_limit
        w.cgroup = ev.cgroup

    def _samples(self, ev: Samples) -> None:
        for s in ev.samples:
            w = self._worker(s.worker, ev.t)
            for key, value in (("rss", s.rss), ("anon", s.anon), ("heap", s.heap_used),
                               ("cgroup", s.cgroup_usage)):
                if value is not None and value > w.peaks.get(key, -1):
                    w.peaks[key] = value
            if s.cgroup_limit is not None:
                w.cgroup_limit = s.cgroup_limit
            if s.heap_limit:  # 0: a reporter without a limit (Python's)
                w.heap_limit = s.heap_limit
            # Where no reporter speaks, anonymous memory stands in for the heap (as the levels do).
            alert = {"rss": s.rss, "anon": s.anon,
                     "heap": s.heap_used if s.heap_used is not None else s.anon}.get(self.metric, s.rss)
            if w.alert_peak is None or alert > w.alert_peak:
                w.alert_peak = alert

    def _threshold(self, ev: Threshold) -> None:
        w = self._worker(ev.worker, ev.t)
        w.close_level(ev.t)
        w.level = ev.level
        if ev.level in (WARNING, CRITICAL):
            w.reached.add(ev.level)
        if ev.level == CRITICAL:
            w.reached.add(WARNING)  # critical is above warning, even where warning is off

    def _exited(self, ev: WorkerExited) -> None:
        w = self._worker(ev.worker, ev.t)
        w.close_level(ev.t)
        w.level = "normal"
        w.death = Death(ev.cause, ev.exit_code, ev.signal, ev.by, ev.evidence,
                        ev.oom.kill_line() if ev.oom is not None else None,
                        _kernel_lines(ev.oom), ev.stderr_tail, ev.t)
        if ev.worker.launched:
            self.last_launched = w.death
        self._settling[w.ref.id] = w
        while len(self._settling) > self._late_window:
            self._settle(self._settling.popitem(last=False)[1])

    def _settle(self, w: WorkerSummary) -> None:
        """Its verdict is final: kept if failed or among the highest passing peaks, else added up."""
        self._note_peak(w)
        if self._failed(w):
            return
        self._order += 1
        heapq.heappush(self._passing, (_rank(w), self._order, w.ref.id))
        if len(self._passing) > self._keep:
            gone = self.workers.pop(heapq.heappop(self._passing)[2])
            self.others.add(gone)

    def _note_peak(self, w: WorkerSummary) -> None:
        if self.peak_by_key is not None:
            measure, v = w.limit_peak(self.metric)
            if v is not None and v > self.peak_by_key.get(w.key, ("", -1))[1]:
                self.peak_by_key[w.key] = (measure, v)

    def _cause_updated(self, ev: CauseUpdated) -> None:
        w = self.workers.get(ev.worker.id)
        if w is None:
            # Added up already (its exit was more than LATE_WINDOW exits ago): listed again
            # when the finding fails it, so that no failure goes unlisted; its peaks are lost.
            w = WorkerSummary(ev.worker, started=ev.t, level_since=ev.t)
            w.death = Death(ev.previous, None, None, None, (), None, (), (), ev.t)
            self.workers[w.ref.id] = w
            self._update_death(w, ev)
            if self._failed(w):
                self.others.take_back(ev.previous)
            else:
                del self.workers[w.ref.id]
            return
        self._update_death(w, ev)

    def _update_death(self, w: WorkerSummary, ev: CauseUpdated) -> None:
        if w.death is None:
            return
        w.death.cause = ev.cause
        w.death.evidence = ev.evidence
        if ev.oom is not None:
            w.death.kill_line = ev.oom.kill_line()
            w.death.kernel_lines = _kernel_lines(ev.oom)

    def _thread_exited(self, ev: ThreadExited) -> None:
        self._worker(ev.worker, ev.t).thread_deaths.append(
            {"pid": ev.pid, "thread_id": ev.thread_id, "cause": ev.cause, "message": ev.message})

    def _doctor(self, ev: Doctor) -> None:
        self._worker(ev.worker, ev.t).advice.append(
            {"advice": ev.advice, "reason": ev.reason, "suggested": ev.suggested})

    def _crash_loop(self, ev: CrashLoop) -> None:
        self._worker(ev.worker, ev.t).crash_loop = ev.message

    def _source(self, ev: SourceChanged) -> None:
        self.kernel_source = ev.state.name if ev.state.ok else f"{ev.state.name}: {ev.state.reason}"

    def _kernel_oom(self, ev: KernelOom) -> None:
        if ev.history:
            return
        r = ev.record
        # The engine says whose it was: a worker's child, or a process in a worker's own cgroup.
        owner = self.workers.get(ev.concerns.id) if ev.concerns is not None else None
        if owner is None:
            self.unwatched_kills += 1
            return
        owner.cgroup_kills.append({"pid": r.pid, "comm": r.comm, "relation": ev.relation, "kill_line": r.kill_line(),
                                   "kernel_lines": list(_kernel_lines(r))})

    def finish(self, t: float | None = None) -> list[WorkerSummary]:
        """Closes the level time of workers still running (watch stopped before them) and
        settles the verdict of every exited one; returns the kept workers."""
        end = time.time() if t is None else t
        for w in self.workers.values():
            if w.death is None:
                w.close_level(end)
        while self._settling:
            self._settle(self._settling.popitem(last=False)[1])
        for w in self.workers.values():
            if w.death is None:
                self._note_peak(w)
        return list(self.workers.values())
