"""Garbage collection on the GUI thread only (gui/collector.py)."""

from __future__ import annotations

import gc
import threading
from typing import Any

from gui_helpers import GUI_MARKS

pytestmark = GUI_MARKS


class _Cycle:
    def __init__(self) -> None:
        self.me = self

    def __del__(self) -> None:
        _collected.append(threading.current_thread().name)


_collected: list[str] = []


def test_cycles_are_collected_by_the_gui_threads_timer(qtbot: Any) -> None:
    from oomscope.gui.collector import MainThreadCollector

    gc.enable()
    collector = MainThreadCollector()
    try:
        assert not gc.isenabled()
        _collected.clear()
        for _ in range(2000):  # enough allocations to trip generation 0 many times over
            _Cycle()

        def other_thread() -> None:
            for _ in range(50_000):
                [object()]  # allocates: an enabled collector would run here

        t = threading.Thread(target=other_thread, name="not-gui")
        t.start()
        t.join()
        assert _collected == []  # nothing collected on any thread yet
        qtbot.waitUntil(lambda: len(_collected) == 2000, timeout=5_000)
        assert set(_collected) == {threading.main_thread().name}
    finally:
        collector.stop()
    assert gc.isenabled()
