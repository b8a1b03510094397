"""The line above the worker table for what the user must see (refusals, failures)."""

from __future__ import annotations

from .qt import QTimer, QtWidgets

_MESSAGE_MS = 15000


class MessageBar(QtWidgets.QLabel):
    """A line above the table for things the user must see (refusals, failures); fades by itself."""

    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("message-bar")
        self.setWordWrap(True)
        self.setVisible(False)
        self.setToolTip("The last problem oomscope ran into; it disappears by itself")
        self.history: list[str] = []
        # A replay re-feeding recorded events keeps their messages in the history but does not
        # flash each one at the user again.
        self.muted = False
        self._timer = QTimer(self)
        self._timer.setObjectName("message-bar-hide")
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(lambda: self.setVisible(False))

    def show_message(self, text: str, level: str = "error") -> None:
        self.history.append(text)
        if self.muted:
            return
        color = "rgb(250, 220, 220)" if level == "error" else "rgb(255, 243, 205)"
        self.setStyleSheet(f"background: {color}; padding: 4px; border-radius: 3px")
        self.setText(text)
        self.setVisible(True)
        self._timer.start(_MESSAGE_MS)
