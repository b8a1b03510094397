"""Colours: one per worker (curve, table swatch), per level (table rows), per cause (timeline)."""

from __future__ import annotations

from oomscope.core.causes import EXIT, HEAP_OOM, OOM_KILL, SIGNAL, TERMINATED, UNKNOWN

from .qt import QtGui
from .roster import KERNEL

# Tableau 10 without its red and its grey, which mean "critical" and "exited" here.
_WORKER_RGB = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (148, 103, 189), (140, 86, 75),
    (227, 119, 194), (188, 189, 34), (23, 190, 207), (57, 59, 121), (99, 121, 57),
)

WARNING_RGB = (230, 150, 0)
CRITICAL_RGB = (214, 39, 40)
WARNING_ROW_RGB = (255, 240, 200)
CRITICAL_ROW_RGB = (252, 215, 215)
EXITED_TEXT_RGB = (120, 120, 120)

# Timeline: cause -> (pyqtgraph symbol, colour, size). Shapes differ as well as colours, so the
# causes stay apart for colour-blind eyes and in greyscale prints.
CAUSE_STYLE: dict[str, tuple[str, tuple[int, int, int], int]] = {
    OOM_KILL: ("star", CRITICAL_RGB, 18),
    HEAP_OOM: ("d", (255, 127, 14), 15),
    # A worker thread's heap-oom (the process lives on): the heap-OOM diamond, smaller and pale,
    # so it reads as "a part of the worker died", not the worker.
    "thread-heap-oom": ("d", (255, 205, 150), 11),
    TERMINATED: ("s", (31, 119, 180), 12),
    "terminated-policy": ("s", (148, 103, 189), 12),
    SIGNAL: ("t", (227, 119, 194), 13),
    EXIT: ("o", (127, 127, 127), 11),
    "exit-clean": ("o", (44, 160, 44), 11),
    UNKNOWN: ("h", (127, 127, 127), 12),
    KERNEL: ("x", (140, 28, 19), 14),
}


THREAD_PEN_RGB = (200, 90, 0)  # outline of a thread-death marker: the pale fill stays visible on white


def worker_rgb(index: int) -> tuple[int, int, int]:
    if index < len(_WORKER_RGB):
        return _WORKER_RGB[index]
    color = QtGui.QColor.fromHsv((index * 47) % 360, 170, 200)
    return color.red(), color.green(), color.blue()


def worker_color(index: int) -> QtGui.QColor:
    return QtGui.QColor(*worker_rgb(index))
