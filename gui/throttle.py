"""Coalesced calls (qutebrowser's ``misc/throttle.py``): the first runs at once, the rest fold.

A GUI that redraws on every sample stutters; a throttled redraw runs at most once per
``min_interval_s`` whatever the rate of requests, and never drops the last request.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .qt import QObject, QTimer


class Throttle(QObject):
    def __init__(self, fn: Callable[[], None], min_interval_s: float, name: str,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._fn = fn
        self._min_interval_s = min_interval_s
        self._last_run = -1e9  # monotonic seconds
        self._timer = QTimer(self)
        self._timer.setObjectName(name)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._run)

    def __call__(self) -> None:
        if self._timer.isActive():
            return  # a run is already due: it will see the newest state
        wait_s = self._last_run + self._min_interval_s - time.monotonic()
        if wait_s <= 0:
            self._run()
        else:
            self._timer.start(max(1, int(wait_s * 1000)))

    def _run(self) -> None:
        self._last_run = time.monotonic()
        self._fn()
