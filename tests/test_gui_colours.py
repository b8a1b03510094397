"""Curve colours never read as a level, and the level lines' labels stay apart and see-through."""

from __future__ import annotations

from gui_helpers import GUI_MARKS

pytestmark = GUI_MARKS


def _hue_gap(a: int, b: int) -> int:
    d = abs(a - b) % 360
    return min(d, 360 - d)


def test_no_curve_colour_is_near_a_level_colour(qtbot) -> None:
    from oomscope.gui.palette import CRITICAL_RGB, CURVE_HUE_GAP, WARNING_RGB, worker_color
    from oomscope.gui.qt import QtGui

    levels = [QtGui.QColor(*rgb).hsvHue() for rgb in (WARNING_RGB, CRITICAL_RGB)]
    for index in range(40):  # the fixed ten and thirty generated ones
        hue = worker_color(index).hsvHue()
        assert hue >= 0, f"worker {index}: a grey curve is the exited colour"
        for level_hue in levels:
            assert _hue_gap(hue, level_hue) >= CURVE_HUE_GAP, (index, hue, level_hue)
    # Neighbouring workers stay told apart.
    rgbs = [worker_color(i).getRgb()[:3] for i in range(10)]
    assert len(set(rgbs)) == 10


def test_close_levels_have_labels_side_by_side_without_boxes(qtbot) -> None:
    from oomscope.core.sizes import parse_level
    from oomscope.gui.plot import MemoryPlot
    from oomscope.gui.roster import Roster

    plot = MemoryPlot(Roster())
    qtbot.addWidget(plot)
    plot.resize(1000, 400)
    plot.show()
    qtbot.waitExposed(plot)
    plot.set_thresholds(parse_level("100MiB"), parse_level("104MiB"))
    plot.view_box.setRange(yRange=(0, 400), padding=0)
    plot.redraw()
    plot.plot_widget.grab()
    warn, crit = (plot.lines[level].label for level in ("warning", "critical"))
    assert warn.isVisible() and crit.isVisible()
    assert not warn.sceneBoundingRect().intersects(crit.sceneBoundingRect())
    for label in (warn, crit):
        assert label.fill.style().name == "NoBrush"
