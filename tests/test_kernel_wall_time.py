"""Kernel lines carry the wall-clock time the plot uses, and the kernel log pane shows it.

A real line written to /dev/kmsg (as root; a user-space line, harmless to the kernel log) read
back by the real engine; the pane is a real widget (offscreen)."""

from __future__ import annotations

import os
import re
import time
import uuid
from typing import Any

import pytest

from oomscope.core.events import KernelLineRead

can_write_kmsg = os.geteuid() == 0 and os.access("/dev/kmsg", os.W_OK | os.R_OK)
needs_kmsg = pytest.mark.skipif(not can_write_kmsg, reason="needs root to write and read /dev/kmsg")


@pytest.fixture
def read_back(make_engine: Any) -> Any:
    """Write a line to /dev/kmsg; the engine's event for it, and when it was written."""
    eng, log = make_engine()
    log.wait_for(lambda e: e.kind == "source")

    def write(tag: str) -> tuple[KernelLineRead, float]:
        with open("/dev/kmsg", "w") as kmsg:
            written = time.time()
            kmsg.write(f"<6>{tag}\n")
        ev = log.wait_for(lambda e: isinstance(e, KernelLineRead) and tag in e.line.text, timeout=10)
        assert isinstance(ev, KernelLineRead)
        return ev, written
    return write


@needs_kmsg
def test_a_live_kernel_line_has_its_wall_time(read_back: Any) -> None:
    ev, written = read_back(f"oomscope-test {uuid.uuid4()}")
    assert ev.line.kernel_time_s is not None and ev.line.wall_time_unix is not None
    assert abs(ev.line.wall_time_unix - written) < 0.5


@needs_kmsg
@pytest.mark.gui
@pytest.mark.qt_log_ignore(r"This plugin does not support propagateSizeHints")
def test_the_pane_shows_wall_clock_time_and_the_raw_line_on_hover(qtbot: Any, read_back: Any) -> None:
    from oomscope.gui.kernel_pane import KernelLogPane

    pane = KernelLogPane()
    qtbot.addWidget(pane)
    pane.all_lines.setChecked(True)
    ev, written = read_back(f"oomscope-test {uuid.uuid4()}")
    pane.add_line(ev)
    item = pane.list.item(pane.list.count() - 1)
    stamp = time.strftime("%H:%M:%S", time.localtime(ev.line.wall_time_unix))
    assert item.text().startswith(stamp + ".") and "oomscope-test" in item.text()
    assert not re.search(r"\[\s*\d+\.\d+\]", item.text())
    assert re.match(r"\[\s*\d+\.\d+\] oomscope-test", item.toolTip())
