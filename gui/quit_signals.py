"""Ctrl-C, ``kill PID`` and a closed terminal end the window as its Quit does.

Python runs a signal handler only between bytecodes, and the GUI thread sits inside Qt's event
loop, so a plain handler would wait for the next Python callback, and Python's default SIGTERM
ends the process on the spot: the workers die with it (they are started with a parent-death
signal), but their cgroups and heap-report folders stay behind for the next start to sweep,
and a recording is not closed. So the signal's number goes through a socket (Python's wakeup
fd) that Qt watches, and the event loop quits; what follows ``app.exec()`` stops the engine and
cleans up, as after Quit.
"""

from __future__ import annotations

import signal
import socket

from .qt import QObject, QSocketNotifier, QtWidgets

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class QuitOnSignals(QObject):
    """While it lives, SIGTERM, SIGINT and SIGHUP quit ``app``'s event loop (those of them not
    ignored when it starts)."""

    def __init__(self, app: QtWidgets.QApplication) -> None:
        super().__init__(app)
        self._app = app
        self._read, self._write = socket.socketpair()
        for end in (self._read, self._write):
            end.setblocking(False)
        self._old_fd = signal.set_wakeup_fd(self._write.fileno(), warn_on_full_buffer=False)
        # A signal the parent chose to ignore stays ignored: `nohup oomscope &` must outlive
        # its terminal (SIGHUP), a background job Ctrl-C (SIGINT).
        self._old_handlers = {sig: signal.signal(sig, _noted) for sig in SIGNALS
                              if signal.getsignal(sig) is not signal.SIG_IGN}
        self._notifier = QSocketNotifier(self._read.fileno(), QSocketNotifier.Type.Read, self)
        self._notifier.activated.connect(self._on_signal)

    def _on_signal(self) -> None:
        try:
            self._read.recv(64)  # which signal does not matter: each one quits
        except BlockingIOError:
            return
        self._app.quit()

    def close(self) -> None:
        """Give the signals back to what handled them before."""
        self._notifier.setEnabled(False)
        for sig, old in self._old_handlers.items():
            signal.signal(sig, old)
        signal.set_wakeup_fd(self._old_fd)
        self._read.close()
        self._write.close()


def _noted(signum: int, frame: object) -> None:
    """The handler's work is done by the wakeup fd; it only keeps the default action away."""
