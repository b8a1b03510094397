"""What every oomscope window over a session shows: the worker table, the memory plot, the kill
timeline, the detail pane and the kernel log, over one roster.

It knows nothing of an engine: the live window adds the controls that start and signal
processes, the replay window a time slider. A ``QMainWindow`` used as a widget (the central
widget of its window) so its panes stay docks the user can move, float and close.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from oomscope.core.events import KernelLineRead
from oomscope.core.thresholds import ThresholdConfig

from .detail import DetailPane
from .history import METRIC_LABELS
from .kernel_pane import KernelLogPane
from .keys import SearchKeys
from .kill_report import context_lines
from .message_bar import MessageBar
from .models import COL_ANON, COL_HEAP, COL_LIMIT, COL_NAME, COL_PERCENT, COL_PID, COL_RSS, COL_STATE, \
    COL_TREND, WorkerFilterProxy, WorkerTreeModel
from .plot import MemoryPlot
from .qt import QItemSelectionModel, QSettings, Qt, QTimer, QtCore, QtGui, QtWidgets, Signal
from .roster import Death, Roster, WorkerState
from .timeline import KillTimeline, stacked_with_timeline

_KERNEL_LINES_KEPT = 5000
_FRAME_ALLOWANCE = (8, 40)  # px a window manager's frame takes, horizontally and vertically
# The plot and timeline keep at least this share of the window's height when it shrinks: the
# docks below give way first (down to their minimum), not the plot.
_PLOT_SHARE = 0.5
# What the window around the view takes of the default 1400x900: menu bar, toolbar, status bar.
_CHROME_PX = 80
DEFAULT_SIZE = (1400, 900)
# The plot's metric names and the engine's: the engine compares "heap" where the plot draws "heap used".
# The cgroup's usage is plotted only: the engine's levels do not compare it.
ENGINE_METRIC = {"rss": "rss", "anon": "anon", "heap_used": "heap"}
PLOT_METRIC = {engine: plot for plot, engine in ENGINE_METRIC.items()}


def alert_metric_label(engine_metric: str) -> str:
    """How the window names the metric the levels compare: "RSS", "anon RSS", "heap used"."""
    return METRIC_LABELS.get(PLOT_METRIC.get(engine_metric, ""), engine_metric)


class SessionView(QtWidgets.QMainWindow):
    selection_changed = Signal()  # the table's selection changed
    # Something the window's actions depend on changed: a worker's level, an exit.
    actions_stale = Signal()

    def __init__(self, thresholds: ThresholdConfig, status_bar: QtWidgets.QStatusBar,
                 parent: QtWidgets.QWidget | None = None, *,
                 model_class: type[WorkerTreeModel] = WorkerTreeModel, kernel_log: bool = True) -> None:
        """``model_class``: the table's rows over the roster (the fleet's groups them by host);
        ``kernel_log`` False: no Kernel log pane (a window with no kernel log to show)."""
        super().__init__(parent)
        self.setObjectName("session-view")
        self.setWindowFlags(Qt.WindowType.Widget)
        self.thresholds = thresholds  # the global levels the plot's lines show
        self.status_bar = status_bar
        self.roster = Roster()
        self.model = model_class(self.roster, self)
        self.proxy = WorkerFilterProxy(self)
        self.proxy.setSourceModel(self.model)
        # Kept for incident exports (the kernel pane keeps its own copy for display).
        self.kernel_lines: deque[KernelLineRead] = deque(maxlen=_KERNEL_LINES_KEPT)
        # The window's actions the table's context menu offers (None: a separator); those offered
        # only with a selection come after.
        self.menu_actions: list[QtGui.QAction | None] = []
        self.selection_menu_actions: list[QtGui.QAction] = []
        self._build_plot()
        self._build_table()
        self._build_panes(kernel_log)
        self._build_status()

    # ---------------------------------------------------------------- layout

    def _build_plot(self) -> None:
        self.plot = MemoryPlot(self.roster)
        self.model.set_visibility(self.plot.visibility)  # the Name column's check boxes: curves drawn
        self.proxy.share_with(self.plot.visibility)  # the table's filter filters the plot too
        # The plot's Metric box: what is drawn, and the table's % column. Never the alerts.
        self.plot.metric_changed.connect(self.model.set_metric)
        self.timeline = KillTimeline(self.roster)
        self.timeline.link_x(self.plot.plot_item)
        self.plot.legend_width_changed.connect(self.timeline.set_right_margin)
        self.timeline.death_clicked.connect(self.open_death)
        split = stacked_with_timeline(self.plot, self.timeline, "Kill timeline",
                                      "One marker per worker death; shapes and colours tell the cause",
                                      (500, 190))
        # Floats over the plot's bottom edge, outside every layout: it never moves a row of the
        # table or a marker of the timeline, and hides no row the user is about to click.
        self.message_bar = MessageBar(self.plot)
        split.setObjectName("plot-splitter")
        # The timeline's bold title: a window over other data (the fleet) says what its deaths are.
        box = split.widget(1)
        title = box.findChild(QtWidgets.QLabel) if box is not None else None
        assert title is not None
        self.timeline_title: QtWidgets.QLabel = title
        self.plot_splitter = split
        self.setCentralWidget(split)

    def _build_table(self) -> None:
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
        self.workers_dock = self._dock("Workers", "workers-dock", table_box)

    def _build_panes(self, kernel_log: bool) -> None:
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
        self.detail_dock = self._dock("Details", "details-dock", detail_scroll)
        self.kernel_pane = KernelLogPane()
        self.kernel_pane.worker_clicked.connect(self.select_worker)
        self.kernel_dock = self._dock("Kernel log", "kernel-dock", self.kernel_pane)
        self.splitDockWidget(self.workers_dock, self.detail_dock, Qt.Orientation.Horizontal)
        self.tabifyDockWidget(self.detail_dock, self.kernel_dock)
        if not kernel_log:
            # Kept as an object (nothing feeds it) so the view's attributes are the same everywhere.
            self.removeDockWidget(self.kernel_dock)
        self.detail_dock.raise_()
        self.resize(DEFAULT_SIZE[0], DEFAULT_SIZE[1] - _CHROME_PX)
        self.resizeDocks([self.workers_dock], [345], Qt.Orientation.Vertical)
        self.resizeDocks([self.workers_dock, self.detail_dock], [950, 450], Qt.Orientation.Horizontal)

    def _dock(self, title: str, name: str, widget: QtWidgets.QWidget) -> QtWidgets.QDockWidget:
        dock = QtWidgets.QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        dock.setFeatures(QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetFloatable
                         | QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetClosable)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
        return dock

    def _build_status(self) -> None:
        self.kernel_source = "starting…"
        self.source_status = QtWidgets.QLabel("kernel log: starting…")
        self.source_status.setToolTip("Kernel log source: where OOM kill records come from")
        self.sampling_status = QtWidgets.QLabel("")
        self.sampling_status.setToolTip("Sampling interval, and the engine's CPU time spent sampling")
        self.workers_status = QtWidgets.QLabel("no workers")
        self.workers_status.setToolTip("Workers watched now, and how many have exited")
        for label in (self.source_status, self.sampling_status, self.workers_status):
            self.status_bar.addPermanentWidget(label)

    def update_status(self) -> None:
        self.source_status.setText(f"kernel log: {self.kernel_source}")
        self.workers_status.setText(self.roster.count_text())
        self.workers_status.setToolTip(self.roster.count_tip())

    def say(self, text: str, timeout_ms: int = 0) -> None:
        """A passing line in the window's status bar."""
        self.status_bar.showMessage(text, timeout_ms)

    def replace_kernel_pane(self) -> KernelLogPane:
        """A fresh kernel log pane (its lines fed again by the caller); the user's "All lines" stays."""
        old = self.kernel_pane
        pane = KernelLogPane()
        pane.all_lines.setChecked(old.all_lines.isChecked())
        pane.worker_clicked.connect(self.select_worker)
        self.kernel_dock.setWidget(pane)
        self.kernel_pane = pane
        old.deleteLater()
        return pane

    # ---------------------------------------------------------------- levels

    def levels_shown_for(self) -> WorkerState | None:
        """The worker whose own levels the plot's lines show: the only selected one, if it has them."""
        chosen = self.selected_workers()
        if len(chosen) == 1 and chosen[0].override is not None and chosen[0].alive:
            return chosen[0]
        return None

    def show_plot_levels(self) -> None:
        owner = self.levels_shown_for()
        if owner is not None and owner.override is not None:
            self.plot.set_thresholds(owner.override.warn, owner.override.crit, owner.id)
        else:
            self.plot.set_thresholds(self.thresholds.warn, self.thresholds.crit)

    def show_worker_changed(self, w: WorkerState | None) -> None:
        """A worker's row, and the detail pane when it shows that worker, tell what just changed."""
        if w is not None:
            self.model.worker_changed(w)
            if self.detail.worker is w:
                self.detail.refresh()

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
        self.show_plot_levels()
        self.plot.set_selected(w.id for w in chosen)
        if chosen:
            self.detail.show_worker(chosen[0])
            self.detail_dock.raise_()
        self.selection_changed.emit()

    def incident_worker(self) -> WorkerState | None:
        """The dead worker an incident export is about: the one selected, else the one the
        detail pane shows (a timeline marker clicked)."""
        chosen = self.selected_workers()
        if len(chosen) == 1:
            return chosen[0] if not chosen[0].alive else None
        shown = self.detail.worker
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

    def select_workers(self, worker_ids: list[str]) -> None:
        """Select these workers again (those still in the table), as a replay's new moment does."""
        selection = self.table.selectionModel()
        first = True
        for wid in worker_ids:
            source = self.model.row_of(wid)
            if not source.isValid():
                continue
            index = self.proxy.mapFromSource(source)
            flags = QItemSelectionModel.SelectionFlag.Rows | (
                QItemSelectionModel.SelectionFlag.ClearAndSelect if first else QItemSelectionModel.SelectionFlag.Select)
            selection.select(index, flags)
            first = False

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
        for action in self.menu_actions:
            if action is None:
                menu.addSeparator()
            else:
                menu.addAction(action)
        chosen = self.selected_workers()
        if chosen:
            if self.menu_actions:
                menu.addSeparator()
            for action in self.selection_menu_actions:
                menu.addAction(action)
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

    # ------------------------------------------------------- layout settings

    def restore_window(self, window: QtWidgets.QMainWindow, s: QSettings) -> None:
        """The window's geometry (or a first size fitted to the screen) and this view's layout,
        as the live window saved them."""
        geometry = s.value("window/geometry")
        if isinstance(geometry, (bytes, bytearray)) or hasattr(geometry, "size"):
            window.restoreGeometry(geometry)
        else:
            self.fit_screen(window)
        self.restore_layout(s)

    def restore_layout(self, s: QSettings) -> None:
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

    def open_on_alert_metric(self) -> None:
        """Alerts on heap or anon (--metric, the settings file, the Alerts on box last time, a
        recording's settings): the plot opens on that metric, where its levels are drawn; the
        Metric box can leave it."""
        if self.thresholds.metric != "rss":
            self.plot.set_metric(PLOT_METRIC[self.thresholds.metric])

    def save_layout(self, s: QSettings) -> None:
        s.setValue("window/state", self.saveState())
        s.setValue("table/header", self.table.header().saveState())
        s.setValue("window/plot_splitter", self.plot_splitter.saveState())
        s.setValue("plot/window", "all" if self.plot.window_s is None else self.plot.window_s)
        s.setValue("plot/metric", self.plot.shown_metric)

    def fit_screen(self, window: QtWidgets.QWidget) -> None:
        """The first window on a small screen (1024x700): no bigger than the screen, or its right
        edge, the details pane and the last columns, is off screen."""
        screen = QtGui.QGuiApplication.primaryScreen()
        if screen is None or QtGui.QGuiApplication.platformName() == "offscreen":
            return  # offscreen's 800x800 "screen" is no screen a user sees
        room = screen.availableGeometry()
        # The window manager's frame (title bar, borders) is not known before the first show;
        # without an allowance for it the status bar was below a 700 px screen's edge.
        room.setSize(QtCore.QSize(room.width() - _FRAME_ALLOWANCE[0], room.height() - _FRAME_ALLOWANCE[1]))
        if room.width() < window.width() or room.height() < window.height():
            window.resize(min(window.width(), room.width()), min(window.height(), room.height()))
            self.resize(window.width(), window.height() - _CHROME_PX)
            self.resizeDocks([self.workers_dock, self.detail_dock],
                             [window.width() * 2 // 3, window.width() // 3], Qt.Orientation.Horizontal)
            # The plot keeps most of the height: the table's 345 px would leave it a strip.
            self.resizeDocks([self.workers_dock], [window.height() * 3 // 10], Qt.Orientation.Vertical)

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:
        super().resizeEvent(event)
        if event.size().height() < event.oldSize().height() or event.oldSize().height() < 0:
            # After the layout has given the new height out: then the plot's share is known.
            QTimer.singleShot(0, self.give_plot_height)

    def give_plot_height(self) -> None:
        """Shrink the docks under the plot when the plot has less than its share of the window's
        height: a small window shows a readable plot and a shorter table, not a strip of plot
        over a full table. Docks the user floated or moved aside are left alone."""
        want = int(self.window().height() * _PLOT_SHARE)
        deficit = want - self.plot_splitter.height()
        dock = self.workers_dock
        if deficit <= 0 or dock.isFloating() or self.dockWidgetArea(dock) != Qt.DockWidgetArea.BottomDockWidgetArea:
            return
        floor = dock.minimumSizeHint().height()
        height = max(floor, dock.height() - deficit)
        if height < dock.height():
            self.resizeDocks([dock], [height], Qt.Orientation.Vertical)
