"""The plot's legend, the table's check boxes and filter (which curves are drawn and scaled to),
the heap axis (scaled to the data, round labels, far limits as markers), the exported picture
(legend, time span, no crosshair) and the note on percent levels no limit can anchor."""

from __future__ import annotations

import re
import shutil
from typing import Any

import numpy as np
import pytest

from conftest import PY
from gui_helpers import GUI_MARKS, HOLDER, confirmer, make_window  # noqa: F401 (fixtures)
from oomscope.core.launch import LaunchSpec
from oomscope.core.sizes import parse_level
from oomscope.core.thresholds import ThresholdConfig

pytestmark = GUI_MARKS
MIB = 1 << 20
ROUND_LABEL = re.compile(r"(0|[1-9]\d*(\.\d)?) (MiB|GiB)")


def _launch(qtbot: Any, window: Any, mib: int, name: str) -> Any:
    window.launch(LaunchSpec((PY, "-c", HOLDER.format(mib=mib)), name=name))
    qtbot.waitUntil(lambda: any(w.ref.name == name for w in window.roster.workers), timeout=10_000)
    w = next(w for w in window.roster.workers if w.ref.name == name)
    qtbot.waitUntil(lambda: w.last is not None and w.last.rss > mib * MIB and len(w.series) > 2, timeout=10_000)
    return w


def _y_top(window: Any) -> float:
    return float(window.plot.view_box.viewRange()[1][1])


def _check_state(window: Any, worker_id: str) -> Any:
    from oomscope.gui.qt import Qt

    return Qt.CheckState(window.model.data(window.model.row_of(worker_id), Qt.ItemDataRole.CheckStateRole))


def _click_legend(qtbot: Any, window: Any, worker_id: str) -> None:
    from oomscope.gui.qt import Qt

    item = window.plot.legend.item_of(worker_id)
    assert item is not None, window.plot.legend.entries()
    view = window.plot.legend.list
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=view.visualItemRect(item).center())


def test_legend_click_and_table_check_box_hide_a_curve_and_its_share_of_the_range(qtbot, make_window) -> None:
    from oomscope.gui.qt import Qt

    window = make_window()
    big = _launch(qtbot, window, 160, "big")
    small = _launch(qtbot, window, 4, "small")
    window.plot.redraw()
    assert set(window.plot.drawn_curves) == {big.id, small.id}
    assert window.plot.legend.isVisible()
    assert [(wid, shown) for wid, _, shown in window.plot.legend.entries()] == [(big.id, True), (small.id, True)]
    assert window.plot.legend.entries()[0][1] == f"big · {big.ref.pid}"
    assert big.id in window.plot.legend.item_of(big.id).toolTip()
    assert _y_top(window) >= 160

    _click_legend(qtbot, window, big.id)
    qtbot.waitUntil(lambda: big.id not in window.plot.drawn_curves, timeout=5_000)
    assert _check_state(window, big.id) == Qt.CheckState.Unchecked  # the table's box follows
    assert _check_state(window, small.id) == Qt.CheckState.Checked
    window.plot.redraw()
    assert _y_top(window) < 100, "a hidden curve still holds the range up"
    assert window.plot.legend.entries()[0] [2] is False

    # The table's check box: the same state, the other way round.
    index = window.proxy.mapFromSource(window.model.row_of(big.id))
    assert window.proxy.flags(index) & Qt.ItemFlag.ItemIsUserCheckable
    assert window.proxy.setData(index, Qt.CheckState.Checked, Qt.ItemDataRole.CheckStateRole)
    qtbot.waitUntil(lambda: big.id in window.plot.drawn_curves, timeout=5_000)
    assert window.plot.legend.entries()[0][2] is True
    window.plot.redraw()
    assert _y_top(window) >= 160


def test_the_table_filter_filters_the_plot_and_its_legend(qtbot, make_window) -> None:
    window = make_window()
    big = _launch(qtbot, window, 160, "bigone")
    small = _launch(qtbot, window, 4, "smallone")
    window.filter_edit.setFocus()
    qtbot.keyClicks(window.filter_edit, "smallo")
    qtbot.waitUntil(lambda: set(window.plot.drawn_curves) == {small.id}, timeout=5_000)
    assert [wid for wid, _, _ in window.plot.legend.entries()] == [small.id]
    window.plot.redraw()
    assert _y_top(window) < 100
    # A filtered-out curve is not "hidden" by the user: clearing the filter brings it back.
    window.filter_edit.clear()
    qtbot.waitUntil(lambda: set(window.plot.drawn_curves) == {big.id, small.id}, timeout=5_000)
    assert len(window.plot.legend.entries()) == 2


def _labels(axis: Any, low: float, high: float, pixels: int) -> list[str]:
    return [text for spacing, values in axis.tickValues(low, high, pixels)
            for text in axis.tickStrings(values, 1.0, spacing)]


def test_size_axis_labels_are_round_steps_of_mib_or_gib(qtbot) -> None:
    from oomscope.gui.plot import SizeAxis
    from oomscope.gui.qt import pg

    axis = SizeAxis(orientation="left")
    widget = pg.PlotWidget(axisItems={"left": axis})
    qtbot.addWidget(widget)
    widget.resize(600, 400)
    for top_mib in (16.0, 300.0, 1500.0, 19_999.0, 20_000.0):
        widget.setYRange(0.0, top_mib, padding=0)
        widget.grab()
        labels = _labels(axis, 0.0, top_mib, 400)
        assert labels and all(ROUND_LABEL.fullmatch(t) for t in labels), (top_mib, labels)
        numbers = sorted({float(t.split()[0]) for t in labels})
        step = min(b - a for a, b in zip(numbers, numbers[1:]))
        assert re.fullmatch(r"[125](0*|\.0+)?|0\.[125]|0\.25|2\.5", f"{step:g}"), (top_mib, labels)
    assert "19.5312 GiB" not in _labels(axis, 0.0, 20_000.0, 400)
    assert any(t.endswith("GiB") for t in _labels(axis, 0.0, 20_000.0, 400))


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_heap_axis_follows_the_heaps_not_the_far_off_v8_limit(qtbot, make_window) -> None:
    window = make_window(heap_interval_s=0.2)
    window.launch(LaunchSpec((str(shutil.which("node")), "-e", "setInterval(() => {}, 1000)"), name="idle"))
    qtbot.waitUntil(lambda: len(window.roster.workers) == 1, timeout=10_000)
    w = window.roster.workers[0]
    qtbot.waitUntil(lambda: w.last is not None and bool(w.last.heap_limit) and w.heap_since is not None
                    and float(w.series.times()[-1]) > w.heap_since, timeout=30_000)
    window.plot.set_metric("heap_used")
    window.select_worker(w.id)  # selected: before, its limit stretched the axis to it
    window.plot.redraw()
    limit_mib = w.last.heap_limit / MIB
    assert limit_mib > 500  # V8's default: gigabytes over an idle heap of a few MiB
    top = _y_top(window)
    assert window.plot.data_top_mib <= top < limit_mib / 4, (top, limit_mib)
    assert window.plot.heap_limit_lines == {w.id: w.last.heap_limit}  # still drawn, off the top
    [(text, value)] = window.plot.off_scale
    assert text.startswith("V8 heap limit") and text.endswith(f"↑ ({w.id})") and value == pytest.approx(limit_mib)
    assert window.plot.off_scale_text.isVisible() and "V8 heap limit" in window.plot.off_scale_text.toPlainText()
    window.plot.plot_widget.grab()
    labels = _labels(window.plot.size_axis, 0.0, top, int(window.plot.view_box.height()))
    assert labels and all(ROUND_LABEL.fullmatch(t) for t in labels), labels


def _crosshair_columns(image: Any) -> int:
    """Columns of ``image`` a third or more of whose pixels are the crosshair's mid grey (120,
    blurred to about 187 when the export scales it): its dashed line. The grid is lighter (214),
    the axes darker (90)."""
    from oomscope.gui.qt import QtGui, pg

    rgb = image.convertToFormat(QtGui.QImage.Format.Format_RGB32)
    pixels = pg.functions.ndarray_from_qimage(rgb).copy()[:, :, :3].astype(int)
    grey = (pixels.max(axis=2) - pixels.min(axis=2) <= 3) & (pixels[:, :, 0] >= 100) & (pixels[:, :, 0] <= 200)
    return int((grey.mean(axis=0) > 0.33).sum())


def test_exported_plot_has_legend_and_span_and_no_crosshair(qtbot, make_window, tmp_path) -> None:
    from oomscope.gui.export_png import render_png, span_text
    from oomscope.gui.palette import worker_rgb
    from oomscope.gui.qt import Qt, QtCore, QtGui, QtWidgets

    window = make_window()
    w = _launch(qtbot, window, 8, "exported")
    window.plot.redraw()
    view = window.plot.plot_widget
    # Over the newest sample: a young session's plot spans a minute, mostly still empty.
    newest = QtCore.QPointF(float(w.series.times()[-1]), w.last.rss / MIB)
    centre = view.mapFromScene(window.plot.view_box.mapViewToScene(newest))
    # QTest's move without a button reaches no offscreen widget: the event the window system sends.
    move = QtGui.QMouseEvent(QtCore.QEvent.Type.MouseMove, QtCore.QPointF(centre),
                             QtCore.QPointF(view.viewport().mapToGlobal(centre)), Qt.MouseButton.NoButton,
                             Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier)
    QtWidgets.QApplication.sendEvent(view.viewport(), move)
    qtbot.waitUntil(lambda: window.plot.crosshair.isVisible() and "exported" in window.plot.readout.text(),
                    timeout=5_000)
    # The detector sees the crosshair where it is drawn: the live plot's own picture.
    assert _crosshair_columns(render_png(window.plot.plot_item)) >= 1

    written = window.save_plot_png(tmp_path / "plot.png")
    assert written is not None
    image = QtGui.QImage(str(written))
    assert image.width() >= 1200 and image.height() >= 600, image.size()
    assert _crosshair_columns(image) == 0
    assert window.plot.crosshair.isVisible()  # the user's view is left as it was
    pixels = np.asarray(image.convertToFormat(QtGui.QImage.Format.Format_RGB32).constBits()).reshape(
        image.height(), image.width(), 4)[:, :, 2::-1].astype(int)  # BGRA -> RGB
    legend_band = pixels[-40:]
    assert (np.abs(legend_band - np.array(worker_rgb(w.color_index))).sum(axis=2) < 10).any(), \
        "no swatch of the worker's colour in the legend"
    header = pixels[:50]
    assert (header.sum(axis=2) < 300).any(), "no title or time span in the header"
    (x0, x1), _ = window.plot.view_box.viewRange()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d – \d\d:\d\d:\d\d \(\d+ (s|min)\)", span_text(x0, x1))

    # The readout is of the mouse: it goes when the mouse leaves the plot.
    QtWidgets.QApplication.sendEvent(view, QtCore.QEvent(QtCore.QEvent.Type.Leave))
    assert window.plot.readout.text() == "" and not window.plot.crosshair.isVisible()


def test_percent_level_without_a_limit_says_why_nothing_is_drawn(qtbot, make_window) -> None:
    window = make_window(thresholds=ThresholdConfig(crit=parse_level("80%")))
    w = _launch(qtbot, window, 4, "unlimited")
    window.plot.redraw()
    assert not window.plot.lines["critical"].isVisible()
    [note] = window.plot.level_notes
    assert "critical 80%" in note and f"PID {w.ref.pid}" in note and "no memory limit known" in note
    assert window.plot.notes_text.isVisible() and str(w.ref.pid) in window.plot.notes_text.toPlainText()
    # Hidden, the worker is no longer one the note is about.
    window.plot.visibility.set_hidden(w.id, True)
    window.plot.redraw()
    assert window.plot.level_notes == [] and not window.plot.notes_text.isVisible()


def test_the_kill_timeline_keeps_the_plots_width_beside_the_legend(qtbot, make_window) -> None:
    """The timeline shares the plot's time axis; with the legend beside the plot it ran 180 px
    further right than the plot, into time the plot did not show (pyqtgraph's x link keeps the
    scale and the left edge, so the two axes ended at different times)."""
    import time

    from oomscope.core.events import Sample, Samples, WorkerAttached, WorkerRef
    from oomscope.gui.qt import QtCore

    window = make_window()

    def right_edges() -> tuple[int, int]:
        out = []
        for widget, box in ((window.plot.plot_widget, window.plot.view_box),
                            (window.timeline.plot_widget, window.timeline.view_box)):
            scene_right = box.sceneBoundingRect().right()
            out.append(widget.mapToGlobal(widget.mapFromScene(QtCore.QPointF(scene_right, 0))).x())
        return out[0], out[1]

    window.plot.redraw()
    assert not window.plot.legend.isVisible()
    plot_right, timeline_right = right_edges()
    assert abs(plot_right - timeline_right) <= 2
    ref = WorkerRef("w1", 70_001, 1.0, "shown", ("shown",), False)
    window.engine.events.put(WorkerAttached(time.time(), ref, parent_pid=None))
    window.engine.events.put(Samples(time.time(), (Sample(ref, 10 << 20, 8 << 20, 0, None, None),)))
    qtbot.waitUntil(lambda: window.plot.legend.isVisible(), timeout=5_000)
    qtbot.waitUntil(lambda: abs(right_edges()[0] - right_edges()[1]) <= 2, timeout=2_000)
    plot_right, timeline_right = right_edges()
    assert plot_right < window.plot.legend.mapToGlobal(QtCore.QPoint(0, 0)).x()
    # Both axes map the same moment to the same column of pixels.
    (x0, x1), _ = window.plot.view_box.viewRange()
    assert window.timeline.view_box.viewRange()[0] == pytest.approx([x0, x1])


def test_the_percent_note_wraps_within_the_plot(qtbot, make_window) -> None:
    """Four PIDs made the note longer than a 1024 px window's plot: its end was cut off."""
    import time

    from oomscope.core.events import Sample, Samples, WorkerAttached, WorkerRef

    window = make_window(thresholds=ThresholdConfig(warn=parse_level("75%"), crit=parse_level("90%")))
    window.resize(1024, 700)
    refs = [WorkerRef(f"w{n}", 4_100_000 + n, 1.0, "gunicorn", ("gunicorn",), False) for n in range(1, 6)]
    for ref in refs:
        window.engine.events.put(WorkerAttached(time.time(), ref, parent_pid=None))
        window.engine.events.put(Samples(time.time(), (Sample(ref, 20 << 20, 16 << 20, 0, None, None),)))
    qtbot.waitUntil(lambda: len(window.roster.workers) == 5, timeout=5_000)
    window.plot.redraw()
    [note] = window.plot.level_notes
    assert "and 1 more" in note and note.endswith("nothing drawn or alerted for them")
    text = window.plot.notes_text
    view = window.plot.view_box
    # The view applies its new range at its next layout pass: the note's anchor comes inside then.
    qtbot.waitUntil(lambda: view.sceneBoundingRect().contains(text.scenePos()), timeout=2_000)
    # The text is drawn unscaled (in pixels) from its anchor, the plot's top left corner.
    right = text.scenePos().x() + text.textItem.boundingRect().width()
    assert right <= view.sceneBoundingRect().right() + 1, (right, text.scenePos(), text.textItem.boundingRect(), text.textItem.textWidth(), view.width())
    assert "alerted for them" in text.toPlainText()
