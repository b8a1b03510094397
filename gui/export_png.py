"""PNG pictures of the plot and the timeline, through pyqtgraph's ImageExporter.

The exporter renders the graphics scene itself (not a screen grab), so a window behind another
one, or offscreen, exports the same picture.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from oomscope.core.errors import Error

from .qt import QtGui

# Wide enough to read the axis labels of an hour of history when attached to a bug report.
MIN_EXPORT_WIDTH_PX = 1200


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
    """Write ``item``'s picture to ``path`` (``.png`` added when missing); the path written."""
    if path.suffix.lower() != ".png":
        path = path.with_name(path.name + ".png")
    if not path.parent.is_dir():
        raise Error(f"cannot save {path}: the folder {path.parent} does not exist")
    image = render_png(item, width_px)
    if not image.save(str(path)):  # the format follows the .png suffix
        raise Error(f"cannot write {path}: check that the folder is writable and the disk is not full")
    return path
