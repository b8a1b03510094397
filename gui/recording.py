"""File → Record to…: the live window's session written to a session file.

The recorder (``core/recording``) writes from a thread of its own and never blocks; the window
hands it every event the bridge drains (a tap), in the engine's order. Trouble in the writer
thread (a full disk) must not touch Qt from there: it comes back as a ``Notice`` on the engine's
queue, the one thread-safe way into the window, and the window then reads ``failed``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from oomscope.core.engine import Engine, EngineConfig
from oomscope.core.events import Event, Notice, SourceChanged, Threshold, WorkerAttached, WorkerStarted
from oomscope.core.thresholds import NORMAL

from .roster import WorkerState

# The plot's metric names for the engine's ones: a worker's current value for a level event.
_VALUE_METRIC = {"rss": "rss", "anon": "anon", "heap": "heap_used"}


class Recorder(Protocol):
    """What ``core.recording.open_recorder`` returns."""

    path: Path
    session_id: int
    failed: str | None

    def __call__(self, event: Event) -> None: ...

    def close(self) -> None: ...


def open_session_recorder(path: Path, engine: Engine, config: EngineConfig,
                          preamble: Iterable[Event] = ()) -> Recorder:
    """A recorder on ``path`` that has already been told ``preamble`` (what the window knew
    before the recording began). Raises ``core.errors.Error`` with the reason on a bad path."""
    from oomscope.core.recording import open_recorder

    def notice(level: str, message: str) -> None:
        # Called from the recorder's writer thread: a queue put is all it may do here.
        engine.events.put(Notice(t=time.time(), level=level, message=message))

    recorder: Recorder = open_recorder(path, config, notice)
    for event in preamble:
        recorder(event)
    return recorder


def preamble_events(workers: Iterable[WorkerState], source: SourceChanged | None, metric: str,
                    now: float) -> list[Event]:
    """A recording begun mid-session starts with the state the window already knows: the
    kernel log source, every live worker, and the level each live worker is at."""
    out: list[Event] = []
    if source is not None:
        out.append(SourceChanged(now, source.state))
    for w in workers:
        if not w.alive:
            continue
        if w.ref.launched:
            out.append(WorkerStarted(t=now, worker=w.ref, cgroup=w.cgroup, cgroup_limit=w.cgroup_limit))
        else:
            out.append(WorkerAttached(t=now, worker=w.ref, parent_pid=w.parent_pid, cgroup=w.cgroup,
                                      cgroup_limit=w.cgroup_limit))
        if w.level != NORMAL:
            value = w.value(_VALUE_METRIC.get(metric, "rss"))
            if value is None:
                value = w.value("anon") or 0
            out.append(Threshold(t=now, worker=w.ref, level=w.level, metric=metric, value=value, limit=None))
    return out
