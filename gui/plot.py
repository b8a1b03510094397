"""The memory plot: one curve per worker against draggable warning and critical lines.

Drawing follows pyqtgraph's scrollingPlots lesson and goes one step further for hundreds of
workers: history lives in numpy ring buffers (history.py), each redraw asks every series only
for min/max pairs per pixel-sized time bucket (cached, so a redraw computes just the newest
buckets), and one graphics item paints every curve with ``drawPolyline`` from numpy-filled
``QPolygonF`` buffers. Redraws are requested on new samples and run at most 20 times a second.
"""

from __future__ import annotations

import html
import math
import time
from collections import OrderedDict
from collections.abc import Iterable

import numpy as np

from oomscope.core.forecast import GROWING_MIN_BYTES_PER_S
from oomscope.core.sizes import Level, format_size

from .axis import axis_unit, tick_label, tick_spacing
from .history import METRIC_LABELS, METRICS, SPARSE_METRICS, PeakView, bucket_width
from .empty_plot import EmptyPlotHint
from .legend import PlotLegend
from .palette import CRITICAL_RGB, WARNING_RGB, worker_rgb
from .qt import QRectF, Qt, QtCore, QtGui, QtWidgets, Signal, pg
from .roster import Roster, WorkerState
from .throttle import Throttle
from .visibility import CurveVisibility

RGB = tuple[int, int, int]

MIB = float(1 << 20)
AXIS_WIDTH_PX = 92  # the plot's and the timeline's left axes: equal, so their time axes line up
REDRAW_MIN_INTERVAL_S = 0.05  # at most 20 redraws a second, whatever the sampling rate
WINDOWS: tuple[tuple[str, float | None], ...] = (
    ("1 min", 60.0), ("5 min", 300.0), ("15 min", 900.0), ("1 h", 3600.0), ("all", None),
)
# One min/max pair per this many pixels: finer adds paint time, not information.
_PIXELS_PER_BUCKET = 2
# A worker's threads share its colour: the main thread solid, each worker thread (in the order
# it first reported) another dash pattern in a lighter shade, so they read as one worker's parts.
_THREAD_DASHES = (Qt.PenStyle.DashLine, Qt.PenStyle.DotLine, Qt.PenStyle.DashDotLine,
                  Qt.PenStyle.DashDotDotLine)
_THREAD_LIGHTEN = (0.0, 0.3, 0.45)  # share of white mixed in, cycled with the dashes
# How far ahead a growing worker's dashed forecast reaches when no level or limit stops it
# sooner: the rate is fitted over a minute, and extrapolating it much further is guessing.
TREND_HORIZON_S = 300.0
# While something grows, Follow keeps this share of the window right of the newest sample for
# the dashed forecasts (the timeline, linked to the same x range, shows that room too).
FORECAST_ROOM = 0.15
FORECAST_ROOM_HOLD_S = 30.0
# A level counts for the y range while it is within this factor of the curves' top (a 200 MiB
# critical line over a 40 MiB worker stays in view, to be seen and dragged), a limit while it is
# within the smaller one (a 96 MiB cgroup limit over 40 MiB shows the headroom); further off (a
# 4 GiB V8 heap limit, a 256 MiB one over 10 MiB heaps) each is a marker at the top edge instead:
# stretching the axis for it flattens every curve.
LEVEL_NEAR_FACTOR = 8.0
LIMIT_NEAR_FACTOR = 2.5
MIN_Y_TOP_MIB = 16.0


def thread_curve_name(w: WorkerState, pid: int, thread_id: int) -> str:
    """How the crosshair readout names one thread's heap curve: "w3 thread 2"."""
    where = w.id if pid == w.ref.pid else f"{w.id} PID {pid}"
    return f"{where} main thread" if thread_id == 0 else f"{where} thread {thread_id}"


class ClockAxis(pg.DateAxisItem):
    """Bottom axis: wall-clock time. Never finer than a second: pyqtgraph's millisecond level
    labels a short session "44.000, 44.500" with no hour or minute, and samples are 50 ms or
    more apart anyway."""

    def __init__(self) -> None:
        super().__init__(orientation="bottom")
        self.zoomLevels: OrderedDict[float, object] = OrderedDict((spacing, level) for spacing, level in self.zoomLevels.items()
                                      if spacing > 1)


class SizeAxis(pg.AxisItem):
    """Left axis: values are MiB; ticks at round MiB or GiB steps (axis.py), never "19.5312 GiB"."""

    def tickSpacing(self, minVal: float, maxVal: float, size: float) -> list[tuple[float, float]]:  # noqa: N802,N803
        levels = tick_spacing(minVal, maxVal, size)
        return levels if levels is not None else list(super().tickSpacing(minVal, maxVal, size))

    def tickStrings(self, values: list[float], scale: float, spacing: float) -> list[str]:  # noqa: N802
        low, high = self.range
        unit = axis_unit(max(abs(low), abs(high)))
        return [tick_label(v, unit, spacing) for v in values]


class CurvesItem(pg.GraphicsObject):
    """Every worker's curve, painted in one pass (one item instead of hundreds)."""

    def __init__(self) -> None:
        super().__init__()
        self._thin: list[tuple[QtGui.QPen, QtGui.QPolygonF]] = []
        self._bold: list[tuple[QtGui.QPen, QtGui.QPolygonF]] = []
        self._limits: list[tuple[QtGui.QPen, QtGui.QPolygonF]] = []
        self._trends: list[tuple[QtGui.QPen, QtGui.QPolygonF]] = []
        self._rect = QRectF()

    def set_curves(self, thin: list[tuple[QtGui.QPen, QtGui.QPolygonF]],
                   bold: list[tuple[QtGui.QPen, QtGui.QPolygonF]], rect: QRectF,
                   limits: list[tuple[QtGui.QPen, QtGui.QPolygonF]] | None = None,
                   trends: list[tuple[QtGui.QPen, QtGui.QPolygonF]] | None = None) -> None:
        if rect != self._rect:
            self.prepareGeometryChange()
            self._rect = rect
        self._thin, self._bold = thin, bold
        self._limits = limits or []
        self._trends = trends or []
        self.update()

    def curve_lines(self) -> list[tuple[QtGui.QPen, QtGui.QPolygonF]]:
        """Every curve this item paints, thin ones first."""
        return self._thin + self._bold

    def limit_lines(self) -> list[tuple[QtGui.QPen, QtGui.QPolygonF]]:
        """The faint dashed limit lines this item paints (the heap metric's V8 heap limits)."""
        return list(self._limits)

    def trend_lines(self) -> list[tuple[QtGui.QPen, QtGui.QPolygonF]]:
        """The dashed forecasts this item paints (growing workers' curves extended by their rate)."""
        return list(self._trends)

    def boundingRect(self) -> QRectF:
        return self._rect

    def paint(self, p: QtGui.QPainter, *args: object) -> None:
        # Thin lines unantialiased: the raster engine's fastest path, and at one pixel wide
        # antialiasing only blurs them. The emphasised curves get it: they are few.
        p.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing, False)
        for pen, poly in self._limits:  # underneath: a limit is context, the curves are the data
            p.setPen(pen)
            p.drawPolyline(poly)
        for pen, poly in self._thin:
            p.setPen(pen)
            p.drawPolyline(poly)
        for pen, poly in self._trends:  # over the thin curves they continue, under the bold ones
            p.setPen(pen)
            p.drawPolyline(poly)
        p.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing, True)
        for pen, poly in self._bold:
            p.setPen(pen)
            p.drawPolyline(poly)


def _polygon(x: np.ndarray, y: np.ndarray) -> QtGui.QPolygonF:
    poly: QtGui.QPolygonF = pg.functions.create_qpolygonf(len(x))
    arr = pg.functions.ndarray_from_qpolygonf(poly)
    arr[:, 0] = x
    arr[:, 1] = y
    return poly


class MemoryPlot(QtWidgets.QWidget):
    """Curves, thresholds, crosshair readout; emits ``threshold_moved`` when a drag ends."""

    threshold_moved = Signal(str, int)  # level ("warning" | "critical"), bytes
    metric_changed = Signal(str)
    # The width the legend takes from the plot's right edge (0 while it is hidden): whatever
    # shares the plot's time axis below it (the kill timeline) keeps the same width, so both
    # end at the same moment (an x link keeps only the scale and the left edge).
    legend_width_changed = Signal(int)

    def __init__(self, roster: Roster, parent: QtWidgets.QWidget | None = None,
                 visibility: CurveVisibility | None = None) -> None:
        super().__init__(parent)
        self.roster = roster
        # Shared with the legend and the table (its check boxes, its filter): who is drawn.
        self.visibility = visibility if visibility is not None else CurveVisibility(self)
        self.visibility.changed.connect(self._on_visibility_changed)
        roster.forget_listeners.append(self.forget)  # a worker's row let go of: its views too
        # Not "metric": that would shadow QPaintDevice.metric(), which Qt calls while painting.
        self.shown_metric = "rss"
        self.window_s: float | None = 300.0
        self.follow = True
        self.selected: set[str] = set()
        self._selected_slots: set[int] = set()
        self._room_until = 0.0
        self._views: dict[tuple[str, str], PeakView] = {}
        self._thread_views: dict[tuple[str, int, int], PeakView] = {}
        # Pens are cached by colour, not by worker: the colour index grows with every worker
        # ever seen (10,000 churned workers made 10,000 pens), the colours it gives do not.
        self._pens: dict[tuple[RGB, bool], QtGui.QPen] = {}
        self._thread_pens: dict[tuple[RGB, bool, int], QtGui.QPen] = {}
        # Worker id -> (curve name, points) of every curve the last redraw drew for it.
        self.drawn_curves: dict[str, list[tuple[str, int]]] = {}
        self._levels: dict[str, Level | None] = {"warning": None, "critical": None}
        # The worker whose own levels the lines show (it is the only one selected); None: global.
        self.levels_owner: str | None = None
        self.reference_limit: int | None = None
        self._y_top = 0.0
        self.redraws = 0
        # Heap metric: worker id -> the V8 heap limit (bytes) its dashed line was drawn at.
        self.heap_limit_lines: dict[str, int] = {}
        self.cgroup_limit_lines: dict[str, int] = {}  # worker id -> the limit drawn
        self._limit_pens: dict[RGB, QtGui.QPen] = {}
        # The plot metric the engine's levels are on (the window's "Alerts on" box): the warning
        # and critical lines are drawn on that metric only, since a level on RSS says nothing
        # about where heap or cgroup usage stands. None: the levels' metric is not plotted.
        self.alert_metric: str | None = "rss"
        # The plot metric the engine's trend and ETAs are of (the alert metric; the window keeps
        # it in step). None: draw no forecast (a rate of another metric would mislead).
        self.trend_metric: str | None = None
        # Worker id -> (x0, y0, x1, y1), y in MiB: the dashed forecast the last redraw drew.
        self.trend_extensions: dict[str, tuple[float, float, float, float]] = {}
        self._trend_pens: dict[RGB, QtGui.QPen] = {}
        # What the last redraw put beside the curves instead of stretching the axis: limits and
        # levels far above the data ((label, MiB)), and why a percent level is drawn for nobody.
        self.off_scale: list[tuple[str, float]] = []
        self.level_notes: list[str] = []
        self.data_top_mib = 0.0
        self.show_legend = True
        self._build()
        self.request_redraw = Throttle(self.redraw, REDRAW_MIN_INTERVAL_S, "plot-redraw", self)

    # ------------------------------------------------------------------ build

    def _build(self) -> None:
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        bar = QtWidgets.QHBoxLayout()
        bar.setContentsMargins(6, 2, 6, 0)
        bar.addWidget(QtWidgets.QLabel("Metric:"))
        self.metric_box = QtWidgets.QComboBox()
        self.metric_box.setObjectName("metric")
        self.metric_box.setToolTip("What the curves and the table's % column show; it changes nothing the "
                                   "alerts compare (that is the toolbar's Alerts on box). Heap used is "
                                   "offered once a worker reports its V8 heap, cgroup usage once a worker "
                                   "runs in a cgroup of its own")
        for m in METRICS:
            self.metric_box.addItem(METRIC_LABELS[m], m)
        self.metric_box.currentIndexChanged.connect(self._on_metric_box_changed)
        bar.addWidget(self.metric_box)
        bar.addSpacing(12)
        bar.addWidget(QtWidgets.QLabel("Window:"))
        self.window_box = QtWidgets.QComboBox()
        self.window_box.setObjectName("window")
        self.window_box.setToolTip("How much history the plot shows (keys 1–5)")
        for label, seconds in WINDOWS:
            self.window_box.addItem(label, seconds)
        self.window_box.setCurrentIndex(1)
        self.window_box.currentIndexChanged.connect(self._on_window_box_changed)
        bar.addWidget(self.window_box)
        self.follow_button = QtWidgets.QToolButton()
        self.follow_button.setObjectName("follow")
        self.follow_button.setText("Follow")
        self.follow_button.setCheckable(True)
        self.follow_button.setChecked(True)
        self.follow_button.setToolTip("Keep the newest samples in view (Space pauses and resumes; "
                                      "panning or zooming with the mouse pauses)")
        self.follow_button.toggled.connect(self.set_follow)
        bar.addWidget(self.follow_button)
        bar.addSpacing(12)
        # Says, while another metric is plotted, why the warning and critical lines are gone.
        self.levels_note = QtWidgets.QLabel("")
        self.levels_note.setObjectName("levels-note")
        self.levels_note.setStyleSheet("color: rgb(120, 90, 0);")
        self.levels_note.setVisible(False)
        bar.addWidget(self.levels_note)
        bar.addSpacing(12)
        self.readout = QtWidgets.QLabel("")
        self.readout.setObjectName("readout")
        self.readout.setToolTip("Crosshair readout: time and value under the mouse, and the nearest worker")
        self.readout.setTextFormat(Qt.TextFormat.RichText)
        # Whatever the mouse is over, the readout takes the room left and no more: its text set
        # a minimum width, and at 1024 px a long worker name pushed the window off the screen.
        # (The levels note keeps its width: it is short, and ignored it got none.)
        self.readout.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred)
        bar.addWidget(self.readout, 1)
        layout.addLayout(bar)

        self.date_axis = ClockAxis()
        self.size_axis = SizeAxis(orientation="left")
        self.size_axis.setWidth(AXIS_WIDTH_PX)
        self.plot_widget = pg.PlotWidget(axisItems={"bottom": self.date_axis, "left": self.size_axis})
        self.plot_widget.setObjectName("memory-plot")
        self.plot_widget.setBackground("w")
        self.plot_widget.setToolTip("")
        self.plot_item = self.plot_widget.getPlotItem()
        self.plot_item.showGrid(x=True, y=True, alpha=0.25)
        self.plot_item.setMenuEnabled(False)
        self.plot_item.hideButtons()
        self.plot_item.setLabel("left", METRIC_LABELS[self.shown_metric])
        self.view_box = self.plot_item.getViewBox()
        self.view_box.disableAutoRange()
        self.view_box.setMouseEnabled(x=True, y=False)
        self.view_box.sigRangeChangedManually.connect(self._on_range_changed_manually)
        for axis in ("left", "bottom"):
            ax = self.plot_item.getAxis(axis)
            ax.setPen(pg.mkPen(90, 90, 90))
            ax.setTextPen(pg.mkPen(40, 40, 40))
        self.curves = CurvesItem()
        self.plot_item.addItem(self.curves)
        self.lines: dict[str, pg.InfiniteLine] = {}
        # The two labels sit at different places along their lines, so close levels do not print
        # one label over the other; unfilled, so no label box hides a curve behind it.
        for level, rgb, where in (("warning", WARNING_RGB, 0.02), ("critical", CRITICAL_RGB, 0.36)):
            line = pg.InfiniteLine(
                angle=0, movable=True, pen=pg.mkPen(*rgb, width=2),
                hoverPen=pg.mkPen(*rgb, width=4),
                label=level, labelOpts={"position": where, "color": rgb, "anchors": [(0, 1), (0, 1)]},
            )
            line.setZValue(10)
            line.setVisible(False)
            line.sigPositionChangeFinished.connect(lambda ln, lv=level: self._on_line_released(lv, ln))
            self.plot_item.addItem(line, ignoreBounds=True)
            self.lines[level] = line
        self.crosshair = pg.InfiniteLine(angle=90, movable=False,
                                         pen=pg.mkPen(120, 120, 120, style=Qt.PenStyle.DashLine))
        self.crosshair.setVisible(False)
        self.plot_item.addItem(self.crosshair, ignoreBounds=True)
        self.plot_widget.scene().sigMouseMoved.connect(self._on_mouse_moved)
        # Far-off limits and levels (top right) and notes on levels drawn for nobody (top left):
        # items of the scene, so an exported picture carries them too.
        self.off_scale_text = pg.TextItem(anchor=(1, 0), fill=(255, 255, 255, 210))
        self.off_scale_text.setObjectName("off-scale")
        self.notes_text = pg.TextItem(anchor=(0, 0), fill=(255, 255, 255, 210))
        for item in (self.off_scale_text, self.notes_text):
            item.setZValue(20)
            item.setVisible(False)
            self.plot_item.addItem(item, ignoreBounds=True)
        self.plot_widget.setMinimumHeight(140)  # two threshold labels and a curve between them
        # The readout is of the mouse: once it leaves the plot, the readout and crosshair go.
        self.plot_widget.installEventFilter(self)
        self.legend = PlotLegend(self.visibility)
        self.legend.setVisible(False)
        row = QtWidgets.QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(2)
        row.addWidget(self.plot_widget, 1)
        row.addWidget(self.legend)
        layout.addLayout(row, 1)
        self._legend_row = row
        self._legend_taken = 0
        self.empty_label = EmptyPlotHint(self.plot_widget, "No workers yet. Watch a process's memory by "
                                         "launching it here or attaching to it, or see oomscope at work:")
        self.empty_label.set_buttons(set())  # the window that can start things offers them
        self.update_metric_choices()

    # ----------------------------------------------------------------- inputs

    def eventFilter(self, watched: QtCore.QObject, event: QtCore.QEvent) -> bool:  # noqa: N802
        if watched is self.plot_widget and event.type() == QtCore.QEvent.Type.Leave:
            self.clear_readout()
        return False

    def clear_readout(self) -> None:
        self.crosshair.setVisible(False)
        self.readout.setText("")

    def _on_visibility_changed(self) -> None:
        self._place_lines()
        self.request_redraw()

    def set_metric(self, metric: str) -> None:
        index = self.metric_box.findData(metric)
        if index >= 0 and index != self.metric_box.currentIndex():
            self.metric_box.setCurrentIndex(index)
        elif self.shown_metric != metric:
            self._apply_metric(metric)

    def _on_metric_box_changed(self, index: int) -> None:
        self._apply_metric(str(self.metric_box.itemData(index)))

    def _apply_metric(self, metric: str) -> None:
        self.shown_metric = metric
        self.plot_item.setLabel("left", METRIC_LABELS[metric])
        self.metric_changed.emit(metric)
        self.redraw()

    def update_metric_choices(self) -> None:
        """Offer heap, and the cgroup's usage, only once some worker's samples carry them."""
        model = self.metric_box.model()
        if not isinstance(model, QtGui.QStandardItemModel):
            return
        for metric, known, why in (
                ("heap_used", self.roster.any_heap(), "No worker reports its V8 heap (yet)"),
                ("cgroup_usage", self.roster.any_cgroup_usage(),
                 "No worker runs in a cgroup of its own (launch one with a memory limit)")):
            item = model.item(METRICS.index(metric))
            if item is not None:
                item.setEnabled(known)
                item.setToolTip("" if known else why)

    def set_window(self, seconds: float | None) -> None:
        index = self.window_box.findData(seconds)
        if index >= 0:
            self.window_box.setCurrentIndex(index)

    def _on_window_box_changed(self, index: int) -> None:
        data = self.window_box.itemData(index)
        self.window_s = None if data is None else float(data)
        self.set_follow(True)
        self.redraw()

    def set_follow(self, follow: bool) -> None:
        self.follow = follow
        if self.follow_button.isChecked() != follow:
            self.follow_button.setChecked(follow)
        if follow:
            self.request_redraw()

    def _on_range_changed_manually(self, *_: object) -> None:
        self.set_follow(False)
        self.request_redraw()

    def set_selected(self, worker_ids: Iterable[str]) -> None:
        self.selected = set(worker_ids)
        # Choosing one life of a slot brings out all its lives: one line with gaps at deaths.
        self._selected_slots = {w.ref.slot for i in self.selected if (w := self.roster.by_id.get(i)) is not None
                                and w.ref.slot is not None}
        self.redraw()

    def is_chosen(self, w: WorkerState) -> bool:
        return w.id in self.selected or (w.ref.slot is not None and w.ref.slot in self._selected_slots)

    def set_thresholds(self, warn: Level | None, crit: Level | None, owner: str | None = None) -> None:
        """Levels the lines show: the global ones, or ``owner``'s own (dragging then changes
        that worker's levels, not the global ones)."""
        self._levels = {"warning": warn, "critical": crit}
        self.levels_owner = owner
        self._place_lines()

    def levels(self) -> tuple[Level | None, Level | None]:
        """The warning and critical levels the lines show."""
        return self._levels["warning"], self._levels["critical"]

    def set_alert_metric(self, metric: str | None) -> None:
        """The plot metric the levels are on: their lines are drawn on that metric's plot only."""
        self.alert_metric = metric
        self._place_lines()
        self.request_redraw()

    def _reference(self) -> int | None:
        """The limit a percent threshold line is drawn against: the selected worker's, else the
        first live worker's with a limit."""
        candidates = [self.roster.by_id[i] for i in self.selected if i in self.roster.by_id]
        candidates += [w for w in self.roster.workers if w.alive and self.visibility.shown(w.id)]
        for w in candidates:
            limit = w.limit(self.shown_metric)
            if limit:
                return limit
        return None

    def _place_lines(self) -> None:
        self.reference_limit = self._reference()
        on_alert_metric = self.shown_metric == self.alert_metric
        any_level = any(lv is not None for lv in self._levels.values())
        if on_alert_metric or not any_level:
            self.levels_note.setVisible(False)
        else:
            where = METRIC_LABELS.get(self.alert_metric or "", "another metric")
            self.levels_note.setText(f"levels are on {where}: not drawn on {METRIC_LABELS[self.shown_metric]}")
            self.levels_note.setToolTip(f"The warning and critical levels (and the alerts and actions they "
                                        f"drive) compare {where}; the toolbar's Alerts on box changes that")
            self.levels_note.setVisible(True)
        for level, line in self.lines.items():
            if line.moving:
                continue  # never yank a line from under the user's mouse
            lv = self._levels.get(level)
            value = lv.resolve(self.reference_limit) if lv is not None and on_alert_metric else None
            if value is None:
                line.setVisible(False)
                continue
            line.setVisible(True)
            line.setValue(value / MIB)
            text = f"{level} {lv}"
            if lv is not None and lv.fraction is not None:
                text += f" ({format_size(value)})"
            text += f" on {METRIC_LABELS[self.shown_metric]}"
            if self.levels_owner is not None:
                text += f" — {self.levels_owner}'s own"
            line.label.setFormat(text)

    def _on_line_released(self, level: str, line: pg.InfiniteLine) -> None:
        value = int(max(1.0, float(line.value())) * MIB)
        self.threshold_moved.emit(level, value)

    # ----------------------------------------------------------------- redraw

    def x_range(self) -> tuple[float, float]:
        latest = max((float(w.series.times()[-1]) for w in self.roster.workers if len(w.series)),
                     default=time.time())
        if self.roster.deaths:
            latest = max(latest, self.roster.deaths[-1].t)  # a kill marker is never cut off
        if not self.follow:
            (x0, x1), _ = self.view_box.viewRange()
            return float(x0), float(x1)
        first = min((float(w.series.times()[0]) for w in self.roster.workers if len(w.series)),
                    default=latest - 60.0)
        ahead = self._forecast_room(latest - first)
        if self.window_s is None:
            return first, max(latest + ahead, first + 10.0)
        if latest - first <= self.window_s:
            # A young session grows from the left edge (over at least a minute), then slides.
            return first, max(latest + 1.0 + ahead, first + min(60.0, self.window_s))
        room = 1.0 + self._forecast_room(self.window_s)
        return latest + room - self.window_s, latest + room

    def _forecast_room(self, span_s: float) -> float:
        """Room right of "now" while a curve has a forecast, so its dashed line is seen: a share
        of the window, kept a while after the last growth so the view does not jump back and
        forth with every fit."""
        now = time.monotonic()
        if any(self._growing(w) for w in self.roster.workers):
            self._room_until = now + FORECAST_ROOM_HOLD_S
        return FORECAST_ROOM * span_s if now < self._room_until else 0.0

    def _growing(self, w: WorkerState) -> bool:
        s = w.last
        return (w.alive and s is not None and s.trend_bytes_per_s is not None
                and s.trend_bytes_per_s >= GROWING_MIN_BYTES_PER_S)

    def redraw(self) -> None:
        self.redraws += 1
        t0, t1 = self.x_range()
        pixels = max(100, int(self.view_box.width()) or 800)
        width_s = bucket_width(t1 - t0, pixels // _PIXELS_PER_BUCKET)
        thin: list[tuple[QtGui.QPen, QtGui.QPolygonF]] = []
        bold: list[tuple[QtGui.QPen, QtGui.QPolygonF]] = []
        top = 0.0
        metric = self.shown_metric
        limits: list[tuple[QtGui.QPen, QtGui.QPolygonF]] = []
        self.heap_limit_lines = {}
        self.cgroup_limit_lines = {}
        self.drawn_curves = {}
        self.trend_extensions = {}
        trends: list[tuple[QtGui.QPen, QtGui.QPolygonF]] = []
        # (MiB, worker id, what) of every limit drawn: in the y range when near the curves, else a marker.
        limit_marks: list[tuple[float, str, str]] = []
        for w in self.roster.workers:
            if not len(w.series) or not self.visibility.shown(w.id):
                continue  # hidden (legend, check box, filter): no curve, no limit, no say in the range
            chosen = self.is_chosen(w)
            if metric == "heap_used" and w.has_thread_heaps():
                top = max(top, self._add_thread_curves(w, t0, t1, width_s, bold if chosen else thin))
                limit_top = self._add_heap_limit(w, t0, t1, limits)
                if limit_top is not None:
                    limit_marks.append((limit_top, w.id, "V8 heap limit"))
                continue
            view = self._views.get((w.id, metric))
            if view is None:
                view = self._views[(w.id, metric)] = PeakView()
            x, y = view.points(w.series, metric, t0, t1, width_s)
            if len(x) == 0:
                continue
            if metric in SPARSE_METRICS:
                # A worker without the figure has no curve: NaN rows are gaps, never zeros.
                finite = np.isfinite(y)
                if not finite.any():
                    continue
                x, y = x[finite], y[finite]
            y = y / MIB
            top = max(top, float(y.max()))
            (bold if chosen else thin).append((self._pen(w, chosen), _polygon(x, y)))
            self.drawn_curves[w.id] = [(w.id, len(x))]
            self._add_trend(w, metric, trends)
            if metric == "heap_used":
                limit_top = self._add_heap_limit(w, t0, t1, limits)
                what = "V8 heap limit"
            else:
                limit_top = self._add_cgroup_limit(w, t0, t1, limits)
                what = "cgroup limit"
            if limit_top is not None:
                limit_marks.append((limit_top, w.id, what))
        self.data_top_mib = top
        self.empty_label.setVisible(not self.roster.workers)
        self._place_lines()
        # Limits and levels near the curves are part of the picture (the headroom is the point);
        # far ones would flatten every curve. With no curve at all, the levels set the range.
        base = max(top, MIN_Y_TOP_MIB)
        marks = [(value, owner, what, LIMIT_NEAR_FACTOR) for value, owner, what in limit_marks]
        for level in ("warning", "critical"):
            line = self.lines[level]
            if line.isVisible():
                marks.append((float(line.value()), "", level, LEVEL_NEAR_FACTOR))
        for value, _, _, factor in marks:
            if value <= base * factor or not self.drawn_curves:
                top = max(top, value)
        self._set_ranges(t0, t1, top)
        self._place_notes(t0, t1, [(value, owner, what) for value, owner, what, _ in marks if value > self._y_top])
        rect = QRectF(t0, 0.0, t1 - t0, max(top, 1.0) * 1.1)
        for x0, y0, x1, y1 in self.trend_extensions.values():
            # The forecasts run past the window's right edge: the item's bounds must cover
            # them (the view box clips what is out of view), but the y range ignores them.
            rect = rect.united(QRectF(x0, 0.0, max(x1 - x0, 0.0), max(y0, y1)))
        self.curves.set_curves(thin, bold, rect, limits, trends)
        self.legend.setVisible(self.show_legend and bool(self.roster.workers))
        self.legend.refresh(self.roster.workers)
        taken = self.legend.width() + self._legend_row.spacing() if self.legend.isVisibleTo(self) else 0
        if taken != self._legend_taken:
            self._legend_taken = taken
            self.legend_width_changed.emit(taken)

    def _place_notes(self, t0: float, t1: float, far: list[tuple[float, str, str]]) -> None:
        """Far-off limits and levels ((MiB, worker id or "", what)) as one marker at the top right
        ("V8 heap limit 4.0 GiB ↑ (w2, w5)", equal ones grouped), and at the top left why a
        percent level is drawn for nobody."""
        grouped: dict[tuple[str, float], list[str]] = {}
        for value, owner, what in sorted(far):
            grouped.setdefault((what, value), []).append(owner)
        self.off_scale = []
        lines = []
        for (what, value), owners in grouped.items():
            size = format_size(value * MIB)
            who = ", ".join(o for o in owners if o)
            text = f"{what} {size} ↑" + (f" ({who})" if who else "")
            self.off_scale.append((text, value))
            rgb = CRITICAL_RGB if what == "critical" else WARNING_RGB if what == "warning" else (90, 90, 90)
            lines.append(f"<span style='color: rgb{rgb}'>{html.escape(text)}</span>")
        self.off_scale_text.setHtml("<br>".join(lines))
        self.off_scale_text.setToolTip("Above the plot's top: the range follows the curves, not limits or "
                                       "levels far above them")
        self.off_scale_text.setVisible(bool(lines))
        self.off_scale_text.setPos(t1, self._y_top)
        self.level_notes = self._percent_notes()
        self.notes_text.setHtml("<br>".join(f"<span style='color: rgb(120, 90, 0)'>{html.escape(n)}</span>"
                                            for n in self.level_notes))
        self.notes_text.setVisible(bool(self.level_notes))
        # Wrapped within the plot (a pool's four PIDs ran past its right edge at 1024 px), and
        # clear of the far-off marker at the top right.
        room = self.view_box.width() - (self.off_scale_text.boundingRect().width() if lines else 0) - 16
        self.notes_text.setTextWidth(max(160.0, room))
        self.notes_text.setPos(t0, self._y_top)

    def _percent_notes(self) -> list[str]:
        """Why a percent level draws nothing for some workers: they have no limit it can be a
        percent of (no cgroup limit, no V8 heap limit). One note for all such workers."""
        if self.shown_metric != self.alert_metric:
            return []
        percent = [f"{level} {lv}" for level, lv in self._levels.items() if lv is not None and lv.fraction is not None]
        if not percent:
            return []
        if self.levels_owner is not None:
            owner = self.roster.by_id.get(self.levels_owner)
            candidates = [owner] if owner is not None else []
        else:
            candidates = [w for w in self.roster.workers if w.alive and self.visibility.shown(w.id)]
        missing = [w for w in candidates if not w.limit(self.shown_metric)]
        if not missing:
            return []
        pids = ", ".join(str(w.ref.pid) for w in missing[:4])
        if len(missing) > 4:
            pids += f" and {len(missing) - 4} more"
        which = "V8 heap limit" if self.shown_metric == "heap_used" else "memory limit"
        return [f"{' and '.join(percent)}: no {which} known for PID {pids} — nothing drawn or "
                f"alerted for {'it' if len(missing) == 1 else 'them'}"]

    def _add_thread_curves(self, w: WorkerState, t0: float, t1: float, width_s: float,
                           out: list[tuple[QtGui.QPen, QtGui.QPolygonF]]) -> float:
        """One heap curve per thread of ``w`` (instead of its summed heap); their top in MiB.

        A thread that ended simply gets no more samples: its curve stops, its history stays."""
        top = 0.0
        chosen = self.is_chosen(w)
        drawn: list[tuple[str, int]] = []
        slot = 0
        for (pid, tid), series in w.heap_threads.items():
            style = 0
            if tid != 0:
                slot += 1
                style = slot
            if not len(series):
                continue
            view = self._thread_views.get((w.id, pid, tid))
            if view is None:
                view = self._thread_views[(w.id, pid, tid)] = PeakView()
            x, y = view.points(series, "heap_used", t0, t1, width_s)
            finite = np.isfinite(y)
            if not finite.any():
                continue
            x, y = x[finite], y[finite] / MIB
            top = max(top, float(y.max()))
            out.append((self._thread_pen(w, chosen, style), _polygon(x, y)))
            drawn.append((thread_curve_name(w, pid, tid), len(x)))
        if drawn:
            self.drawn_curves[w.id] = drawn
        return top

    def _thread_pen(self, w: WorkerState, chosen: bool, style: int) -> QtGui.QPen:
        """Style 0 is the main thread (the worker's own pen); 1, 2, … its worker threads."""
        if style == 0:
            return self._pen(w, chosen)
        rgb = worker_rgb(w.color_index)
        key = (rgb, chosen, style)
        pen = self._thread_pens.get(key)
        if pen is None:
            r, g, b = rgb
            mix = _THREAD_LIGHTEN[(style - 1) % len(_THREAD_LIGHTEN)]
            color = QtGui.QColor(int(r + (255 - r) * mix), int(g + (255 - g) * mix), int(b + (255 - b) * mix),
                                 255 if chosen or not self.selected else 150)
            # A dotted one-pixel line all but vanishes on white: worker threads get a pixel more.
            pen = QtGui.QPen(color, 3.0 if chosen else 2.0)
            pen.setStyle(_THREAD_DASHES[(style - 1) % len(_THREAD_DASHES)])
            pen.setCosmetic(True)
            self._thread_pens[key] = pen
        return pen

    def _add_trend(self, w: WorkerState, metric: str,
                   out: list[tuple[QtGui.QPen, QtGui.QPolygonF]]) -> None:
        """A growing worker's curve continued, dashed, along the engine's rate: to the critical
        level or the cgroup limit, whichever the engine expects first, at most TREND_HORIZON_S on.

        Only on the metric the engine's levels use: that is the metric its rate and ETAs are
        of, and the engine's ETAs say where the line stops, so it ends on the level it hits."""
        s = w.last
        if metric != self.trend_metric or s is None or s.trend_bytes_per_s is None or not self._growing(w):
            return
        etas = [e for e in (s.eta_crit_s, s.eta_limit_s) if e is not None]
        ahead = min(etas + [TREND_HORIZON_S])
        if ahead <= 0.0:
            return  # already at the level or the limit: nothing left to forecast
        x0 = float(w.series.times()[-1])
        y0 = float(w.series.values(metric)[-1])
        if not math.isfinite(y0):
            return  # heap: the last sample had no heap report
        y1 = y0 + s.trend_bytes_per_s * ahead
        x1 = x0 + ahead
        out.append((self._trend_pen(w), _polygon(np.array((x0, x1)), np.array((y0 / MIB, y1 / MIB)))))
        self.trend_extensions[w.id] = (x0, y0 / MIB, x1, y1 / MIB)

    def _trend_pen(self, w: WorkerState) -> QtGui.QPen:
        return self._dashed_pen(w, 200, self._trend_pens)

    def _add_heap_limit(self, w: WorkerState, t0: float, t1: float,
                        limits: list[tuple[QtGui.QPen, QtGui.QPolygonF]]) -> float | None:
        """A faint dashed line at the worker's V8 heap limit (all its threads' limits summed, as
        its samples carry it) over the time it reported a heap; its height in MiB, or None."""
        s = w.last
        if s is None or not s.heap_limit or w.heap_since is None:
            return None
        x0 = max(t0, w.heap_since)
        x1 = min(t1, float(w.series.times()[-1]))
        if x1 <= x0:
            return None
        y = s.heap_limit / MIB
        limits.append((self._limit_pen(w), _polygon(np.array((x0, x1)), np.array((y, y)))))
        self.heap_limit_lines[w.id] = s.heap_limit
        return y

    def _add_cgroup_limit(self, w: WorkerState, t0: float, t1: float,
                          limits: list[tuple[QtGui.QPen, QtGui.QPolygonF]]) -> float | None:
        """A faint dashed line at the worker's cgroup limit (what the kernel enforces) over the
        time it is drawn; its height in MiB, or None without a limit."""
        if not w.cgroup_limit:
            return None
        times = w.series.times()
        x0 = max(t0, float(times[0]))
        x1 = min(t1, float(times[-1]))
        if x1 <= x0:
            return None
        y = w.cgroup_limit / MIB
        limits.append((self._limit_pen(w), _polygon(np.array((x0, x1)), np.array((y, y)))))
        self.cgroup_limit_lines[w.id] = w.cgroup_limit
        return y

    def _limit_pen(self, w: WorkerState) -> QtGui.QPen:
        return self._dashed_pen(w, 120, self._limit_pens)

    @staticmethod
    def _dashed_pen(w: WorkerState, alpha: int, cache: dict[RGB, QtGui.QPen]) -> QtGui.QPen:
        """A thin dashed pen in the worker's colour, made once per colour (pens are per redraw)."""
        rgb = worker_rgb(w.color_index)
        pen = cache.get(rgb)
        if pen is None:
            r, g, b = rgb
            pen = QtGui.QPen(QtGui.QColor(r, g, b, alpha), 1.0)
            pen.setStyle(Qt.PenStyle.DashLine)
            pen.setCosmetic(True)
            cache[rgb] = pen
        return pen

    def _set_ranges(self, t0: float, t1: float, top: float) -> None:
        # Grow the y range in steps, and shrink it only when the data fell well below it:
        # a range that follows every sample makes the whole plot twitch.
        wanted = max(top * 1.12, MIN_Y_TOP_MIB)
        if wanted > self._y_top or wanted < self._y_top * 0.6:
            step = 2 ** math.floor(math.log2(wanted)) / 4
            self._y_top = math.ceil(wanted / step) * step
        if self.follow:
            self.view_box.setRange(xRange=(t0, t1), yRange=(0.0, self._y_top), padding=0.0)
        else:
            self.view_box.setYRange(0.0, self._y_top, padding=0.0)

    def _pen(self, w: WorkerState, chosen: bool) -> QtGui.QPen:
        rgb = worker_rgb(w.color_index)
        key = (rgb, chosen)
        pen = self._pens.get(key)
        if pen is None:
            r, g, b = rgb
            color = QtGui.QColor(r, g, b, 255 if chosen or not self.selected else 150)
            pen = QtGui.QPen(color, 2.5 if chosen else 1.0)
            pen.setCosmetic(True)
            self._pens[key] = pen
        return pen

    def forget_pens(self) -> None:
        self._pens.clear()
        self._thread_pens.clear()

    # -------------------------------------------------------------- crosshair

    def _on_mouse_moved(self, pos: QtCore.QPointF) -> None:
        if not self.view_box.sceneBoundingRect().contains(pos):
            self.clear_readout()
            return
        point = self.view_box.mapSceneToView(pos)
        t, y_mib = point.x(), point.y()
        self.crosshair.setVisible(True)
        self.crosshair.setValue(t)
        best: tuple[float, WorkerState, float, str] | None = None
        for w in self.roster.workers:
            if not self.visibility.shown(w.id):
                continue  # a hidden curve is not under the mouse
            if self.shown_metric == "heap_used" and w.has_thread_heaps():
                candidates = [(thread_curve_name(w, pid, tid), series)
                              for (pid, tid), series in w.heap_threads.items() if len(series)]
            else:
                candidates = [(w.id, w.series)]
            for name, series in candidates:
                found = series.value_at(t, self.shown_metric)
                if found is None or t > float(series.times()[-1]) + 2.0:
                    continue  # before its first sample or after its exit
                distance = abs(found[1] / MIB - y_mib)
                if best is None or distance < best[0]:
                    best = (distance, w, found[1], name)
        stamp = time.strftime("%H:%M:%S", time.localtime(t))
        text = f"<b>{stamp}</b> &nbsp; cursor {format_size(max(0.0, y_mib) * MIB)}"
        if best is not None:
            r, g, b = worker_rgb(best[1].color_index)
            text += (f" &nbsp; <span style='color: rgb({r},{g},{b})'>■</span> "
                     f"{best[1].ref.name} ({best[3]}{best[1].pid_text()}) "
                     f"{METRIC_LABELS[self.shown_metric]} <b>{format_size(best[2])}</b>")
        self.readout.setText(text)

    def forget(self, worker_ids: Iterable[str]) -> None:
        worker_ids = list(worker_ids)
        for wid in worker_ids:
            for m in METRICS:
                self._views.pop((wid, m), None)
            for key in [k for k in self._thread_views if k[0] == wid]:
                del self._thread_views[key]
        self.visibility.forget(worker_ids)
