"""Python's cyclic garbage collector, run on the GUI thread only.

The collector runs on whichever thread happens to allocate when a threshold trips. If that is the
engine's thread and the garbage holds a Qt object (a closed window, a bridge: their dispatch
tables hold bound methods of themselves, a reference cycle), PySide6 destroys it there: it
disconnects signals from the wrong thread and waits for the GIL while the GUI thread, inside Qt,
waits for it — both stop for good (seen in the test suite: the engine thread in
``gc_collect_main`` → ``QObject::disconnect`` → ``GilState::acquire``). So a process with a GUI
turns automatic collection off and collects here, from a timer on the GUI thread: the young
generation every second, the middle one every 10 s, everything every minute.
"""

from __future__ import annotations

import gc

from .qt import QObject, QTimer

_INTERVAL_MS = 1000


class MainThreadCollector(QObject):
    """Owns garbage collection while it lives; :meth:`stop` gives it back to Python."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._ticks = 0
        self._was_enabled = gc.isenabled()
        gc.disable()
        self._timer = QTimer(self)
        self._timer.setObjectName("gc-on-gui-thread")
        self._timer.setInterval(_INTERVAL_MS)
        self._timer.timeout.connect(self._collect)
        self._timer.start()

    def _collect(self) -> None:
        self._ticks += 1
        generation = 2 if self._ticks % 60 == 0 else 1 if self._ticks % 10 == 0 else 0
        gc.collect(generation)

    def stop(self) -> None:
        self._timer.stop()
        gc.collect()
        if self._was_enabled:
            gc.enable()
