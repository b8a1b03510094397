"""The time axis of the plot and the timeline reads as a clock, also over a few seconds."""

from __future__ import annotations

import re

from gui_helpers import GUI_MARKS

pytestmark = GUI_MARKS


def test_a_short_span_is_labelled_with_hours_minutes_and_seconds(qtbot) -> None:
    from oomscope.gui.plot import ClockAxis
    from oomscope.gui.qt import pg

    axis = ClockAxis()
    widget = pg.PlotWidget(axisItems={"bottom": axis})
    qtbot.addWidget(widget)
    t0 = 1_795_953_600.0  # a round minute
    widget.resize(1300, 300)
    widget.setXRange(t0, t0 + 9.0, padding=0)
    widget.grab()  # an axis learns its font's size when it is first drawn
    labels = []
    for spacing, values in axis.tickValues(t0, t0 + 9.0, 1300):
        labels += axis.tickStrings(values, 1.0, spacing)
    assert labels and all(re.fullmatch(r"\d\d:\d\d:\d\d", text) for text in labels), labels
    # An hour still gets coarser labels (hours and minutes), as pyqtgraph gives them.
    coarse = []
    for spacing, values in axis.tickValues(t0, t0 + 3600.0, 1300):
        coarse += axis.tickStrings(values, 1.0, spacing)
    assert coarse and all(re.fullmatch(r"\d\d:\d\d(:\d\d)?", text) for text in coarse), coarse
