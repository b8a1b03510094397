"""A recorded session, read-only, with a time slider to scrub through it.

``oomscope open FILE.db`` and *File → Open session…* show a SessionView (the live window's
table, plot, timeline and panes) fed recorded events instead of an engine's: there is no engine
at all, and none of the controls that start or signal a process, so nothing stored in the file
(a command line) can ever be run.

Scrubbing: the session is read from the file once (gui/session_data.py). Samples are kept as
per-worker numpy columns; every other event (starts, level crossings, changed levels, exits,
kernel lines…) as a list in the engine's order. The state at time T is rebuilt from scratch —
the levels the session began with, the other events up to T re-fed through the view's own
handlers, each worker's history filled from its columns with one numpy slice — when the slider
is released (or a key moves it), not on every pixel of a drag. The cost of a rebuild is the
number of non-sample events up to T plus one slice per worker: the samples, which are most of a
big file, are never walked one by one.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from oomscope.core.events import CauseUpdated, WorkerExited
from oomscope.core.recording import SessionInfo

from .actions import add_view_actions, fill_menu, make_action
from .bridge import EngineBridge, NoEvents
from .file_actions import FileActions
from .incident import IncidentSource, history_columns
from .levels_bar import LevelsBar, RecordedLevels
from .qt import QSettings, Qt, QTimer, QtGui, QtWidgets
from .roster import Death, WorkerState
from .session_data import ChooseFn, SessionChoiceDialog, SessionData, choose_session, clock, read_chosen, \
    session_label, thresholds_of
from .session_events import SessionEvents
from .session_view import DEFAULT_SIZE, SessionView

__all__ = ["ReplayWindow", "SessionChoiceDialog", "open_replay"]

# Slider steps per second of session: a tenth of a second is finer than any sampling interval
# a user scrubs through, and an hour is 36,000 steps (a QSlider holds 2^31).
STEPS_PER_S = 10
_KEY_SETTLE_MS = 150  # a held arrow key moves the slider many times: rebuild once it rests


def open_replay(path: Path, settings: QSettings, *, session_id: int | None = None,
                parent: QtWidgets.QWidget | None = None, choose: ChooseFn = choose_session) -> ReplayWindow | None:
    """Read a session of ``path`` into a new replay window (not shown yet), on this thread; None
    when the user cancels the choice. Raises ``BadInput`` for a file that is not a session."""
    chosen = read_chosen(path, session_id=session_id, parent=parent, choose=choose)
    if chosen is None:
        return None
    info, data = chosen
    return ReplayWindow(data, info, path, settings)


# ------------------------------------------------------------------ the window


class ReplayWindow(QtWidgets.QMainWindow):
    """A SessionView over a recorded session, with a time slider; read-only."""

    def __init__(self, data: SessionData, info: SessionInfo, path: Path, settings: QSettings) -> None:
        super().__init__()
        self.setObjectName("oomscope-replay")
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(info.started))
        self.setWindowTitle(f"oomscope replay — {path.name} (session {info.id}, {info.host or 'unknown host'}, "
                            f"{when})")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.data = data
        self.info = info
        self.session_path = path
        self.settings = settings
        self.shown_at = data.t_end
        self._cursors: dict[str, int] = {}  # worker id -> samples of its columns in its history
        # The levels the session began with; its ``levels`` events change them as the slider passes.
        self.recorded_thresholds = thresholds_of(info.settings)
        self.view = view = SessionView(self.recorded_thresholds, self.statusBar(), self)
        self.setCentralWidget(view)
        self.resize(*DEFAULT_SIZE)
        # A queue that stays empty: the recorded events are fed by show_at; the bridge answers
        # the futures of File → Open session… read in the background.
        self.bridge = EngineBridge(NoEvents(), self)
        self.toolbar = bar = QtWidgets.QToolBar("Main")
        bar.setObjectName("main-toolbar")
        bar.setMovable(False)
        self.levels_bar = LevelsBar(view, RecordedLevels(), bar)
        self.levels_bar.display_only()
        self.addToolBar(bar)
        # Desktop notifications go nowhere: a replay tells of the past.
        self.events = SessionEvents(view, self.levels_bar, lambda _title, _text: None)
        self.bridge.event_dispatched.connect(self.events.handle_event)
        self.files = FileActions(self, view, settings, self.bridge, self.incident_source, ReplayWindow)
        add_view_actions(self, view)
        quit_action = make_action(self, "Quit", "Close this replay", "Ctrl+Q", self.close, "quit")
        self.file_menu = fill_menu(self.menuBar().addMenu("&File"), [*self.files.menu_actions(), None, quit_action])
        for changed in (view.selection_changed, view.actions_stale):
            changed.connect(self.files.update_actions)
        mode = QtWidgets.QLabel("replay (read-only)")
        mode.setObjectName("recording-status")
        mode.setToolTip("A recorded session: nothing here starts or signals a process")
        self.statusBar().addPermanentWidget(mode)
        view.kernel_source = "not recorded"
        interval = info.settings.get("interval_s") if isinstance(info.settings, dict) else None
        view.sampling_status.setText(f"recorded every {interval:g} s" if isinstance(interval, (int, float))
                                     else "recorded session")
        view.sampling_status.setToolTip(f"{path}\n" + session_label(info))
        # The user's layout as the live window saved it; a replay never saves one.
        view.restore_window(self, settings)
        view.open_on_alert_metric()
        view.plot.empty_label.setText("No workers at this time — move the slider later")
        view.plot.set_window(None)  # the whole session up to the slider's time
        self.roster, self.plot, self.timeline, self.detail = view.roster, view.plot, view.timeline, view.detail
        self.model, self.proxy, self.table, self.message_bar = view.model, view.proxy, view.table, view.message_bar
        self.selected_workers, self.select_worker, self.open_death = (
            view.selected_workers, view.select_worker, view.open_death)
        self.table_menu, self.export_incident_action = view.table_menu, self.files.export_incident_action
        self.export_incident = self.files.export_incident
        self.alert_metric_box, self.warn_edit, self.crit_edit = (
            self.levels_bar.alert_metric_box, self.levels_bar.warn_edit, self.levels_bar.crit_edit)
        self.bridge.start()
        self._build_slider()
        self.show_at(data.t_end)

    @property
    def kernel_pane(self) -> Any:
        return self.view.kernel_pane

    @property
    def thresholds(self) -> Any:
        return self.view.thresholds

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        self.bridge.stop()
        super().closeEvent(event)

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
            self.end_label.setText(f" ended by a crash; recorded up to {clock(self.data.t_end)} ")
            self.end_label.setStyleSheet("background: rgb(255, 214, 140); color: rgb(110, 50, 0); "
                                         "font-weight: bold; padding: 2px 4px; border-radius: 3px")
            self.end_label.setToolTip("The recording has no end mark: oomscope did not stop normally (or is "
                                      "still recording). Everything up to its last written batch is here.")
        else:
            self.end_label.setText(f" recorded {clock(self.data.t_start)} – {clock(self.data.t_end)} ")
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
        self.time_label.setText(f" at {clock(t)} ({_span(into)} of {_span(total)}) ")

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
            self.view.kernel_lines.clear()
            self.view.replace_kernel_pane().set_source("not recorded", False,
                                                       "the session holds no kernel log source state")
            self.events.oom_notified.clear()
            self.table.setRootIsDecorated(False)
            self._cursors = {}
            self.view.thresholds = self.recorded_thresholds
            n = int(np.searchsorted(self.data.times, t, side="right"))
            for ev in self.data.events[:n]:
                if isinstance(ev, (WorkerExited, CauseUpdated)):
                    self._catch_up(ev.worker.id, ev.t)  # its last samples before its exit
                self.bridge.dispatch(ev)
            for wid in list(self.roster.by_id):
                self._catch_up(wid, t)
        finally:
            self.message_bar.muted = False
        self.levels_bar.show_thresholds()
        self.plot.update_metric_choices()
        self.model.refresh_values()
        self.timeline.refresh()
        self._restore_view(selected, shown, shown_death)
        self._end_view_at(t)
        self.view.update_status()
        self.files.update_actions()
        self.statusBar().showMessage(f"replay at {clock(t)}", 4000)

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

    def _restore_view(self, selected: list[str], shown: str | None, shown_death: Death | None) -> None:
        self.view.select_workers(selected)
        w = self.roster.by_id.get(shown) if shown is not None else None
        if w is not None:
            self.detail.show_worker(w)
        elif shown_death is not None and shown_death in self.roster.deaths:
            self.detail.show_death(shown_death)
        else:
            self.detail.clear()

    # ------------------------------------------------------------ exports

    def incident_samples(self, w: WorkerState) -> dict[str, Any]:
        """A worker's samples for an incident's CSV: every column, from the session file."""
        columns = self.data.workers.get(w.id)
        if columns is None:
            return history_columns(w)
        return {"session_id": self.info.id, **columns.csv_columns()}

    def incident_source(self) -> IncidentSource:
        view = self.view
        origin = {"kind": "replay", "session_file": str(self.session_path), "session_id": self.info.id,
                  "host": self.info.host,
                  "text": f"session {self.info.id} of {self.session_path} (recorded on {self.info.host})"}
        return IncidentSource(view.roster, view.thresholds, view.kernel_lines, view.plot.shown_metric,
                              view.plot.alert_metric, self.incident_samples, origin)


def _span(seconds: float) -> str:
    s = max(0, int(round(seconds)))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"
