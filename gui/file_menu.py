"""What the main window's File menu does: record the session, open a replay, save the plot and
the timeline as PNG, export a dead worker's incident, connect to Prometheus.

A mixin of ``MainWindow`` (the window is big enough without it); it uses the window's engine,
bridge, roster, views and settings, declared below for the reader.
"""

from __future__ import annotations

import platform
import threading
import time
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oomscope.core.engine import Engine
from oomscope.core.errors import Error
from oomscope.core.events import Event, LevelsChanged, SourceChanged
from oomscope.core.thresholds import ThresholdConfig

from .bridge import EngineBridge
from .export_png import save_png
from .message_bar import MessageBar
from .qt import QSettings, QtWidgets
from .recording import Recorder, open_session_recorder, preamble_events
from .roster import Roster, WorkerState

if TYPE_CHECKING:
    from .plot import MemoryPlot
    from .replay import ReplayWindow
    from .window import MainWindow
    from .timeline import KillTimeline

_SESSION_FILTER = "oomscope sessions (*.db);;All files (*)"
_PNG_FILTER = "PNG images (*.png)"


class FileMenu:
    """The File menu's commands, and the recording's state in the status bar."""

    # The window's, used here.
    engine: Engine | None
    read_only: bool
    settings: QSettings
    bridge: EngineBridge
    roster: Roster
    thresholds: ThresholdConfig
    plot: MemoryPlot
    timeline: KillTimeline
    message_bar: MessageBar
    recording_status: QtWidgets.QLabel
    # The File menu's own state (set up by the window's __init__).
    recorder: Recorder | None
    recording_failed: str | None
    replay_windows: list[MainWindow]
    _last_source: SourceChanged | None

    def _as_widget(self) -> QtWidgets.QWidget:
        # A mixin of MainWindow (a QMainWindow): the parent of its dialogs.
        assert isinstance(self, QtWidgets.QWidget)
        return self

    def _as_window(self) -> MainWindow:
        return self  # type: ignore[return-value]  # the mixin is only ever part of MainWindow

    if TYPE_CHECKING:  # the window's methods: declared for the reader, never defined here (they would shadow them)
        def statusBar(self) -> QtWidgets.QStatusBar: ...  # noqa: N802 - Qt's name

        def _update_actions(self) -> None: ...

        def incident_worker(self) -> WorkerState | None: ...

    def _last_dir(self, key: str) -> Path:
        saved = self.settings.value(f"files/{key}")
        path = Path(str(saved)) if saved else Path.home()
        return path if path.is_dir() else Path.home()

    def _remember_dir(self, key: str, path: Path) -> None:
        self.settings.setValue(f"files/{key}", str(path))

    def record_to_dialog(self) -> None:
        if self.engine is None:
            return
        start = self._last_dir("sessions") / time.strftime("oomscope-%Y%m%d-%H%M%S.db")
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self._as_widget(), "Record session to", str(start), _SESSION_FILTER)
        if path:
            self.start_recording(Path(path))

    def start_recording(self, path: Path) -> bool:
        """Record from now on to ``path`` (a new session is added to an existing session file).
        False, with the reason on the message bar, when the file cannot be written."""
        if self.engine is None:
            self.message_bar.show_message("A replay cannot be recorded again: it is a recording already.")
            return False
        self.stop_recording()
        # What the engine has said already is the window's before the recording's first event.
        self.bridge.drain(None)
        config = replace(self.engine.config, thresholds=self.thresholds)
        now = time.time()
        preamble: list[Event] = preamble_events(self.roster.workers, self._last_source, self.thresholds.metric, now)
        # The global levels are the session's settings; a worker's own come as its levels event.
        preamble += [LevelsChanged(now, w.ref, w.override) for w in self.roster.workers
                     if w.alive and w.override is not None]
        try:
            recorder = open_session_recorder(path, self.engine, config, preamble)
        except (Error, OSError) as e:
            self.message_bar.show_message(f"Cannot record to {path}: {e}")
            return False
        self.recorder = recorder
        self.recording_failed = None
        self.bridge.taps.append(recorder)
        self._remember_dir("sessions", path.parent)
        self._show_recording_state()
        self._update_actions()
        self.statusBar().showMessage(f"recording to {recorder.path} (session {recorder.session_id})", 8000)
        return True

    def end_session(self) -> None:
        """The window's session is over (closed, or the app quits): a recording ends with the
        launched workers' exits, so the engine stops them before the file is finished."""
        if self.recorder is not None and self.engine is not None:
            self.engine.stop()
        self.stop_recording()

    def stop_recording(self) -> Path | None:
        """Finish the session file (every event drained so far is in it); its path, or None."""
        recorder = self.recorder
        if recorder is None:
            return None
        self.bridge.drain(None)
        self._detach_recorder(recorder)
        self._show_recording_state()
        self._update_actions()
        if self.recording_failed is None:
            self.statusBar().showMessage(f"session saved to {recorder.path}", 10000)
        return Path(recorder.path)

    def _detach_recorder(self, recorder: Recorder) -> None:
        if recorder in self.bridge.taps:
            self.bridge.taps.remove(recorder)
        self.recorder = None
        try:
            recorder.close()
        except (Error, OSError) as e:
            self.recording_failed = self.recording_failed or str(e)
        if recorder.failed is not None and self.recording_failed is None:
            self.recording_failed = recorder.failed

    def _check_recording(self) -> None:
        """A recording that stopped by itself (disk full) is let go; the live session goes on."""
        recorder = self.recorder
        if recorder is None or recorder.failed is None:
            return
        self.recording_failed = recorder.failed
        self._detach_recorder(recorder)
        self._show_recording_state()
        self._update_actions()
        self.message_bar.show_message(f"Recording to {recorder.path} stopped: {self.recording_failed}. "
                                      "The live session goes on without recording.", "warning")

    def _on_tap_failed(self, tap: object, error: BaseException) -> None:
        if tap is self.recorder and self.recorder is not None:
            self.recording_failed = f"internal error: {error!r}"
            self._detach_recorder(self.recorder)
            self._show_recording_state()
            self._update_actions()

    def _show_recording_state(self) -> None:
        label = self.recording_status
        if self.read_only:
            label.setText("replay (read-only)")
            label.setStyleSheet("")
            label.setToolTip("A recorded session: nothing here starts or signals a process")
        elif self.recorder is not None:
            label.setText(f"● recording to {Path(self.recorder.path).name}")
            label.setStyleSheet("color: rgb(190, 30, 30); font-weight: bold")
            label.setToolTip(f"Recording session {self.recorder.session_id} to {self.recorder.path} "
                             "(File → Stop recording, Ctrl+Shift+R)")
        elif self.recording_failed is not None:
            label.setText(f"recording stopped: {self.recording_failed}")
            label.setStyleSheet("background: rgb(255, 214, 140); color: rgb(110, 50, 0); font-weight: bold; "
                                "padding: 0 4px; border-radius: 3px")
            label.setToolTip("The recording stopped by itself; the live session goes on without it. "
                             "File → Record to… starts a new one (elsewhere, if the disk is full).")
        else:
            label.setText("recording: off")
            label.setStyleSheet("")
            label.setToolTip("File → Record to… writes this session to a file that oomscope open "
                             "(File → Open session…) replays")

    def open_session_dialog(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self._as_widget(), "Open session", str(self._last_dir("sessions")),
                                                        _SESSION_FILTER)
        if path:
            self.open_session_in_background(Path(path))

    def open_session(self, path: Path, session_id: int | None = None) -> ReplayWindow | None:
        """A read-only replay window for a session in ``path`` (the user picks one when the file
        holds several and ``session_id`` is None); None if it cannot be opened or was not chosen."""
        from .replay import open_replay

        try:
            window = open_replay(path, self.settings, session_id=session_id, parent=self._as_widget())
        except Error as e:
            self.message_bar.show_message(f"Cannot open {path}: {e}")
            return None
        if window is None:
            return None
        return self._show_replay(window, path)

    def _show_replay(self, window: ReplayWindow, path: Path) -> ReplayWindow:
        self._remember_dir("sessions", path.parent)
        self.replay_windows.append(window)
        window.destroyed.connect(lambda *_: self.replay_windows.remove(window)
                                 if window in self.replay_windows else None)
        window.show()
        return window

    def open_session_in_background(self, path: Path, session_id: int | None = None) -> Future[Any] | None:
        """As ``open_session``, but the file is read on a thread of its own: a live window keeps
        drawing its workers while an hour of a big fleet is read (seconds). The replay window
        opens when the reading is done; the future says when (None: not opened at all)."""
        from .replay import ReplayWindow, pick_session, read_session

        try:
            info = pick_session(path, session_id=session_id, parent=self._as_widget())
        except Error as e:
            self.message_bar.show_message(f"Cannot open {path}: {e}")
            return None
        if info is None:
            return None
        reading: Future[Any] = Future()

        def read() -> None:
            try:
                reading.set_result(read_session(path, info.id))
            except BaseException as e:  # noqa: BLE001 - handed to the GUI thread, said there
                reading.set_exception(e)

        def show(data: Any) -> None:
            self.statusBar().clearMessage()
            self._show_replay(ReplayWindow(data, info, path, self.settings), path)

        def failed(e: BaseException) -> None:
            self.statusBar().clearMessage()
            self.message_bar.show_message(f"Cannot open {path}: {e}")

        self.statusBar().showMessage(f"reading {path.name}, session {info.id}…")
        threading.Thread(target=read, name="session-reader", daemon=True).start()
        self.bridge.call(reading, on_result=show, on_error=failed)
        return reading

    def _ask_png(self, title: str, stem: str) -> Path | None:
        start = self._last_dir("pictures") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}.png"
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self._as_widget(), title, str(start), _PNG_FILTER)
        if not path:
            return None
        self._remember_dir("pictures", Path(path).parent)
        return Path(path)

    def save_plot_dialog(self) -> None:
        path = self._ask_png("Save plot as PNG", "oomscope-plot")
        if path is not None:
            self.save_plot_png(path)

    def save_timeline_dialog(self) -> None:
        path = self._ask_png("Save timeline as PNG", "oomscope-timeline")
        if path is not None:
            self.save_timeline_png(path)

    def save_plot_png(self, path: Path) -> Path | None:
        self.plot.redraw()
        return self._save_png(self.plot, path, "plot")  # framed: legend, time span, levels

    def save_timeline_png(self, path: Path) -> Path | None:
        self.timeline.refresh()
        return self._save_png(self.timeline.plot_item, path, "timeline")

    def _save_png(self, item: Any, path: Path, what: str) -> Path | None:
        try:
            written = save_png(item, path)
        except Error as e:
            self.message_bar.show_message(f"The {what} was not saved: {e}")
            return None
        self.statusBar().showMessage(f"{what} saved to {written}", 8000)
        return written

    def export_incident_dialog(self) -> None:
        w = self.incident_worker()
        if w is None:
            self.statusBar().showMessage("select a worker that has exited to export its incident", 5000)
            return
        folder = QtWidgets.QFileDialog.getExistingDirectory(self._as_widget(), f"Export the incident of {w.ref.name} (PID {w.ref.pid}) into", str(self._last_dir("incidents")))
        if folder:
            self._remember_dir("incidents", Path(folder))
            self.export_incident(w.id, Path(folder))

    def export_incident(self, worker_id: str, parent_dir: Path) -> Path | None:
        """A folder in ``parent_dir`` with what a bug report about this worker's death needs."""
        from .incident import export_incident

        w = self.roster.by_id.get(worker_id)
        if w is None or w.alive:
            self.message_bar.show_message(f"No incident to export: worker {worker_id} has not exited.")
            return None
        try:
            folder = export_incident(self._as_window(), w, parent_dir)
        except Error as e:
            self.message_bar.show_message(f"The incident was not exported: {e}")
            return None
        self.statusBar().showMessage(f"incident of {w.ref.name} (PID {w.ref.pid}) exported to {folder}", 15000)
        return folder

    def incident_samples(self, w: WorkerState) -> dict[str, Any]:
        """The worker's samples for an incident's CSV: what the window's history holds (time,
        RSS, anon RSS, heap used); a replay has every column from its session file."""
        from .incident import history_columns

        return history_columns(w)

    def incident_origin(self) -> dict[str, Any]:
        """Where an incident's data came from, for its cause.json and README."""
        host = platform.node()
        return {"kind": "live", "host": host, "text": f"a live session on {host}"}

    def connect_prometheus(self) -> None:
        try:
            from .fleet import open_fleet_window
        except ImportError as e:
            self.message_bar.show_message(f"Prometheus as a data source is not available in this build of "
                                          f"oomscope ({e}); oomscope watch --metrics-port still serves metrics.")
            return
        open_fleet_window(self._as_widget())
