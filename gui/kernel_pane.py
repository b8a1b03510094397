"""Kernel log pane: live OOM-related kernel lines (or all of them), lines of a worker's kill
record highlighted and clickable."""

from __future__ import annotations

import re
import time
from collections import deque

from oomscope.core.events import KernelLineRead
from oomscope.core.oomlog.records import KillRecord
from oomscope.core.oomlog.lines import readable_line

from .qt import Qt, QtGui, QtWidgets, Signal

_MAX_LINES = 5000
_KERNEL_STAMP = re.compile(r"^\[\s*\d+\.\d+\]\s?")
WORKER_ROLE = int(Qt.ItemDataRole.UserRole) + 10


class KernelLogPane(QtWidgets.QWidget):
    worker_clicked = Signal(str)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._lines: deque[KernelLineRead] = deque(maxlen=_MAX_LINES)
        self._tied: dict[str, str] = {}  # raw line -> worker id
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        bar = QtWidgets.QHBoxLayout()
        self.source_label = QtWidgets.QLabel("kernel log: starting…")
        self.source_label.setObjectName("kernel-source")
        self.source_label.setToolTip("Where oomscope reads the kernel log, and why not when it cannot")
        self.source_label.setWordWrap(True)
        bar.addWidget(self.source_label, 1)
        self.all_lines = QtWidgets.QCheckBox("All lines")
        self.all_lines.setObjectName("kernel-all-lines")
        self.all_lines.setToolTip("Show every kernel line, not only those of OOM reports")
        self.all_lines.toggled.connect(self._rebuild)
        bar.addWidget(self.all_lines)
        layout.addLayout(bar)
        self.list = QtWidgets.QListWidget()
        self.list.setObjectName("kernel-lines")
        self.list.setToolTip("Kernel OOM lines as they arrive; lines of a watched worker's kill are "
                             "highlighted — click one to select that worker")
        self.list.setUniformItemSizes(True)
        font = QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.SystemFont.FixedFont)
        font.setPointSizeF(max(8.0, font.pointSizeF() - 0.5))
        self.list.setFont(font)
        self.list.itemClicked.connect(self._on_item_clicked)
        layout.addWidget(self.list, 1)
        self._tied_brush = QtGui.QBrush(QtGui.QColor(252, 215, 215))
        self._history_brush = QtGui.QBrush(QtGui.QColor(130, 130, 130))

    def set_source(self, source: str, ok: bool, reason: str | None) -> None:
        if ok:
            self.source_label.setText(f"kernel log: <b>{source}</b>")
        else:
            self.source_label.setText(f"kernel log: <b>{source}</b> unavailable — {reason or 'no reason given'}")

    def add_line(self, line: KernelLineRead) -> None:
        self._lines.append(line)
        if line.oom or self.all_lines.isChecked():
            self._append_item(line)
            if self.list.count() > _MAX_LINES:
                self.list.takeItem(0)
            self.list.scrollToBottom()

    def tie_record(self, record: KillRecord | None, worker_id: str) -> None:
        """Highlight the lines of ``record`` (shown now or arriving later) as ``worker_id``'s."""
        if record is None:
            return
        for raw in record.lines:
            self._tied[raw] = worker_id
        for row in range(self.list.count()):
            item = self.list.item(row)
            raw = item.data(Qt.ItemDataRole.UserRole)
            if raw in self._tied:
                self._mark(item, self._tied[raw])

    def _append_item(self, ev: KernelLineRead) -> None:
        line = ev.line
        readable = readable_line(line.text)
        item = QtWidgets.QListWidgetItem(shown_line(readable, line.wall_time_unix))
        item.setData(Qt.ItemDataRole.UserRole, line.text)
        # The line as the kernel wrote it (its own seconds since boot) stays one hover away.
        item.setToolTip(readable)
        if line.history:
            item.setForeground(self._history_brush)
            item.setToolTip(f"{readable}\nfrom the kernel's buffer before oomscope started")
        wid = self._tied.get(line.text)
        if wid is not None:
            self._mark(item, wid)
        self.list.addItem(item)

    def _mark(self, item: QtWidgets.QListWidgetItem, worker_id: str) -> None:
        item.setBackground(self._tied_brush)
        item.setData(WORKER_ROLE, worker_id)
        raw = readable_line(str(item.data(Qt.ItemDataRole.UserRole)))
        item.setToolTip(f"{raw}\nline of the kill record of worker {worker_id} — click to select it")

    def _rebuild(self) -> None:
        self.list.clear()
        show_all = self.all_lines.isChecked()
        for line in self._lines:
            if line.oom or show_all:
                self._append_item(line)
        self.list.scrollToBottom()

    def _on_item_clicked(self, item: QtWidgets.QListWidgetItem) -> None:
        wid = item.data(WORKER_ROLE)
        if wid:
            self.worker_clicked.emit(str(wid))

    def tied_rows(self) -> list[tuple[str, str]]:
        """(displayed text, worker id) of every highlighted line."""
        out = []
        for row in range(self.list.count()):
            item = self.list.item(row)
            wid = item.data(WORKER_ROLE)
            if wid:
                out.append((item.text(), str(wid)))
        return out


def shown_line(readable: str, wall_time_unix: float | None) -> str:
    """A kernel line with the wall-clock time the plot uses (local, to the millisecond) in place
    of the kernel's seconds since boot; as it is where no wall time is known."""
    if wall_time_unix is None:
        return readable
    ms = int(wall_time_unix * 1000) % 1000
    stamp = time.strftime("%H:%M:%S", time.localtime(wall_time_unix)) + f".{ms:03d}"
    return f"{stamp}  {_KERNEL_STAMP.sub('', readable, count=1)}"
