"""A kill's report as a person reads it: what was killed and the memory figures first, then the
kernel's whole report in its own order, every line whole (wrapped, never cut)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from oomscope.core.events import KernelLineRead
from oomscope.core.oomlog.lines import readable_line
from oomscope.core.oomlog.records import KillRecord

from .qt import Qt, QtGui, QtWidgets

# The cgroup's usage against its limit: records parsed before these lines were kept in ``lines``
# (replayed session files) lack them, so the window also finds them in the kernel lines it read.
_CONTEXT_MARKERS = ("memory: usage", "memory+swap: usage", "kmem: usage")
_STAMP = re.compile(r"^\[\s*(\d+\.\d+)\]")


def context_lines(record: KillRecord, lines: Iterable[KernelLineRead]) -> list[str]:
    """The cgroup usage lines of ``record``'s report among ``lines`` (raw, in kernel order)."""
    t = record.kernel_time_s
    stamps = [float(m.group(1)) for x in record.lines if (m := _STAMP.match(readable_line(x))) is not None]
    if t is None or not stamps:
        return []
    # The kernel prints one OOM report at a time (under its oom_lock): what lies between this
    # report's first line ("invoked oom-killer") and its kill is this report's, never another
    # cgroup's that was killed a moment earlier.
    first = min(stamps)
    out = []
    for ev in lines:
        line = ev.line
        if line.kernel_time_s is None or not first <= line.kernel_time_s <= t:
            continue
        if line.message.startswith(_CONTEXT_MARKERS) and line.raw not in record.lines:
            out.append(line.raw)
    return out


def _in_kernel_order(lines: list[str]) -> list[str]:
    """Readable lines sorted by their kernel stamp; an unstamped line stays after its predecessor."""
    keyed = []
    last = 0.0
    for n, text in enumerate(lines):
        m = _STAMP.match(text)
        if m is not None:
            last = float(m.group(1))
        keyed.append((last, n, text))
    return [text for _t, _n, text in sorted(keyed)]


def report_text(record: KillRecord, context: list[str]) -> str:
    """Key lines (the trigger, the cgroup's usage and limit, the kill) first, then the whole report."""
    key = [readable_line(x) for x in record.key_lines()]
    extra = [readable_line(x) for x in context]
    head = _in_kernel_order(key + extra)
    everything = _in_kernel_order([readable_line(x) for x in record.lines] + extra)
    text = "\n".join(head)
    if len(everything) > len(head):
        text += f"\n\n— the whole report ({len(everything)} lines) —\n" + "\n".join(everything)
    return text


def report_view(name: str) -> QtWidgets.QPlainTextEdit:
    """Read-only, monospace, wrapped at the widget's width: a long kernel line is read whole."""
    view = QtWidgets.QPlainTextEdit()
    view.setObjectName(name)
    view.setReadOnly(True)
    font = QtGui.QFontDatabase.systemFont(QtGui.QFontDatabase.SystemFont.FixedFont)
    font.setPointSizeF(max(8.0, font.pointSizeF() - 0.5))
    view.setFont(font)
    view.setLineWrapMode(QtWidgets.QPlainTextEdit.LineWrapMode.WidgetWidth)
    view.setWordWrapMode(QtGui.QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
    return view


class KillReportDialog(QtWidgets.QDialog):
    """The report in a window of its own, as big as the user likes; it does not block the main
    window (samples keep arriving, other markers can be clicked)."""

    def __init__(self, title: str, summary: str, text: str, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("kill-report-dialog")
        self.setWindowTitle(title)
        layout = QtWidgets.QVBoxLayout(self)
        head = QtWidgets.QLabel(summary)
        head.setWordWrap(True)
        head.setTextFormat(Qt.TextFormat.RichText)
        layout.addWidget(head)
        self.view = report_view("kill-report-text")
        self.view.setPlainText(text)
        layout.addWidget(self.view, 1)
        close = QtWidgets.QPushButton("Close")
        close.clicked.connect(self.close)
        layout.addWidget(close)
        self.resize(900, 600)
