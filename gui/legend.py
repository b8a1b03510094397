"""The plot's legend: one entry per worker with a curve (its colour, name, id and PID); clicking
an entry hides or shows that worker's curve. It lists what the table's filter lets through."""

from __future__ import annotations

from collections.abc import Sequence

from .palette import worker_rgb
from .qt import Qt, QtGui, QtWidgets
from .roster import WorkerState
from .visibility import CurveVisibility

LEGEND_WIDTH_PX = 180
WORKER_ID_ROLE = int(Qt.ItemDataRole.UserRole) + 1


def legend_text(w: WorkerState) -> str:
    """Short, for a narrow column: the name and PID; the id is in the entry's tip."""
    return w.ref.name + w.pid_text(" · ", label="")


def swatch_pixmap(rgb: tuple[int, int, int], width: int = 18, height: int = 10) -> QtGui.QPixmap:
    """A short thick stroke of the curve's colour: reads as "this line" more than a square does."""
    pm = QtGui.QPixmap(width, height)
    pm.fill(QtGui.QColor(0, 0, 0, 0))
    p = QtGui.QPainter(pm)
    p.fillRect(0, height // 2 - 2, width, 4, QtGui.QColor(*rgb))
    p.end()
    return pm


class PlotLegend(QtWidgets.QWidget):
    def __init__(self, visibility: CurveVisibility, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("plot-legend")
        self.visibility = visibility
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(1)
        title = QtWidgets.QLabel("Legend · click hides")
        title.setStyleSheet("color: rgb(90, 90, 90);")
        layout.addWidget(title)
        self.list = QtWidgets.QListWidget()
        self.list.setObjectName("legend-list")
        self.list.setToolTip("One entry per worker the table lists that has a curve; click one to hide or show it "
                             "(the Workers table's check boxes do the same)")
        self.list.setUniformItemSizes(True)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.list.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
        self.list.itemClicked.connect(self._on_clicked)
        self.list.itemActivated.connect(self._on_clicked)  # Enter or Space on the keyboard
        layout.addWidget(self.list, 1)
        self.setFixedWidth(LEGEND_WIDTH_PX)
        self._keys: list[tuple[object, ...]] = []  # one per entry, top to bottom
        self._icons: dict[tuple[int, int, int], QtGui.QIcon] = {}

    def refresh(self, workers: Sequence[WorkerState]) -> None:
        """Entries for ``workers`` (those the filter lets through). A redraw 20 times a second
        must not rebuild a list, nor must one exit among hundreds of rows: only entries whose
        name, colour or state changed are touched, and rows are moved only when the order did."""
        # A worker with no sample has no curve to name (a pool recycling its workers after one
        # request each brings hundreds of those): its table row and death marker tell of it.
        listed = [w for w in workers if len(w.series) and not self.visibility.filtered_out(w.id)]
        keys = [self._entry_key(w) for w in listed]
        if keys == self._keys:
            return
        before = {key[0]: key for key in self._keys}
        wanted = {w.id for w in listed}
        for row in range(self.list.count() - 1, -1, -1):
            if self.list.item(row).data(WORKER_ID_ROLE) not in wanted:
                self.list.takeItem(row)
        for row, (w, key) in enumerate(zip(listed, keys)):
            item = self.list.item(row) if row < self.list.count() else None
            if item is None or item.data(WORKER_ID_ROLE) != w.id:
                item = self._take(w.id, row) or QtWidgets.QListWidgetItem()
                item.setData(WORKER_ID_ROLE, w.id)
                # Not user-checkable: a click anywhere on the entry toggles (below), once.
                item.setFlags(Qt.ItemFlag.ItemIsEnabled)
                self.list.insertItem(row, item)
            elif before.get(w.id) == key:
                continue
            self._fill(item, w)
        self._keys = keys

    def _entry_key(self, w: WorkerState) -> tuple[object, ...]:
        return (w.id, legend_text(w), w.color_index, self.visibility.is_hidden(w.id), w.alive)

    def _take(self, worker_id: str, after: int) -> QtWidgets.QListWidgetItem | None:
        """The entry of ``worker_id`` out of the list, if it is further down than ``after``."""
        for row in range(after + 1, self.list.count()):
            if self.list.item(row).data(WORKER_ID_ROLE) == worker_id:
                return self.list.takeItem(row)
        return None

    def _fill(self, item: QtWidgets.QListWidgetItem, w: WorkerState) -> None:
        hidden = self.visibility.is_hidden(w.id)
        item.setIcon(self._icon(w.color_index))
        item.setText(legend_text(w))
        item.setData(Qt.ItemDataRole.CheckStateRole,
                     Qt.CheckState.Unchecked if hidden else Qt.CheckState.Checked)
        state = "hidden — click to show" if hidden else "click to hide"
        item.setToolTip(f"{w.ref.name}, worker {w.id}{w.pid_text()}: {w.state_text()} ({state})")
        if hidden or not w.alive:
            item.setForeground(QtGui.QBrush(QtGui.QColor(140, 140, 140)))
        else:
            item.setData(Qt.ItemDataRole.ForegroundRole, None)  # the style's own text colour

    def entries(self) -> list[tuple[str, str, bool]]:
        """(worker id, text, shown) of every entry, top to bottom."""
        out = []
        for row in range(self.list.count()):
            item = self.list.item(row)
            out.append((str(item.data(WORKER_ID_ROLE)), item.text(),
                        item.data(Qt.ItemDataRole.CheckStateRole) == Qt.CheckState.Checked))
        return out

    def item_of(self, worker_id: str) -> QtWidgets.QListWidgetItem | None:
        for row in range(self.list.count()):
            item = self.list.item(row)
            if item.data(WORKER_ID_ROLE) == worker_id:
                return item
        return None

    def _on_clicked(self, item: QtWidgets.QListWidgetItem) -> None:
        self.visibility.toggle(str(item.data(WORKER_ID_ROLE)))

    def _icon(self, color_index: int) -> QtGui.QIcon:
        rgb = worker_rgb(color_index)  # by colour: the index grows with every worker ever seen
        icon = self._icons.get(rgb)
        if icon is None:
            icon = self._icons[rgb] = QtGui.QIcon(swatch_pixmap(rgb))
        return icon
