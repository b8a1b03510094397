"""PNG pictures of the plot and the timeline, through pyqtgraph's ImageExporter.

The exporter renders the graphics scene itself (not a screen grab), so a window behind another
one, or offscreen, exports the same picture. The memory plot's picture is drawn by a plot of its
own at a fixed size (the window's plot may be a strip 1400×248) and framed with what a reader of
a bug report needs and the axis does not say: a title, the date and time span, the levels, and a
legend. It never carries the mouse's crosshair.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oomscope.core.errors import Error
from oomscope.core.sizes import format_size

from .history import METRIC_LABELS
from .palette import worker_rgb
from .qt import QRectF, Qt, QtGui

if TYPE_CHECKING:
    from .plot import MemoryPlot

# Wide enough to read the axis labels of an hour of history when attached to a bug report.
MIN_EXPORT_WIDTH_PX = 1200
PLOT_PICTURE_PX = (1400, 600)  # the curves' part of an exported plot picture
_HEADER_PX = 54
_LEGEND_ROW_PX = 20
_LEGEND_COLUMN_PX = 400
_LEGEND_MAX_ROWS = 8  # past that, "… and N more": a picture is not a table


def render_png(item: Any, width_px: int | None = None) -> QtGui.QImage:
    """The picture of a plot item (``PlotItem``) as it is drawn now, at least ``width_px`` wide."""
    from pyqtgraph.exporters import ImageExporter

    if item.scene() is None:
        raise Error("nothing to export: the plot is not on screen")
    exporter = ImageExporter(item)
    width = max(int(width_px or MIN_EXPORT_WIDTH_PX), 1)
    if int(exporter.parameters()["width"]) < width:
        exporter.parameters()["width"] = width  # the height follows the aspect ratio
    image = exporter.export(toBytes=True)
    if not isinstance(image, QtGui.QImage) or image.isNull():
        raise Error("the plot could not be rendered (it has no size yet)")
    return image


def save_png(item: Any, path: Path, width_px: int | None = None) -> Path:
    """Write ``item``'s picture to ``path`` (``.png`` added when missing); the path written.

    ``item`` is a ``PlotItem`` (drawn as it is), or a ``MemoryPlot`` (its framed picture)."""
    from .plot import MemoryPlot

    path = _png_path(path)
    return save_image(plot_picture(item) if isinstance(item, MemoryPlot) else render_png(item, width_px), path)


def _png_path(path: Path) -> Path:
    if path.suffix.lower() != ".png":
        path = path.with_name(path.name + ".png")
    if not path.parent.is_dir():
        raise Error(f"cannot save {path}: the folder {path.parent} does not exist")
    return path


def save_image(image: QtGui.QImage, path: Path) -> Path:
    """Write a picture made here (``framed_picture``) to ``path``; the path written."""
    path = _png_path(path)
    if not image.save(str(path)):  # the format follows the .png suffix
        raise Error(f"cannot write {path}: check that the folder is writable and the disk is not full")
    return path


def plot_picture(plot: MemoryPlot, size: tuple[int, int] = PLOT_PICTURE_PX, title: str | None = None) -> QtGui.QImage:
    """``plot`` as the user sees it (metric, time range, selection, hidden curves, levels), drawn
    at ``size`` by a plot of its own, framed by ``framed_picture``."""
    from .plot import MemoryPlot
    from .visibility import CurveVisibility

    (x0, x1), _ = plot.view_box.viewRange()
    seen = CurveVisibility()
    seen.hidden = set(plot.visibility.hidden)
    seen.passes_filter = plot.visibility.passes_filter
    twin = MemoryPlot(plot.roster, visibility=seen)
    try:
        twin.setAttribute(Qt.WidgetAttribute.WA_DontShowOnScreen, True)
        twin.resize(*size)
        twin.show()
        layout = twin.layout()
        if layout is not None:
            layout.activate()  # the plot's width now, not at the next event loop turn
        twin.set_metric(plot.shown_metric)
        twin.alert_metric = plot.alert_metric
        twin.trend_metric = plot.trend_metric
        twin.show_legend = False  # the picture draws its own, under the curves, at full width
        twin.set_thresholds(*plot.levels(), plot.levels_owner)
        twin.set_selected(plot.selected)
        twin.set_follow(False)
        twin.view_box.setXRange(float(x0), float(x1), padding=0.0)
        twin.redraw()
        return framed_picture(twin, title)
    finally:
        twin.close()
        twin.deleteLater()


def span_text(x0: float, x1: float) -> str:
    """``2026-12-04 08:31:10 – 08:36:10 (5 min)``: the day once, unless the span crosses midnight."""
    start, end = time.localtime(x0), time.localtime(x1)
    same_day = start[:3] == end[:3]
    right = time.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M:%S", end)
    minutes = (x1 - x0) / 60.0
    length = f"{minutes:.0f} min" if minutes >= 2 else f"{x1 - x0:.0f} s"
    return f"{time.strftime('%Y-%m-%d %H:%M:%S', start)} – {right} ({length})"


def levels_text(plot: MemoryPlot) -> str:
    if plot.shown_metric != plot.alert_metric:
        where = METRIC_LABELS.get(plot.alert_metric or "", "another metric")
        return f"levels are on {where}, not drawn here"
    parts = []
    for level, line in plot.lines.items():
        lv = dict(zip(("warning", "critical"), plot.levels()))[level]
        if lv is None:
            continue
        text = f"{level} {lv}"
        if line.isVisible() and lv.fraction is not None:
            text += f" ({format_size(float(line.value()) * (1 << 20))})"
        parts.append(text)
    if not parts:
        return "no levels set"
    owner = f" ({plot.levels_owner}'s own)" if plot.levels_owner else ""
    return "levels: " + " · ".join(parts) + owner


def framed_picture(plot: MemoryPlot, title: str | None = None) -> QtGui.QImage:
    """``plot``'s scene (no crosshair) under a header (title; time span with its date; levels)
    and over a legend of the workers drawn (colour, name, id, PID; hidden ones said so)."""
    crosshair = plot.crosshair.isVisible()
    plot.crosshair.setVisible(False)
    try:
        body = render_png(plot.plot_item, max(MIN_EXPORT_WIDTH_PX, plot.plot_widget.width()))
    finally:
        plot.crosshair.setVisible(crosshair)
    width = body.width()
    listed = [w for w in plot.roster.workers if not plot.visibility.filtered_out(w.id)]
    columns = max(1, width // _LEGEND_COLUMN_PX)
    shown_rows = min(_LEGEND_MAX_ROWS, math.ceil(len(listed) / columns))
    legend_h = (shown_rows + 1) * _LEGEND_ROW_PX + 8 if listed else 0
    image = QtGui.QImage(width, _HEADER_PX + body.height() + legend_h, QtGui.QImage.Format.Format_RGB32)
    image.fill(QtGui.QColor(255, 255, 255))
    p = QtGui.QPainter(image)
    try:
        p.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing, True)
        p.setRenderHint(QtGui.QPainter.RenderHint.TextAntialiasing, True)
        font = QtGui.QFont(p.font())
        font.setPixelSize(17)
        font.setBold(True)
        p.setFont(font)
        p.setPen(QtGui.QColor(30, 30, 30))
        (x0, x1), _ = plot.view_box.viewRange()
        heading = title or f"oomscope — {METRIC_LABELS[plot.shown_metric]}"
        p.drawText(QRectF(12, 4, width - 24, 24), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                   p.fontMetrics().elidedText(heading, Qt.TextElideMode.ElideRight, width - 24))
        font.setPixelSize(13)
        font.setBold(False)
        p.setFont(font)
        p.setPen(QtGui.QColor(70, 70, 70))
        p.drawText(QRectF(12, 28, width - 24, 22), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                   f"{span_text(float(x0), float(x1))}   ·   {levels_text(plot)}")
        p.drawImage(0, _HEADER_PX, body)
        top = _HEADER_PX + body.height() + 4
        capacity = shown_rows * columns
        for i, w in enumerate(listed[:capacity]):
            col, row = i // shown_rows, i % shown_rows
            x, y = 12 + col * _LEGEND_COLUMN_PX, top + row * _LEGEND_ROW_PX
            hidden = not plot.visibility.shown(w.id)
            p.fillRect(QRectF(x, y + 8, 22, 4), QtGui.QColor(*(worker_rgb(w.color_index) if not hidden
                                                                 else (200, 200, 200))))
            p.setPen(QtGui.QColor(150, 150, 150) if hidden else QtGui.QColor(40, 40, 40))
            text = (f"{w.ref.name} ({w.id}){w.pid_text(' ')}" + ("" if w.alive else f" — {w.state_text()}")
                    + (" (hidden)" if hidden else ""))
            p.drawText(QRectF(x + 28, y, _LEGEND_COLUMN_PX - 36, _LEGEND_ROW_PX),
                       Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                       p.fontMetrics().elidedText(text, Qt.TextElideMode.ElideRight, _LEGEND_COLUMN_PX - 36))
        p.setPen(QtGui.QColor(110, 110, 110))
        foot = []
        if len(listed) > capacity:
            foot.append(f"… and {len(listed) - capacity} more workers")
        filtered = len(plot.roster.workers) - len(listed)
        if filtered:
            foot.append(f"{filtered} workers left out by the table's filter")
        if listed:
            foot.append("thick lines: selected workers · dashed: limits and forecasts")
            p.drawText(QRectF(12, top + shown_rows * _LEGEND_ROW_PX, width - 24, _LEGEND_ROW_PX),
                       Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, " · ".join(foot))
    finally:
        p.end()
    return image
