"""The kill timeline: one marker per death, in lanes by cause, x linked to the memory plot."""

from __future__ import annotations

import time
from typing import Any

from oomscope.core.causes import EXIT, HEAP_OOM, TERMINATED, UNKNOWN
from oomscope.core.printable import printable

from .palette import CAUSE_STYLE, THREAD_PEN_RGB
from .plot import AXIS_WIDTH_PX, ClockAxis
from .qt import Qt, QtGui, QtWidgets, Signal, pg
from .roster import LANE_LABELS, LANES, Death, Roster
from .throttle import Throttle

# Deaths come in bursts (a pool recycling its workers): live events ask for a refresh through a
# throttle, so a burst of exits is drawn once, not once per exit.
REFRESH_MIN_INTERVAL_S = 0.2


def marker_style(death: Death) -> tuple[str, tuple[int, int, int], int]:
    if death.thread_id is not None and death.cause == HEAP_OOM:
        return CAUSE_STYLE["thread-heap-oom"]
    if death.cause == TERMINATED and death.by == "policy":
        return CAUSE_STYLE["terminated-policy"]
    if death.cause == EXIT and death.exit_code == 0:
        return CAUSE_STYLE["exit-clean"]
    if death.cause == UNKNOWN:
        return CAUSE_STYLE[UNKNOWN]
    return CAUSE_STYLE.get(death.cause, CAUSE_STYLE[EXIT])


def tip_text(death: Death) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(death.t))
    lines = [f"{stamp}  {death.summary()}"]
    if death.thread_id is not None:
        lines.append(f"worker {death.worker_id} ({death.name}) lives on — click for details")
    elif death.worker_id is not None:
        lines.append(f"worker {death.worker_id} — click for details")
    elif death.record is not None and death.concerns is not None:
        lines.append(f"kernel kill of a process {printable(death.concerns)} — click for its lines")
    elif death.record is not None:
        lines.append("kernel kill record of a process oomscope does not watch — click for its lines")
    return "\n".join(lines)


def _lane_y(lane: str) -> int:
    """OOM kills on the top lane, the commonest and least alarming exits at the bottom."""
    return len(LANES) - 1 - LANES.index(lane)


class KillTimeline(QtWidgets.QWidget):
    death_clicked = Signal(object)  # Death

    def __init__(self, roster: Roster, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.roster = roster
        layout = self._layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.plot_widget = pg.PlotWidget(axisItems={"bottom": ClockAxis()})
        self.plot_widget.setObjectName("kill-timeline")
        self.plot_widget.setBackground("w")
        self.plot_widget.setToolTip("Worker deaths by cause; hover a marker for details, click it to open "
                                    "the worker's detail pane")
        item = self.plot_item = self.plot_widget.getPlotItem()
        item.setMenuEnabled(False)
        item.hideButtons()
        item.showGrid(x=True, y=False, alpha=0.2)
        self.view_box = item.getViewBox()
        self.view_box.setMouseEnabled(x=True, y=False)
        item.setYRange(-0.6, len(LANES) - 0.4, padding=0)
        left = item.getAxis("left")
        left.setTicks([[(_lane_y(lane), LANE_LABELS[lane]) for lane in LANES]])
        left.setWidth(AXIS_WIDTH_PX)
        # Six lanes in a short strip: at the default size, pyqtgraph drops tick labels that would
        # touch, and a lane without its label is a lane nobody can read.
        font = QtGui.QFont()
        font.setPointSizeF(max(7.0, font.pointSizeF() - 1.5))
        left.setStyle(tickFont=font)
        for axis in ("left", "bottom"):
            ax = item.getAxis(axis)
            ax.setPen(pg.mkPen(90, 90, 90))
            ax.setTextPen(pg.mkPen(40, 40, 40))
        # Six lanes, each labelled: below this height the labels print over each other.
        self.plot_widget.setMinimumHeight(96)
        self.scatter = pg.ScatterPlotItem(hoverable=True, tip=self._tip, hoverSize=22,
                                          hoverPen=pg.mkPen(0, 0, 0, width=2))
        self.scatter.sigClicked.connect(self._on_clicked)
        item.addItem(self.scatter)
        layout.addWidget(self.plot_widget)
        # pyqtgraph renders a marker's symbol once per pen and brush *object* (its atlas keys
        # them by identity): one object per style, or every refresh renders every marker anew.
        self._brushes: dict[tuple[int, int, int], QtGui.QBrush] = {}
        self._thread_pen = pg.mkPen(*THREAD_PEN_RGB, width=1.5)
        self._pen = pg.mkPen(40, 40, 40, width=1)
        self.request_refresh = Throttle(self.refresh, REFRESH_MIN_INTERVAL_S, "timeline-refresh", self)

    def link_x(self, plot_item: Any) -> None:
        self.plot_item.setXLink(plot_item)

    def set_right_margin(self, px: int) -> None:
        """Room at the right for what stands beside the linked plot (its legend): both time
        axes then have the same width and end at the same moment."""
        self._layout.setContentsMargins(0, 0, px, 0)

    def refresh(self) -> None:
        spots = []
        for index, death in enumerate(self.roster.deaths):
            symbol, rgb, size = marker_style(death)
            spots.append({
                "pos": (death.t, _lane_y(death.lane)),
                "symbol": symbol,
                "size": size,
                "brush": self._brush(rgb),
                "pen": self._thread_pen if death.thread_id is not None else self._pen,
                "data": index,
            })
        self.scatter.setData(spots)

    def _brush(self, rgb: tuple[int, int, int]) -> QtGui.QBrush:
        brush = self._brushes.get(rgb)
        if brush is None:
            brush = self._brushes[rgb] = pg.mkBrush(*rgb)
        return brush

    def _tip(self, x: float, y: float, data: Any) -> str:
        if isinstance(data, int) and 0 <= data < len(self.roster.deaths):
            return tip_text(self.roster.deaths[data])
        return ""

    def _on_clicked(self, _item: Any, points: Any, *_: Any) -> None:
        for point in list(points)[:1]:
            index = point.data()
            if isinstance(index, int) and 0 <= index < len(self.roster.deaths):
                self.death_clicked.emit(self.roster.deaths[index])

    def markers(self) -> list[tuple[float, str]]:
        """(time, cause) of every marker the scatter item holds, read back from it."""
        return [(t, death.cause) for t, _lane, death in self.marker_deaths()]

    def marker_deaths(self) -> list[tuple[float, str, Death]]:
        """(time, lane, death) of every marker, time and lane read back from the scatter item."""
        out = []
        lanes = {_lane_y(lane): lane for lane in LANES}
        for point in self.scatter.points():
            index = point.data()
            out.append((float(point.pos().x()), lanes[round(point.pos().y())], self.roster.deaths[index]))
        return out


def stacked_with_timeline(top: QtWidgets.QWidget, timeline: KillTimeline, title: str, tip: str,
                          sizes: tuple[int, int]) -> QtWidgets.QSplitter:
    """The memory plot over the kill timeline under its bold title, as every window shows them."""
    split = QtWidgets.QSplitter(Qt.Orientation.Vertical)
    split.addWidget(top)
    box = QtWidgets.QWidget()
    box_layout = QtWidgets.QVBoxLayout(box)
    box_layout.setContentsMargins(0, 0, 0, 0)
    box_layout.setSpacing(0)
    label = QtWidgets.QLabel("  " + title)
    label.setStyleSheet("font-weight: bold; color: rgb(60, 60, 60)")
    label.setToolTip(tip)
    box_layout.addWidget(label)
    box_layout.addWidget(timeline, 1)
    split.addWidget(box)
    split.setStretchFactor(0, 4)
    split.setStretchFactor(1, 1)
    split.setSizes(list(sizes))
    return split
