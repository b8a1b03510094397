"""Desktop notifications for the moments a user away from the window must hear about: a worker
entering critical, and a worker (or one of its threads) dying of memory.

Everything goes through one ``show(title, text)`` function so tests (and the offscreen platform,
which has no system tray) can put their own in: by default it is the tray icon's balloon where a
tray exists, and the window's message bar otherwise.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from .qt import QTimer, QtGui, QtWidgets

ShowFn = Callable[[str, str], None]

# A pool of 200 workers crossing critical together must not bury the desktop in 200 bubbles:
# a few at once, then one summary of the rest when the burst is over.
BURST_COUNT = 5
BURST_WINDOW_S = 10.0


class Burst:
    """Lets ``count`` messages through per ``window_s``; counts and remembers the rest."""

    def __init__(self, count: int = BURST_COUNT, window_s: float = BURST_WINDOW_S) -> None:
        self.count = count
        self.window_s = window_s
        self._recent: deque[float] = deque()
        self.held: list[str] = []

    def offer(self, title: str, now: float) -> bool:
        while self._recent and now - self._recent[0] >= self.window_s:
            self._recent.popleft()
        if len(self._recent) < self.count:
            self._recent.append(now)
            return True
        self.held.append(title)
        return False

    def wait_s(self, now: float) -> float:
        """How long until a summary may go out."""
        return max(0.0, self.window_s - (now - self._recent[0])) if self._recent else 0.0

    def take_summary(self, now: float) -> tuple[str, str] | None:
        if not self.held:
            return None
        held, self.held = self.held, []
        self._recent.append(now)
        names = "; ".join(t.removeprefix("oomscope: ") for t in held[:5])
        more = f"; and {len(held) - 5} more" if len(held) > 5 else ""
        return f"oomscope: {len(held)} more alerts", names + more


class Notifier:
    def __init__(self, parent: QtWidgets.QWidget, fallback: ShowFn, show: ShowFn | None = None) -> None:
        self.tray: QtWidgets.QSystemTrayIcon | None = None
        self.sent: list[tuple[str, str]] = []
        if show is None:
            if QtWidgets.QSystemTrayIcon.isSystemTrayAvailable():
                self.tray = QtWidgets.QSystemTrayIcon(_tray_icon(parent), parent)
                self.tray.setToolTip("oomscope")
                self.tray.show()
                show = self._tray_message
            else:
                show = fallback
        self.show_fn: ShowFn = show
        self.burst = Burst()
        self._summary = QTimer(parent)
        self._summary.setObjectName("notification-summary")
        self._summary.setSingleShot(True)
        self._summary.timeout.connect(self._send_summary)

    def _tray_message(self, title: str, text: str) -> None:
        assert self.tray is not None
        self.tray.showMessage(title, text, QtWidgets.QSystemTrayIcon.MessageIcon.Warning, 10_000)

    def notify(self, title: str, text: str) -> None:
        now = time.monotonic()
        if self.burst.offer(title, now):
            self._send(title, text)
        elif not self._summary.isActive():
            self._summary.start(int(self.burst.wait_s(now) * 1000) + 50)

    def _send(self, title: str, text: str) -> None:
        self.sent.append((title, text))
        self.show_fn(title, text)

    def _send_summary(self) -> None:
        summary = self.burst.take_summary(time.monotonic())
        if summary is not None:
            self._send(*summary)

    def close(self) -> None:
        self._summary.stop()
        # A tray icon outlives its window on some desktops unless hidden explicitly.
        if self.tray is not None:
            self.tray.hide()


def _tray_icon(parent: QtWidgets.QWidget) -> QtGui.QIcon:
    icon = parent.windowIcon()
    if not icon.isNull():
        return icon
    # A tray refuses to show an icon-less entry: fall back to the style's warning sign.
    return parent.style().standardIcon(QtWidgets.QStyle.StandardPixmap.SP_MessageBoxWarning)
