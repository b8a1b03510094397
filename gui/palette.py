"""Colours: one per worker (curve, table swatch), per level (table rows), per cause (timeline)."""

from __future__ import annotations

from oomscope.core.causes import EXIT, HEAP_OOM, OOM_KILL, SIGNAL, TERMINATED, UNKNOWN

from .qt import QtGui
from .roster import KERNEL

# Curve colours: blues, greens, purples and pinks only. The warm hues (red, orange, amber,
# yellow, brown) belong to the levels — a curve in them reads as "warning" or "critical" — so no
# curve colour has a hue within CURVE_HUE_GAP of a level colour's.
_WORKER_RGB = (
    (31, 119, 180), (44, 160, 44), (148, 103, 189), (23, 190, 207), (190, 90, 220),
    (57, 59, 121), (0, 158, 115), (0, 110, 110), (86, 180, 233), (123, 65, 160),
)
CURVE_HUE_GAP = 45  # degrees
# Where generated colours (the eleventh worker on) take their hue: the cool arc, clear of the
# levels' warm hues on both sides.
_COOL_HUES = (90, 310)

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
    low, high = _COOL_HUES
    color = QtGui.QColor.fromHsv(low + (index * 47) % (high - low), 170, 200)
    return color.red(), color.green(), color.blue()


def worker_color(index: int) -> QtGui.QColor:
    return QtGui.QColor(*worker_rgb(index))
