"""The detail pane: one worker's (or one kernel record's) story — last samples, stderr, and
the correlated kernel lines verbatim."""

from __future__ import annotations

import html
import time
from collections.abc import Callable

import numpy as np

from oomscope.core.oomlog.records import KillRecord
from oomscope.core.sizes import format_size

from .advice import advice_html
from .history import METRIC_LABELS, METRICS
from .kill_report import KillReportDialog, report_text, report_view
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


class DetailPane(QtWidgets.QWidget):
    def __init__(self, parent: QtWidgets.QWidget | None = None, roster: Roster | None = None) -> None:
        super().__init__(parent)
        self.roster = roster  # for what a worker's slot went through in its earlier lives
        self.worker: WorkerState | None = None
        self.death: Death | None = None
        outer = QtWidgets.QVBoxLayout(self)
        outer.setContentsMargins(6, 4, 6, 4)
        # The story (header, notices, advice) scrolls in its own share of the pane, above the
        # evidence tabs: a long story never pushes the kill report out of sight.
        story = QtWidgets.QWidget()
        layout = QtWidgets.QVBoxLayout(story)
        layout.setContentsMargins(0, 0, 0, 0)
        self.story = QtWidgets.QScrollArea()
        self.story.setObjectName("detail-story")
        self.story.setWidgetResizable(True)
        self.story.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
        self.story.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.story.setWidget(story)
        self.story.setMinimumHeight(48)
        self.header = _text_label("detail-header", "Select a worker, or click a marker on the kill timeline.")
        layout.addWidget(self.header)
        # The engine's warnings about this worker (a crash loop that stopped its restarts) in red,
        # above the doctor's advice: they explain why a slot stays empty.
        self.notices = _banner("detail-notices", CRITICAL_ROW_RGB, "What oomscope's engine warned about this worker")
        layout.addWidget(self.notices)
        self.advice = _banner("detail-advice", WARNING_ROW_RGB, "oomscope's doctor: advice about this worker's "
                              "configuration (its V8 heap limit against its memory limit)")
        layout.addWidget(self.advice)
        # The evidence in tabs of one fixed place: switching between them, or a kill report
        # arriving, changes what the pane shows, never its size, so nothing above it (the plot,
        # the timeline marker just clicked) moves under the mouse.
        self.tabs = QtWidgets.QTabWidget()
        self.tabs.setObjectName("detail-tabs")
        self.tabs.setDocumentMode(True)
        self.samples = QtWidgets.QTableWidget(0, 1 + len(METRICS))
        self.samples.setObjectName("detail-samples")
        self.samples.setHorizontalHeaderLabels(["time"] + [METRIC_LABELS[m] for m in METRICS])
        self.samples.verticalHeader().setVisible(False)
        self.samples.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.samples.horizontalHeader().setStretchLastSection(True)
        self.samples.setToolTip("The worker's last samples, newest first")
        self.samples.setTabKeyNavigation(False)  # Tab leaves the table; arrows walk its cells
        self.samples.verticalHeader().setDefaultSectionSize(20)
        self.stderr = report_view("detail-stderr")
        self.stderr.setPlaceholderText("no stderr lines")
        self.stderr.setToolTip("The worker's last stderr lines (launched workers only)")
        self.kernel = report_view("detail-kernel")
        self.kernel.setPlaceholderText("no kernel OOM record for this worker")
        self.kernel.setToolTip("The kernel's OOM report for this kill, verbatim: the key lines first "
                               "(what invoked the killer, the cgroup's usage and limit, oom-kill:, Killed "
                               "process, the task-table row), then the whole report")
        # On the tab row, where a short pane never scrolls it out of sight.
        self.report_button = QtWidgets.QToolButton()
        self.report_button.setText("Open…")
        self.report_button.setObjectName("open-kill-report")
        self.report_button.setToolTip("The kill report in a window of its own, as large as you like")
        self.report_button.setEnabled(False)
        self.report_button.clicked.connect(self.open_report)
        self.tabs.setCornerWidget(self.report_button, Qt.Corner.TopRightCorner)
        self.tabs.addTab(self.samples, "Last samples")
        self.tabs.addTab(self.stderr, "stderr")
        self.tabs.addTab(self.kernel, "Kill report")
        self.tabs.setMinimumHeight(120)
        layout.addStretch(1)
        split = QtWidgets.QSplitter(Qt.Orientation.Vertical)
        split.setObjectName("detail-split")
        split.setChildrenCollapsible(False)
        split.addWidget(self.story)
        split.addWidget(self.tabs)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 3)
        split.setSizes([200, 300])  # the proportions, until the user drags the handle
        outer.addWidget(split, 1)
        # The window's kernel lines around a record (the cgroup usage line the record leaves out).
        self.context_for: Callable[[KillRecord], list[str]] = lambda _record: []
        self.report_dialogs: list[KillReportDialog] = []
        self._record_shown: KillRecord | None = None

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
        self._record_shown = None
        self.report_button.setEnabled(False)

    def refresh(self) -> None:
        w, death = self.worker, self.death
        if w is None and death is None:
            return
        parts: list[str] = []
        if w is not None:
            parts.append(f"<b>{html.escape(w.ref.name)}</b> — worker {w.id}{w.pid_text()}"
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
            text = report_text(record, self.context_for(record))
            if text != self.kernel.toPlainText():
                self.kernel.setPlainText(text)
            if record is not self._record_shown:
                self.tabs.setCurrentIndex(2)  # a new kill: its report is what the user came for
        else:
            self.kernel.setPlainText("")
        self._record_shown = record
        self.report_button.setEnabled(record is not None and bool(record.lines))

    def open_report(self) -> KillReportDialog | None:
        """The shown kill's report in a window of its own (the pane stays as it is)."""
        if not self.kernel.toPlainText():
            return None
        name = self.worker.ref.name if self.worker is not None else "kernel record"
        dialog = KillReportDialog(f"Kill report — {name}", self.header.text(), self.kernel.toPlainText(), self)
        dialog.finished.connect(lambda _r: self.report_dialogs.remove(dialog))
        self.report_dialogs.append(dialog)
        dialog.show()
        return dialog

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
