"""A recorded session read from its file for a replay: the non-sample events in the engine's
order, and each worker's samples as numpy columns (see gui/replay.py for how the replay window
rebuilds a moment from them); and the choice of a session in a file that holds several.

Qt-free but for the choice dialog, so a live window can have a file read on another thread.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from oomscope.core.errors import BadInput
from oomscope.core.events import (
    Event,
    Sample,
    WorkerAttached,
    WorkerRef,
    WorkerStarted,
)
from oomscope.core.recording import SessionFile, SessionInfo
from oomscope.core.thresholds import ThresholdConfig, thresholds_from_json

from .history import METRICS, history_columns, plotted_cgroup_usage
from .qt import Qt, QtWidgets

COLUMNS = ("rss", "anon", "swap", "cgroup_usage", "cgroup_limit", "heap_used", "heap_total", "heap_limit",
           "trend_bytes_per_s", "eta_limit_s", "eta_crit_s")
_INT_COLUMNS = COLUMNS[:8]

FloatArray = npt.NDArray[np.float64]


# ------------------------------------------------------------------ the recorded data


@dataclass
class WorkerColumns:
    """One worker's recorded samples as columns (float64, NaN where a sample did not know).

    A column no sample knows (a worker without a cgroup, without a heap reporter) is not kept:
    an hour of 200 workers is 7 million samples, and each kept column costs 8 bytes a sample."""

    ref: WorkerRef
    t: FloatArray
    values: dict[str, FloatArray]

    @classmethod
    def from_arrays(cls, ref: WorkerRef, arrays: dict[str, Any]) -> WorkerColumns:
        kept = {name: arrays[name] for name in COLUMNS if name in arrays and np.isfinite(arrays[name]).any()}
        return cls(ref, arrays["t"], kept)

    def column(self, name: str, i0: int = 0, i1: int | None = None) -> FloatArray:
        """Rows ``i0:i1`` of a column (NaN throughout for one no sample knew)."""
        stop = len(self) if i1 is None else i1
        values = self.values.get(name)
        return values[i0:stop] if values is not None else np.full(max(0, stop - i0), math.nan)

    def __len__(self) -> int:
        return int(self.t.size)

    def sample(self, i: int) -> Sample:
        """The ``Sample`` the engine emitted as the worker's ``i``-th."""
        fields: dict[str, Any] = {}
        for name in COLUMNS:
            column = self.values.get(name)
            v = float(column[i]) if column is not None else math.nan
            if math.isnan(v):
                fields[name] = None
            else:
                fields[name] = int(v) if name in _INT_COLUMNS else v
        return Sample(self.ref, rss=fields.pop("rss") or 0, anon=fields.pop("anon") or 0, **fields)

    def history_block(self, i0: int, i1: int) -> npt.NDArray[np.float32]:
        """Rows ``i0:i1`` in the window history's layout (history.METRICS: a recorded cgroup
        usage is plotted as a live one is)."""
        columns: dict[str, npt.ArrayLike] = {m: self.column(m, i0, i1) for m in METRICS}
        columns["cgroup_usage"] = plotted_cgroup_usage(columns["cgroup_usage"], self.column("cgroup_limit", i0, i1))
        return history_columns(columns, len(self.t[i0:i1]))

    def csv_columns(self) -> dict[str, Any]:
        # Columns left out are empty cells, as write_samples_csv writes a column not given.
        return {"worker": self.ref.id, "pid": self.ref.pid, "t": self.t, **self.values}


@dataclass
class SessionData:
    """Everything a replay shows, read once: the non-sample events in order, samples as columns."""

    events: list[Event]
    times: FloatArray  # of ``events``
    workers: dict[str, WorkerColumns]
    t_start: float
    t_end: float


def load_session(file: SessionFile, session_id: int) -> SessionData:
    """Read one session of an open session file: its events in the engine's order, without the
    sampling ticks, and each worker's samples in bulk as columns."""
    events = list(file.events(session_id, samples=False))
    started = {ev.worker.id for ev in events if isinstance(ev, (WorkerStarted, WorkerAttached))}
    workers: dict[str, WorkerColumns] = {}
    late: list[Event] = []
    for info in file.workers(session_id):
        columns = WorkerColumns.from_arrays(info.ref, file.worker_samples(session_id, info.worker_id))
        workers[info.ref.id] = columns
        if info.ref.id not in started:
            # Recorded from after its start (a recording begun mid-session by another program):
            # it appears with its first sample, as what it is, launched or attached.
            at = float(columns.t[0]) if len(columns) else (info.t if info.t is not None else None)
            if at is None:
                continue
            if info.ref.launched:
                late.append(WorkerStarted(at, info.ref, info.cgroup, info.cgroup_limit))
            else:
                late.append(WorkerAttached(at, info.ref, info.parent_pid, info.cgroup, info.cgroup_limit))
    for ev in late:
        event_times = [e.t for e in events]
        events.insert(bisect.bisect_left(event_times, ev.t), ev)
    t0, t1 = file.time_range(session_id)
    times = np.fromiter((ev.t for ev in events), np.float64, len(events))
    if len(times) and np.any(np.diff(times) < 0):
        # The engine's order is the truth; times can step back by a clock adjustment. Searching
        # by time needs them monotonic, and the order must stay the engine's.
        times = np.maximum.accumulate(times)
    return SessionData(events, times, workers, float(t0), float(t1))


# ------------------------------------------------------------------ describing a session


def clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


def session_label(info: SessionInfo) -> str:
    """``session 2 · host · 2026-11-29 10:42 – 10:47`` (or ``… ended by a crash``)."""
    start = time.strftime("%Y-%m-%d %H:%M", time.localtime(info.started))
    end = f" – {time.strftime('%H:%M', time.localtime(info.ended))}" if info.ended is not None \
        else " · ended by a crash"
    command = f" · {info.command_line}" if getattr(info, "command_line", None) else ""
    return f"session {info.id} · {info.host or 'unknown host'} · {start}{end}{command}"


def thresholds_of(settings: Any) -> ThresholdConfig:
    """The levels the session was recorded with (its settings' ``thresholds``), as far as they
    can be read; defaults otherwise (a replay only draws them)."""
    table = settings.get("thresholds") if isinstance(settings, dict) else None
    if not isinstance(table, dict):
        return ThresholdConfig()
    try:
        return thresholds_from_json(table)
    except (BadInput, TypeError, ValueError):
        return ThresholdConfig()


class SessionChoiceDialog(QtWidgets.QDialog):
    """The sessions of one file, newest selected: the user picks the one to replay."""

    def __init__(self, path: Path, sessions: Sequence[SessionInfo], parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("session-choice")
        self.setWindowTitle(f"Open session — {path.name}")
        self.sessions = list(sessions)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(QtWidgets.QLabel(f"{path.name} holds {len(self.sessions)} sessions. Replay which one?"))
        self.list = QtWidgets.QListWidget()
        self.list.setObjectName("session-list")
        for info in self.sessions:
            self.list.addItem(session_label(info))
        self.list.setCurrentRow(len(self.sessions) - 1)
        self.list.itemDoubleClicked.connect(lambda *_: self.accept())
        layout.addWidget(self.list)
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Open
                                             | QtWidgets.QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.resize(620, 300)

    def chosen(self) -> SessionInfo | None:
        row = self.list.currentRow()
        return self.sessions[row] if 0 <= row < len(self.sessions) else None


def choose_session(path: Path, sessions: Sequence[SessionInfo],
                   parent: QtWidgets.QWidget | None = None) -> SessionInfo | None:
    if len(sessions) == 1:
        return sessions[0]
    dialog = SessionChoiceDialog(path, sessions, parent)
    if dialog.exec() != QtWidgets.QDialog.DialogCode.Accepted:
        return None
    return dialog.chosen()


ChooseFn = Callable[[Path, Sequence[SessionInfo], "QtWidgets.QWidget | None"], "SessionInfo | None"]


def pick_session(path: Path, *, session_id: int | None = None, parent: QtWidgets.QWidget | None = None,
                 choose: ChooseFn = choose_session) -> SessionInfo | None:
    """The session of ``path`` to show: ``session_id``, the only one, or the user's choice (None:
    cancelled). Raises ``BadInput`` (a clear message) for a file that is not a session file."""
    with SessionFile.open(path) as file:
        sessions = file.sessions()
    if not sessions:
        raise BadInput(f"{path} holds no recorded session yet")
    if session_id is None:
        return choose(path, sessions, parent)
    info = next((s for s in sessions if s.id == session_id), None)
    if info is None:
        raise BadInput(f"{path} has no session {session_id}; it holds " + ", ".join(str(s.id) for s in sessions))
    return info


def read_session(path: Path, session_id: int) -> SessionData:
    """Everything a replay of that session shows. Qt-free and with a connection of its own, so
    a live window can have it read on another thread."""
    with SessionFile.open(path) as file:
        return load_session(file, session_id)


def read_chosen(path: Path, *, session_id: int | None = None, parent: QtWidgets.QWidget | None = None,
                choose: ChooseFn = choose_session) -> tuple[SessionInfo, SessionData] | None:
    """The chosen session of ``path`` read on this thread (None: the user cancelled the choice).
    Raises ``BadInput`` for a file that is not a session file."""
    info = pick_session(path, session_id=session_id, parent=parent, choose=choose)
    if info is None:
        return None
    # An hour of a big fleet takes seconds to read: say so with the cursor.
    QtWidgets.QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
    try:
        return info, read_session(path, info.id)
    finally:
        QtWidgets.QApplication.restoreOverrideCursor()
