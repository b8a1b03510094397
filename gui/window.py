"""The main window: worker table, memory plot, kill timeline, detail pane, kernel log."""

from __future__ import annotations

import functools

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from oomscope.core.engine import Engine
from oomscope.core.errors import BadInput, Error
from oomscope.core.dispatch import Dispatcher
from oomscope.core.events import (
    CauseUpdated,
    CrashLoop,
    Doctor,
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
from oomscope.core.causes import HEAP_OOM, OOM_KILL
from oomscope.core.launch import LaunchSpec
from oomscope.core.restart import RestartPolicy
from oomscope.core.sizes import Level, format_size, parse_level
from oomscope.core.thresholds import CRITICAL, LEVEL_RANK, ThresholdConfig

from .advice import advice_plain
from .bridge import EngineBridge, EventSource
from .detail import DetailPane
from .dialogs import AttachDialog, ConfirmFn, LaunchDialog, WorkerThresholdsDialog, confirm_terminate, level_text
from .file_menu import FileMenu
from .kernel_pane import KernelLogPane
from .message_bar import MessageBar
from .models import COL_ANON, COL_HEAP, COL_LIMIT, COL_NAME, COL_PERCENT, COL_PID, COL_RSS, COL_STATE, \
    COL_TREND, WorkerFilterProxy, WorkerTreeModel
from .notify import Notifier, ShowFn
from .history import METRIC_LABELS
from .keys import SearchKeys
from .kill_report import context_lines
from .plot import WINDOWS, MemoryPlot
from .qt import QItemSelectionModel, QSettings, Qt, QTimer, QtCore, QtGui, QtWidgets, Signal
from .recording import Recorder
from .roster import Death, Roster, WorkerState
from .throttle import Throttle
from .timeline import KillTimeline, stacked_with_timeline

_TABLE_REFRESH_S = 0.25
# The plot's metric names and the engine's: the engine compares "heap" where the plot draws "heap used".
# The cgroup's usage is plotted only: the engine's levels do not compare it.
_ENGINE_METRIC = {"rss": "rss", "anon": "anon", "heap_used": "heap"}
_PLOT_METRIC = {engine: plot for plot, engine in _ENGINE_METRIC.items()}
_KERNEL_LINES_KEPT = 5000
_FRAME_ALLOWANCE = (8, 40)  # px a window manager's frame takes, horizontally and vertically
# The plot and timeline keep at least this share of the window's height when it shrinks: the
# docks below give way first (down to their minimum), not the plot.
_PLOT_SHARE = 0.5  # for an incident's kernel.log: the lines around a death


def alert_metric_label(engine_metric: str) -> str:
    """How the window names the metric the levels compare: "RSS", "anon RSS", "heap used"."""
    return METRIC_LABELS.get(_PLOT_METRIC.get(engine_metric, ""), engine_metric)


class MainWindow(FileMenu, QtWidgets.QMainWindow):
    worker_exited = Signal(object)  # WorkerExited, after the window has shown it
    demo_requested = Signal()  # the empty plot's "Try the demo" (gui/demo.py's offer_demo answers it)

    def __init__(self, engine: Engine | EventSource, settings: QSettings, *,
                 thresholds: ThresholdConfig | None = None,
                 confirm: ConfirmFn = confirm_terminate,
                 persist_thresholds: bool = True,
                 notify: ShowFn | None = None) -> None:
        """``engine`` is the live engine; any other event source (a recorded session's) makes a
        read-only window: no command reaches a process, and the actions that would are disabled."""
        super().__init__()
        self.setObjectName("oomscope-main")
        self.setWindowTitle("oomscope")
        self.engine: Engine | None = engine if isinstance(engine, Engine) else None
        self.read_only = self.engine is None
        self.settings = settings
        self.confirm = confirm
        self.persist_thresholds = persist_thresholds and not self.read_only
        self.persist_layout = not self.read_only  # a replay leaves the user's layout as the live window saved it
        if thresholds is None:
            thresholds = self.engine.config.thresholds if self.engine is not None else ThresholdConfig()
        self.thresholds = thresholds
        # Global levels sent to the engine and not answered yet (see _settle_levels).
        self._levels_in_flight = 0
        self.roster = Roster()
        self.bridge = EngineBridge(engine, self)
        self.model = WorkerTreeModel(self.roster, self)
        self.proxy = WorkerFilterProxy(self)
        self.proxy.setSourceModel(self.model)
        self._kernel_source = "starting…"
        self._cpu_mark = (time.monotonic(), self.engine.sampling_cpu_s if self.engine is not None else 0.0)
        # Kept for incident exports (the kernel pane keeps its own copy for display).
        self.kernel_lines: deque[KernelLineRead] = deque(maxlen=_KERNEL_LINES_KEPT)
        self._last_source: SourceChanged | None = None
        self.recorder: Recorder | None = None
        self.recording_failed: str | None = None
        self.replay_windows: list[MainWindow] = []  # replays this window opened (File → Open session…)
        self._build_views()
        self._build_actions()
        self._build_status()
        self.notifier = Notifier(self, lambda title, text: self.message_bar.show_message(f"{title}: {text}",
                                                                                         "warning"), notify)
        self._oom_notified: set[str] = set()  # worker ids already announced as memory deaths
        self._connect_bridge()
        self.refresh_table = Throttle(self._refresh_values, _TABLE_REFRESH_S, "table-refresh", self)
        self._status_timer = QTimer(self)
        self._status_timer.setObjectName("status-refresh")
        self._status_timer.timeout.connect(self._update_status)
        self._status_timer.start(1000)
        if not self.read_only:
            hint = self.plot.empty_label
            hint.set_buttons({"launch", "attach"})
            hint.launch_clicked.connect(self.open_launch_dialog)
            hint.attach_clicked.connect(self.open_attach_dialog)
            hint.demo_clicked.connect(self.demo_requested)
        self._restore_settings()
        if self.thresholds.metric != "rss":
            # Alerts on heap or anon (--metric, the settings file, the Alerts on box last time):
            # the plot opens on that metric, where its levels are drawn; the Metric box can leave it.
            self.plot.set_metric(_PLOT_METRIC[self.thresholds.metric])
        self._show_thresholds()
        # An empty window gets its axes too: the clock along the bottom, the plot's MiB scale.
        self.plot.redraw()
        self.bridge.start()

    # ---------------------------------------------------------------- layout

    def _build_views(self) -> None:
        self.plot = MemoryPlot(self.roster)
        self.plot.threshold_moved.connect(self._on_threshold_moved)
        self.plot.metric_changed.connect(self._on_metric_changed)
        self.timeline = KillTimeline(self.roster)
        self.timeline.link_x(self.plot.plot_item)
        self.timeline.death_clicked.connect(self._on_death_clicked)
        split = stacked_with_timeline(self.plot, self.timeline, "Kill timeline",
                                      "One marker per worker death; shapes and colours tell the cause",
                                      (500, 190))
        # Floats over the plot's bottom edge, outside every layout: it never moves a row of the
        # table or a marker of the timeline, and hides no row the user is about to click.
        self.message_bar = MessageBar(self.plot)
        split.setObjectName("plot-splitter")
        self.plot_splitter = split
        self.setCentralWidget(split)

        table_box = QtWidgets.QWidget()
        table_layout = QtWidgets.QVBoxLayout(table_box)
        table_layout.setContentsMargins(4, 4, 4, 4)
        self.filter_edit = QtWidgets.QLineEdit()
        self.filter_edit.setObjectName("worker-filter")
        self.filter_edit.setPlaceholderText("Filter workers (Ctrl+F)")
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.setToolTip("Show only workers whose name, PID or state contains this text")
        self.filter_edit.textChanged.connect(self.proxy.setFilterFixedString)
        table_layout.addWidget(self.filter_edit)
        self.table = QtWidgets.QTreeView()
        self.table.setObjectName("worker-table")
        self.table.setModel(self.proxy)
        self.table.setRootIsDecorated(False)
        self.table.setUniformRowHeights(True)
        self.table.setAlternatingRowColors(False)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(-1, Qt.SortOrder.AscendingOrder)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._on_table_menu)
        self.table.setToolTip("")
        self.table.selectionModel().selectionChanged.connect(self._on_selection_changed)
        header = self.table.header()
        header.setStretchLastSection(False)
        # Wide enough, in the default 1400 px window, for what the columns usually hold: a name
        # with its id and "· slot 4 · life 2" under the tree's indent and swatch, "exited: oom-kill (SIGKILL)",
        # "1017.5 MiB / 4.0 GiB", "+241.2 MiB/min".
        for col, width in ((COL_NAME, 214), (COL_PID, 48), (COL_STATE, 164), (COL_RSS, 70), (COL_ANON, 70),
                           (COL_HEAP, 124), (COL_PERCENT, 62), (COL_TREND, 108), (COL_LIMIT, 76)):
            header.resizeSection(col, width)
        header.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        header.customContextMenuRequested.connect(self._on_header_menu)
        header.setToolTip("Click to sort; right-click to choose columns")
        table_layout.addWidget(self.table, 1)
        self.filter_keys = SearchKeys(self.filter_edit, self.table)
        self.workers_dock = self._dock("Workers", "workers-dock", table_box, Qt.DockWidgetArea.BottomDockWidgetArea)

        self.detail = DetailPane(roster=self.roster)
        self.detail.context_for = lambda record: context_lines(record, self.kernel_lines)
        # Scrolled: a dead worker's story (wrapped header, doctor's advice, samples) at a third of a
        # 1024 px screen's width is taller than the dock, and a dock's minimum height is taken
        # from the plot (seen: an 80 px plot at 1024x700).
        detail_scroll = QtWidgets.QScrollArea()
        detail_scroll.setObjectName("details-scroll")
        detail_scroll.setWidgetResizable(True)
        detail_scroll.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
        detail_scroll.setWidget(self.detail)
        self.detail_dock = self._dock("Details", "details-dock", detail_scroll, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.kernel_pane = KernelLogPane()
        self.kernel_pane.worker_clicked.connect(self.select_worker)
        self.kernel_dock = self._dock("Kernel log", "kernel-dock", self.kernel_pane,
                                      Qt.DockWidgetArea.BottomDockWidgetArea)
        self.splitDockWidget(self.workers_dock, self.detail_dock, Qt.Orientation.Horizontal)
        self.tabifyDockWidget(self.detail_dock, self.kernel_dock)
        self.detail_dock.raise_()
        self.resize(1400, 900)
        self.resizeDocks([self.workers_dock], [345], Qt.Orientation.Vertical)
        self.resizeDocks([self.workers_dock, self.detail_dock], [950, 450], Qt.Orientation.Horizontal)

    def _dock(self, title: str, name: str, widget: QtWidgets.QWidget, area: Qt.DockWidgetArea) -> QtWidgets.QDockWidget:
        dock = QtWidgets.QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        dock.setFeatures(QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetFloatable
                         | QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetClosable)
        self.addDockWidget(area, dock)
        return dock

    def _action(self, text: str, tip: str, shortcut: str | Sequence[str] | None, slot: Any,
                name: str) -> QtGui.QAction:
        action = QtGui.QAction(text, self)
        action.setObjectName(name)
        if shortcut is not None:
            keys = [shortcut] if isinstance(shortcut, str) else list(shortcut)
            action.setShortcuts([QtGui.QKeySequence(k) for k in keys])
            tip += f" ({', '.join(keys)})"
        action.setToolTip(tip)
        action.setStatusTip(tip)
        action.triggered.connect(slot)
        self.addAction(action)
        return action

    def _build_actions(self) -> None:
        self.launch_action = self._action("Launch…", "Start a command as a worker, optionally under a memory "
                                          "limit", "Ctrl+L", self.open_launch_dialog, "launch")
        self.attach_action = self._action("Attach…", "Watch running processes, or the children of a pool "
                                          "master", "Ctrl+Shift+A", self.open_attach_dialog, "attach")
        self.terminate_action = self._action("Terminate", "SIGTERM the selected workers, SIGKILL after the "
                                             "grace period", "Delete", lambda: self.terminate_selected(False),
                                             "terminate")
        self.kill_action = self._action("Kill now", "SIGKILL the selected workers at once", "Shift+Delete",
                                        lambda: self.terminate_selected(True), "kill")
        self.terminate_critical_action = self._action(
            "Terminate all critical", "Terminate every worker at or above the critical level",
            "Ctrl+Shift+Delete", self.terminate_critical, "terminate-critical")
        self.worker_thresholds_action = self._action(
            "Thresholds for this worker…", "Give the selected worker its own warning and critical levels "
            "(or back to the global ones)", "Ctrl+T", self.open_worker_thresholds, "worker-thresholds")
        self._action("Follow", "Pause or resume following the newest samples", "Space",
                     lambda: self.plot.set_follow(not self.plot.follow), "toggle-follow")
        self._action("Filter", "Filter the worker table", "Ctrl+F", self.filter_edit.setFocus, "focus-filter")
        self.quit_action = self._action("Quit", "Close oomscope (launched workers are terminated)", "Ctrl+Q",
                                        self.close, "quit")
        for n, (label, _seconds) in enumerate(WINDOWS, 1):
            self._action(f"Window {label}", f"Show the last {label} of history", str(n),
                         lambda _c=False, i=n - 1: self.plot.window_box.setCurrentIndex(i), f"window-{n}")
        self.record_action = self._action(
            "Record to…", "Record this session (samples, thresholds, exits, kernel lines) to a session file "
            "that oomscope open replays", "Ctrl+R", self.record_to_dialog, "record")
        self.stop_recording_action = self._action("Stop recording", "Finish the session file and stop recording",
                                                  "Ctrl+Shift+R", self.stop_recording, "stop-recording")
        self.open_session_action = self._action(
            "Open session…", "Replay a recorded session file in a read-only window (it never starts anything)",
            "Ctrl+O", self.open_session_dialog, "open-session")
        self.save_plot_action = self._action("Save plot as PNG…", "Save the memory plot as it is shown now",
                                             "Ctrl+Shift+S", self.save_plot_dialog, "save-plot-png")
        self.save_timeline_action = self._action("Save timeline as PNG…", "Save the kill timeline as it is shown now",
                                                 None, self.save_timeline_dialog, "save-timeline-png")
        self.export_incident_action = self._action(
            "Export incident…", "A folder for a bug report about the selected dead worker: its samples (CSV), "
            "the kernel's lines, cause and evidence (JSON), its memory plot and the timeline around its death",
            "Ctrl+E", self.export_incident_dialog, "export-incident")
        self.prometheus_action = self._action("Connect to Prometheus…", "Show workers from a Prometheus server "
                                              "(oomscope watch --metrics-port on other machines)", None,
                                              self.connect_prometheus, "connect-prometheus")
        self._build_menus()

        bar = QtWidgets.QToolBar("Main")
        bar.setObjectName("main-toolbar")
        bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        bar.setMovable(False)
        for action in (self.launch_action, self.attach_action):
            bar.addAction(action)
        bar.addSeparator()
        for action in (self.terminate_action, self.kill_action, self.terminate_critical_action):
            bar.addAction(action)
        bar.addSeparator()
        # What the levels, and so the alerts and the actions at warning and critical, compare. A
        # control of its own: the plot's Metric box only changes what is drawn, so looking at heap
        # never silently moves a worker over its RSS critical back to "running".
        self.alert_metric_box = QtWidgets.QComboBox()
        self.alert_metric_box.setObjectName("alert-metric")
        self.alert_metric_box.setToolTip("The metric the warning and critical levels compare: what the alerts, "
                                         "the actions at critical, the trend and its forecasts use (--metric). "
                                         "The plot's Metric box does not change it")
        for plot_metric in _ENGINE_METRIC:
            self.alert_metric_box.addItem(METRIC_LABELS[plot_metric], _ENGINE_METRIC[plot_metric])
        self.alert_metric_box.activated.connect(self._on_alert_metric_chosen)
        bar.addWidget(QtWidgets.QLabel(" Alerts on: "))
        bar.addWidget(self.alert_metric_box)
        self.warn_edit = self._level_edit("warning", "Warning level: a size (400MiB, 1.5G) or a percent of "
                                          "the worker's limit (75%); empty: none. Enter applies; or drag the "
                                          "amber line")
        self.crit_edit = self._level_edit("critical", "Critical level: a size (600MiB) or a percent of the "
                                          "worker's limit (90%); empty: none. Enter applies; or drag the red line")
        bar.addWidget(QtWidgets.QLabel(" Warning: "))
        bar.addWidget(self.warn_edit)
        bar.addWidget(QtWidgets.QLabel("  Critical: "))
        bar.addWidget(self.crit_edit)
        self.addToolBar(bar)
        self.toolbar = bar
        if self.read_only:
            for edit in (self.warn_edit, self.crit_edit):
                edit.setReadOnly(True)
                edit.setEnabled(False)
            self.alert_metric_box.setEnabled(False)
            for line in self.plot.lines.values():
                line.setMovable(False)
        self._update_actions()

    def _build_menus(self) -> None:
        menus = self.menuBar()
        file_menu = menus.addMenu("&File")
        file_menu.setToolTipsVisible(True)
        for action in (self.record_action, self.stop_recording_action, None, self.open_session_action, None,
                       self.save_plot_action, self.save_timeline_action, self.export_incident_action, None,
                       self.prometheus_action, None, self.quit_action):
            if action is None:
                file_menu.addSeparator()
            else:
                file_menu.addAction(action)
        workers = menus.addMenu("&Workers")
        workers.setToolTipsVisible(True)
        for action in (self.launch_action, self.attach_action, None, self.terminate_action, self.kill_action,
                       self.terminate_critical_action, None, self.worker_thresholds_action):
            if action is None:
                workers.addSeparator()
            else:
                workers.addAction(action)
        self.file_menu = file_menu

    def _level_edit(self, name: str, tip: str) -> QtWidgets.QLineEdit:
        edit = QtWidgets.QLineEdit()
        edit.setObjectName(f"{name}-level")
        edit.setToolTip(tip)
        edit.setPlaceholderText("none")
        edit.setFixedWidth(90)
        edit.editingFinished.connect(self._on_level_edited)
        return edit

    def _build_status(self) -> None:
        status = self.statusBar()
        self.source_status = QtWidgets.QLabel("kernel log: starting…")
        self.source_status.setToolTip("Kernel log source: where OOM kill records come from")
        self.sampling_status = QtWidgets.QLabel("")
        self.sampling_status.setToolTip("Sampling interval, and the engine's CPU time spent sampling")
        self.workers_status = QtWidgets.QLabel("no workers")
        self.workers_status.setToolTip("Workers watched now, and how many have exited")
        self.recording_status = QtWidgets.QLabel("recording: off")
        self.recording_status.setObjectName("recording-status")
        self.recording_status.setToolTip("File → Record to… writes this session to a file that "
                                         "oomscope open (File → Open session…) replays")
        for label in (self.source_status, self.sampling_status, self.workers_status, self.recording_status):
            status.addPermanentWidget(label)
        self.pidfd_status: QtWidgets.QLabel | None = None
        if self.engine is not None and self.engine.pidfd_fallback is not None:
            # The engine's notice fades from the message bar; the weaker signalling stays.
            self.pidfd_status = QtWidgets.QLabel("no pidfd: start-time checks")
            self.pidfd_status.setObjectName("pidfd-status")
            self.pidfd_status.setToolTip(self.engine.pidfd_fallback)
            status.addPermanentWidget(self.pidfd_status)
        self._show_recording_state()
        self._update_status()

    def _connect_bridge(self) -> None:
        b = self.bridge
        self.handle_event: Dispatcher[object] = Dispatcher({
            WorkerStarted: self._on_worker_added,
            WorkerAttached: self._on_worker_added,
            Samples: self._on_samples_added,
            Threshold: self._on_threshold_crossed,
            LevelsChanged: self._on_levels_changed,
            Terminate: self._on_terminate_sent,
            WorkerExited: self._on_worker_exited,
            CauseUpdated: self._on_cause_updated,
            CrashLoop: self._on_crash_loop,
            Output: self._on_output_received,
            Notice: self._on_notice_received,
            KernelLineRead: self._on_kernel_line_received,
            KernelOom: self._on_kernel_oom_received,
            SourceChanged: self._on_source_changed,
            Heap: self._on_heap_reported,
            ThreadExited: self._on_thread_exited,
            Doctor: self._on_advice_given,
            LevelPending: self._on_level_pending,
            Stopped: lambda _ev: self.statusBar().showMessage("engine stopped"),
        }, name="window")
        b.event_dispatched.connect(self.handle_event)
        b.tap_failed.connect(self._on_tap_failed)

    # ----------------------------------------------------------- engine events

    def _on_worker_added(self, ev: WorkerStarted | WorkerAttached) -> None:
        self.model.add_worker(ev)
        self._update_status()
        self.plot.request_redraw()

    def _on_samples_added(self, ev: Samples) -> None:
        had = (self.roster.any_heap(), self.roster.any_cgroup_usage())
        self.roster.on_samples(ev)
        if had != (self.roster.any_heap(), self.roster.any_cgroup_usage()):
            self.plot.update_metric_choices()  # heap used, cgroup usage: offered once someone has it
        self.refresh_table()
        self.plot.request_redraw()

    def _refresh_values(self) -> None:
        """The table's numbers, and the detail pane's when it shows a running worker: the two
        must never tell different stories about the same worker."""
        self.model.refresh_values()
        shown = self.detail.worker
        if shown is not None and shown.alive:
            self.detail.refresh()

    def _on_level_pending(self, ev: LevelPending) -> None:
        """Above a level, not yet for the sustain time: the State column counts it up."""
        self._show_worker_changed(self.roster.on_pending(ev))

    def _on_threshold_crossed(self, ev: Threshold) -> None:
        w = self.roster.on_threshold(ev)
        self._show_worker_changed(w)
        self._update_actions()  # "Terminate all critical" is there only while someone is
        # Entering a level (not coming down to it) whose action, in the worker's own levels or
        # else the global ones, is "notify": as the settings file's on_warn / on_crit say.
        config = w.override if w is not None and w.override is not None else self.thresholds
        if LEVEL_RANK[ev.level] > LEVEL_RANK[ev.previous] and config.action(ev.level) == "notify":
            metric = _PLOT_METRIC.get(ev.metric, ev.metric).replace("_", " ")
            limit = f" ({ev.level} level {format_size(ev.limit)})" if ev.limit else ""
            self._notify(f"oomscope: {ev.worker.name} is {ev.level}",
                         f"{ev.worker.name} ({ev.worker.id}, PID {ev.worker.pid}): {metric} "
                         f"{format_size(ev.value)}{limit}")

    def _on_levels_changed(self, ev: LevelsChanged) -> None:
        """Levels the engine applies from now on; in a replay, the levels in force from then on.

        Never sent back to the engine."""
        if ev.worker is None:
            self._settle_levels(ev.thresholds)
            return
        w = self.roster.by_id.get(ev.worker.id)
        if w is None or w.override == ev.thresholds:
            return
        w.override = ev.thresholds
        self.model.worker_changed(w)
        self._show_plot_levels()
        self.plot.request_redraw()
        if self.detail.worker is w:
            self.detail.refresh()

    def _settle_levels(self, recorded: ThresholdConfig | None) -> None:
        """Show the global levels in force. A replay shows the recorded ones. The live window
        shows its own changes before the engine has them, and takes the engine's value (an
        immutable one, safe to read here) only when none of its changes is on the way: an echo
        of an earlier change must not move a line back or rewrite a level field being typed in,
        and a change made elsewhere (another caller of the engine) is shown once it settles."""
        if self.engine is not None:
            if self._levels_in_flight:
                return
            recorded = self.engine.thresholds
        if recorded is None or recorded == self.thresholds:
            return
        self.thresholds = recorded
        self._show_thresholds()

    def _on_terminate_sent(self, ev: Terminate) -> None:
        w = self.roster.on_terminate(ev)
        if w is not None:
            self.model.worker_changed(w)
        self.statusBar().showMessage(f"{ev.worker.name} ({ev.worker.id}): {ev.signal} sent by {ev.by}"
                                     + (f" — {ev.reason}" if ev.reason else ""), 8000)

    def _on_worker_exited(self, ev: WorkerExited) -> None:
        w, _death = self.roster.on_exit(ev)
        if w is not None:
            self.model.worker_changed(w)
        self.timeline.refresh()
        self.kernel_pane.tie_record(ev.oom, ev.worker.id)
        if self.detail.worker is w and w is not None:
            self.detail.refresh()
        self.statusBar().showMessage(f"{ev.worker.name} ({ev.worker.id}, PID {ev.worker.pid}) "
                                     f"{w.state_text() if w else 'exited: ' + ev.cause}", 10000)
        self._update_status()
        self._update_actions()
        self._show_plot_levels()
        self.plot.request_redraw()
        self._notify_memory_death(ev.worker, ev.cause, ev.restart_in_s)
        self.worker_exited.emit(ev)

    def _on_cause_updated(self, ev: CauseUpdated) -> None:
        w, _death = self.roster.on_cause_updated(ev)
        # The kernel's record can arrive after the exit: a "signal" death found to be an OOM kill
        # is announced then.
        self._notify_memory_death(ev.worker, ev.cause, None)
        self._show_worker_changed(w)
        self.timeline.refresh()
        self.kernel_pane.tie_record(ev.oom, ev.worker.id)

    def _notify(self, title: str, text: str) -> None:
        """A desktop notification, for what happens now: a replay tells of the past, so it stays quiet."""
        if not self.read_only:
            self.notifier.notify(title, text)

    def _notify_memory_death(self, ref: WorkerRef, cause: str, restart_in_s: float | None) -> None:
        if cause not in (OOM_KILL, HEAP_OOM) or ref.id in self._oom_notified:
            return
        self._oom_notified.add(ref.id)
        what = "killed by the kernel's OOM killer" if cause == OOM_KILL else "V8 heap out of memory"
        title = f"oomscope: {ref.name} {'OOM-killed' if cause == OOM_KILL else 'heap OOM'}"
        text = f"{ref.name} ({ref.id}, PID {ref.pid}): {what} ({cause.replace('-', ' ').upper()})"
        if restart_in_s is not None:
            text += f"; restarting in {restart_in_s:g} s"
        self._notify(title, text)

    def _on_heap_reported(self, ev: Heap) -> None:
        w = self.model.apply_heap(ev)
        if self.plot.shown_metric == "heap_used":
            self.plot.request_redraw()  # throttled: a report per thread per interval costs no extra frames
        if w is not None and w.threads and not self.table.rootIsDecorated():
            self.table.setRootIsDecorated(True)
            self.table.expand(self.proxy.mapFromSource(self.model.row_of(w.id)))

    def _on_thread_exited(self, ev: ThreadExited) -> None:
        w, death = self.model.apply_thread_exit(ev)
        if w is not None and w.threads and not self.table.rootIsDecorated():
            self.table.setRootIsDecorated(True)
        if death is not None:
            self.timeline.refresh()
            self.plot.request_redraw()  # the x range reaches every marker
        if w is not None and self.detail.worker is w:
            self.detail.refresh()
        if ev.cause == HEAP_OOM:
            self._notify(f"oomscope: {ev.worker.name} thread heap OOM",
                         f"{ev.worker.name} ({ev.worker.id}, PID {ev.pid}): worker thread "
                         f"{ev.thread_id} ran out of V8 heap (HEAP OOM); the process lives on"
                         + (f" — {ev.message}" if ev.message else ""))
        self.statusBar().showMessage(f"{ev.worker.name} ({ev.worker.id}): thread {ev.thread_id} ended: "
                                     f"{ev.cause}" + (f" — {ev.message}" if ev.message else ""), 10000)

    def _on_advice_given(self, ev: Doctor) -> None:
        w = self.roster.on_doctor(ev)
        self._show_worker_changed(w)
        text = f"{ev.worker.name} ({ev.worker.id}): {advice_plain(ev.advice, ev.reason, ev.suggested)}"
        self.message_bar.show_message(text, "warning")

    def _on_output_received(self, ev: Output) -> None:
        self.roster.add_output(ev.worker.id, ev.stream, ev.line)

    def _on_notice_received(self, ev: Notice) -> None:
        self._check_recording()  # the recorder's writer thread reports trouble as a notice
        who = f"{ev.worker.name} ({ev.worker.id}): " if ev.worker is not None else ""
        w = self.roster.on_notice(ev)
        self._show_worker_changed(w)
        if ev.level == "info":
            self.statusBar().showMessage(who + ev.message, 8000)
        else:
            self.message_bar.show_message(who + ev.message, ev.level)

    def _show_worker_changed(self, w: WorkerState | None) -> None:
        """A worker's row, and the detail pane when it shows that worker, tell what just changed."""
        if w is not None:
            self.model.worker_changed(w)
            if self.detail.worker is w:
                self.detail.refresh()

    def _on_crash_loop(self, ev: CrashLoop) -> None:
        """The engine gave up restarting a slot: that needs the user, so it is an error-red bar
        (not the amber of a passing warning), a desktop notification, and a note on the worker."""
        w = self.roster.on_crash_loop(ev)
        self._show_worker_changed(w)
        who = f"{ev.worker.name} ({ev.worker.id}): "
        self.message_bar.show_message(who + ev.message, "error")
        self._notify(f"oomscope: {ev.worker.name} crash loop", who + ev.message)

    def _on_kernel_line_received(self, ev: KernelLineRead) -> None:
        self.kernel_lines.append(ev)
        self.kernel_pane.add_line(ev)

    def _on_kernel_oom_received(self, ev: KernelOom) -> None:
        self.roster.on_kernel_oom(ev)
        self.timeline.refresh()

    def _on_source_changed(self, ev: SourceChanged) -> None:
        self._last_source = ev
        st = ev.state
        self.kernel_pane.set_source(st.name, st.ok, st.reason)
        if st.ok:
            self._kernel_source = f"{st.name} ✓"
            self.source_status.setToolTip(f"OOM kill records are read from {st.name}")
        else:
            self._kernel_source = f"{st.name} unavailable"
            self.source_status.setToolTip(f"{st.name}: {st.reason}")
        self._update_status()

    def _update_status(self) -> None:
        self.source_status.setText(f"kernel log: {self._kernel_source}")
        if self.engine is not None:
            now = time.monotonic()
            cpu = self.engine.sampling_cpu_s
            t0, c0 = self._cpu_mark
            load = 100.0 * (cpu - c0) / (now - t0) if now > t0 else 0.0
            self._cpu_mark = (now, cpu)
            self.sampling_status.setText(f"every {self.engine.config.interval_s:g} s · engine {load:.1f} % CPU")
        self._check_recording()
        self.workers_status.setText(self.roster.count_text())

    # -------------------------------------------------------------- selection

    def selected_workers(self) -> list[WorkerState]:
        out = []
        for index in self.table.selectionModel().selectedRows():
            w = self.model.worker_at(self.proxy.mapToSource(index))
            if w is not None and w not in out:
                out.append(w)
        return out

    def _on_selection_changed(self, *_: Any) -> None:
        chosen = self.selected_workers()
        self._show_plot_levels()
        self.plot.set_selected(w.id for w in chosen)
        if chosen:
            self.detail.show_worker(chosen[0])
            self.detail_dock.raise_()
        self._update_actions()

    def _update_actions(self) -> None:
        chosen = self.selected_workers() if hasattr(self, "table") else []
        # A replay has no engine: whatever would start or signal a process stays disabled there.
        alive = [w for w in chosen if w.alive] if not self.read_only else []
        self.terminate_action.setEnabled(bool(alive))
        self.kill_action.setEnabled(bool(alive))
        self.worker_thresholds_action.setEnabled(len(alive) == 1)
        for action in (self.launch_action, self.attach_action, self.record_action):
            action.setEnabled(not self.read_only)
        critical = any(w.alive and w.level == CRITICAL for w in self.roster.workers)
        self.terminate_critical_action.setEnabled(critical and not self.read_only)
        self.stop_recording_action.setEnabled(self.recorder is not None)
        self.export_incident_action.setEnabled(self.incident_worker() is not None)

    def incident_worker(self) -> WorkerState | None:
        """The dead worker an incident export is about: the one selected, else the one the
        detail pane shows (a timeline marker clicked)."""
        chosen = self.selected_workers() if hasattr(self, "table") else []
        if len(chosen) == 1:
            return chosen[0] if not chosen[0].alive else None
        shown = self.detail.worker if hasattr(self, "detail") else None
        return shown if not chosen and shown is not None and not shown.alive else None

    def select_worker(self, worker_id: str) -> None:
        source = self.model.row_of(worker_id)
        if not source.isValid():
            return
        index = self.proxy.mapFromSource(source)
        if not index.isValid():  # hidden by the filter: clear it so the worker can be shown
            self.filter_edit.clear()
            index = self.proxy.mapFromSource(source)
        self.table.selectionModel().select(
            index, QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows)
        self.table.scrollTo(index)

    def _on_death_clicked(self, death: Death) -> None:
        self.open_death(death)

    def open_death(self, death: Death) -> None:
        """Select the dead worker and show its story in the detail pane."""
        if death.worker_id is not None and death.worker_id in self.roster.by_id:
            self.select_worker(death.worker_id)
            self.detail.show_worker(self.roster.by_id[death.worker_id], death)
        else:
            self.detail.show_death(death)
        self.detail_dock.show()
        self.detail_dock.raise_()

    def _on_table_menu(self, pos: Any) -> None:
        self.table_menu().popup(self.table.viewport().mapToGlobal(pos))

    def table_menu(self) -> QtWidgets.QMenu:
        """The worker table's context menu for the current selection."""
        menu = QtWidgets.QMenu(self)
        menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        menu.setToolTipsVisible(True)
        menu.addAction(self.terminate_action)
        menu.addAction(self.kill_action)
        menu.addSeparator()
        menu.addAction(self.terminate_critical_action)
        chosen = self.selected_workers()
        if chosen:
            menu.addSeparator()
            menu.addAction(self.worker_thresholds_action)
            menu.addAction(self.export_incident_action)
            copy = menu.addAction("Copy command line")
            copy.setToolTip("Copy the selected worker's command line to the clipboard")
            copy.triggered.connect(lambda: QtGui.QGuiApplication.clipboard().setText(" ".join(chosen[0].ref.cmd)))
        return menu

    def _on_header_menu(self, pos: Any) -> None:
        header = self.table.header()
        menu = QtWidgets.QMenu(self)
        for col in range(self.model.columnCount()):
            title = str(self.model.headerData(col, Qt.Orientation.Horizontal))
            action = menu.addAction(title)
            action.setCheckable(True)
            action.setChecked(not header.isSectionHidden(col))
            action.setEnabled(col != COL_NAME)
            action.toggled.connect(lambda on, c=col: header.setSectionHidden(c, not on))
        menu.popup(header.mapToGlobal(pos))

    # ------------------------------------------------------------ terminating

    def terminate_selected(self, kill_now: bool) -> None:
        self._terminate([w for w in self.selected_workers() if w.alive], kill_now)

    def terminate_critical(self) -> None:
        targets = [w for w in self.roster.workers if w.alive and w.level == CRITICAL]
        if not targets:
            self.statusBar().showMessage("no worker is at or above the critical level", 5000)
            return
        self._terminate(targets, False)

    def _terminate(self, workers: list[WorkerState], kill_now: bool) -> None:
        if not workers or self.engine is None:
            return
        answer = self.confirm(self, workers, kill_now)
        if answer is None:
            return
        kill = answer == "kill"
        engine = self.engine
        for w in workers:
            w.requested = True
            self.model.worker_changed(w)
            self.bridge.call(engine.terminate(w.id, by="user", kill_now=kill),
                             on_error=functools.partial(self._on_terminate_failed, w))

    def _on_terminate_failed(self, w: WorkerState, error: BaseException) -> None:
        w.requested = False
        self.model.worker_changed(w)
        text = str(error) if isinstance(error, Error) else f"internal error: {error!r}"
        self.message_bar.show_message(f"Cannot terminate {w.ref.name} ({w.id}, PID {w.ref.pid}): {text}")

    # ------------------------------------------------------------- thresholds

    def _show_thresholds(self) -> None:
        # Every change of the engine's thresholds passes here: the plot draws its level lines and
        # its forecasts only on the metric the engine's levels, rate and ETAs are of.
        plot_metric = _PLOT_METRIC.get(self.thresholds.metric)
        self.plot.trend_metric = plot_metric
        self.plot.set_alert_metric(plot_metric)
        index = self.alert_metric_box.findData(self.thresholds.metric)
        if index >= 0 and index != self.alert_metric_box.currentIndex():
            self.alert_metric_box.setCurrentIndex(index)
        self.warn_edit.setText(level_text(self.thresholds.warn))
        self.crit_edit.setText(level_text(self.thresholds.crit))
        for edit in (self.warn_edit, self.crit_edit):
            edit.setStyleSheet("")
        self._show_plot_levels()

    def _levels_shown_for(self) -> WorkerState | None:
        """The worker whose own levels the plot's lines show: the only selected one, if it has them."""
        chosen = self.selected_workers()
        if len(chosen) == 1 and chosen[0].override is not None and chosen[0].alive:
            return chosen[0]
        return None

    def _show_plot_levels(self) -> None:
        owner = self._levels_shown_for()
        if owner is not None and owner.override is not None:
            self.plot.set_thresholds(owner.override.warn, owner.override.crit, owner.id)
        else:
            self.plot.set_thresholds(self.thresholds.warn, self.thresholds.crit)

    def open_worker_thresholds(self, *_: Any) -> WorkerThresholdsDialog | None:
        """The selected worker's own levels, in a dialog that does not block the window (samples
        keep arriving while the user types)."""
        alive = [w for w in self.selected_workers() if w.alive]
        if self.read_only:
            self.statusBar().showMessage("a replay cannot change thresholds", 5000)
            return None
        if len(alive) != 1:
            self.statusBar().showMessage("select one running worker to give it its own thresholds", 5000)
            return None
        dialog = WorkerThresholdsDialog(alive[0], self.thresholds, self)
        dialog.accepted.connect(lambda: self.set_worker_levels(dialog.worker_id, dialog.config))
        dialog.finished.connect(dialog.deleteLater)
        self.worker_thresholds_dialog = dialog
        dialog.open()
        return dialog

    def set_worker_levels(self, worker_id: str, config: ThresholdConfig | None) -> None:
        """Give one worker its own levels (None: the global ones again); shown once the engine
        has them, so the table never claims levels the engine does not apply."""
        w = self.roster.by_id.get(worker_id)
        if w is None or self.engine is None:
            return

        def done(_: object) -> None:
            w.override = config
            self.model.worker_changed(w)
            self._show_plot_levels()
            self.plot.request_redraw()
            if self.detail.worker is w:
                self.detail.refresh()
            what = f"own thresholds: {w.levels_text()}" if config is not None else "global thresholds again"
            self.statusBar().showMessage(f"{w.ref.name} ({w.id}): {what}", 6000)

        def failed(error: BaseException) -> None:
            self.message_bar.show_message(f"Thresholds for {w.ref.name} ({w.id}) not applied: {error}")
            self._show_plot_levels()  # a dragged line goes back to what the engine has

        self.bridge.call(self.engine.set_worker_thresholds(worker_id, config), on_result=done, on_error=failed)

    def _parse_edit(self, edit: QtWidgets.QLineEdit) -> Level | None:
        text = edit.text().strip()
        return parse_level(text) if text else None

    def _on_level_edited(self) -> None:
        try:
            warn, crit = self._parse_edit(self.warn_edit), self._parse_edit(self.crit_edit)
        except BadInput as e:
            self._reject_levels(str(e))
            return
        if (warn, crit) != (self.thresholds.warn, self.thresholds.crit):
            self.set_levels(warn, crit)

    def set_levels(self, warn: Level | None, crit: Level | None) -> bool:
        """Give the engine new levels (same metric and action); False, and says why, if invalid."""
        try:
            # Only the levels change: metric, actions, sustain and hysteresis stay as they are.
            config = replace(self.thresholds, warn=warn, crit=crit)
        except BadInput as e:
            self._reject_levels(str(e))
            return False
        self._apply_thresholds(config)
        return True

    def _apply_thresholds(self, config: ThresholdConfig) -> None:
        self.thresholds = config
        self._show_thresholds()
        if self.engine is None:
            return  # a replay shows the recorded levels on whichever metric it plots; nothing to tell
        self._levels_in_flight += 1

        def answered(_: object) -> None:
            self._levels_in_flight -= 1
            self._settle_levels(None)  # its echo may have come and gone while it was on the way

        def failed(error: BaseException) -> None:
            self.message_bar.show_message(f"Thresholds not applied: {error}")
            answered(error)

        self.bridge.call(self.engine.set_thresholds(config), on_result=answered, on_error=failed)
        if self.persist_thresholds:
            self.settings.setValue("thresholds/warn", level_text(config.warn))
            self.settings.setValue("thresholds/crit", level_text(config.crit))
            self.settings.setValue("thresholds/metric", config.metric)
        self.statusBar().showMessage(f"thresholds: warning {config.warn or 'none'}, critical "
                                     f"{config.crit or 'none'} on {alert_metric_label(config.metric)}", 6000)

    def _reject_levels(self, why: str) -> None:
        self.message_bar.show_message(why)
        self._show_thresholds()

    def _on_threshold_moved(self, level: str, value_bytes: int) -> None:
        owner = self.roster.by_id.get(self.plot.levels_owner or "")
        config = owner.override if owner is not None and owner.override is not None else self.thresholds
        current = config.warn if level == "warning" else config.crit
        if current is not None and current.fraction is not None:
            limit = self.plot.reference_limit
            if not limit:
                self._show_thresholds()
                return
            fraction = round(min(1.0, max(0.01, value_bytes / limit)), 3)
            new = Level(fraction=fraction)
        else:
            new = Level(bytes=value_bytes)
        warn, crit = (new, config.crit) if level == "warning" else (config.warn, new)
        if owner is None or owner.override is None:
            self.set_levels(warn, crit)
            return
        # The lines showed this worker's own levels: the drag changes those, not the global ones.
        try:
            changed = replace(config, warn=warn, crit=crit)
        except BadInput as e:
            self._reject_levels(str(e))
            return
        self.set_worker_levels(owner.id, changed)

    def _on_metric_changed(self, metric: str) -> None:
        """The plot's Metric box: what is drawn, and the table's % column. Never the alerts."""
        self.model.set_metric(metric)
        if self.persist_layout:
            self.settings.setValue("plot/metric", metric)

    def _on_alert_metric_chosen(self, index: int) -> None:
        self.set_alert_metric(str(self.alert_metric_box.itemData(index)))

    def set_alert_metric(self, metric: str) -> None:
        """Compare the levels on ``metric`` (the engine's name: rss, anon, heap) from now on."""
        if self.read_only or metric == self.thresholds.metric:
            self._show_thresholds()  # a replay's box goes back to the recorded metric
            return
        self._apply_thresholds(replace(self.thresholds, metric=metric))

    # ---------------------------------------------------------------- commands

    def launch(self, spec: LaunchSpec, restart: RestartPolicy | None = None) -> None:
        """Start a worker; with a ``restart`` policy the engine restarts it in the same slot."""
        if self.engine is None:
            self.message_bar.show_message("A replay starts nothing: launch workers in a live window.")
            return
        self.bridge.call(self.engine.launch(spec, restart=restart), on_error=lambda e: self.message_bar.show_message(
            f"Cannot launch {spec.display_name()}: {e}"))

    def attach(self, pid: int, inspect_heap: bool = False) -> None:
        engine = self.engine
        if engine is None:
            self.message_bar.show_message("A replay attaches to nothing: attach in a live window.")
            return

        def attached(ref: WorkerRef) -> None:
            if inspect_heap:
                self.bridge.call(engine.inspect_heap(ref.id), on_error=lambda e: self.message_bar.show_message(
                    f"No heap inspection for {ref.name} (PID {ref.pid}): {e}"))
        self.bridge.call(engine.attach(pid), on_result=attached, on_error=lambda e: self.message_bar.show_message(
            f"Cannot attach to PID {pid}: {e}"))

    def attach_children(self, pid: int) -> None:
        if self.engine is None:
            self.message_bar.show_message("A replay attaches to nothing: attach in a live window.")
            return

        def done(refs: list[WorkerRef]) -> None:
            if not refs:
                self.statusBar().showMessage(f"PID {pid} has no children yet; new ones will be picked up", 8000)
        self.bridge.call(self.engine.watch_children(pid), on_result=done,
                         on_error=lambda e: self.message_bar.show_message(f"Cannot watch the children of PID {pid}: {e}"))

    def open_launch_dialog(self) -> None:
        if self.engine is None:
            return
        dialog = LaunchDialog(self.settings, self, restart=self.engine.config.restart)
        if dialog.exec() == QtWidgets.QDialog.DialogCode.Accepted and dialog.spec is not None:
            self.launch(dialog.spec, restart=dialog.restart_policy())

    def open_attach_dialog(self) -> None:
        if self.engine is None:
            return
        dialog = AttachDialog(self.settings, self)
        if dialog.exec() == QtWidgets.QDialog.DialogCode.Accepted and dialog.choice is not None:
            for pid in dialog.choice.pids:
                if dialog.choice.children_of:
                    self.attach_children(pid)
                else:
                    self.attach(pid, inspect_heap=dialog.choice.inspect_heap)

    # --------------------------------------------------------------- settings

    def _restore_settings(self) -> None:
        s = self.settings
        geometry = s.value("window/geometry")
        if isinstance(geometry, (bytes, bytearray)) or hasattr(geometry, "size"):
            self.restoreGeometry(geometry)
        else:
            self._fit_screen()
        state = s.value("window/state")
        if state is not None:
            self.restoreState(state)
        header = s.value("table/header")
        if header is not None:
            self.table.header().restoreState(header)
        splitter = s.value("window/plot_splitter")
        if splitter is not None:
            self.plot_splitter.restoreState(splitter)
        metric = s.value("plot/metric")
        if isinstance(metric, str):
            self.plot.set_metric(metric)
        window = s.value("plot/window")
        if window is not None:
            self.plot.set_window(None if window in ("", "all", None) else float(window))

    def _fit_screen(self) -> None:
        """The first window on a small screen (1024x700): no bigger than the screen, or its right
        edge, the details pane and the last columns, is off screen."""
        screen = QtGui.QGuiApplication.primaryScreen()
        if screen is None or QtGui.QGuiApplication.platformName() == "offscreen":
            return  # offscreen's 800x800 "screen" is no screen a user sees
        room = screen.availableGeometry()
        # The window manager's frame (title bar, borders) is not known before the first show;
        # without an allowance for it the status bar was below a 700 px screen's edge.
        room.setSize(QtCore.QSize(room.width() - _FRAME_ALLOWANCE[0], room.height() - _FRAME_ALLOWANCE[1]))
        if room.width() < self.width() or room.height() < self.height():
            self.resize(min(self.width(), room.width()), min(self.height(), room.height()))
            self.resizeDocks([self.workers_dock, self.detail_dock],
                             [self.width() * 2 // 3, self.width() // 3], Qt.Orientation.Horizontal)
            # The plot keeps most of the height: the table's 345 px would leave it a strip.
            self.resizeDocks([self.workers_dock], [self.height() * 3 // 10], Qt.Orientation.Vertical)

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:
        super().resizeEvent(event)
        if event.size().height() < event.oldSize().height() or event.oldSize().height() < 0:
            # After the layout has given the new height out: then the plot's share is known.
            QTimer.singleShot(0, self.give_plot_height)

    def give_plot_height(self) -> None:
        """Shrink the docks under the plot when the plot has less than its share of the height:
        a small window shows a readable plot and a shorter table, not a strip of plot over a
        full table. Docks the user floated or moved aside are left alone."""
        want = int(self.height() * _PLOT_SHARE)
        deficit = want - self.plot_splitter.height()
        dock = self.workers_dock
        if deficit <= 0 or dock.isFloating() or self.dockWidgetArea(dock) != Qt.DockWidgetArea.BottomDockWidgetArea:
            return
        floor = dock.minimumSizeHint().height()
        height = max(floor, dock.height() - deficit)
        if height < dock.height():
            self.resizeDocks([dock], [height], Qt.Orientation.Vertical)

    def save_settings(self) -> None:
        if not self.persist_layout:
            return
        s = self.settings
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState())
        s.setValue("table/header", self.table.header().saveState())
        s.setValue("window/plot_splitter", self.plot_splitter.saveState())
        s.setValue("plot/window", "all" if self.plot.window_s is None else self.plot.window_s)
        s.setValue("plot/metric", self.plot.shown_metric)
        s.sync()

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        self.save_settings()
        self.end_session()
        self.notifier.close()
        self.bridge.stop()
        super().closeEvent(event)


