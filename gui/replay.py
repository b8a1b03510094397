"""A recorded session in the main window, read-only, with a time slider to scrub through it.

``oomscope open FILE.db`` and *File → Open session…* show the same window class as a live
session, given recorded events instead of an engine: there is no engine at all, so nothing
stored in the file (a command line) can ever be run, and every action that would start or
signal a process is disabled.

Scrubbing: the session is read from the file once. Samples are kept as per-worker numpy
columns; every other event (starts, level crossings, changed levels, exits, kernel lines…) as a
list in the engine's order. The state at time T is rebuilt from scratch — the levels the session
began with, the other events up to T re-fed through the window's own handlers, each worker's
history filled from its columns with one numpy slice — when the slider is released (or a key
moves it), not on every pixel of a drag. The cost of a rebuild is the number of non-sample events
up to T plus one slice per worker: the samples, which are most of a big file, are never walked
one by one.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from oomscope.core.errors import BadInput
from oomscope.core.events import (
    CauseUpdated,
    Event,
    Sample,
    WorkerAttached,
    WorkerExited,
    WorkerRef,
    WorkerStarted,
)
from oomscope.core.recording import SessionFile, SessionInfo
from oomscope.core.thresholds import ThresholdConfig, thresholds_from_json

from .bridge import NoEvents
from .history import METRICS, history_columns, plotted_cgroup_usage
from .kernel_pane import KernelLogPane
from .qt import QItemSelectionModel, QSettings, Qt, QTimer, QtWidgets
from .roster import Death, WorkerState
from .window import MainWindow

# Slider steps per second of session: a tenth of a second is finer than any sampling interval
# a user scrubs through, and an hour is 36,000 steps (a QSlider holds 2^31).
STEPS_PER_S = 10
_KEY_SETTLE_MS = 150  # a held arrow key moves the slider many times: rebuild once it rests
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


def _clock(t: float) -> str:
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


def open_replay(path: Path, settings: QSettings, *, session_id: int | None = None,
                parent: QtWidgets.QWidget | None = None, choose: ChooseFn = choose_session) -> ReplayWindow | None:
    """Read a session of ``path`` into a new replay window (not shown yet), on this thread; None
    when the user cancels the choice. Raises ``BadInput`` for a file that is not a session."""
    info = pick_session(path, session_id=session_id, parent=parent, choose=choose)
    if info is None:
        return None
    # An hour of a big fleet takes seconds to read: say so with the cursor.
    QtWidgets.QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
    try:
        return ReplayWindow(read_session(path, info.id), info, path, settings)
    finally:
        QtWidgets.QApplication.restoreOverrideCursor()


# ------------------------------------------------------------------ the window


class ReplayWindow(MainWindow):
    """The main window over a recorded session: read-only, with a time slider."""

    def __init__(self, data: SessionData, info: SessionInfo, path: Path, settings: QSettings) -> None:
        self.data = data
        self.info = info
        self.session_path = path
        self.shown_at = data.t_end
        self._cursors: dict[str, int] = {}  # worker id -> samples of its columns in its history
        # The levels the session began with; its ``levels`` events change them as the slider passes.
        self.recorded_thresholds = thresholds_of(info.settings)
        # No engine and a queue that stays empty; desktop notifications go nowhere (a replay
        # tells of the past).
        super().__init__(NoEvents(), settings, thresholds=self.recorded_thresholds,
                         persist_thresholds=False, notify=lambda _title, _text: None)
        self.setObjectName("oomscope-replay")
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(info.started))
        self.setWindowTitle(f"oomscope replay — {path.name} (session {info.id}, {info.host or 'unknown host'}, "
                            f"{when})")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self._kernel_source = "not recorded"
        interval = info.settings.get("interval_s") if isinstance(info.settings, dict) else None
        self.sampling_status.setText(f"recorded every {interval:g} s" if isinstance(interval, (int, float))
                                     else "recorded session")
        self.sampling_status.setToolTip(f"{path}\n" + session_label(info))
        self.plot.empty_label.setText("No workers at this time — move the slider later")
        self.plot.set_window(None)  # the whole session up to the slider's time
        self._build_slider()
        self.show_at(data.t_end)

    # ------------------------------------------------------------ the slider

    def _build_slider(self) -> None:
        bar = QtWidgets.QToolBar("Replay")
        bar.setObjectName("replay-toolbar")
        bar.setMovable(False)
        bar.addWidget(QtWidgets.QLabel(" Replay: "))
        steps = max(1, int(math.ceil((self.data.t_end - self.data.t_start) * STEPS_PER_S)))
        self.slider = QtWidgets.QSlider(Qt.Orientation.Horizontal)
        self.slider.setObjectName("replay-slider")
        self.slider.setRange(0, steps)
        self.slider.setValue(steps)
        self.slider.setSingleStep(STEPS_PER_S)
        self.slider.setPageStep(max(STEPS_PER_S, steps // 20))
        self.slider.setToolTip("Drag to a time to see the session as it was then (applied on release; "
                               "arrow keys step a second, Page Up/Down a twentieth)")
        self.slider.setMinimumWidth(400)
        self.slider.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Fixed)
        self.slider.valueChanged.connect(self._on_slider_moved)
        self.slider.sliderReleased.connect(self._apply_slider)
        bar.addWidget(self.slider)
        self.time_label = QtWidgets.QLabel("")
        self.time_label.setObjectName("replay-time")
        self.time_label.setMinimumWidth(190)
        bar.addWidget(self.time_label)
        self.end_label = QtWidgets.QLabel("")
        self.end_label.setObjectName("replay-end")
        if self.info.ended is None:
            self.end_label.setText(f" ended by a crash; recorded up to {_clock(self.data.t_end)} ")
            self.end_label.setStyleSheet("background: rgb(255, 214, 140); color: rgb(110, 50, 0); "
                                         "font-weight: bold; padding: 2px 4px; border-radius: 3px")
            self.end_label.setToolTip("The recording has no end mark: oomscope did not stop normally (or is "
                                      "still recording). Everything up to its last written batch is here.")
        else:
            self.end_label.setText(f" recorded {_clock(self.data.t_start)} – {_clock(self.data.t_end)} ")
        bar.addWidget(self.end_label)
        self.addToolBarBreak()
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, bar)
        self.replay_toolbar = bar
        self._settle = QTimer(self)
        self._settle.setObjectName("replay-settle")
        self._settle.setSingleShot(True)
        self._settle.setInterval(_KEY_SETTLE_MS)
        self._settle.timeout.connect(self._apply_slider)
        self._show_time_label(self.data.t_end)

    def time_of(self, value: int) -> float:
        return min(self.data.t_end, self.data.t_start + value / STEPS_PER_S)

    def value_of(self, t: float) -> int:
        return int(round((min(max(t, self.data.t_start), self.data.t_end) - self.data.t_start) * STEPS_PER_S))

    def _show_time_label(self, t: float) -> None:
        into = t - self.data.t_start
        total = self.data.t_end - self.data.t_start
        self.time_label.setText(f" at {_clock(t)} ({_span(into)} of {_span(total)}) ")

    def _on_slider_moved(self, value: int) -> None:
        self._show_time_label(self.time_of(value))
        if not self.slider.isSliderDown():
            self._settle.start()

    def _apply_slider(self) -> None:
        self._settle.stop()
        self.show_at(self.time_of(self.slider.value()))

    def scrub_to(self, t: float) -> None:
        """Move the slider to ``t`` and show that moment, as a released drag does."""
        self.slider.blockSignals(True)
        self.slider.setValue(self.value_of(t))
        self.slider.blockSignals(False)
        self._show_time_label(t)
        self.show_at(t)

    # ------------------------------------------------------------ state at T

    def show_at(self, t: float) -> None:
        """Rebuild everything the window shows as it was at ``t``."""
        t = min(max(t, self.data.t_start), self.data.t_end)
        self.shown_at = t
        selected = [w.id for w in self.selected_workers()]
        shown = self.detail.worker.id if self.detail.worker is not None else None
        shown_death = self.detail.death if self.detail.worker is None else None
        old_ids = [w.id for w in self.roster.workers]
        self.message_bar.muted = True
        try:
            self.model.beginResetModel()
            self.roster.clear()
            self.model.endResetModel()
            self.plot.forget(old_ids)
            self.kernel_lines.clear()
            self._replace_kernel_pane()
            self._oom_notified.clear()
            self.table.setRootIsDecorated(False)
            self._cursors = {}
            self.thresholds = self.recorded_thresholds
            n = int(np.searchsorted(self.data.times, t, side="right"))
            for ev in self.data.events[:n]:
                if isinstance(ev, (WorkerExited, CauseUpdated)):
                    self._catch_up(ev.worker.id, ev.t)  # its last samples before its exit
                self.bridge.dispatch(ev)
            for wid in list(self.roster.by_id):
                self._catch_up(wid, t)
        finally:
            self.message_bar.muted = False
        self._show_thresholds()
        self.plot.update_metric_choices()
        self.model.refresh_values()
        self.timeline.refresh()
        self._restore_view(selected, shown, shown_death)
        self._end_view_at(t)
        self._update_status()
        self._update_actions()
        self.statusBar().showMessage(f"replay at {_clock(t)}", 4000)

    def _end_view_at(self, t: float) -> None:
        """The plot (and the timeline, linked to it) ends at ``t``: the window's span before it,
        or the whole session so far for "all"."""
        start = self.data.t_start if self.plot.window_s is None else max(self.data.t_start, t - self.plot.window_s)
        span = max(t - start, 1.0)
        self.plot.set_follow(False)
        self.plot.view_box.setXRange(start - 0.01 * span, t + 0.05 * span, padding=0.0)
        self.plot.redraw()

    def _catch_up(self, worker_id: str, t: float) -> None:
        """Fill the worker's history with its recorded samples up to ``t``, in one slice."""
        w = self.roster.by_id.get(worker_id)
        columns = self.data.workers.get(worker_id)
        if w is None or columns is None:
            return
        i0 = self._cursors.get(worker_id, 0)
        i1 = int(np.searchsorted(columns.t, t, side="right"))
        if i1 <= i0:
            return
        w.series.extend(columns.t[i0:i1], columns.history_block(i0, i1))
        self._cursors[worker_id] = i1
        w.last = columns.sample(i1 - 1)
        if w.last.cgroup_limit is not None:
            w.cgroup_limit = w.last.cgroup_limit
        if w.heap_since is None and "heap_used" in columns.values:
            known = np.flatnonzero(np.isfinite(columns.values["heap_used"][:i1]))
            if known.size:
                w.heap_since = float(columns.t[known[0]])

    def _replace_kernel_pane(self) -> None:
        """A fresh kernel log pane (the lines up to T are fed again); the user's "All lines" stays."""
        old = self.kernel_pane
        pane = KernelLogPane()
        pane.all_lines.setChecked(old.all_lines.isChecked())
        pane.worker_clicked.connect(self.select_worker)
        pane.set_source("not recorded", False, "the session holds no kernel log source state")
        self.kernel_dock.setWidget(pane)
        self.kernel_pane = pane
        old.deleteLater()

    def _restore_view(self, selected: Iterable[str], shown: str | None, shown_death: Death | None) -> None:
        selection = self.table.selectionModel()
        first = True
        for wid in selected:
            source = self.model.row_of(wid)
            if not source.isValid():
                continue
            index = self.proxy.mapFromSource(source)
            flags = QItemSelectionModel.SelectionFlag.Rows | (
                QItemSelectionModel.SelectionFlag.ClearAndSelect if first else QItemSelectionModel.SelectionFlag.Select)
            selection.select(index, flags)
            first = False
        w = self.roster.by_id.get(shown) if shown is not None else None
        if w is not None:
            self.detail.show_worker(w)
        elif shown_death is not None and shown_death in self.roster.deaths:
            self.detail.show_death(shown_death)
        else:
            self.detail.clear()

    # ------------------------------------------------------------ exports

    def incident_samples(self, w: WorkerState) -> dict[str, Any]:
        columns = self.data.workers.get(w.id)
        if columns is None:
            return super().incident_samples(w)
        return {"session_id": self.info.id, **columns.csv_columns()}

    def incident_origin(self) -> dict[str, Any]:
        return {"kind": "replay", "session_file": str(self.session_path), "session_id": self.info.id,
                "host": self.info.host,
                "text": f"session {self.info.id} of {self.session_path} (recorded on {self.info.host})"}


def _span(seconds: float) -> str:
    s = max(0, int(round(seconds)))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"
