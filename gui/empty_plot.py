"""What an empty plot says and offers: a sentence and the three ways to fill it (the demo,
Launch, Attach) as buttons, centred over the plot as a widget of its own, so the window manager's
fonts and the plot's range never clip it."""

from __future__ import annotations

from .qt import QObject, QtCore, QtWidgets, Qt, Signal


class EmptyPlotHint(QtWidgets.QFrame):
    demo_clicked = Signal()
    launch_clicked = Signal()
    attach_clicked = Signal()

    def __init__(self, host: QtWidgets.QWidget, text: str) -> None:
        super().__init__(host)
        self.setObjectName("empty-plot-hint")
        self.setStyleSheet("#empty-plot-hint { background: rgba(255, 255, 255, 235); "
                           "border: 1px solid rgb(200, 200, 200); border-radius: 6px; }")
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(16, 12, 16, 12)
        self.label = QtWidgets.QLabel(text)
        self.label.setObjectName("empty-plot-text")
        self.label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.label.setWordWrap(True)
        self.label.setStyleSheet("color: rgb(90, 90, 90)")
        layout.addWidget(self.label)
        row = QtWidgets.QHBoxLayout()
        self.buttons: dict[str, QtWidgets.QPushButton] = {}
        for name, title, tip, signal in (
                ("demo", "Try the demo", "Start four demo workers: a steady one, two leakers (one is OOM-killed "
                 "under a 96 MiB limit) and one with threads", self.demo_clicked),
                ("launch", "Launch…", "Start a command as a worker, optionally under a memory limit (Ctrl+L)",
                 self.launch_clicked),
                ("attach", "Attach…", "Watch running processes, or the children of a pool master (Ctrl+Shift+A)",
                 self.attach_clicked)):
            button = QtWidgets.QPushButton(title)
            button.setObjectName(f"empty-{name}")
            button.setToolTip(tip)
            button.clicked.connect(signal.emit)
            row.addWidget(button)
            self.buttons[name] = button
        layout.addLayout(row)
        host.installEventFilter(self)
        self._place()

    def setText(self, text: str) -> None:  # noqa: N802 (the TextItem's name, which callers use)
        self.label.setText(text)
        self._place()

    def set_buttons(self, names: set[str]) -> None:
        """Only the ways in that make sense here: a replay or a fleet view starts nothing."""
        for name, button in self.buttons.items():
            button.setVisible(name in names)
        self._place()

    def _place(self) -> None:
        host = self.parentWidget()
        if host is None:
            return
        size = self.sizeHint().boundedTo(host.size())
        self.setGeometry((host.width() - size.width()) // 2, (host.height() - size.height()) // 2,
                         size.width(), size.height())

    def eventFilter(self, watched: QObject, event: QtCore.QEvent) -> bool:
        if event.type() == QtCore.QEvent.Type.Resize:
            self._place()
        return False
