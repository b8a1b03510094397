"""Events: immutable records of what the engine learned, in the order it learned them.

Each event knows its JSON form (the ``oomscope watch --json`` contract in docs/DESIGN.md and
docs/events.md): ``{"t": <unix seconds>, "event": <name>, "worker": {...}, ...}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

from .oomlog.lines import KernelLine
from .oomlog.records import KillRecord
from .oomlog.sources import SourceState
from .thresholds import ThresholdConfig, thresholds_to_json


@dataclass(frozen=True, slots=True)
class WorkerRef:
    """Who a worker is. Identity is ``(pid, start_time)``; ``id`` is the engine's short handle."""

    id: str
    pid: int
    start_time: float
    name: str
    cmd: tuple[str, ...]
    launched: bool
    slot: int | None = None  # launched workers: the command's slot, the same across restarts
    life: int = 1

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "pid": self.pid,
            "name": self.name,
            "cmd": list(self.cmd),
            "start_time": self.start_time,
            "launched": self.launched,
        }
        if self.slot is not None:
            d["slot"] = self.slot
            d["life"] = self.life
        return d


@dataclass(frozen=True, slots=True)
class Event:
    """Base: wall-clock time of the event (Unix seconds)."""

    kind: ClassVar[str] = "event"
    t: float

    def to_json(self) -> dict[str, Any]:
        return {"t": round(self.t, 6), "event": self.kind}


@dataclass(frozen=True, slots=True)
class WorkerEvent(Event):
    worker: WorkerRef

    def to_json(self) -> dict[str, Any]:
        d = Event.to_json(self)
        d["worker"] = self.worker.to_json()
        return d


@dataclass(frozen=True, slots=True)
class WorkerStarted(WorkerEvent):
    """A worker oomscope launched; ``cgroup`` names its own memory cgroup where it has one."""

    kind: ClassVar[str] = "worker_started"
    cgroup: str | None = None
    cgroup_limit: int | None = None

    def to_json(self) -> dict[str, Any]:
        d = WorkerEvent.to_json(self)
        d["cgroup"] = self.cgroup
        d["cgroup_limit"] = self.cgroup_limit
        return d


@dataclass(frozen=True, slots=True)
class WorkerAttached(WorkerEvent):
    """A running process oomscope now watches; ``parent_pid`` where found by ``--children-of``."""

    kind: ClassVar[str] = "worker_attached"
    parent_pid: int | None = None
    cgroup: str | None = None
    cgroup_limit: int | None = None

    def to_json(self) -> dict[str, Any]:
        d = WorkerEvent.to_json(self)
        d["parent_pid"] = self.parent_pid
        d["cgroup"] = self.cgroup
        d["cgroup_limit"] = self.cgroup_limit
        return d


class Sample(NamedTuple):
    """One memory reading of one worker. Sizes in bytes; None where not known.

    A tuple rather than a dataclass: the engine makes one per worker per tick, and tuple
    construction is the cheapest immutable record Python has.
    """

    worker: WorkerRef
    rss: int
    anon: int
    swap: int | None = None
    cgroup_usage: int | None = None
    cgroup_limit: int | None = None
    heap_used: int | None = None
    heap_total: int | None = None
    heap_limit: int | None = None
    trend_bytes_per_s: float | None = None
    eta_limit_s: float | None = None
    eta_crit_s: float | None = None

    def to_json(self, t: float) -> dict[str, Any]:
        d: dict[str, Any] = {
            "t": round(t, 6),
            "event": "sample",
            "worker": self.worker.to_json(),
            "rss": self.rss,
            "anon": self.anon,
            "swap": self.swap,
        }
        for key in ("cgroup_usage", "cgroup_limit", "heap_used", "heap_total", "heap_limit"):
            value = getattr(self, key)
            if value is not None:
                d[key] = value
        # Where no reporter speaks, anonymous RSS is the heap's stand-in: say which it is.
        d["heap_source"] = "reported" if self.heap_used is not None else "anon"
        d["trend_bytes_per_s"] = None if self.trend_bytes_per_s is None else round(self.trend_bytes_per_s, 1)
        d["eta_limit_s"] = None if self.eta_limit_s is None else round(self.eta_limit_s, 1)
        d["eta_crit_s"] = None if self.eta_crit_s is None else round(self.eta_crit_s, 1)
        return d


@dataclass(frozen=True, slots=True)
class Samples(Event):
    """All samples of one sampling tick; the JSON contract prints one ``sample`` line each."""

    kind: ClassVar[str] = "samples"
    samples: tuple[Sample, ...] = ()

    def to_json_lines(self) -> list[dict[str, Any]]:
        return [s.to_json(self.t) for s in self.samples]


@dataclass(frozen=True, slots=True)
class Threshold(WorkerEvent):
    """The worker's level changed (``warning``, ``critical`` or back to ``normal``)."""

    kind: ClassVar[str] = "threshold"
    level: str
    metric: str
    value: int
    limit: int | None
    previous: str = "normal"

    def to_json(self) -> dict[str, Any]:
        d = WorkerEvent.to_json(self)
        d.update(level=self.level, metric=self.metric, value=self.value, limit=self.limit,
                 previous=self.previous)
        return d


@dataclass(frozen=True, slots=True)
class LevelsChanged(Event):
    """The warning and critical levels in force changed while the session ran.

    ``worker`` None: the global levels (every worker without its own follows them) are now
    ``thresholds``. With a ``worker``: that worker's own levels are now ``thresholds`` (compared
    on the global metric, which ``thresholds.metric`` then is), or, with ``thresholds`` None, it
    follows the global levels again.
    """

    kind: ClassVar[str] = "levels"
    worker: WorkerRef | None
    thresholds: ThresholdConfig | None

    def __post_init__(self) -> None:
        if self.worker is None and self.thresholds is None:
            raise ValueError("the global levels cannot be None: give the ThresholdConfig in force")

    def to_json(self) -> dict[str, Any]:
        d = Event.to_json(self)
        if self.worker is not None:
            d["worker"] = self.worker.to_json()
        c = self.thresholds
        if c is None:
            # No level fields at all: null would read as "no warning level", which it is not.
            d["back_to_global"] = True
            return d
        d.update(thresholds_to_json(c))
        return d


@dataclass(frozen=True, slots=True)
class Terminate(WorkerEvent):
    """oomscope sent ``signal`` to the worker, asked by ``by`` (``user`` or ``policy``)."""

    kind: ClassVar[str] = "terminate"
    by: str
    signal: str
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        d = WorkerEvent.to_json(self)
        d.update(by=self.by, signal=self.signal, reason=self.reason)
        return d


@dataclass(frozen=True, slots=True)
class WorkerExited(WorkerEvent):
    """The worker is gone, with its cause (docs/DESIGN.md "Correlation and causes").

    ``exit_code``/``signal`` come from the wait status for launched workers. For attached
    processes the kernel gives no status to a non-parent: both are None, except that
    ``signal`` names oomscope's own last signal when the cause is ``terminated``.
    """

    kind: ClassVar[str] = "worker_exited"
    cause: str
    exit_code: int | None
    signal: str | None
    by: str | None = None
    oom: KillRecord | None = None
    evidence: tuple[str, ...] = ()
    stderr_tail: tuple[str, ...] = ()
    restart_in_s: float | None = None  # a restart policy brings a new life in this many seconds

    def to_json(self) -> dict[str, Any]:
        d = WorkerEvent.to_json(self)
        d.update(cause=self.cause, exit_code=self.exit_code, signal=self.signal)
        if self.restart_in_s is not None:
            d["restart_in_s"] = self.restart_in_s
        if self.by is not None:
            d["by"] = self.by
        if self.oom is not None:
            d["oom"] = self.oom.to_json()
        d["evidence"] = list(self.evidence)
        return d


@dataclass(frozen=True, slots=True)
class Output(WorkerEvent):
    """A line a launched worker wrote on ``stream`` (``stdout`` or ``stderr``)."""

    kind: ClassVar[str] = "output"
    stream: str
    line: str

    def to_json(self) -> dict[str, Any]:
        d = WorkerEvent.to_json(self)
        d.update(stream=self.stream, line=self.line)
        return d


@dataclass(frozen=True, slots=True)
class Notice(Event):
    """Something the user should know that is not about one worker's memory.

    ``level`` is ``info``, ``warning`` or ``error``; ``worker`` may be None.
    """

    kind: ClassVar[str] = "notice"
    level: str
    message: str
    worker: WorkerRef | None = None

    def to_json(self) -> dict[str, Any]:
        d = Event.to_json(self)
        d.update(level=self.level, message=self.message)
        if self.worker is not None:
            d["worker"] = self.worker.to_json()
        return d


@dataclass(frozen=True, slots=True)
class Stopped(Event):
    """The engine has stopped; nothing follows."""

    kind: ClassVar[str] = "stopped"


@dataclass(frozen=True, slots=True)
class SourceChanged(Event):
    """State of the kernel log source (``oomlog.SourceState``): ok, or why not and what would fix it."""

    kind: ClassVar[str] = "source"
    state: SourceState

    def to_json(self) -> dict[str, Any]:
        d = Event.to_json(self)
        d.update(source=self.state.name, ok=self.state.ok, reason=self.state.reason)
        return d


@dataclass(frozen=True, slots=True)
class KernelLineRead(Event):
    """One kernel log line as decoded (``oomlog.KernelLine``); ``oom`` marks lines that belong
    to an OOM report.

    Not part of the JSON contract (``watch`` does not print it): the GUI's kernel log pane
    and the recorder consume it.
    """

    kind: ClassVar[str] = "kernel_line"
    line: KernelLine
    oom: bool = False

    def to_json(self) -> dict[str, Any]:
        d = Event.to_json(self)
        d.update(text=self.line.text, oom=self.oom, history=self.line.history,
                 kernel_time_s=self.line.kernel_time_s)
        return d


@dataclass(frozen=True, slots=True)
class KernelOom(Event):
    """A kill record (the ``oom-log --json`` contract) that matched no worker.

    ``concerns`` is the watched worker the victim belonged to, where one did: ``relation`` says
    how (``child``/``descendant``: its parent was that worker or one of the worker's children;
    ``cgroup``: it was in the worker's own cgroup, e.g. a test runner's forked test)."""

    kind: ClassVar[str] = "kernel_oom"
    record: KillRecord
    history: bool = False
    concerns: WorkerRef | None = None
    relation: str | None = None

    def to_json(self) -> dict[str, Any]:
        d = Event.to_json(self)
        d.update(oom=self.record.to_json(), history=self.history,
                 concerns=None if self.concerns is None else {"worker": self.concerns.to_json(),
                                                              "relation": self.relation})
        return d


@dataclass(frozen=True, slots=True)
class RestartCancelled(Notice):
    """A restart that a ``worker_exited`` announced (``restart_in_s``) will not happen: the
    relaunch failed, or a late kernel record made the death a crash loop. ``worker`` is the
    life that died; whoever waits for the slot's next life stops waiting."""

    kind: ClassVar[str] = "restart_cancelled"


@dataclass(frozen=True, slots=True)
class CrashLoop(WorkerEvent):
    """A slot's crash-loop guard tripped: ``deaths`` memory deaths (oom-kill/heap-oom) within
    ``window_s`` seconds, so the slot is not restarted again until the user starts it.

    ``worker`` is the life whose death tripped it; ``message`` says so in words. Follows that
    life's ``worker_exited`` (or, when a late kernel record made the loop, its ``cause_updated``).
    """

    kind: ClassVar[str] = "crash_loop"
    deaths: int
    window_s: float
    message: str

    def to_json(self) -> dict[str, Any]:
        d = WorkerEvent.to_json(self)
        d.update(deaths=self.deaths, window_s=self.window_s, message=self.message)
        return d


@dataclass(frozen=True, slots=True)
class CauseUpdated(WorkerEvent):
    """A later finding changes an exited worker's cause (a kernel record arriving late).

    Follows the worker's ``worker_exited``; ``previous`` is the cause that event gave.
    """

    kind: ClassVar[str] = "cause_updated"
    cause: str
    previous: str
    oom: KillRecord | None = None
    evidence: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        d = WorkerEvent.to_json(self)
        d.update(cause=self.cause, previous=self.previous, oom=None if self.oom is None else self.oom.to_json(),
                 evidence=list(self.evidence))
        return d


@dataclass(frozen=True, slots=True)
class Heap(WorkerEvent):
    """One thread's V8 (or Python) heap report, from the reporter inside the worker.

    ``pid`` is the reporting process (the worker, or a descendant of a shell worker);
    ``thread_id`` 0 is the main thread. ``stale`` marks a thread that stopped reporting for
    three intervals (blocked in a synchronous loop): its last values stand, not zero.
    """

    kind: ClassVar[str] = "heap"
    pid: int
    thread_id: int
    heap_used: int
    heap_total: int
    heap_limit: int
    old_space_used: int | None = None
    old_space_limit: int | None = None
    external: int | None = None
    array_buffers: int | None = None
    is_main: bool = True
    stale: bool = False
    runtime: str = "node"

    def to_json(self) -> dict[str, Any]:
        d = WorkerEvent.to_json(self)
        d.update(pid=self.pid, thread_id=self.thread_id, heap_used=self.heap_used,
                 heap_total=self.heap_total, heap_limit=self.heap_limit,
                 old_space_used=self.old_space_used, old_space_limit=self.old_space_limit,
                 external=self.external, array_buffers=self.array_buffers,
                 is_main=self.is_main, stale=self.stale, runtime=self.runtime)
        return d


@dataclass(frozen=True, slots=True)
class ThreadExited(WorkerEvent):
    """A worker thread ended inside a process that lives on (``cause``: ``heap-oom`` or ``exit``)."""

    kind: ClassVar[str] = "thread_exited"
    pid: int
    thread_id: int
    cause: str
    message: str | None = None

    def to_json(self) -> dict[str, Any]:
        d = WorkerEvent.to_json(self)
        d.update(pid=self.pid, thread_id=self.thread_id, cause=self.cause, message=self.message)
        return d


@dataclass(frozen=True, slots=True)
class Doctor(WorkerEvent):
    """Advice about a worker's configuration, given once per worker."""

    kind: ClassVar[str] = "doctor"
    advice: str
    reason: str
    suggested: str | None = None

    def to_json(self) -> dict[str, Any]:
        d = WorkerEvent.to_json(self)
        d.update(advice=self.advice, reason=self.reason, suggested=self.suggested)
        return d


@dataclass(frozen=True, slots=True)
class LevelPending(WorkerEvent):
    """The value is above ``level`` but has not stayed there for ``sustain_s`` yet (it enters
    the level at ``since + sustain_s`` unless it drops back); ``level`` None: nothing is pending
    any more (it entered the level, or dropped back below). ``since`` is wall-clock time."""

    kind: ClassVar[str] = "pending"
    level: str | None
    metric: str
    value: int
    limit: int | None
    since: float | None
    sustain_s: float

    def to_json(self) -> dict[str, Any]:
        d = WorkerEvent.to_json(self)
        d.update(level=self.level, metric=self.metric, value=self.value, limit=self.limit,
                 since=None if self.since is None else round(self.since, 6), sustain_s=self.sustain_s)
        return d
