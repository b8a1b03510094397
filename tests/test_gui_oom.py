"""A real kernel OOM kill inside a small cgroup of the worker's own, as the window shows it."""

from __future__ import annotations

import os
from typing import Any

import pytest

from conftest import PY, v1_memory_writable
from gui_helpers import GUI_MARKS, confirmer, make_window  # noqa: F401 (fixtures)
from oomscope.core.launch import LaunchSpec

pytestmark = GUI_MARKS + [
    pytest.mark.cgroup,
    pytest.mark.skipif(not v1_memory_writable(), reason="needs root and a writable cgroup v1 memory controller"),
]

# The demo's fast leaker without its idle start: 2 MiB every 20 ms.
LEAKER = "import time\nkept = []\nwhile True:\n    kept.append(b'\\x01' * (2 << 20)); time.sleep(0.02)\n"


def test_oom_kill_appears_on_the_timeline_and_in_the_detail_pane(qtbot, make_window) -> None:
    from oomscope.core.causes import OOM_KILL
    from oomscope.gui.models import COL_STATE
    from oomscope.gui.qt import Qt, QtWidgets

    window = make_window()
    window.resize(1024, 700)  # the small screen: the report must be readable there too
    window.launch(LaunchSpec((PY, "-c", LEAKER), mem_limit_bytes=64 << 20))
    qtbot.waitUntil(lambda: len(window.roster.workers) == 1, timeout=10_000)
    w = window.roster.workers[0]
    qtbot.waitUntil(lambda: any(c == OOM_KILL for _t, c in window.timeline.markers()), timeout=60_000)
    assert w.exit is not None and w.exit.signal == "SIGKILL"
    assert w.cgroup_limit == 64 << 20
    assert window.model.data(window.model.row_of(w.id).siblingAtColumn(COL_STATE)) == "exited: oom-kill (SIGKILL)"

    # Click the marker, as a user would.
    timeline = window.timeline
    window.plot.set_follow(False)
    window.plot.view_box.setXRange(w.exit.t - 30, w.exit.t + 30, padding=0)  # the timeline follows
    qtbot.waitUntil(lambda: timeline.view_box.viewRange()[0][0] == pytest.approx(w.exit.t - 30), timeout=5_000)
    timeline.plot_widget.grab()  # pyqtgraph maps items to the scene after a paint: map after one
    point = next(p for p in timeline.scatter.points() if window.roster.deaths[p.data()].worker_id == w.id)
    scene = timeline.scatter.mapToScene(point.pos())
    pos = timeline.plot_widget.mapFromScene(scene)

    def under_mouse() -> tuple[Any, Any, Any]:
        """Where the marker, the plot and the timeline are in the window."""
        now = timeline.plot_widget.mapFromScene(timeline.scatter.mapToScene(point.pos()))
        return (timeline.plot_widget.mapTo(window, now), window.plot.plot_widget.geometry().height(),
                timeline.plot_widget.mapTo(window, timeline.plot_widget.rect().topLeft()))

    before = under_mouse()
    qtbot.mouseClick(timeline.plot_widget.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    qtbot.waitUntil(lambda: window.detail.worker is w, timeout=5_000)
    qtbot.wait(100)  # a pane that grew would have moved the plot by the next turns of the loop
    # The kill's report opened in its tab, and nothing moved under the mouse.
    assert under_mouse() == before
    assert window.detail.tabs.currentIndex() == 2
    assert window.detail.kernel.lineWrapMode() == QtWidgets.QPlainTextEdit.LineWrapMode.WidgetWidth
    assert [x.id for x in window.selected_workers()] == [w.id]
    header = window.detail.header.text()
    assert "oom-kill" in header and str(w.ref.pid) in header
    if os.access("/dev/kmsg", os.R_OK):
        # The kernel's own report, with its kill line for this PID, in the detail pane and the
        # kernel log pane.
        assert w.oom is not None, w.evidence
        text = window.detail.kernel_text()
        assert f"Killed process {w.ref.pid}" in text
        assert "oom-kill:" in text
        # The cgroup's usage against its limit, which the record's lines leave out, is among the
        # key lines, before the whole report.
        key_part = text.split("— the whole report")[0]
        assert "memory: usage" in key_part and "limit 65536kB" in key_part, text
        dialog = window.detail.open_report()
        assert dialog is not None and dialog.view.toPlainText() == text
        dialog.close()
        qtbot.waitUntil(lambda: any(f"Killed process {w.ref.pid}" in line
                                    for line, wid in window.kernel_pane.tied_rows() if wid == w.id), timeout=5_000)
    # The detail pane's last samples are the worker's, and it had grown toward its limit.
    assert window.detail.samples.rowCount() > 0
    assert max(window.roster.workers[0].series.values("anon")) > 32 << 20
