"""The live window: a SessionView over the engine's events, the controls that start and signal
processes, the levels sent to the engine, the File menu and the recording.

Composed, not inherited: the replay window (gui/replay.py) builds its own window from the same
SessionView and FileActions, with a time slider and without anything that reaches a process.
"""

from __future__ import annotations

from oomscope.core.engine import Engine
from oomscope.core.thresholds import ThresholdConfig

from .actions import add_view_actions, fill_menu, make_action
from .bridge import EngineBridge
from .dialogs import ConfirmFn, WorkerThresholdsDialog, confirm_terminate
from .engine_levels import EngineLevels
from .file_actions import FileActions
from .incident import IncidentSource, history_columns, live_origin
from .levels_bar import LevelsBar
from .levels_memory import LevelMemory
from .live_controls import LiveControls
from .notify import Notifier, ShowFn
from .qt import QSettings, Qt, QTimer, QtGui, QtWidgets, Signal
from .recording import Recorder
from .replay import ReplayWindow
from .session_events import SessionEvents
from .session_recording import SessionRecording
from .session_view import DEFAULT_SIZE, SessionView



class MainWindow(QtWidgets.QMainWindow):
    worker_exited = Signal(object)  # WorkerExited, after the window has shown it
    demo_requested = Signal()  # the empty plot's "Try the demo" (gui/demo.py's offer_demo answers it)

    def __init__(self, engine: Engine, settings: QSettings, *,
                 thresholds: ThresholdConfig | None = None,
                 confirm: ConfirmFn = confirm_terminate,
                 persist_thresholds: bool = True,
                 notify: ShowFn | None = None) -> None:
        super().__init__()
        self.setObjectName("oomscope-main")
        self.setWindowTitle("oomscope")
        self.engine = engine
        self.settings = settings
        self.view = view = SessionView(thresholds or engine.config.thresholds, self.statusBar(), self)
        self.setCentralWidget(view)
        self.resize(*DEFAULT_SIZE)
        self.bridge = EngineBridge(engine, self)
        self.levels = EngineLevels(engine, self.bridge, view, settings, persist_thresholds)
        self.toolbar = bar = QtWidgets.QToolBar("Main")
        bar.setObjectName("main-toolbar")
        bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        bar.setMovable(False)
        self.controls = controls = LiveControls(engine, self.bridge, view, self.levels, self, settings, confirm)
        for action in (controls.launch_action, controls.attach_action, None, controls.terminate_action,
                       controls.kill_action, controls.terminate_critical_action, None):
            if action is None:
                bar.addSeparator()
            else:
                bar.addAction(action)
        self.levels_bar = LevelsBar(view, self.levels, bar)
        self.addToolBar(bar)
        self.levels.answered.connect(lambda: self.levels_bar.on_announced(None))
        self.notifier = Notifier(self, lambda title, text: view.message_bar.show_message(f"{title}: {text}",
                                                                                         "warning"), notify)
        self.events = SessionEvents(view, self.levels_bar, self.notifier.notify)
        self.bridge.event_dispatched.connect(self.events.handle_event)
        self.events.stopped.connect(lambda: view.say("engine stopped"))
        self.events.worker_exited.connect(self.worker_exited)
        self.files = FileActions(self, view, settings, self.bridge, self.incident_source, ReplayWindow)
        self.recording = SessionRecording(engine, self.bridge, view, self.events, self, settings)
        if controls.pidfd_status is not None:
            self.statusBar().addPermanentWidget(controls.pidfd_status)
        add_view_actions(self, view)
        self.quit_action = make_action(self, "Quit", "Close oomscope (launched workers are terminated)", "Ctrl+Q",
                                       self.close, "quit")
        rec = self.recording
        self.file_menu = fill_menu(self.menuBar().addMenu("&File"), [
            rec.record_action, rec.stop_recording_action, None, *self.files.menu_actions(), None, self.quit_action])
        fill_menu(self.menuBar().addMenu("&Workers"), [
            controls.launch_action, controls.attach_action, None, controls.terminate_action, controls.kill_action,
            controls.terminate_critical_action, None, controls.worker_thresholds_action])
        view.plot.empty_label.demo_clicked.connect(self.demo_requested)
        for changed in (view.selection_changed, view.actions_stale, rec.changed):
            changed.connect(self._update_actions)
        self._status_timer = QTimer(self)
        self._status_timer.setObjectName("status-refresh")
        self._status_timer.timeout.connect(self._update_status)
        self._status_timer.start(1000)
        self._bind_parts()
        self._update_actions()
        view.plot.metric_changed.connect(self._on_metric_changed)
        view.restore_window(self, settings)
        view.open_on_alert_metric()
        self.levels_bar.show_thresholds()
        # An empty window gets its axes too: the clock along the bottom, the plot's MiB scale.
        view.plot.redraw()
        self.bridge.start()

    def _bind_parts(self) -> None:
        """The parts' names on the window, for its callers (app, demo, tests): the same objects."""
        view, controls, files, rec, levels_bar = self.view, self.controls, self.files, self.recording, self.levels_bar
        self.roster, self.model, self.proxy, self.table = view.roster, view.model, view.proxy, view.table
        self.plot, self.timeline, self.detail, self.kernel_pane = view.plot, view.timeline, view.detail, view.kernel_pane
        self.message_bar, self.filter_edit, self.plot_splitter = view.message_bar, view.filter_edit, view.plot_splitter
        self.workers_dock, self.detail_dock, self.kernel_dock = view.workers_dock, view.detail_dock, view.kernel_dock
        self.kernel_lines = view.kernel_lines
        self.selected_workers, self.select_worker, self.open_death = (
            view.selected_workers, view.select_worker, view.open_death)
        self.incident_worker, self.table_menu = view.incident_worker, view.table_menu
        self.handle_event, self.refresh_table = self.events.handle_event, self.events.refresh_table
        self.launch_action, self.attach_action = controls.launch_action, controls.attach_action
        self.terminate_action, self.kill_action = controls.terminate_action, controls.kill_action
        self.terminate_critical_action = controls.terminate_critical_action
        self.worker_thresholds_action = controls.worker_thresholds_action
        self.launch, self.attach, self.attach_children = controls.launch, controls.attach, controls.attach_children
        self.open_launch_dialog, self.open_attach_dialog = controls.open_launch_dialog, controls.open_attach_dialog
        self.open_worker_thresholds = controls.open_worker_thresholds
        self.terminate_selected, self.terminate_critical = controls.terminate_selected, controls.terminate_critical
        self.set_worker_levels = self.levels.apply_worker
        self.alert_metric_box, self.warn_edit, self.crit_edit = (
            levels_bar.alert_metric_box, levels_bar.warn_edit, levels_bar.crit_edit)
        self.set_levels, self.set_alert_metric = levels_bar.set_levels, levels_bar.set_alert_metric
        self.open_session_action, self.save_plot_action = files.open_session_action, files.save_plot_action
        self.save_timeline_action, self.prometheus_action = files.save_timeline_action, files.prometheus_action
        self.export_incident_action, self.replay_windows = files.export_incident_action, files.replay_windows
        self.open_session, self.open_session_in_background = files.open_session, files.open_session_in_background
        self.save_plot_png, self.save_timeline_png = files.save_plot_png, files.save_timeline_png
        self.export_incident = files.export_incident
        self.record_action, self.stop_recording_action = rec.record_action, rec.stop_recording_action
        self.start_recording, self.stop_recording, self.end_session = (
            rec.start_recording, rec.stop_recording, rec.end_session)
        self.recording_status, self.pidfd_status = rec.status, controls.pidfd_status

    @property
    def thresholds(self) -> ThresholdConfig:
        """The global levels shown (the engine's, or a change of the user's on its way there)."""
        return self.view.thresholds

    @property
    def recorder(self) -> Recorder | None:
        return self.recording.recorder

    @property
    def worker_thresholds_dialog(self) -> WorkerThresholdsDialog | None:
        return self.controls.worker_thresholds_dialog

    @property
    def persist_thresholds(self) -> bool:
        return self.levels.persist

    @persist_thresholds.setter
    def persist_thresholds(self, on: bool) -> None:
        self.levels.persist = on

    @property
    def level_memory(self) -> LevelMemory:
        return self.levels.memory

    @level_memory.setter
    def level_memory(self, memory: LevelMemory) -> None:
        self.levels.memory = memory

    def incident_source(self) -> IncidentSource:
        view = self.view
        return IncidentSource(view.roster, view.thresholds, view.kernel_lines, view.plot.shown_metric,
                              view.plot.alert_metric, history_columns, live_origin())

    def _update_actions(self) -> None:
        self.controls.update_actions()
        self.recording.update_actions()
        self.files.update_actions()

    def _update_status(self) -> None:
        self.controls.update_sampling()
        self.recording.check()
        self.view.update_status()

    def _on_metric_changed(self, metric: str) -> None:
        self.settings.setValue("plot/metric", metric)  # a replay leaves it as the live window saved it

    # --------------------------------------------------------------- settings

    def save_settings(self) -> None:
        s = self.settings
        s.setValue("window/geometry", self.saveGeometry())
        self.view.save_layout(s)
        s.sync()

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        self.save_settings()
        self.end_session()
        self.notifier.close()
        self.bridge.stop()
        super().closeEvent(event)
