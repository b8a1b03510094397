"""Desktop notifications for the moments a user away from the window must hear about: a worker
entering critical, and a worker (or one of its threads) dying of memory.

Everything goes through one ``show(title, text)`` function so tests (and the offscreen platform,
which has no system tray) can put their own in: by default it is the tray icon's balloon where a
tray exists, and the window's message bar otherwise.
"""

from __future__ import annotations

from collections.abc import Callable

from .qt import QtGui, QtWidgets

ShowFn = Callable[[str, str], None]


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

    def _tray_message(self, title: str, text: str) -> None:
        assert self.tray is not None
        self.tray.showMessage(title, text, QtWidgets.QSystemTrayIcon.MessageIcon.Warning, 10_000)

    def notify(self, title: str, text: str) -> None:
        self.sent.append((title, text))
        self.show_fn(title, text)

    def close(self) -> None:
        # A tray icon outlives its window on some desktops unless hidden explicitly.
        if self.tray is not None:
            self.tray.hide()


def _tray_icon(parent: QtWidgets.QWidget) -> QtGui.QIcon:
    icon = parent.windowIcon()
    if not icon.isNull():
        return icon
    # A tray refuses to show an icon-less entry: fall back to the style's warning sign.
    return parent.style().standardIcon(QtWidgets.QStyle.StandardPixmap.SP_MessageBoxWarning)
