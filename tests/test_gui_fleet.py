"""*Connect to Prometheus…*: what the fleet window says when there is no server, or no answer, or
a URL that is none; that it can signal nothing; and how it asks for the URL. The window on a real
Prometheus with real agents is tested in test_prometheus_fleet.py, on the rig started there."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pytest

from gui_helpers import GUI_MARKS, confirmer, make_window, settings_at  # noqa: F401 (fixtures)
from test_prometheus_rig import free_port

pytestmark = GUI_MARKS


@pytest.fixture
def open_window(qtbot: Any, tmp_path: Path) -> Any:
    from oomscope.gui.fleet import FleetWindow
    from oomscope.gui.qt import QtWidgets

    parent = QtWidgets.QWidget()
    qtbot.addWidget(parent)
    settings = settings_at(tmp_path / "settings.ini")

    def make(url: str, timeout_s: float = 10.0) -> Any:
        window = FleetWindow(url, settings, parent, timeout_s=timeout_s)
        window.show()
        qtbot.waitExposed(window)
        return window

    make.settings = settings
    make.parent = parent
    return make


def _first_answer(qtbot: Any, window: Any, timeout_ms: int = 20000) -> bool:
    """The first fetch's outcome (it may have ended before the test looks)."""
    if window.fetches == 0:
        with qtbot.waitSignal(window.refreshed, timeout=timeout_ms) as blocker:
            pass
        return bool(blocker.args[0])
    return window.problem is None


def test_the_fleet_window_signals_nothing(open_window: Any) -> None:
    """Read-only: no action of the window can terminate or kill anything."""
    window = open_window(f"http://127.0.0.1:{free_port()}")
    names = [a.objectName() + " " + a.text() for a in window.findChildren(type(window.refresh_action))]
    assert names and not [n for n in names if any(w in n.lower() for w in ("terminate", "kill", "signal"))]
    assert not any(line.movable for line in window.plot.lines.values())


def test_unreachable_server_says_so_in_the_window(qtbot: Any, open_window: Any) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    window = open_window(url)
    assert _first_answer(qtbot, window) is False
    assert window.message_bar.isVisible() and window.message_bar.full_text == window.problem
    # Over the plot, not above the table: the problem's going moves no row.
    viewport = window.view.table.viewport()
    where = viewport.mapTo(window, viewport.rect().topLeft())
    window.message_bar.end_standing()
    assert not window.message_bar.isVisible()
    assert viewport.mapTo(window, viewport.rect().topLeft()) == where
    assert window.problem.startswith(f"cannot reach Prometheus at {url}: connection refused — is it running? "
                                     "check the URL — trying again every 15 s.")
    assert window.roster.workers == [] and window.plot.empty_label.isVisible()


def test_a_bad_url_is_said_and_nothing_is_asked(open_window: Any) -> None:
    window = open_window("ftp://somewhere")
    assert window.message_bar.isVisible() and "must start with http:// or https://" in window.problem
    assert window.client is None and not window.fetching
    url = f"http://127.0.0.1:{free_port()}"
    window.connect_to(url)
    window.connect_to("http://host:9090/graph?g0.expr=up")
    assert window.problem.endswith(f"without ?query or #fragment (still reading {url})")
    assert window.client.url == url


def test_a_server_that_does_not_answer_does_not_freeze_the_window(qtbot: Any, open_window: Any) -> None:
    from oomscope.gui.qt import QTimer

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        ticks: list[float] = []
        timer = QTimer()
        timer.timeout.connect(lambda: ticks.append(time.monotonic()))
        timer.start(20)
        window = open_window(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout_s=1.0)
        assert window.fetching
        assert _first_answer(qtbot, window) is False
        timer.stop()
    assert "did not answer within 1 s" in window.problem
    # The event loop ran all along: ticks every 20 ms or so, no gap near the 1 s the query took.
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert len(ticks) >= 25 and max(gaps) < 0.5, (len(ticks), max(gaps))


def test_connect_asks_with_the_last_url_and_remembers_the_new_one(qtbot: Any, open_window: Any) -> None:
    from oomscope.gui.fleet import SETTINGS_URL, open_fleet_window
    from oomscope.gui.qt import QTimer, QtWidgets

    settings = open_window.settings
    settings.setValue(SETTINGS_URL, "http://old-server:9090")
    new_port = free_port()
    seen: list[str] = []

    def answer() -> None:
        dialog = QtWidgets.QApplication.activeModalWidget()
        assert isinstance(dialog, QtWidgets.QInputDialog)
        seen.append(dialog.textValue())
        dialog.setTextValue(f"127.0.0.1:{new_port}")
        dialog.accept()

    QTimer.singleShot(0, answer)
    window = open_fleet_window(open_window.parent, settings=settings)
    assert window is not None
    qtbot.addWidget(window)
    assert seen == ["http://old-server:9090"]
    assert settings.value(SETTINGS_URL) == f"http://127.0.0.1:{new_port}"
    assert _first_answer(qtbot, window) is False  # nothing listens there: said, not raised

    def cancel() -> None:
        dialog = QtWidgets.QApplication.activeModalWidget()
        assert dialog is not None
        dialog.reject()

    QTimer.singleShot(0, cancel)
    assert open_fleet_window(open_window.parent, settings=settings) is None


def test_the_main_windows_file_menu_opens_it(qtbot: Any, make_window: Any) -> None:
    """File → Connect to Prometheus… of the main window: the dialog, then the fleet window, owned
    by the main window (closed with it)."""
    from oomscope.gui.fleet import FleetWindow
    from oomscope.gui.qt import QtGui, QTimer, QtWidgets

    main = make_window()
    action = main.findChild(QtGui.QAction, "connect-prometheus")
    assert action is not None, "the main window has no File → Connect to Prometheus… action"
    url = f"http://127.0.0.1:{free_port()}"

    def answer() -> None:
        dialog = QtWidgets.QApplication.activeModalWidget()
        assert isinstance(dialog, QtWidgets.QInputDialog)
        dialog.setTextValue(url)
        dialog.accept()

    QTimer.singleShot(0, answer)
    action.trigger()
    [fleet] = main.findChildren(FleetWindow)
    assert fleet.isVisible() and fleet.isWindow() and fleet.client.url == url
    assert main.settings.value("fleet/url") == url
    assert _first_answer(qtbot, fleet) is False and "connection refused" in fleet.problem
