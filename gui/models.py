"""The worker table: a tree model over the roster (workers; their threads as children).

A ``QAbstractItemModel`` rather than a table model because a Node process's worker threads
belong under it once per-thread heap reports exist. Checked with pytest-qt's ``qtmodeltester``.
"""

from __future__ import annotations

from typing import Any

from oomscope.core.events import Heap, Sample, ThreadExited, WorkerAttached, WorkerStarted
from oomscope.core.forecast import describe_rate
from oomscope.core.sizes import format_size
from oomscope.core.thresholds import CRITICAL, WARNING

from .palette import CRITICAL_RGB, CRITICAL_ROW_RGB, EXITED_TEXT_RGB, WARNING_RGB, WARNING_ROW_RGB, worker_rgb
from .qt import QAbstractItemModel, QModelIndex, QPersistentModelIndex, QSortFilterProxyModel, Qt, QtGui
from .roster import Death, Roster, ThreadState, WorkerState
from .visibility import CurveVisibility

COLUMNS = ("Name", "PID", "State", "RSS", "Anon RSS", "Heap used / limit", "% of limit", "Trend",
           "cgroup limit")
COLUMN_TIPS = (
    "Worker name (the program as launched, or the process name) and oomscope's short id",
    "Process ID (oomscope tracks PID + start time, so a reused PID is never mistaken for it)",
    "running, warning, critical, terminating…, or exited with its cause; an amber/red mark: the "
    "worker has its own thresholds (context menu)",
    "Resident set size: all memory of the process currently in RAM",
    "Anonymous RSS: heap and stacks — what the kernel's OOM killer counts",
    "V8 heap used / heap limit (Node.js workers with the heap reporter; – where unknown)",
    "What the limit counts, as a percent of it: the cgroup's usage (else anon RSS) of the cgroup limit; "
    "the heap used of the V8 limit for heap",
    "Growth of the threshold metric over the last minute (the engine's fit to its floors; "
    "the plotted metric's change where the engine has no figure yet), and when it reaches the levels",
    "The memory limit of the worker's cgroup (smallest of its cgroup and parents)",
)
(COL_NAME, COL_PID, COL_STATE, COL_RSS, COL_ANON, COL_HEAP, COL_PERCENT, COL_TREND,
 COL_LIMIT) = range(len(COLUMNS))
NUMERIC = {COL_PID, COL_RSS, COL_ANON, COL_HEAP, COL_PERCENT, COL_TREND, COL_LIMIT}

SORT_ROLE = int(Qt.ItemDataRole.UserRole) + 1
WORKER_ID_ROLE = int(Qt.ItemDataRole.UserRole) + 2
_TOP = 0  # internalId of top-level rows; a thread row stores its worker's row + 1

ModelIndex = QModelIndex | QPersistentModelIndex


class WorkerTreeModel(QAbstractItemModel):
    def __init__(self, roster: Roster, parent: Any = None) -> None:
        super().__init__(parent)
        self.roster = roster
        self.metric = "rss"
        self._swatches: dict[tuple[int, int, int], QtGui.QIcon] = {}
        self._levels_icon: QtGui.QIcon | None = None
        self._exited_brush = QtGui.QBrush(QtGui.QColor(*EXITED_TEXT_RGB))
        self._warn_brush = QtGui.QBrush(QtGui.QColor(*WARNING_ROW_RGB))
        self._crit_brush = QtGui.QBrush(QtGui.QColor(*CRITICAL_ROW_RGB))
        self._bold = QtGui.QFont()
        self._bold.setBold(True)
        # The plot's: the Name column's check box shows and sets whether a curve is drawn.
        self.visibility: CurveVisibility | None = None

    def set_visibility(self, visibility: CurveVisibility) -> None:
        self.visibility = visibility
        visibility.hidden_changed.connect(self._on_visibility_changed)

    def _on_visibility_changed(self) -> None:
        rows = len(self.roster.workers)
        if rows:
            self.dataChanged.emit(self.index(0, COL_NAME), self.index(rows - 1, COL_NAME),
                                  [Qt.ItemDataRole.CheckStateRole])

    # ------------------------------------------------------------- structure

    def index(self, row: int, column: int, parent: ModelIndex = QModelIndex()) -> QModelIndex:
        if not self.hasIndex(row, column, parent):
            return QModelIndex()
        if not parent.isValid():
            return self.createIndex(row, column, _TOP)
        if parent.internalId() == _TOP:
            return self.createIndex(row, column, parent.row() + 1)
        return QModelIndex()

    def parent(self, child: ModelIndex = QModelIndex()) -> QModelIndex:  # type: ignore[override]
        if not child.isValid() or child.internalId() == _TOP:
            return QModelIndex()
        return self.createIndex(child.internalId() - 1, 0, _TOP)

    def rowCount(self, parent: ModelIndex = QModelIndex()) -> int:
        if not parent.isValid():
            return len(self.roster.workers)
        if parent.column() != 0:
            return 0
        if parent.internalId() == _TOP:
            return len(self.roster.workers[parent.row()].threads)
        return 0

    def columnCount(self, parent: ModelIndex = QModelIndex()) -> int:
        return len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(COLUMNS):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        if role == Qt.ItemDataRole.ToolTipRole:
            return COLUMN_TIPS[section]
        return None

    def flags(self, index: ModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        flags = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        if self.visibility is not None and index.column() == COL_NAME and index.internalId() == _TOP:
            flags |= Qt.ItemFlag.ItemIsUserCheckable
        return flags

    def setData(self, index: ModelIndex, value: Any, role: int = Qt.ItemDataRole.EditRole) -> bool:  # noqa: N802
        """The Name column's check box: unchecked hides the worker's curve (as its legend entry does)."""
        if (role != Qt.ItemDataRole.CheckStateRole or self.visibility is None or not index.isValid()
                or index.internalId() != _TOP or index.column() != COL_NAME):
            return False
        w = self.roster.workers[index.row()]
        checked = Qt.CheckState(value) == Qt.CheckState.Checked if not isinstance(value, bool) else value
        self.visibility.set_hidden(w.id, not checked)  # its changed signal repaints the box
        return True

    # ------------------------------------------------------------------ data

    def worker_at(self, index: ModelIndex) -> WorkerState | None:
        if not index.isValid():
            return None
        row = index.row() if index.internalId() == _TOP else index.internalId() - 1
        if 0 <= row < len(self.roster.workers):
            return self.roster.workers[row]
        return None

    def row_of(self, worker_id: str) -> QModelIndex:
        for row, w in enumerate(self.roster.workers):
            if w.id == worker_id:
                return self.index(row, 0)
        return QModelIndex()

    def data(self, index: ModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        if index.internalId() != _TOP:
            w = self.worker_at(index)
            if w is None or index.row() >= len(w.threads):
                return None
            return self._thread_data(w.threads[index.row()], index.column(), role)
        return self.worker_data(self.roster.workers[index.row()], index.column(), role)

    def worker_data(self, w: WorkerState, col: int, role: int) -> Any:
        """A worker's row, wherever it sits in the tree (the fleet's are under their host)."""
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(w, col)
        if role == SORT_ROLE:
            return self._sort_key(w, col)
        if role == WORKER_ID_ROLE:
            return w.id
        if role == Qt.ItemDataRole.CheckStateRole and col == COL_NAME and self.visibility is not None:
            return Qt.CheckState.Unchecked if self.visibility.is_hidden(w.id) else Qt.CheckState.Checked
        if role == Qt.ItemDataRole.TextAlignmentRole:
            if col in NUMERIC:
                return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            return int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.BackgroundRole and w.alive:
            if w.level == CRITICAL:
                return self._crit_brush
            if w.level == WARNING:
                return self._warn_brush
            return None
        if role == Qt.ItemDataRole.ForegroundRole and not w.alive:
            return self._exited_brush
        if role == Qt.ItemDataRole.FontRole and col == COL_STATE and w.alive and w.level == CRITICAL:
            return self._bold
        if role == Qt.ItemDataRole.DecorationRole and col == COL_NAME:
            return self._swatch(w.color_index)
        if role == Qt.ItemDataRole.DecorationRole and col == COL_STATE and w.override is not None and w.alive:
            return self._own_levels_icon()
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == COL_TREND and w.alive and w.last is not None:
                # The cell's own tip is the forecast alone: that is what a hover over it asks.
                eta = eta_text(w.last)
                if eta is not None:
                    return eta
            return self._tooltip(w)
        return None

    def _text(self, w: WorkerState, col: int) -> str:
        s = w.last
        if col == COL_NAME:
            slot = w.slot_text()
            return f"{w.ref.name} ({w.id})" + (f" · {slot}" if slot else "")
        if col == COL_PID:
            return str(w.ref.pid)
        if col == COL_STATE:
            return w.state_text()
        if col == COL_RSS:
            return format_size(s.rss) if s is not None else "–"
        if col == COL_ANON:
            return format_size(s.anon) if s is not None else "–"
        if col == COL_HEAP:
            if s is None:
                return "–"
            if s.heap_used is None:
                # No reporter speaks for this process: anonymous RSS stands in, and says so.
                return f"{format_size(s.anon)} (anon)"
            return heap_text(s.heap_used, s.heap_limit)
        if col == COL_PERCENT:
            pct = self._percent(w)
            return "–" if pct is None else f"{pct:.0f} %"
        if col == COL_TREND:
            if not w.alive:
                return "–"
            # The engine's figure alone: fitted to the floors of a GC sawtooth and given only once
            # the evidence is strong. A slope of the last minute's samples here showed a steady
            # worker at +52 MiB/min (seen in the demo): while the engine has none, "–".
            return describe_rate(s.trend_bytes_per_s if s is not None else None)
        if col == COL_LIMIT:
            return format_size(w.cgroup_limit) if w.cgroup_limit else "none"
        return ""

    def _percent(self, w: WorkerState) -> float | None:
        value, limit = w.limited_value(self.metric), w.limit(self.metric)
        if value is None or not limit:
            return None
        return 100.0 * value / limit

    def _sort_key(self, w: WorkerState, col: int) -> Any:
        s = w.last
        if col == COL_NAME:
            return f"{w.ref.name} {int(w.id[1:]):08d}" if w.id[1:].isdigit() else w.ref.name
        if col == COL_PID:
            return w.ref.pid
        if col == COL_STATE:
            return w.state_text()
        if col == COL_RSS:
            return s.rss if s is not None else -1
        if col == COL_ANON:
            return s.anon if s is not None else -1
        if col == COL_HEAP:
            return s.heap_used if s is not None and s.heap_used is not None else -1
        if col == COL_PERCENT:
            pct = self._percent(w)
            return -1.0 if pct is None else pct
        if col == COL_TREND:
            if not w.alive:
                return -1e18
            if s is not None and s.trend_bytes_per_s is not None:
                return s.trend_bytes_per_s
            return -1e18
        if col == COL_LIMIT:
            return w.cgroup_limit or 0
        return None

    def _tooltip(self, w: WorkerState) -> str:
        lines = [f"{w.ref.name} — worker {w.id}{w.pid_text()}",
                 "command: " + " ".join(w.ref.cmd)]
        if w.cgroup:
            lines.append(f"cgroup: {w.cgroup}")
        lines.append(w.state_text() + (f" — {w.memory_text()}" if w.last else ""))
        eta = eta_text(w.last) if w.alive and w.last is not None else None
        if eta is not None:
            lines.append(eta)
        if w.ref.slot is not None:
            deaths = self.roster.slot_deaths_text(w)
            lines.append(f"slot {w.ref.slot}, life {w.ref.life}"
                         + (f" — deaths in this slot so far: {deaths}" if deaths else ""))
        lines.extend(w.notices)
        own = w.levels_text()
        if own is not None:
            lines.append(f"own thresholds: {own} (instead of the global ones)")
        lines.extend(w.evidence)
        lines.extend(f"doctor: {a.advice}" for a in w.advice)
        return "\n".join(lines)

    def _thread_data(self, th: ThreadState, col: int, role: int) -> Any:
        if role == SORT_ROLE:
            return th.thread_id if col != COL_HEAP else (th.heap_used or 0)
        if role == Qt.ItemDataRole.ForegroundRole and th.cause is not None:
            return self._exited_brush
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        if col == COL_NAME:
            return f"thread {th.thread_id}"
        if col == COL_STATE:
            return th.state_text()
        if col == COL_HEAP and th.heap_used is not None:
            return heap_text(th.heap_used, th.heap_limit)
        if col == COL_PERCENT and th.heap_used is not None and th.heap_limit:
            return f"{100.0 * th.heap_used / th.heap_limit:.0f} %"
        return ""

    def threads_changed(self, w: WorkerState) -> None:
        parent = self.row_of(w.id)
        rows = len(w.threads)
        if rows:
            self.dataChanged.emit(self.index(0, 0, parent), self.index(rows - 1, len(COLUMNS) - 1, parent))

    def _own_levels_icon(self) -> QtGui.QIcon:
        """An amber and a red bar, like the plot's two lines: "this worker has its own levels"."""
        if self._levels_icon is None:
            pm = QtGui.QPixmap(12, 12)
            pm.fill(QtGui.QColor(0, 0, 0, 0))
            p = QtGui.QPainter(pm)
            p.fillRect(0, 2, 12, 3, QtGui.QColor(*CRITICAL_RGB))
            p.fillRect(0, 7, 12, 3, QtGui.QColor(*WARNING_RGB))
            p.end()
            self._levels_icon = QtGui.QIcon(pm)
        return self._levels_icon

    def _swatch(self, color_index: int) -> QtGui.QIcon:
        # By colour, not index: the index grows with every worker ever seen, the colours do not.
        rgb = worker_rgb(color_index)
        icon = self._swatches.get(rgb)
        if icon is None:
            pm = QtGui.QPixmap(12, 12)
            pm.fill(QtGui.QColor(*rgb))
            icon = self._swatches[rgb] = QtGui.QIcon(pm)
        return icon

    # --------------------------------------------------------------- updates

    def add_worker(self, ev: WorkerStarted | WorkerAttached) -> WorkerState:
        """Insert the worker an event announces (rows announced before the roster changes,
        as Qt's contract and every proxy on top of this model expect)."""
        known = self.roster.by_id.get(ev.worker.id)
        if known is not None:
            return known
        # The roster keeps the latest exits only (gui/roster.py EXITED_ROWS_KEPT): a new worker
        # is when the oldest rows beyond that go, so the rows stay bounded under churn.
        for old in self.roster.overflow():
            gone = self.roster.workers.index(old)
            self.beginRemoveRows(QModelIndex(), gone, gone)
            self.roster.forget(old)
            self.endRemoveRows()
        row = len(self.roster.workers)
        self.beginInsertRows(QModelIndex(), row, row)
        w = self.roster.add(ev)
        self.endInsertRows()
        return w

    def apply_heap(self, ev: Heap) -> WorkerState | None:
        """A thread's heap report: a new child row for a thread seen for the first time."""
        w = self.roster.by_id.get(ev.worker.id)
        if w is None or ev.is_main:
            self.roster.on_heap(ev)  # no row, but the plot's per-thread curve needs the main thread too
            return w
        if not any(th.thread_id == ev.thread_id for th in w.threads):
            row = len(w.threads)
            self.beginInsertRows(self.row_of(w.id), row, row)
            self.roster.on_heap(ev)
            self.endInsertRows()
        else:
            self.roster.on_heap(ev)
            self.threads_changed(w)
        return w

    def apply_thread_exit(self, ev: ThreadExited) -> tuple[WorkerState | None, Death | None]:
        """A worker thread ended: its row says how (a row is added for a thread that died
        before its first heap report)."""
        w = self.roster.by_id.get(ev.worker.id)
        if w is None:
            return self.roster.on_thread_exit(ev)
        if any(th.thread_id == ev.thread_id for th in w.threads):
            result = self.roster.on_thread_exit(ev)
            self.threads_changed(w)
            return result
        row = len(w.threads)
        self.beginInsertRows(self.row_of(w.id), row, row)
        result = self.roster.on_thread_exit(ev)
        self.endInsertRows()
        return result

    def worker_changed(self, w: WorkerState) -> None:
        index = self.row_of(w.id)
        if index.isValid():
            self.dataChanged.emit(index, index.siblingAtColumn(len(COLUMNS) - 1))

    def refresh_values(self) -> None:
        """Values changed for every row (a sampling tick): one signal for the whole block."""
        rows = len(self.roster.workers)
        if rows:
            self.dataChanged.emit(self.index(0, COL_STATE), self.index(rows - 1, len(COLUMNS) - 1))

    def set_metric(self, metric: str) -> None:
        self.metric = metric
        self.refresh_values()


class WorkerFilterProxy(QSortFilterProxyModel):
    """Sorts by the numeric sort role; filters on any column's text, keeping matching parents."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.setSortRole(SORT_ROLE)
        self.setFilterKeyColumn(-1)
        self.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.setRecursiveFilteringEnabled(True)
        self.setDynamicSortFilter(True)
        self.visibility: CurveVisibility | None = None
        self._passing: set[str] = set()
        for signal in (self.rowsInserted, self.rowsRemoved, self.modelReset, self.layoutChanged):
            signal.connect(self._refilter)

    def share_with(self, visibility: CurveVisibility) -> None:
        """The plot draws what this filter lets through: ``visibility`` learns each verdict."""
        self.visibility = visibility
        self._refilter()

    def setFilterFixedString(self, pattern: str) -> None:  # noqa: N802 (Qt's name, which the window calls)
        super().setFilterFixedString(pattern)
        self._refilter()

    def _refilter(self, *_: object) -> None:
        """Recompute, once per change of the table's rows, which workers pass: a redraw then asks
        a set, not the proxy's mapping, for each of hundreds of workers."""
        if self.visibility is None:
            return
        if not self.filterRegularExpression().pattern():
            if self.visibility.passes_filter is not None:
                self.visibility.set_filter(None)
            return
        passing = self._ids_under(QModelIndex())
        if passing != self._passing or self.visibility.passes_filter is None:
            self._passing = passing
            self.visibility.set_filter(passing.__contains__)


    def _ids_under(self, parent: QModelIndex) -> set[str]:
        """The workers among the rows passing under ``parent``: a row without a worker id (the
        fleet's host) stands for the workers under it."""
        out: set[str] = set()
        for row in range(self.rowCount(parent)):
            index = self.index(row, 0, parent)
            wid = index.data(WORKER_ID_ROLE)
            if wid is not None:
                out.add(str(wid))
            elif self.hasChildren(index):
                out |= self._ids_under(index)
        return out


def heap_text(used: int, limit: int | None) -> str:
    """Heap used and its limit; just the used part where there is no limit (Python without rlimit)."""
    return f"{format_size(used)} / {format_size(limit)}" if limit else format_size(used)


def duration_text(seconds: float) -> str:
    """A forecast's distance in words: ``45 s``, ``2 min 10 s``, ``3 min``, ``1 h 5 min``, ``2 d 3 h``.

    Two units at most: a rate fitted over a minute is not precise enough for more."""
    total = max(0, int(round(seconds)))
    if total < 60:
        return f"{total} s"
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "min", 60), ("min", 60, "s", 1)):
        if total >= size:
            major, rest = divmod(total, size)
            minor = rest // sub_size
            return f"{major} {unit}" + (f" {minor} {sub}" if minor else "")
    return f"{total} s"  # unreachable: total >= 60 matched "min"


def eta_text(s: Sample) -> str | None:
    """``critical in 2 min 10 s · limit in 3 min`` from the engine's forecast; None without one
    (not growing, or no level and no limit to reach)."""
    parts = []
    for name, eta in (("critical", s.eta_crit_s), ("limit", s.eta_limit_s)):
        if eta is None:
            continue
        # 0.0 is the engine's "already at or above it": a time of "0 s" would read like a glitch.
        parts.append(f"{name} reached" if eta <= 0.0 else f"{name} in {duration_text(eta)}")
    return " · ".join(parts) if parts else None
