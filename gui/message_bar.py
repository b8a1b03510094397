"""The message for what the user must see (refusals, failures): floated over the bottom of the
memory plot, never in a layout, so its coming and going moves nothing under the mouse.

It takes one line of the plot, the text elided; the mouse over it opens the whole text (up to
three lines, the rest in its tooltip). Three lines at rest hid a third of the curves of a
1024x700 window for 15 s."""

from __future__ import annotations

from .qt import QObject, QTimer, QtCore, QtGui, QtWidgets, Qt

_MESSAGE_MS = 15000
_MARGIN = 6
_PADDING = 4
_HISTORY_KEPT = 200
_FADING_HINT = "click to dismiss; it also disappears by itself"
_STANDING_HINT = "click to dismiss; it stays while the problem lasts"
_BOTTOM_CLEAR = 40  # px kept clear above the host's bottom edge: the plot's clock labels stay readable


class MessageBar(QtWidgets.QLabel):
    """An overlay on ``host`` (the memory plot): shown over its bottom edge, fades by
    itself, a click dismisses it. Being a child outside any layout, it never shifts the rows: a
    click aimed at a worker while a message appears still lands on that worker."""

    def __init__(self, host: QtWidgets.QWidget | None = None) -> None:
        super().__init__(host)
        self.setObjectName("message-bar")
        self.setVisible(False)
        self.full_text = ""
        self._hint = _FADING_HINT
        self.expanded = False
        self.setToolTip("The last problem oomscope ran into; click to dismiss, it also disappears by itself")
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.history: list[str] = []
        # A replay re-feeding recorded events keeps their messages in the history but does not
        # flash each one at the user again.
        self.muted = False
        self._timer = QTimer(self)
        self._timer.setObjectName("message-bar-hide")
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._expire)
        # A standing problem (the fleet's Prometheus not answering): shown until it is over,
        # and again when a passing message over it fades.
        self._standing: tuple[str, str] | None = None
        self.fade_ms = _MESSAGE_MS
        if host is not None:
            host.installEventFilter(self)

    def show_message(self, text: str, level: str = "error", standing: bool = False) -> None:
        """``standing``: the message stays (no fading) until ``end_standing`` or a click."""
        self.history.append(text)
        if len(self.history) > _HISTORY_KEPT:
            del self.history[:-_HISTORY_KEPT]  # a standing problem is said again at every retry
        if standing:
            self._standing = (text, level)
        if self.muted:
            return
        self._show(text, level, fades=not standing)

    def end_standing(self) -> None:
        """The standing problem is over: it goes, unless a passing message shows."""
        if self._standing is not None and not self._timer.isActive():
            self.setVisible(False)
        self._standing = None

    def _expire(self) -> None:
        if self._standing is not None:
            self._show(*self._standing, fades=False)
        else:
            self.setVisible(False)

    def _show(self, text: str, level: str, fades: bool) -> None:
        self._hint = _FADING_HINT if fades else _STANDING_HINT
        color = "rgb(250, 220, 220)" if level == "error" else "rgb(255, 243, 205)"
        border = "rgb(200, 120, 120)" if level == "error" else "rgb(210, 170, 80)"
        self.setStyleSheet(f"background: {color}; border: 1px solid {border}; padding: {_PADDING}px; border-radius: 3px")
        self.full_text = text
        self.expanded = self.underMouse()
        self._place()
        self.setVisible(True)
        self.raise_()
        if fades:
            self._timer.start(self.fade_ms)
        else:
            self._timer.stop()

    def _place(self) -> None:
        host = self.parentWidget()
        if host is None:
            return
        width = max(80, host.width() - 2 * _MARGIN)
        self.setWordWrap(self.expanded)
        if self.expanded:
            # Three lines at most over the rows; the whole text is in the tooltip and the history.
            self.setText(self.full_text)
            lines = 3 * self.fontMetrics().lineSpacing() + 12
            whole = self.heightForWidth(width) if self.hasHeightForWidth() else self.sizeHint().height()
            height = min(whole, lines, max(24, host.height() // 2))
            # The tip repeats the text only when the bar cannot show all of it.
            self.setToolTip(self._hint if whole <= height else f"{self.full_text}\n\n({self._hint})")
        else:
            room = width - 2 * _PADDING - 4
            self.setText(self.fontMetrics().elidedText(" ".join(self.full_text.split()),
                                                      Qt.TextElideMode.ElideRight, room))
            height = self.fontMetrics().lineSpacing() + 2 * _PADDING + 4
            self.setToolTip(f"{self.full_text}\n\n({self._hint})")
        self.setGeometry(_MARGIN, max(0, host.height() - height - _BOTTOM_CLEAR), width, height)

    def enterEvent(self, event: QtGui.QEnterEvent) -> None:
        self._set_expanded(True)
        super().enterEvent(event)

    def leaveEvent(self, event: QtCore.QEvent) -> None:
        self._set_expanded(False)
        super().leaveEvent(event)

    def _set_expanded(self, expanded: bool) -> None:
        if expanded != self.expanded:
            self.expanded = expanded
            self._place()

    def eventFilter(self, watched: QObject, event: QtCore.QEvent) -> bool:
        if event.type() == QtCore.QEvent.Type.Resize and self.isVisible():
            self._place()
        return False

    def mousePressEvent(self, event: QtGui.QMouseEvent) -> None:
        self._timer.stop()
        self._standing = None  # seen: a click is the user's "I know"
        self.setVisible(False)
        event.accept()
