"""*File → Connect to Prometheus…*: the fleet as a Prometheus server holds it, read-only.

Hosts and their workers (oomscope agents, and Kubernetes containers where cAdvisor and
kube-state-metrics report them) in a tree; their memory on the same plot, and their deaths on the
same kill timeline, as the main window's: the main window's SessionView over a Roster rebuilt at
every refresh, its table grouped by host.

Nothing here can signal anything: the workers belong to other machines. Queries run on a worker
thread (core/prometheus, Qt-free); the GUI thread polls the future on a timer, as the engine
bridge does, so a slow or absent server never freezes the window.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from oomscope.core.errors import Error
from oomscope.core.events import Sample, WorkerExited, WorkerRef
from oomscope.core.prometheus import Fleet, PrometheusClient, RemoteWorker, read_fleet
from oomscope.core.prometheus.client import DEFAULT_TIMEOUT_S
from oomscope.core.sizes import Level, format_size
from oomscope.core.thresholds import ThresholdConfig

from .history import Series, history_columns
from .models import COL_NAME, COL_PID, COL_STATE, COL_TREND, COLUMNS, SORT_ROLE, ModelIndex, WorkerTreeModel
from .qt import QModelIndex, QSettings, Qt, QTimer, QtGui, QtWidgets, Signal
from .roster import Death, Roster, WorkerState, lane_of
from .session_view import SessionView

DEFAULT_URL = "http://localhost:9090"
SETTINGS_URL = "fleet/url"
SETTINGS_REFRESH = "fleet/refresh_s"
SETTINGS_WINDOW = "fleet/window_s"
REFRESH_CHOICES: tuple[tuple[str, float | None], ...] = (
    ("5 s", 5.0), ("15 s", 15.0), ("30 s", 30.0), ("1 min", 60.0), ("off", None))
# What the plot's Window box offers here: each choice is also the range asked of Prometheus.
WINDOW_CHOICES: tuple[tuple[str, float], ...] = (
    ("5 min", 300.0), ("15 min", 900.0), ("1 h", 3600.0), ("6 h", 21600.0), ("24 h", 86400.0))
_POLL_MS = 50
# The plot's metric names and the agents' ``metric`` label of their levels.
_LEVEL_METRIC = {"rss": "rss", "anon": "anon", "heap_used": "heap"}
# The fleet's table: the main window's columns, and the deaths the agents counted in the window.
COL_DEATHS = len(COLUMNS)
_DEATHS_TIP = "Deaths in the time range shown: exits the agents counted, and Kubernetes OOM kills"


def ask_url(parent: QtWidgets.QWidget | None, settings: QSettings) -> str | None:
    """The Prometheus URL, asked with the last one offered; None when the user cancels."""
    dialog = QtWidgets.QInputDialog(parent)
    dialog.setObjectName("prometheus-url-dialog")
    dialog.setWindowTitle("Connect to Prometheus")
    dialog.setLabelText("Prometheus server URL (oomscope agents: `oomscope watch --metrics-port`; "
                        "Kubernetes: cAdvisor and kube-state-metrics):")
    dialog.setTextValue(str(settings.value(SETTINGS_URL, DEFAULT_URL)))
    dialog.resize(520, dialog.sizeHint().height())
    if dialog.exec() != QtWidgets.QDialog.DialogCode.Accepted:
        return None
    url = dialog.textValue().strip()
    return url or None


def open_fleet_window(parent: QtWidgets.QWidget, url: str | None = None,
                      settings: QSettings | None = None) -> QtWidgets.QWidget | None:
    """Ask for the URL (unless given), then open the read-only fleet window; None if cancelled."""
    if settings is None:
        own = getattr(parent, "settings", None)
        settings = own if isinstance(own, QSettings) else QSettings("oomscope", "oomscope")
    if url is None:
        url = ask_url(parent, settings)
        if url is None:
            return None
    window = FleetWindow(url, settings, parent)
    window.show()
    return window


class _Host:
    """One top row of the fleet's table: a host and its workers' rows under it."""

    def __init__(self, name: str, kind: str, tip: str, state: str, deaths: int) -> None:
        self.name, self.kind, self.tip, self.state, self.deaths = name, kind, tip, state, deaths
        self.workers: list[WorkerState] = []


class FleetModel(WorkerTreeModel):
    """The worker table grouped by host: hosts are the top rows, each worker's row (as the main
    window shows it: check box, swatch, state, memory, limit) under its host, and a Deaths column.

    It keeps the base model's index scheme (a child's internal id is its parent's row + 1), so
    rows of workers are what a thread's rows are there."""

    def __init__(self, roster: Roster, parent: Any = None) -> None:
        super().__init__(roster, parent)
        self._hosts: list[_Host] = []
        self._where: dict[str, tuple[int, int]] = {}  # worker id -> (host row, row under it)
        self._remote: dict[str, RemoteWorker] = {}
        self._deaths: dict[str, int] = {}

    def show_fleet(self, fleet: Fleet, workers: list[WorkerState], deaths: list[Death]) -> None:
        """The roster and the rows become this refresh's (one reset: every row is new)."""
        self.beginResetModel()
        self.roster.replace_all(workers, deaths)
        self._remote = {rw.key: rw for rw in fleet.workers}
        self._deaths = {}
        host_deaths: dict[str, int] = {}
        for d in fleet.deaths:
            host_deaths[d.host] = host_deaths.get(d.host, 0) + 1
            if d.key is not None:
                self._deaths[d.key] = self._deaths.get(d.key, 0) + 1
        self._hosts = []
        self._where = {}
        for host in fleet.hosts:
            members = fleet.workers_of(host.name)
            noun = "container" if host.kind == "kubernetes" else "worker"
            state = f"{len(members)} {noun}{'s' * (len(members) != 1)}"
            if any(not ok for ok in host.sources.values()) and not any(host.sources.values()):
                state += " · no kernel log"
            row = _Host(host.name, host.kind, _host_tip(host.name, host.kind, host.sources, host.kernel_kills),
                        state, host_deaths.get(host.name, 0))
            for rw in members:
                w = self.roster.by_id.get(rw.key)
                if w is not None:
                    self._where[w.id] = (len(self._hosts), len(row.workers))
                    row.workers.append(w)
            self._hosts.append(row)
        self.endResetModel()

    def host_names(self) -> list[str]:
        return [h.name for h in self._hosts]

    # ------------------------------------------------------------- structure

    def rowCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: N802
        if not parent.isValid():
            return len(self._hosts)
        if parent.column() != 0 or parent.parent().isValid():
            return 0
        return len(self._hosts[parent.row()].workers)

    def columnCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: N802
        return len(COLUMNS) + 1

    def headerData(self, section: int, orientation: Qt.Orientation,  # noqa: N802
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and section == COL_DEATHS:
            return {Qt.ItemDataRole.DisplayRole: "Deaths", Qt.ItemDataRole.ToolTipRole: _DEATHS_TIP}.get(
                Qt.ItemDataRole(role))
        if orientation == Qt.Orientation.Horizontal and section == COL_NAME and role == Qt.ItemDataRole.DisplayRole:
            return "Host / worker"
        return super().headerData(section, orientation, role)

    def flags(self, index: ModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        flags = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        if self.visibility is not None and index.column() == COL_NAME and index.parent().isValid():
            flags |= Qt.ItemFlag.ItemIsUserCheckable
        return flags

    def setData(self, index: ModelIndex, value: Any, role: int = Qt.ItemDataRole.EditRole) -> bool:  # noqa: N802
        w = self.worker_at(index)
        if role != Qt.ItemDataRole.CheckStateRole or self.visibility is None or w is None or index.column() != COL_NAME:
            return False
        checked = Qt.CheckState(value) == Qt.CheckState.Checked if not isinstance(value, bool) else value
        self.visibility.set_hidden(w.id, not checked)
        return True

    def worker_at(self, index: ModelIndex) -> WorkerState | None:
        if not index.isValid() or not index.parent().isValid():
            return None  # a host's row
        workers = self._hosts[index.parent().row()].workers
        return workers[index.row()] if 0 <= index.row() < len(workers) else None

    def row_of(self, worker_id: str) -> QModelIndex:
        where = self._where.get(worker_id)
        if where is None:
            return QModelIndex()
        return self.index(where[1], 0, self.index(where[0], 0))

    # ------------------------------------------------------------------ data

    def data(self, index: ModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        w = self.worker_at(index)
        if w is None:
            return self._host_data(self._hosts[index.row()], index.column(), role) if not index.parent().isValid() \
                else None
        col = index.column()
        rw = self._remote.get(w.id)
        if col == COL_DEATHS:
            deaths = self._deaths.get(w.id, 0)
            if role == Qt.ItemDataRole.DisplayRole:
                return str(deaths) if deaths else ""
            if role == SORT_ROLE:
                return deaths
            if role == Qt.ItemDataRole.TextAlignmentRole:
                return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if rw is not None and role in (Qt.ItemDataRole.DisplayRole, SORT_ROLE):
            if col == COL_NAME:
                return rw.worker
            if col == COL_PID and rw.pid is None:
                return "" if role == Qt.ItemDataRole.DisplayRole else -1
        if rw is not None and role == Qt.ItemDataRole.ToolTipRole:
            return _worker_tip(rw)
        return self.worker_data(w, col, role)

    @staticmethod
    def _host_data(host: _Host, col: int, role: int) -> Any:
        if role == Qt.ItemDataRole.DisplayRole:
            return {COL_NAME: host.name, COL_DEATHS: str(host.deaths)}.get(col, host.state if col == COL_STATE else "")
        if role == SORT_ROLE:
            return host.deaths if col == COL_DEATHS else host.name  # hosts stay in name order otherwise
        if role == Qt.ItemDataRole.ToolTipRole:
            return host.tip
        if role == Qt.ItemDataRole.FontRole and col == COL_NAME:
            font = QtGui.QFont()
            font.setBold(True)
            return font
        if role == Qt.ItemDataRole.TextAlignmentRole and col == COL_DEATHS:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None  # no worker id: the filter counts a host by the workers under it

    # --------------------------------------------------------------- updates

    def _each_host_block(self, first_col: int, last_col: int, roles: list[int] | None = None) -> None:
        for row, host in enumerate(self._hosts):
            if host.workers:
                parent = self.index(row, 0)
                self.dataChanged.emit(self.index(0, first_col, parent),
                                      self.index(len(host.workers) - 1, last_col, parent), roles or [])

    def _on_visibility_changed(self) -> None:
        self._each_host_block(COL_NAME, COL_NAME, [Qt.ItemDataRole.CheckStateRole])

    def refresh_values(self) -> None:
        self._each_host_block(0, COL_DEATHS)


class FleetWindow(QtWidgets.QMainWindow):
    refreshed = Signal(bool)  # after every fetch: True when it brought data, False on a failure

    def __init__(self, url: str, settings: QSettings, parent: QtWidgets.QWidget | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        super().__init__(parent)
        self.setObjectName("oomscope-fleet")
        # Qt.Window: its own window, owned by the main one (closed with it), not a child widget.
        self.setWindowFlag(Qt.WindowType.Window, True)
        self.timeout_s = timeout_s
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.settings = settings
        self.fleet: Fleet | None = None
        self.problem: str | None = None
        self.fetches = 0
        self._colors: dict[tuple[str, str], int] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="oomscope-prometheus")
        self._future: Future[Fleet] | None = None
        self._asked: PrometheusClient | None = None  # the client the fetch in flight asks
        self._again = False
        self._fetch_started = 0.0
        self._build()
        self.client: PrometheusClient | None = None
        self._poll_timer = QTimer(self)
        self._poll_timer.setObjectName("prometheus-poll")
        self._poll_timer.setInterval(_POLL_MS)
        self._poll_timer.timeout.connect(self._poll)
        self._refresh_timer = QTimer(self)
        self._refresh_timer.setObjectName("prometheus-refresh")
        self._refresh_timer.timeout.connect(self.refresh)
        self._restore_choices()
        self.resize(1300, 820)
        self.view.fit_screen(self)
        self.connect_to(url)

    # ---------------------------------------------------------------- layout

    def _build(self) -> None:
        bar = QtWidgets.QToolBar("Prometheus")
        bar.setObjectName("fleet-toolbar")
        bar.setMovable(False)
        bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.url_label = QtWidgets.QLabel()
        self.url_label.setObjectName("prometheus-url")
        self.url_label.setToolTip("The Prometheus server this window reads (read-only)")
        bar.addWidget(self.url_label)
        connect = QtGui.QAction("Connect to…", self)
        connect.setObjectName("fleet-connect")
        connect.setToolTip("Read another Prometheus server")
        connect.triggered.connect(self._ask_again)
        bar.addAction(connect)
        bar.addSeparator()
        bar.addWidget(QtWidgets.QLabel(" Refresh: "))
        self.refresh_box = QtWidgets.QComboBox()
        self.refresh_box.setObjectName("fleet-refresh-interval")
        self.refresh_box.setToolTip("How often to ask Prometheus again")
        for label, seconds in REFRESH_CHOICES:
            self.refresh_box.addItem(label, seconds)
        self.refresh_box.currentIndexChanged.connect(self._on_refresh_choice)
        bar.addWidget(self.refresh_box)
        self.refresh_action = QtGui.QAction("Refresh now", self)
        self.refresh_action.setObjectName("fleet-refresh-now")
        self.refresh_action.setShortcut(QtGui.QKeySequence("F5"))
        self.refresh_action.setToolTip("Ask Prometheus now (F5)")
        self.refresh_action.triggered.connect(self.refresh)
        bar.addAction(self.refresh_action)
        self.addToolBar(bar)

        self.status = QtWidgets.QLabel("connecting…")
        self.status.setObjectName("fleet-status")
        self.statusBar().addWidget(self.status, 1)
        # The main window's views, over the fleet: no levels of this window's own (the agents'
        # are shown per worker) and no kernel log (the agents read theirs; their kills are counted).
        view = SessionView(ThresholdConfig(), self.statusBar(), self, model_class=FleetModel, kernel_log=False)
        model = view.model
        assert isinstance(model, FleetModel)
        self.view, self.model = view, model
        self.roster, self.plot, self.timeline = view.roster, view.plot, view.timeline
        for unused in (view.source_status, view.sampling_status):
            unused.hide()  # no kernel log read and nothing sampled here
        self.setCentralWidget(view)
        table = view.table
        table.setRootIsDecorated(True)  # hosts fold their workers
        table.sortByColumn(COL_NAME, Qt.SortOrder.AscendingOrder)
        table.header().resizeSection(COL_DEATHS, 56)
        # The agents export no growth figure: the Trend column would be "–" on every row.
        table.header().setSectionHidden(COL_TREND, True)
        table.header().moveSection(COL_DEATHS, COL_STATE + 1)  # in sight beside the state at 1024 px
        # A host that matches the filter shows its workers.
        view.proxy.setAutoAcceptChildRows(True)
        view.filter_edit.setToolTip("Show only hosts and workers whose name, PID or state contains this text")
        view.selection_changed.connect(self._show_levels)

        # A problem (no answer, a bad URL) stands over the plot's foot until a refresh succeeds:
        # an overlay, so its coming moves no row of the table under the mouse.
        self.message_bar = view.message_bar

        # Read-only: levels come from the agents, and a line here would change nothing anywhere.
        for line in self.plot.lines.values():
            line.setMovable(False)
        self.plot.empty_label.setText("Nothing yet: no oomscope or Kubernetes memory series in this window")
        self.plot.metric_changed.connect(lambda _m: self._show_levels())
        self._use_window_choices()
        self.timeline.death_clicked.connect(self._on_death_clicked)
        self.view.timeline_title.setText("  Kill timeline (exits counted by the agents; Kubernetes OOM kills)")
        self.view.timeline_title.setToolTip("One marker per death the agents counted, and per Kubernetes OOM kill")

    def _use_window_choices(self) -> None:
        """The plot's Window box is this window's time range: each choice is also what is asked."""
        box = self.plot.window_box
        box.blockSignals(True)
        box.clear()
        for label, seconds in WINDOW_CHOICES:
            box.addItem(label, seconds)
        box.setCurrentIndex(1)
        box.blockSignals(False)
        box.setToolTip("How much history to ask Prometheus for and show")
        self.plot.window_s = WINDOW_CHOICES[1][1]
        box.currentIndexChanged.connect(self._on_window_choice)

    def _restore_choices(self) -> None:
        refresh = _float(self.settings.value(SETTINGS_REFRESH, 15.0))
        index = next((i for i, (_l, s) in enumerate(REFRESH_CHOICES) if s == refresh), 1)
        self.refresh_box.setCurrentIndex(index)
        self._on_refresh_choice(index)
        window = _float(self.settings.value(SETTINGS_WINDOW, 900.0))
        index = next((i for i, (_l, s) in enumerate(WINDOW_CHOICES) if s == window), 1)
        self.plot.window_box.setCurrentIndex(index)

    @property
    def window_s(self) -> float:
        return float(self.plot.window_box.currentData())

    # ------------------------------------------------------------- fetching

    def connect_to(self, url: str) -> None:
        """Read ``url`` from now on; a URL that is none is said in the window, and the server
        read so far (if any) stays."""
        try:
            client = PrometheusClient(url, self.timeout_s)
        except Error as e:
            still = f" (still reading {self.client.url})" if self.client is not None else ""
            self._show_problem(f"{e}{still}")
            if self.client is None:
                self.url_label.setText(f" {url} ")
                self.setWindowTitle("oomscope — fleet (not connected)")
            return
        self.client = client
        self.settings.setValue(SETTINGS_URL, client.url)
        self.url_label.setText(f" {client.url} ")
        self.setWindowTitle(f"oomscope — fleet from {client.url} (read-only)")
        self.refresh()

    def refresh(self) -> None:
        """Ask Prometheus again (off the GUI thread); a refresh asked meanwhile runs right after."""
        if self.client is None:
            return
        if self._future is not None:
            self._again = True
            return
        self._asked = self.client
        self._fetch_started = time.monotonic()
        self._future = self._executor.submit(read_fleet, self.client, self.window_s)
        self._poll_timer.start()
        self.status.setText(f"asking {self.client.url}…")

    @property
    def fetching(self) -> bool:
        return self._future is not None

    def _poll(self) -> None:
        future = self._future
        if future is None or not future.done():
            return
        self._future = None
        self._poll_timer.stop()
        if self._asked is not self.client:
            self.refresh()  # the answer of a server this window no longer reads
            return
        self.fetches += 1
        try:
            fleet = future.result()
        except Error as e:
            self._on_failed(str(e))
        except Exception as e:  # noqa: BLE001 - the window must say it, not die of it
            self._on_failed(f"internal error reading Prometheus: {e!r}")
        else:
            self._on_fetched(fleet, time.monotonic() - self._fetch_started)
        if self._again:
            self._again = False
            self.refresh()

    def _on_failed(self, text: str) -> None:
        every = self.refresh_box.currentData()
        retry = f" — trying again every {self.refresh_box.currentText()}" if every else \
            " — press F5 (Refresh now) to try again"
        shown = " The data shown is from the last successful refresh." if self.fleet is not None else ""
        self._show_problem(f"{text}{retry}.{shown}")
        self.status.setText(f"{time.strftime('%H:%M:%S')}: no answer from Prometheus")
        self.refreshed.emit(False)

    def _show_problem(self, text: str) -> None:
        self.problem = text
        self.message_bar.show_message(text, "error", standing=True)

    def _on_fetched(self, fleet: Fleet, took_s: float) -> None:
        self.fleet = fleet
        self.problem = None
        self.message_bar.end_standing()
        self._fill_roster(fleet)
        self.plot.update_metric_choices()
        self.plot.set_follow(True)
        self.plot.redraw()
        self.timeline.refresh()
        self._show_levels()
        hosts = len(fleet.hosts)
        deaths = len(fleet.deaths)
        self.status.setText(
            f"{time.strftime('%H:%M:%S')}: {hosts} host{'s' * (hosts != 1)}, {len(fleet.workers)} workers, "
            f"{deaths} death{'s' * (deaths != 1)} in the last {self.plot.window_box.currentText()} "
            f"(answered in {took_s:.1f} s, step {fleet.step_s:g} s)")
        self.refreshed.emit(True)

    # ----------------------------------------------------------- showing it

    def _fill_roster(self, fleet: Fleet) -> None:
        """One WorkerState per remote worker, so the view draws and lists them as it does local
        ones (same colours per slot, same lanes); the selection, folded hosts and curves hidden
        stay across refreshes."""
        view = self.view
        chosen = self.selected_keys()
        collapsed = {name for row, name in enumerate(self.model.host_names())
                     if not view.table.isExpanded(view.proxy.mapFromSource(self.model.index(row, 0)))}
        hidden = set(self.plot.visibility.hidden)
        shown_in_detail = view.detail.worker.id if view.detail.worker is not None else None
        self.plot.forget([w.id for w in self.roster.workers])  # their series are replaced
        workers: list[WorkerState] = []
        causes = {d.key: d.cause for d in fleet.deaths if d.key is not None}
        # What the pane tells of a worker's deaths: a container the kubelet restarted runs on.
        told: dict[str, list[str]] = {}
        for d in fleet.deaths:
            if d.key is not None:
                told.setdefault(d.key, []).append(
                    f"{time.strftime('%H:%M:%S', time.localtime(d.t))} {d.cause} (counted by {d.source})")
        for rw in fleet.workers:
            color = self._colors.setdefault((rw.host, rw.worker), len(self._colors))
            ref = WorkerRef(rw.key, rw.pid or 0, float(rw.times[0]), f"{rw.worker} @ {rw.host}", (), False,
                            life=rw.life or 1)
            series = Series()
            # The exporter publishes no cgroup usage: that column stays NaN (no curve on it).
            series.extend(rw.times, history_columns({"rss": rw.rss, "anon": rw.anon, "heap_used": rw.heap_used},
                                                    len(rw.times)))
            w = WorkerState(ref, color, series, cgroup_limit=rw.cgroup_limit, level=rw.level)
            w.evidence = tuple(told.get(rw.key, ()))
            w.last = Sample(ref, _last_int(rw.rss), _last_int(rw.anon), None, None, rw.cgroup_limit,
                            _last_int_or_none(rw.heap_used), None, rw.heap_limit)
            if not rw.running:
                cause = causes.get(rw.key, "unknown")
                w.exit = WorkerExited(rw.last_time, ref, cause=cause, exit_code=None, signal=None)
                w.cause = cause
            workers.append(w)
        self.plot.visibility.hidden |= hidden & {w.id for w in workers}
        self.model.show_fleet(fleet, workers, [Death(d.t, lane_of(d.cause), d.cause, d.key,
                                                     f"{d.worker} @ {d.host}", d.pid) for d in fleet.deaths])
        for row, name in enumerate(self.model.host_names()):
            view.table.setExpanded(view.proxy.mapFromSource(self.model.index(row, 0)), name not in collapsed)
        view.select_workers(chosen)
        if not chosen and shown_in_detail is not None:
            # The pane showed a worker no longer selected: the same worker's new numbers, or nothing.
            again = self.roster.by_id.get(shown_in_detail)
            if again is not None:
                view.detail.show_worker(again)
            else:
                view.detail.clear()
        view.update_status()

    def selected_keys(self) -> list[str]:
        return [w.id for w in self.view.selected_workers()]

    def select_worker(self, key: str) -> bool:
        """Select the worker ``key`` (its host unfolded); False when the fleet has none such."""
        if key not in self.roster.by_id:
            return False
        self.view.select_worker(key)
        return self.selected_keys() == [key]

    def _show_levels(self) -> None:
        """The lines show one selected worker's levels, as its agent reports them, on the metric
        they apply to; with none or several selected there is no one level to show."""
        keys = self.selected_keys()
        rw = self._remote(keys[0]) if len(keys) == 1 else None
        wanted = _LEVEL_METRIC.get(self.plot.shown_metric)
        if rw is None or not rw.levels or rw.levels_metric != wanted:
            self.plot.set_thresholds(None, None)
            return
        warn, crit = rw.levels.get("warning"), rw.levels.get("critical")
        self.plot.alert_metric = self.plot.shown_metric  # the agent's levels are on the plotted metric
        self.plot.set_thresholds(Level(bytes=warn) if warn else None, Level(bytes=crit) if crit else None,
                                 owner=f"{rw.worker} @ {rw.host}")

    def _remote(self, key: str) -> RemoteWorker | None:
        if self.fleet is None:
            return None
        return next((w for w in self.fleet.workers if w.key == key), None)

    def _on_death_clicked(self, death: Death) -> None:
        """The view selects the worker and tells its story; the status bar says when it died."""
        stamp = time.strftime("%H:%M:%S", time.localtime(death.t))
        self.statusBar().showMessage(f"{stamp} {death.summary()}", 10000)

    # -------------------------------------------------------------- choices

    def _on_refresh_choice(self, index: int) -> None:
        seconds = self.refresh_box.itemData(index)
        self.settings.setValue(SETTINGS_REFRESH, "off" if seconds is None else seconds)
        if seconds is None:
            self._refresh_timer.stop()
        else:
            self._refresh_timer.start(int(float(seconds) * 1000))

    def _on_window_choice(self, _index: int) -> None:
        self.settings.setValue(SETTINGS_WINDOW, self.window_s)
        self.refresh()

    def _ask_again(self) -> None:
        url = ask_url(self, self.settings)
        if url is not None:
            self.connect_to(url)

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        self._refresh_timer.stop()
        self._poll_timer.stop()
        # A query in flight ends by its own timeout; its answer is not wanted any more.
        self._executor.shutdown(wait=False, cancel_futures=True)
        super().closeEvent(event)


def _host_tip(name: str, kind: str, sources: dict[str, bool], kills: dict[str, int]) -> str:
    if kind == "kubernetes":
        return f"{name}: Kubernetes node (cAdvisor, kube-state-metrics)"
    lines = [f"{name}: oomscope agent"]
    if sources:
        lines.append("kernel log: " + ", ".join(f"{s} {'readable' if ok else 'NOT readable'}"
                                                for s, ok in sorted(sources.items())))
    if any(kills.values()):
        lines.append("kernel OOM kills since the agent started: "
                     + ", ".join(f"{n} {k}" for k, n in sorted(kills.items()) if n))
    return "\n".join(lines)


def _worker_tip(rw: RemoteWorker) -> str:
    tip = (f"{rw.worker} on {rw.host}" + (f", PID {rw.pid}" if rw.pid is not None else "")
           + (f", life {rw.life}" if rw.life and rw.life > 1 else ""))
    if rw.kind == "kubernetes":
        tip += "\nKubernetes container (cAdvisor): RSS is its working set"
    if rw.levels:
        tip += "\nlevels: " + ", ".join(f"{k} {format_size(v)}" for k, v in sorted(rw.levels.items()))
        tip += f" on {rw.levels_metric or '?'}"
    return tip


def _last_int(values: Any) -> int:
    finite = values[np.isfinite(values)]
    return int(finite[-1]) if len(finite) else 0


def _last_int_or_none(values: Any) -> int | None:
    finite = values[np.isfinite(values)]
    return int(finite[-1]) if len(finite) else None


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
