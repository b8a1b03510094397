"""The File menu's commands every window over a session has: open a replay, save the plot and
the timeline as PNG, export a dead worker's incident, connect to Prometheus. (Recording is the
live window's: gui/session_recording.py.)"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from oomscope.core.errors import Error
from oomscope.core.recording import SessionInfo

from .actions import make_action
from .bridge import EngineBridge
from .export_png import save_png
from .incident import IncidentSource, export_incident
from .qt import QSettings, QtGui, QtWidgets
from .session_data import SessionData, pick_session, read_chosen, read_session
from .session_view import SessionView

SESSION_FILTER = "oomscope sessions (*.db);;All files (*)"
_PNG_FILTER = "PNG images (*.png)"

# How a replay window is made (gui/replay.py's ReplayWindow): handed in, so this module and the
# replay window, which has these actions too, do not import each other.
ReplayFactory = Callable[[SessionData, SessionInfo, Path, QSettings], QtWidgets.QWidget]


def last_dir(settings: QSettings, key: str) -> Path:
    saved = settings.value(f"files/{key}")
    path = Path(str(saved)) if saved else Path.home()
    return path if path.is_dir() else Path.home()


def remember_dir(settings: QSettings, key: str, path: Path) -> None:
    settings.setValue(f"files/{key}", str(path))


class FileActions:
    def __init__(self, host: QtWidgets.QMainWindow, view: SessionView, settings: QSettings, bridge: EngineBridge,
                 incident_source: Callable[[], IncidentSource], make_replay: ReplayFactory) -> None:
        self.host = host
        self.view = view
        self.settings = settings
        self.bridge = bridge
        self.incident_source = incident_source
        self.make_replay = make_replay
        self.replay_windows: list[QtWidgets.QWidget] = []  # replays opened here (File → Open session…)
        self.open_session_action = make_action(
            host, "Open session…", "Replay a recorded session file in a read-only window (it never starts anything)",
            "Ctrl+O", self.open_session_dialog, "open-session")
        self.save_plot_action = make_action(host, "Save plot as PNG…", "Save the memory plot as it is shown now",
                                            "Ctrl+Shift+S", self.save_plot_dialog, "save-plot-png")
        self.save_timeline_action = make_action(host, "Save timeline as PNG…", "Save the kill timeline as it is "
                                                "shown now", None, self.save_timeline_dialog, "save-timeline-png")
        self.export_incident_action = make_action(
            host, "Export incident…", "A folder for a bug report about the selected dead worker: its samples (CSV), "
            "the kernel's lines, cause and evidence (JSON), its memory plot and the timeline around its death",
            "Ctrl+E", self.export_incident_dialog, "export-incident")
        self.prometheus_action = make_action(host, "Connect to Prometheus…", "Show workers from a Prometheus "
                                             "server (oomscope watch --metrics-port on other machines)", None,
                                             self.connect_prometheus, "connect-prometheus")
        view.selection_menu_actions.append(self.export_incident_action)

    def menu_actions(self) -> list[QtGui.QAction | None]:
        """The File menu's part from these actions (None: a separator)."""
        return [self.open_session_action, None, self.save_plot_action, self.save_timeline_action,
                self.export_incident_action, None, self.prometheus_action]

    def update_actions(self) -> None:
        self.export_incident_action.setEnabled(self.view.incident_worker() is not None)

    # ---------------------------------------------------------------- replays

    def open_session_dialog(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self.host, "Open session", str(last_dir(self.settings, "sessions")),
                                                        SESSION_FILTER)
        if path:
            self.open_session_in_background(Path(path))

    def open_session(self, path: Path, session_id: int | None = None) -> QtWidgets.QWidget | None:
        """A read-only replay window for a session in ``path`` (the user picks one when the file
        holds several and ``session_id`` is None); None if it cannot be opened or was not chosen."""
        try:
            chosen = read_chosen(path, session_id=session_id, parent=self.host)
        except Error as e:
            self.view.message_bar.show_message(f"Cannot open {path}: {e}")
            return None
        if chosen is None:
            return None
        info, data = chosen
        return self._show_replay(self.make_replay(data, info, path, self.settings), path)

    def _show_replay(self, window: QtWidgets.QWidget, path: Path) -> QtWidgets.QWidget:
        remember_dir(self.settings, "sessions", path.parent)
        self.replay_windows.append(window)
        window.destroyed.connect(lambda *_: self.replay_windows.remove(window)
                                 if window in self.replay_windows else None)
        window.show()
        return window

    def open_session_in_background(self, path: Path, session_id: int | None = None) -> Future[Any] | None:
        """As ``open_session``, but the file is read on a thread of its own: a live window keeps
        drawing its workers while an hour of a big fleet is read (seconds). The replay window
        opens when the reading is done; the future says when (None: not opened at all)."""
        try:
            info = pick_session(path, session_id=session_id, parent=self.host)
        except Error as e:
            self.view.message_bar.show_message(f"Cannot open {path}: {e}")
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
            self.view.status_bar.clearMessage()
            self._show_replay(self.make_replay(data, info, path, self.settings), path)

        def failed(e: BaseException) -> None:
            self.view.status_bar.clearMessage()
            self.view.message_bar.show_message(f"Cannot open {path}: {e}")

        self.view.say(f"reading {path.name}, session {info.id}…")
        threading.Thread(target=read, name="session-reader", daemon=True).start()
        self.bridge.call(reading, on_result=show, on_error=failed)
        return reading

    # ---------------------------------------------------------------- pictures

    def _ask_png(self, title: str, stem: str) -> Path | None:
        start = last_dir(self.settings, "pictures") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}.png"
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self.host, title, str(start), _PNG_FILTER)
        if not path:
            return None
        remember_dir(self.settings, "pictures", Path(path).parent)
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
        self.view.plot.redraw()
        return self._save_png(self.view.plot, path, "plot")  # framed: legend, time span, levels

    def save_timeline_png(self, path: Path) -> Path | None:
        self.view.timeline.refresh()
        return self._save_png(self.view.timeline.plot_item, path, "timeline")

    def _save_png(self, item: Any, path: Path, what: str) -> Path | None:
        try:
            written = save_png(item, path)
        except Error as e:
            self.view.message_bar.show_message(f"The {what} was not saved: {e}")
            return None
        self.view.say(f"{what} saved to {written}", 8000)
        return written

    # ---------------------------------------------------------------- incidents

    def export_incident_dialog(self) -> None:
        w = self.view.incident_worker()
        if w is None:
            self.view.say("select a worker that has exited to export its incident", 5000)
            return
        folder = QtWidgets.QFileDialog.getExistingDirectory(
            self.host, f"Export the incident of {w.ref.name} (PID {w.ref.pid}) into",
            str(last_dir(self.settings, "incidents")))
        if folder:
            remember_dir(self.settings, "incidents", Path(folder))
            self.export_incident(w.id, Path(folder))

    def export_incident(self, worker_id: str, parent_dir: Path) -> Path | None:
        """A folder in ``parent_dir`` with what a bug report about this worker's death needs."""
        w = self.view.roster.by_id.get(worker_id)
        if w is None or w.alive:
            self.view.message_bar.show_message(f"No incident to export: worker {worker_id} has not exited.")
            return None
        try:
            folder = export_incident(self.incident_source(), w, parent_dir)
        except Error as e:
            self.view.message_bar.show_message(f"The incident was not exported: {e}")
            return None
        self.view.say(f"incident of {w.ref.name} (PID {w.ref.pid}) exported to {folder}", 15000)
        return folder

    # ---------------------------------------------------------------- fleet

    def connect_prometheus(self) -> None:
        try:
            from .fleet import open_fleet_window
        except ImportError as e:
            self.view.message_bar.show_message(f"Prometheus as a data source is not available in this build of "
                                               f"oomscope ({e}); oomscope watch --metrics-port still serves metrics.")
            return
        open_fleet_window(self.host, settings=self.settings)
