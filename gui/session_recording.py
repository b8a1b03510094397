"""File → Record to… and Stop recording: the live session written to a session file that
``oomscope open`` replays, and the recording's state in the status bar."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from oomscope.core.engine import Engine
from oomscope.core.errors import Error
from oomscope.core.events import Event, LevelsChanged

from .actions import make_action
from .bridge import EngineBridge
from .file_actions import SESSION_FILTER, last_dir, remember_dir
from .qt import QObject, QSettings, QtWidgets, Signal
from .recording import Recorder, open_session_recorder, preamble_events
from .session_events import SessionEvents
from .session_view import SessionView


class SessionRecording(QObject):
    changed = Signal()  # started or stopped: the actions that depend on it

    def __init__(self, engine: Engine, bridge: EngineBridge, view: SessionView, events: SessionEvents,
                 host: QtWidgets.QMainWindow, settings: QSettings) -> None:
        super().__init__(host)
        self.engine = engine
        self.bridge = bridge
        self.view = view
        self.events = events
        self.host = host
        self.settings = settings
        self.recorder: Recorder | None = None
        self.recording_failed: str | None = None
        self.record_action = make_action(
            host, "Record to…", "Record this session (samples, thresholds, exits, kernel lines) to a session file "
            "that oomscope open replays", "Ctrl+R", self.record_to_dialog, "record")
        self.stop_recording_action = make_action(host, "Stop recording", "Finish the session file and stop "
                                                 "recording", "Ctrl+Shift+R", self.stop_recording, "stop-recording")
        self.status = QtWidgets.QLabel("recording: off")
        self.status.setObjectName("recording-status")
        view.status_bar.addPermanentWidget(self.status)
        events.notice_seen.connect(self.check)  # the recorder's writer thread reports trouble as a notice
        bridge.tap_failed.connect(self._on_tap_failed)
        self._show_state()

    def update_actions(self) -> None:
        self.stop_recording_action.setEnabled(self.recorder is not None)

    def _changed(self) -> None:
        self._show_state()
        self.update_actions()
        self.changed.emit()

    def record_to_dialog(self) -> None:
        start = last_dir(self.settings, "sessions") / time.strftime("oomscope-%Y%m%d-%H%M%S.db")
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self.host, "Record session to", str(start), SESSION_FILTER)
        if path:
            self.start_recording(Path(path))

    def start_recording(self, path: Path) -> bool:
        """Record from now on to ``path`` (a new session is added to an existing session file).
        False, with the reason on the message bar, when the file cannot be written."""
        self.stop_recording()
        # What the engine has said already is the window's before the recording's first event.
        self.bridge.drain(None)
        view = self.view
        config = replace(self.engine.config, thresholds=view.thresholds)
        now = time.time()
        preamble: list[Event] = preamble_events(view.roster.workers, self.events.last_source,
                                                view.thresholds.metric, now)
        # The global levels are the session's settings; a worker's own come as its levels event.
        preamble += [LevelsChanged(now, w.ref, w.override) for w in view.roster.workers
                     if w.alive and w.override is not None]
        try:
            recorder = open_session_recorder(path, self.engine, config, preamble)
        except (Error, OSError) as e:
            view.message_bar.show_message(f"Cannot record to {path}: {e}")
            return False
        self.recorder = recorder
        self.recording_failed = None
        self.bridge.taps.append(recorder)
        remember_dir(self.settings, "sessions", path.parent)
        self._changed()
        view.say(f"recording to {recorder.path} (session {recorder.session_id})", 8000)
        return True

    def end_session(self) -> None:
        """The window's session is over (closed, or the app quits): a recording ends with the
        launched workers' exits, so the engine stops them before the file is finished."""
        if self.recorder is not None:
            self.engine.stop()
        self.stop_recording()

    def stop_recording(self) -> Path | None:
        """Finish the session file (every event drained so far is in it); its path, or None."""
        recorder = self.recorder
        if recorder is None:
            return None
        self.bridge.drain(None)
        self._detach(recorder)
        self._changed()
        if self.recording_failed is None:
            self.view.say(f"session saved to {recorder.path}", 10000)
        return Path(recorder.path)

    def _detach(self, recorder: Recorder) -> None:
        if recorder in self.bridge.taps:
            self.bridge.taps.remove(recorder)
        self.recorder = None
        try:
            recorder.close()
        except (Error, OSError) as e:
            self.recording_failed = self.recording_failed or str(e)
        if recorder.failed is not None and self.recording_failed is None:
            self.recording_failed = recorder.failed

    def check(self) -> None:
        """A recording that stopped by itself (disk full) is let go; the live session goes on."""
        recorder = self.recorder
        if recorder is None or recorder.failed is None:
            return
        self.recording_failed = recorder.failed
        self._detach(recorder)
        self._changed()
        self.view.message_bar.show_message(f"Recording to {recorder.path} stopped: {self.recording_failed}. "
                                           "The live session goes on without recording.", "warning")

    def _on_tap_failed(self, tap: object, error: BaseException) -> None:
        if tap is self.recorder and self.recorder is not None:
            self.recording_failed = f"internal error: {error!r}"
            self._detach(self.recorder)
            self._changed()

    def _show_state(self) -> None:
        label = self.status
        if self.recorder is not None:
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
