"""Fixtures for the GUI tests: an offscreen QApplication, temporary settings, a main window on a
real engine, and a confirmation seam that answers like a user would."""

from __future__ import annotations

import os

# Before any QApplication exists: the GUI tests never need a display.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from collections.abc import Callable, Iterator, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402

from oomscope.core.engine import Engine, EngineConfig  # noqa: E402
from oomscope.core.thresholds import ThresholdConfig  # noqa: E402

# The offscreen platform plugin warns that it cannot propagate size hints whenever a dock
# widget changes its constraints; it says nothing about oomscope.
GUI_MARKS = [pytest.mark.gui, pytest.mark.qt_log_ignore(r"This plugin does not support propagateSizeHints")]

HOLDER = (
    "import sys, time\n"
    "held = bytearray({mib} << 20)\n"
    "for i in range(0, len(held), 4096): held[i] = 1\n"
    "print('ready', flush=True)\n"
    "time.sleep(120)\n"
)


class Confirmer:
    """Stands in for the confirmation dialog: records what it was asked, answers ``answer``."""

    def __init__(self, answer: str | None = "terminate") -> None:
        self.answer = answer
        self.asked: list[tuple[list[str], bool]] = []
        self.texts: list[list[str]] = []

    def __call__(self, parent: Any, workers: Sequence[Any], kill_now: bool) -> str | None:
        self.asked.append(([w.id for w in workers], kill_now))
        self.texts.append([f"{w.ref.name} {w.memory_text()}" for w in workers])
        return self.answer


def settings_at(path: Path) -> Any:
    from oomscope.gui.qt import QSettings

    return QSettings(str(path), QSettings.Format.IniFormat)


@pytest.fixture
def confirmer() -> Confirmer:
    return Confirmer()


@pytest.fixture
def make_window(qtbot: Any, tmp_path: Path, confirmer: Confirmer) -> Iterator[Callable[..., Any]]:
    from oomscope.gui.window import MainWindow

    engines: list[Engine] = []

    def make(thresholds: ThresholdConfig | None = None, interval_s: float = 0.1, **config: Any) -> Any:
        engine = Engine(EngineConfig(interval_s=interval_s, grace_s=2.0,
                                     thresholds=thresholds or ThresholdConfig(), **config)).start()
        engines.append(engine)
        window = MainWindow(engine, settings_at(tmp_path / "settings.ini"), confirm=confirmer)
        qtbot.addWidget(window)
        window.show()
        qtbot.waitExposed(window)
        return window

    yield make
    for engine in engines:
        engine.stop()


def worker_row_text(window: Any, worker_id: str, column: int) -> str:
    index = window.model.row_of(worker_id)
    return str(window.model.data(index.siblingAtColumn(column))) if index.isValid() else ""
