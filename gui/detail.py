"""The detail pane: one worker's (or one kernel record's) story — last samples, stderr, and
the correlated kernel lines verbatim."""

from __future__ import annotations

import html
import time

import numpy as np

from oomscope.core.oomlog.lines import readable_line
from oomscope.core.sizes import format_size

from .advice import advice_html
from .history import METRIC_LABELS, METRICS
from .palette import CRITICAL_ROW_RGB, WARNING_ROW_RGB
from .qt import QtGui, QtWidgets, Qt
from .roster import Death, Roster, WorkerState

_LAST_SAMPLES = 12


def _text_label(name: str, text: str = "") -> QtWidgets.QLabel:
    """Selectable rich text that wraps: what the pane says about a worker."""
    label = QtWidgets.QLabel(text)
    label.setObjectName(name)
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.RichText)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


def _banner(name: str, rgb: tuple[int, int, int], tip: str) -> QtWidgets.QLabel:
    """A coloured band, hidden until there is something to say."""
    label = _text_label(name)
    label.setStyleSheet(f"background: rgb{rgb}; padding: 4px; border-radius: 3px")
    label.setToolTip(tip)
    label.setVisible(False)
    return label


def _mono() -> QtGui.QFont:
    font = QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.SystemFont.FixedFont)
    font.setPointSizeF(max(8.0, font.pointSizeF() - 0.5))
    return font


class DetailPane(QtWidgets.QWidget):
    def __init__(self, parent: QtWidgets.QWidget | None = None, roster: Roster | None = None) -> None:
        super().__init__(parent)
        self.roster = roster  # for what a worker's slot went through in its earlier lives
        self.worker: WorkerState | None = None
        self.death: Death | None = None
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        self.header = _text_label("detail-header", "Select a worker, or click a marker on the kill timeline.")
        layout.addWidget(self.header)
        # The engine's warnings about this worker (a crash loop that stopped its restarts) in red,
        # above the doctor's advice: they explain why a slot stays empty.
        self.notices = _banner("detail-notices", CRITICAL_ROW_RGB, "What oomscope's engine warned about this worker")
        layout.addWidget(self.notices)
        self.advice = _banner("detail-advice", WARNING_ROW_RGB, "oomscope's doctor: advice about this worker's "
                              "configuration (its V8 heap limit against its memory limit)")
        layout.addWidget(self.advice)
        split = QtWidgets.QSplitter(Qt.Orientation.Horizontal)
        self.samples = QtWidgets.QTableWidget(0, 1 + len(METRICS))
        self.samples.setObjectName("detail-samples")
        self.samples.setHorizontalHeaderLabels(["time"] + [METRIC_LABELS[m] for m in METRICS])
        self.samples.verticalHeader().setVisible(False)
        self.samples.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.samples.horizontalHeader().setStretchLastSection(True)
        self.samples.setToolTip("The worker's last samples, newest first")
        self.samples.setTabKeyNavigation(False)  # Tab leaves the table; arrows walk its cells
        self.samples.verticalHeader().setDefaultSectionSize(20)
        self.stderr = QtWidgets.QPlainTextEdit()
        self.stderr.setObjectName("detail-stderr")
        self.stderr.setReadOnly(True)
        self.stderr.setFont(_mono())
        self.stderr.setPlaceholderText("no stderr lines")
        self.stderr.setToolTip("The worker's last stderr lines (launched workers only)")
        self.kernel = QtWidgets.QPlainTextEdit()
        self.kernel.setObjectName("detail-kernel")
        self.kernel.setReadOnly(True)
        self.kernel.setFont(_mono())
        self.kernel.setLineWrapMode(QtWidgets.QPlainTextEdit.LineWrapMode.NoWrap)
        self.kernel.setPlaceholderText("no kernel OOM record for this worker")
        self.kernel.setToolTip("The kernel's OOM report for this kill, verbatim: the key lines first "
                               "(oom-kill:, Killed process, the task-table row), then the whole report")
        self.stderr.setLineWrapMode(QtWidgets.QPlainTextEdit.LineWrapMode.NoWrap)
        left = QtWidgets.QSplitter(Qt.Orientation.Vertical)
        for title, widget, target in (("Last samples", self.samples, left), ("stderr", self.stderr, left),
                                      ("Kernel lines", self.kernel, split)):
            if target is split and left.parent() is None:
                split.addWidget(left)
            box = QtWidgets.QGroupBox(title)
            inner = QtWidgets.QVBoxLayout(box)
            inner.setContentsMargins(4, 4, 4, 4)
            inner.addWidget(widget)
            target.addWidget(box)
        split.setSizes([250, 240])
        layout.addWidget(split, 1)

    def show_worker(self, w: WorkerState, death: Death | None = None) -> None:
        self.worker = w
        self.death = death
        self.refresh()

    def show_death(self, death: Death) -> None:
        self.worker = None
        self.death = death
        self.refresh()

    def clear(self) -> None:
        """Back to the empty pane (the worker shown is gone: a replay moved to before it existed)."""
        self.worker = None
        self.death = None
        self.header.setText("Select a worker, or click a marker on the kill timeline.")
        for label in (self.notices, self.advice):
            label.setText("")
            label.setVisible(False)
        self.samples.setRowCount(0)
        self.stderr.setPlainText("")
        self.kernel.setPlainText("")

    def refresh(self) -> None:
        w, death = self.worker, self.death
        if w is None and death is None:
            return
        parts: list[str] = []
        if w is not None:
            parts.append(f"<b>{html.escape(w.ref.name)}</b> — worker {w.id}, PID {w.ref.pid}"
                         f" — <b>{html.escape(w.state_text())}</b>")
            parts.append("<code>" + html.escape(" ".join(w.ref.cmd))[:400] + "</code>")
            limits = [f"cgroup limit {format_size(w.cgroup_limit)}" if w.cgroup_limit else "no memory limit"]
            if w.cgroup:
                limits.append(f"cgroup {html.escape(w.cgroup)}")
            if w.last is not None:
                limits.append(html.escape(w.memory_text()))
            parts.append(" · ".join(limits))
            own = w.levels_text()
            if own is not None:
                parts.append(f"own thresholds: {html.escape(own)}")
            if w.ref.slot is not None:
                deaths = self.roster.slot_deaths_text(w) if self.roster is not None else None
                parts.append(f"slot {w.ref.slot} · life {w.ref.life}"
                             + (f" — deaths in this slot so far: {html.escape(deaths)}" if deaths else ""))
            if w.evidence:
                parts.append("evidence: " + "; ".join(html.escape(e) for e in w.evidence))
            for d in w.thread_deaths:
                stamp = time.strftime("%H:%M:%S", time.localtime(d.t))
                parts.append(f"<b>{stamp}</b> {html.escape(d.summary())} — the process lives on")
        elif death is not None:
            stamp = time.strftime("%H:%M:%S", time.localtime(death.t))
            parts.append(f"<b>{stamp}</b> {html.escape(death.summary())}")
        self.header.setText("<br>".join(parts))
        notices = w.notices if w is not None else []
        self.notices.setText("<br>".join(f"<b>{html.escape(n)}</b>" for n in notices))
        self.notices.setVisible(bool(notices))
        self._show_advice(w)
        self._fill_samples(w)
        stderr = "\n".join(w.stderr) if w is not None else ""
        if stderr != self.stderr.toPlainText():
            # Set only when it changed: a live refresh several times a second must not throw away
            # the user's scroll position or selection in text that did not change.
            self.stderr.setPlainText(stderr)
            self.stderr.moveCursor(QtGui.QTextCursor.MoveOperation.End)
        record = (w.oom if w is not None else None) or (death.record if death is not None else None)
        if record is not None and record.lines:
            key = [readable_line(x) for x in record.key_lines()]
            everything = [readable_line(x) for x in record.lines]
            text = "\n".join(key)
            if len(everything) > len(key):
                text += f"\n\n— the whole report ({len(everything)} lines) —\n" + "\n".join(everything)
            self.kernel.setPlainText(text)
        else:
            self.kernel.setPlainText("")

    def _show_advice(self, w: WorkerState | None) -> None:
        if w is None or not w.advice:
            self.advice.setText("")
            self.advice.setVisible(False)
            return
        rows = []
        for a in w.advice:
            rows.append(advice_html(a.advice, a.reason, a.suggested))
        self.advice.setText("<br>".join(rows))
        self.advice.setVisible(True)

    def text(self) -> str:
        """Everything the pane shows as plain text: header, notices, advice, kernel lines."""
        doc = QtGui.QTextDocument()
        parts = []
        for label in (self.header, self.notices, self.advice):
            doc.setHtml(label.text())
            parts.append(doc.toPlainText())
        parts.append(self.kernel.toPlainText())
        return "\n".join(p for p in parts if p)

    def _fill_samples(self, w: WorkerState | None) -> None:
        if w is None or not len(w.series):
            self.samples.setRowCount(0)
            return
        t = w.series.times()[-_LAST_SAMPLES:][::-1]
        cols = [w.series.values(m)[-_LAST_SAMPLES:][::-1] for m in METRICS]
        self.samples.setRowCount(len(t))
        self.samples.setColumnHidden(1 + METRICS.index("heap_used"), not w.series.has_heap)
        self.samples.setColumnHidden(1 + METRICS.index("cgroup_usage"), not w.series.has_cgroup_usage)
        for row in range(len(t)):
            stamp = time.strftime("%H:%M:%S", time.localtime(float(t[row]))) + f".{int(t[row] * 10) % 10}"
            texts = [stamp] + ["–" if not np.isfinite(c[row]) else format_size(float(c[row])) for c in cols]
            for col, text in enumerate(texts):
                item = QtWidgets.QTableWidgetItem(text)
                if col:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.samples.setItem(row, col, item)
        self.samples.resizeColumnsToContents()

    def kernel_text(self) -> str:
        return self.kernel.toPlainText()
