"""What happened to each worker, built by consuming the engine's events (never by reading /proc
again): peaks against limits, time above the levels, the death and its kernel lines, advice."""

from __future__ import annotations

import signal as signals
import time
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

PEAK_KEYS = ("rss", "anon", "heap", "cgroup")
WARNING, CRITICAL = "warning", "critical"


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


class SummaryBuilder:
    """Consumes every engine event; ``workers`` is the summary so far, in order of appearance."""

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self.workers: dict[str, WorkerSummary] = {}
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

    def _cause_updated(self, ev: CauseUpdated) -> None:
        w = self._worker(ev.worker, ev.t)
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
        """Closes the level time of workers still running (watch stopped before them)."""
        end = time.time() if t is None else t
        for w in self.workers.values():
            if w.death is None:
                w.close_level(end)
        return list(self.workers.values())
