"""*File → Connect to Prometheus…*: the fleet as a Prometheus server holds it, read-only.

Hosts and their workers (oomscope agents, and Kubernetes containers where cAdvisor and
kube-state-metrics report them) in a tree; their memory on the same plot, and their deaths on the
same kill timeline, as the main window's (one Roster feeds both, rebuilt at every refresh).

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

from .history import Series, history_columns
from .palette import CRITICAL_ROW_RGB, EXITED_TEXT_RGB, WARNING_ROW_RGB, worker_color
from .plot import MemoryPlot
from .qt import QSettings, Qt, QTimer, QtGui, QtWidgets, Signal
from .roster import Death, Roster, WorkerState, lane_of
from .timeline import KillTimeline, stacked_with_timeline

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
COLUMNS = ("Host / worker", "PID", "State", "Memory", "Limit", "Deaths")
(COL_NAME, COL_PID, COL_STATE, COL_MEMORY, COL_LIMIT, COL_DEATHS) = range(len(COLUMNS))
KEY_ROLE = int(Qt.ItemDataRole.UserRole) + 1


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
        self.roster = Roster()
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

        self.problem_label = QtWidgets.QLabel()
        self.problem_label.setObjectName("fleet-problem")
        self.problem_label.setWordWrap(True)
        self.problem_label.setStyleSheet("background: rgb(250, 220, 220); padding: 4px; border-radius: 3px")
        self.problem_label.setVisible(False)

        self.tree = QtWidgets.QTreeWidget()
        self.tree.setObjectName("fleet-tree")
        self.tree.setColumnCount(len(COLUMNS))
        self.tree.setHeaderLabels(list(COLUMNS))
        self.tree.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.ExtendedSelection)
        self.tree.setUniformRowHeights(True)
        self.tree.setSortingEnabled(True)
        self.tree.sortByColumn(COL_NAME, Qt.SortOrder.AscendingOrder)
        self.tree.itemSelectionChanged.connect(self._on_selection_changed)
        header = self.tree.header()
        for col, width in ((COL_NAME, 184), (COL_PID, 52), (COL_STATE, 118), (COL_MEMORY, 74),
                           (COL_LIMIT, 68), (COL_DEATHS, 48)):
            header.resizeSection(col, width)
        left = QtWidgets.QWidget()
        left_layout = QtWidgets.QVBoxLayout(left)
        left_layout.setContentsMargins(4, 4, 4, 4)
        left_layout.addWidget(self.problem_label)
        left_layout.addWidget(self.tree, 1)

        self.plot = MemoryPlot(self.roster)
        # Read-only: levels come from the agents, and a line here would change nothing anywhere.
        for line in self.plot.lines.values():
            line.setMovable(False)
        self.plot.empty_label.setText("Nothing yet: no oomscope or Kubernetes memory series in this window")
        self.plot.metric_changed.connect(lambda _m: self._show_levels())
        self._use_window_choices()
        self.timeline = KillTimeline(self.roster)
        self.timeline.link_x(self.plot.plot_item)
        self.timeline.death_clicked.connect(self._on_death_clicked)
        right = stacked_with_timeline(self.plot, self.timeline,
                                      "Kill timeline (exits counted by the agents; Kubernetes OOM kills)",
                                      "One marker per death the agents counted, and per Kubernetes OOM kill",
                                      (520, 200))
        split = QtWidgets.QSplitter(Qt.Orientation.Horizontal)
        split.setObjectName("fleet-splitter")
        split.addWidget(left)
        split.addWidget(right)
        split.setSizes([560, 740])
        self.setCentralWidget(split)
        self.status = QtWidgets.QLabel("connecting…")
        self.status.setObjectName("fleet-status")
        self.statusBar().addWidget(self.status, 1)

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
        self.problem_label.setText(text)
        self.problem_label.setVisible(True)

    def _on_fetched(self, fleet: Fleet, took_s: float) -> None:
        self.fleet = fleet
        self.problem = None
        self.problem_label.setVisible(False)
        self._fill_roster(fleet)
        self._fill_tree(fleet)
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
        """One WorkerState per remote worker, so the plot and the timeline draw them as they
        draw local ones (same colours per slot, same lanes)."""
        self.plot.forget([w.id for w in self.roster.workers])
        workers: list[WorkerState] = []
        causes = {d.key: d.cause for d in fleet.deaths if d.key is not None}
        for rw in fleet.workers:
            color = self._colors.setdefault((rw.host, rw.worker), len(self._colors))
            ref = WorkerRef(rw.key, rw.pid or 0, float(rw.times[0]), f"{rw.worker} @ {rw.host}", (), False,
                            life=rw.life or 1)
            series = Series()
            # The exporter publishes no cgroup usage: that column stays NaN (no curve on it).
            series.extend(rw.times, history_columns({"rss": rw.rss, "anon": rw.anon, "heap_used": rw.heap_used},
                                                    len(rw.times)))
            w = WorkerState(ref, color, series, cgroup_limit=rw.cgroup_limit, level=rw.level)
            w.last = Sample(ref, _last_int(rw.rss), _last_int(rw.anon), None, None, rw.cgroup_limit,
                            _last_int_or_none(rw.heap_used), None, rw.heap_limit)
            if not rw.running:
                cause = causes.get(rw.key, "unknown")
                w.exit = WorkerExited(rw.last_time, ref, cause=cause, exit_code=None, signal=None)
                w.cause = cause
            workers.append(w)
        self.roster.replace_all(workers, (Death(d.t, lane_of(d.cause), d.cause, d.key, f"{d.worker} @ {d.host}", d.pid)
                                          for d in fleet.deaths))

    def _fill_tree(self, fleet: Fleet) -> None:
        chosen = set(self.selected_keys())
        collapsed = {host.text(COL_NAME) for host in self._host_items() if not host.isExpanded()}
        self.tree.blockSignals(True)
        self.tree.setSortingEnabled(False)
        self.tree.clear()
        deaths_of: dict[str, int] = {}
        host_deaths: dict[str, int] = {}
        for d in fleet.deaths:
            host_deaths[d.host] = host_deaths.get(d.host, 0) + 1
            if d.key is not None:
                deaths_of[d.key] = deaths_of.get(d.key, 0) + 1
        for host in fleet.hosts:
            item = QtWidgets.QTreeWidgetItem(self.tree)
            workers = fleet.workers_of(host.name)
            item.setText(COL_NAME, host.name)
            noun = "container" if host.kind == "kubernetes" else "worker"
            item.setText(COL_STATE, f"{len(workers)} {noun}{'s' * (len(workers) != 1)}")
            item.setText(COL_DEATHS, str(host_deaths.get(host.name, 0)))
            item.setToolTip(COL_NAME, _host_tip(host.name, host.kind, host.sources, host.kernel_kills))
            item.setToolTip(COL_STATE, item.toolTip(COL_NAME))
            font = item.font(COL_NAME)
            font.setBold(True)
            item.setFont(COL_NAME, font)
            if any(not ok for ok in host.sources.values()) and not any(host.sources.values()):
                item.setText(COL_STATE, item.text(COL_STATE) + " · no kernel log")
            for rw in workers:
                self._worker_item(item, rw, deaths_of.get(rw.key, 0))
            item.setExpanded(host.name not in collapsed)
        self.tree.setSortingEnabled(True)
        self.tree.blockSignals(False)
        for item in self._worker_items():
            if item.data(COL_NAME, KEY_ROLE) in chosen:
                item.setSelected(True)
        self._on_selection_changed()

    def _worker_item(self, parent: QtWidgets.QTreeWidgetItem, rw: RemoteWorker, deaths: int) -> None:
        w = self.roster.by_id[rw.key]
        item = QtWidgets.QTreeWidgetItem(parent)
        item.setData(COL_NAME, KEY_ROLE, rw.key)
        item.setText(COL_NAME, rw.worker)
        item.setIcon(COL_NAME, _swatch(w.color_index))
        item.setText(COL_PID, str(rw.pid) if rw.pid is not None else "")
        item.setText(COL_STATE, w.state_text())
        memory = w.last.rss if w.last is not None else None
        item.setText(COL_MEMORY, format_size(memory))
        item.setText(COL_LIMIT, format_size(rw.cgroup_limit) if rw.cgroup_limit else "")
        item.setText(COL_DEATHS, str(deaths) if deaths else "")
        for col in (COL_PID, COL_MEMORY, COL_LIMIT, COL_DEATHS):
            item.setTextAlignment(col, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        tip = (f"{rw.worker} on {rw.host}" + (f", PID {rw.pid}" if rw.pid is not None else "")
               + (f", life {rw.life}" if rw.life and rw.life > 1 else ""))
        if rw.kind == "kubernetes":
            tip += "\nKubernetes container (cAdvisor): Memory is its working set"
        if rw.levels:
            tip += "\nlevels: " + ", ".join(f"{k} {format_size(v)}" for k, v in sorted(rw.levels.items()))
            tip += f" on {rw.levels_metric or '?'}"
        for col in range(len(COLUMNS)):
            item.setToolTip(col, tip)
        if not rw.running:
            for col in range(len(COLUMNS)):
                item.setForeground(col, QtGui.QBrush(QtGui.QColor(*EXITED_TEXT_RGB)))
        elif rw.level in ("warning", "critical"):
            rgb = CRITICAL_ROW_RGB if rw.level == "critical" else WARNING_ROW_RGB
            for col in range(len(COLUMNS)):
                item.setBackground(col, QtGui.QBrush(QtGui.QColor(*rgb)))

    def _host_items(self) -> list[QtWidgets.QTreeWidgetItem]:
        hosts = (self.tree.topLevelItem(i) for i in range(self.tree.topLevelItemCount()))
        return [h for h in hosts if h is not None]

    def _worker_items(self) -> list[QtWidgets.QTreeWidgetItem]:
        out: list[QtWidgets.QTreeWidgetItem] = []
        for host in self._host_items():
            children = (host.child(j) for j in range(host.childCount()))
            out.extend(c for c in children if c is not None)
        return out

    def selected_keys(self) -> list[str]:
        return [str(k) for item in self.tree.selectedItems() if (k := item.data(COL_NAME, KEY_ROLE))]

    def select_worker(self, key: str) -> bool:
        for item in self._worker_items():
            if item.data(COL_NAME, KEY_ROLE) == key:
                self.tree.clearSelection()
                item.setSelected(True)
                self.tree.scrollToItem(item)
                return True
        return False

    def _on_selection_changed(self) -> None:
        self.plot.set_selected(self.selected_keys())
        self._show_levels()

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
        stamp = time.strftime("%H:%M:%S", time.localtime(death.t))
        self.statusBar().showMessage(f"{stamp} {death.summary()}", 10000)
        if death.worker_id is not None:
            self.select_worker(death.worker_id)

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


def _swatch(color_index: int) -> QtGui.QIcon:
    pm = QtGui.QPixmap(12, 12)
    pm.fill(worker_color(color_index))
    return QtGui.QIcon(pm)


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
